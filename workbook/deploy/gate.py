"""The promotion gate: a shadow test's numbers against the thresholds in the config, as a promote/refuse decision."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbook.config import Config
from workbook.deploy.shadow import ShadowReport


@dataclass
class GateDecision:
    """Whether ``version`` may replace production: each check with its value, threshold and verdict.

    :func:`promotion_gate` is an improvement gate: a candidate no better than production (e.g. the same model)
    fails it.
    """

    version: str
    passed: bool
    checks: pd.DataFrame

    def __bool__(self) -> bool:
        return self.passed


def promotion_gate(report: ShadowReport, cfg: Config, version: str) -> GateDecision:
    """Turn a shadow test into a promote / do-not-promote decision with the thresholds in ``cfg`` (``gate_*``).

    This is an **improvement gate**: it promotes a fine-tuned candidate only when it is strictly better than
    production on the labelled queries, so a candidate identical to production (every query a tie) fails it.

    Checks: the gate metric's delta must exceed ``gate_min_metric_delta`` (strictly); the win rate, wins / (wins +
    losses) with ties excluded, must exceed ``gate_min_win_rate`` (strictly) over at least one decided query; the
    candidate must not be measurably slower than ``gate_max_latency_ratio`` times production at p95: the check
    fails when the low end of the ratio's paired 95% bootstrap CI (:meth:`ShadowReport.latency_ratio_ci`, seeded
    with ``cfg.seed``) is above the limit, so one load spike on a shared machine does not decide a promotion while a
    slower model does (and an absolute budget, when ``cfg.gate_max_p95_latency_ms`` is set, reads the measured p95);
    and overlap with production on unlabelled queries must stay above a floor (near zero means the new index is
    broken, not better).
    """
    s = report.summary()
    metric = cfg.gate_metric
    delta = float(report.new[metric] - report.old[metric])
    outcomes = report.outcomes(metric)
    wins, losses = int((outcomes == "win").sum()), int((outcomes == "loss").sum())
    win_rate = wins / (wins + losses) if wins + losses else float("nan")  # no decided query: no evidence either way
    overlap_key = f"overlap@{report.k} unlabelled"
    overlap = s[overlap_key] if not np.isnan(s[overlap_key]) else s[f"overlap@{report.k} labelled"]
    p95 = s["latency p95 new (ms)"]
    ratio_low, _ = report.latency_ratio_ci(seed=cfg.seed)
    latency_row = f"p95 latency ratio <= {cfg.gate_max_latency_ratio:g} (95% CI low end)"
    rows = [
        (f"{metric} delta > {cfg.gate_min_metric_delta:g}", delta, cfg.gate_min_metric_delta),
        (f"win rate > {cfg.gate_min_win_rate:g} (ties excluded)", win_rate, cfg.gate_min_win_rate),
        (latency_row, ratio_low, cfg.gate_max_latency_ratio),
        (f"overlap@{report.k} >= {cfg.gate_min_overlap:g}", overlap, cfg.gate_min_overlap),
    ]  # fmt: skip
    passed = [
        delta > cfg.gate_min_metric_delta,
        wins + losses > 0 and win_rate > cfg.gate_min_win_rate,
        ratio_low <= cfg.gate_max_latency_ratio,
        overlap >= cfg.gate_min_overlap,
    ]
    if cfg.gate_max_p95_latency_ms is not None:  # an absolute budget only when one is configured
        rows.insert(2, (f"p95 latency <= {cfg.gate_max_p95_latency_ms:g} ms", p95, cfg.gate_max_p95_latency_ms))
        passed.insert(2, p95 <= cfg.gate_max_p95_latency_ms)
    checks = pd.DataFrame(rows, columns=["check", "value", "threshold"]).set_index("check")
    checks["passed"] = passed
    checks["value"] = checks["value"].astype(float).round(4)
    checks["passed"] = checks["passed"].astype(bool)
    return GateDecision(version=version, passed=bool(checks["passed"].all()), checks=checks)
