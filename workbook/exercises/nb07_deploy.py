"""Checks for notebook 07 (07_deploy): gate limits, third version, re-embedding cost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from workbook.deploy import promotion_gate
from workbook.exercises._common import (
    CheckResult,
    _close,
    _fmt,
    _keyed,
    _number,
    _right,
    _wrong,
)


def check_gate_limits(answer: Mapping, report, cfg, version: str = "v2") -> CheckResult:
    """07.1 — the strictest ``gate_min_win_rate`` and ``gate_min_metric_delta`` the candidate still passes.

    Args:
        answer: ``{"gate_min_win_rate": .., "gate_min_metric_delta": ..}`` (found by raising them step by step:
            within 0.01 below the limit is right).
        report: the shadow test of ``version`` against production; ``cfg``: the config.
    """
    ex = "07.1"
    keys = ["gate_min_win_rate", "gate_min_metric_delta"]
    answer, bad = _keyed(ex, answer, keys, '{"gate_min_win_rate": 0.62, "gate_min_metric_delta": 0.05}')
    if bad is not None:
        return bad
    metric = cfg.gate_metric
    outcomes = report.outcomes(metric)
    wins, losses = int((outcomes == "win").sum()), int((outcomes == "loss").sum())
    expected = {
        "gate_min_win_rate": wins / (wins + losses) if wins + losses else 0.0,  # nothing decided: nothing passes
        "gate_min_metric_delta": float(report.new[metric] - report.old[metric]),
    }  # as promotion_gate reads them
    rows = {"gate_min_win_rate": "win rate", "gate_min_metric_delta": f"{metric} delta"}
    off = []
    for key in keys:
        value = _number(answer[key])
        if value is None:
            off.append(key)
            continue
        checks = promotion_gate(report, cfg.replace(**{key: value - 1e-9}), version).checks  # float noise
        passes = bool(checks[checks.index.str.startswith(rows[key])]["passed"].all())
        if not passes or value < expected[key] - 0.01:
            off.append(f"{key} = {value:g} ({'fails' if not passes else 'not the strictest'})")
    if off:
        return _wrong(
            ex,
            f"not the limits: {', '.join(off)}",
            "the gate passes while the threshold is below the measured value (it asks for an improvement): raise "
            "it until the row of dp.promotion_gate(report, cfg.replace(...), version).checks fails",
            expected,
        )
    first = min(expected, key=lambda k: expected[k] - getattr(cfg, k))
    return _right(
        ex,
        f"limits: win rate {expected['gate_min_win_rate']:.4f}, {cfg.gate_metric} delta "
        f"{expected['gate_min_metric_delta']:+.4f}; raised together from the defaults, {first} fails "
        "first (it has the least slack)",
        expected,
    )


def check_reembed_cost(answer: Any, job, n_docs: int = 10_000_000, price_per_hour: float = 0.5) -> CheckResult:
    """07.3 — the cost of re-embedding ``n_docs`` at ``price_per_hour``, from a job's measured throughput.

    Args:
        answer: the cost (same currency as ``price_per_hour``).
        job: the :class:`workbook.deploy.JobReport` of a re-embedding run.
    """
    ex = "07.3"
    rate = job.docs_per_s
    expected = n_docs / rate / 3600 * price_per_hour
    if _close(answer, expected, 0.01 * expected):
        return _right(
            ex,
            f"{rate:.1f} docs/s -> {n_docs / rate / 3600:.1f} hours for {n_docs:,} docs -> "
            f"{expected:.2f} at {price_per_hour}/h",
            expected,
        )
    return _wrong(
        ex,
        f"{_fmt(answer, 2)} is not what this job's throughput gives",
        "hours = n_docs / job.docs_per_s / 3600, cost = hours * price_per_hour "
        "(job.projection(n_docs, price_per_hour=...) shows both)",
        expected,
    )


def check_third_version(answer: Any, report, cfg, version: str = "v3") -> CheckResult:
    """07.2 — does the third version pass the promotion gate against production?

    Args:
        answer: ``True`` (promote) or ``False``.
        report: the shadow test of ``version`` against production; ``cfg``: the gate's thresholds.
    """
    ex = "07.2"
    if not str(getattr(report, "new_name", "")).endswith(version):
        return _wrong(
            ex,
            f"the report's candidate is {getattr(report, 'new_name', None)!r}, not {version}'s collection",
            f"shadow_test(production retriever, dep.retriever(dep.collection_name({version!r})), ...)",
        )
    decision = promotion_gate(report, cfg, version)
    failed = [c for c, ok in decision.checks["passed"].items() if not ok]
    if isinstance(answer, bool | np.bool_) and bool(answer) == decision.passed:
        why = "every check passes" if decision.passed else f"failed: {'; '.join(failed)}"
        return _right(ex, f"{version}: {'promote' if decision.passed else 'do not promote'} ({why})", decision.passed)
    return _wrong(
        ex,
        "not the gate's decision",
        f"dp.promotion_gate(report, cfg, {version!r}).passed: read each row of its checks",
        decision.passed,
    )
