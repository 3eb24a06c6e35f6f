"""Checks for notebook 06 (06_evaluate): hybrid after tuning, CI width, merge crossing, worst queries' siblings."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from workbook.data import Dataset
from workbook.diagnose import sibling_map
from workbook.evaluate import bootstrap_ci, evaluate_ranking, paired_comparison
from workbook.exercises._common import (
    CheckResult,
    _close,
    _fmt,
    _keyed,
    _number,
    _right,
    _wrong,
)
from workbook.retrieval import rrf


def check_hybrid_after_tuning(
    answer: Mapping,
    tuned_run: Mapping[str, Sequence[str]],
    bm25_run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    slices: Mapping[str, Sequence[str]],
    k: int = 100,
    min_queries: int = 10,
) -> CheckResult:
    """06.1 — tuned + BM25 (RRF) minus the tuned model alone: test Recall@10, significance, and the slice it helps most.

    Args:
        answer: ``{"delta": .., "significant": bool, "slice": name}`` (``significant`` and ``slice`` optional).
        tuned_run, bm25_run: the test runs fused (depth ``cfg.top_k``); ``qrels``: the test judgements.
        slices: slice name -> query ids (``slice_queries(ds, "test")``); slices under ``min_queries`` are ignored.
    """
    ex = "06.1"
    answer, bad = _keyed(ex, answer, ["delta"], '{"delta": 0.03, "significant": True, "slice": "exact-code"}')
    if bad is not None:
        return bad
    tuned = evaluate_ranking(tuned_run, qrels, ["recall@10"], name="tuned")
    hybrid = evaluate_ranking(rrf([tuned_run, bm25_run], k=k), qrels, ["recall@10"], name="hybrid")
    pc = paired_comparison(tuned, hybrid, "recall@10")
    diff = hybrid.per_query["recall@10"] - tuned.per_query["recall@10"]
    gains = {
        s: float(diff.loc[diff.index.intersection(list(q))].mean())
        for s, q in slices.items()
        if len(diff.index.intersection(list(q))) >= min_queries
    }
    top = max(gains, key=gains.get) if gains else None
    expected = {"delta": pc.delta, "significant": pc.significant, "slice": top}
    if not _close(answer["delta"], pc.delta, 0.001):
        return _wrong(
            ex,
            f"delta {_fmt(answer['delta'])} is not hybrid minus tuned test Recall@10",
            "fuse rrf([tuned_run, bm25_run], k=cfg.top_k) and compare with paired_comparison(tuned, "
            "hybrid, 'recall@10').delta",
            expected,
        )
    borderline = min(abs(pc.ci_low), abs(pc.ci_high)) < 0.002
    if "significant" in answer and bool(answer["significant"]) != pc.significant and not borderline:
        return _wrong(
            ex,
            "the delta is right, but not its significance",
            "a paired difference is significant at 95% when its bootstrap CI excludes 0",
            expected,
        )
    if "slice" in answer and answer["slice"] != top:
        return _wrong(
            ex,
            f"the delta is right, but {answer['slice']!r} is not where the hybrid helps most",
            "per slice, average the per-query difference (hybrid - tuned) over the slice's queries",
            expected,
        )
    return _right(
        ex,
        f"tuned + BM25 - tuned: {pc.delta:+.4f} Recall@10, 95% CI [{pc.ci_low:+.4f}, "
        f"{pc.ci_high:+.4f}] ({'significant' if pc.significant else 'not significant'}); largest gain on "
        f"{top} ({gains.get(top, float('nan')):+.4f})",
        expected,
    )


def check_ci_width(
    answer: Mapping, per_query, n: int = 300, target: float = 0.02, metric: str = "recall@10"
) -> CheckResult:
    """06.2 — the 95% bootstrap CI width of a run's mean on its first ``n`` test queries, and the queries needed for a
    CI of +/- ``target`` (n ~ (1.96 sd / target)^2).

    Args:
        answer: ``{"width": hi - lo, "queries needed": n}``.
        per_query: the run's per-query values on the whole split (``result.per_query`` or its ``metric`` column).
        n: the queries kept (the first ``n`` by id).
        target: the half-width wanted (0.02: a 2-point difference).
    """
    ex = "06.2"
    answer, bad = _keyed(ex, answer, ["width", "queries needed"], '{"width": 0.11, "queries needed": 2400}')
    if bad is not None:
        return bad
    if hasattr(per_query, "per_query"):
        per_query = per_query.per_query
    values = per_query[metric] if isinstance(per_query, pd.DataFrame) else pd.Series(per_query)
    values = values.sort_index().iloc[:n].to_numpy(dtype=float)
    lo, hi = bootstrap_ci(values)
    sd = float(np.std(values, ddof=1))
    expected = {"width": hi - lo, "queries needed": math.ceil((1.96 * sd / target) ** 2)}
    ok_width = _close(answer["width"], expected["width"], 0.1 * expected["width"] + 1e-9)
    ok_n = _close(answer["queries needed"], expected["queries needed"], 0.15 * expected["queries needed"] + 1)
    if ok_width and ok_n:
        return _right(
            ex,
            f"{len(values)} queries: 95% CI width {expected['width']:.3f} (sd {sd:.3f}); about "
            f"{expected['queries needed']:,} queries for +/-{target} (paired comparisons need fewer: "
            "their sd is that of the per-query difference)",
            expected,
        )
    what = "the CI width" if not ok_width else "the number of queries"
    return _wrong(
        ex,
        f"{what} is off",
        f"bootstrap_ci of the first {n} per-query values (width = hi - lo); the half-width is about "
        f"1.96 * sd / sqrt(n), so n = (1.96 * sd / {target})^2",
        expected,
    )


def merge_crossing(curve: pd.DataFrame, budget: float = 0.01) -> float | None:
    """The ratio at which ``general loss`` first exceeds ``budget``, linearly interpolated between the measured
    ratios; ``None`` when it never does."""
    pts = curve.sort_index()["general loss"]
    alphas, losses = pts.index.to_numpy(float), pts.to_numpy(float)
    for i in range(1, len(alphas)):
        if losses[i - 1] <= budget < losses[i]:
            return float(
                alphas[i - 1] + (budget - losses[i - 1]) * (alphas[i] - alphas[i - 1]) / (losses[i] - losses[i - 1])
            )
    return None


def check_merge_crossing(
    answer: Any, curve: pd.DataFrame, budget: float = 0.01, alphas: Sequence[float] = (0.3, 0.35, 0.4, 0.45)
) -> CheckResult:
    """06.3 — where the SciFact loss crosses ``budget`` on the interpolation curve (``None``: it never does).

    Args:
        answer: the crossing ratio, or ``None``.
        curve: ``interpolation_curve``'s table, with alpha 0 and at least one of ``alphas`` traced.
    """
    ex = "06.3"
    if not isinstance(curve, pd.DataFrame) or "general loss" not in curve or 0.0 not in curve.index:
        return _wrong(
            ex,
            "expected interpolation_curve's table (alpha index, 'general loss' column, alpha 0 in it)",
            "interpolation_curve(base, tuned, [0.0, *alphas, 1.0], score_domain, score_general)",
        )
    if not any(any(abs(a - b) < 1e-9 for b in curve.index) for a in alphas):
        return _wrong(ex, f"the curve traces none of {list(alphas)}", "add the new ratios to the alphas you trace")
    expected = merge_crossing(curve, budget)
    if expected is None:
        if answer is None:
            return _right(
                ex,
                f"the SciFact loss stays within {budget} at every traced ratio "
                f"(max {curve['general loss'].max():.4f}): no crossing",
                None,
            )
        return _wrong(
            ex,
            f"{_fmt(answer)}: but the loss never exceeds {budget} on this curve",
            "answer None when every ratio stays within the budget",
            None,
        )
    if _close(answer, expected, 0.02):
        return _right(
            ex,
            f"the SciFact loss crosses {budget} at alpha ~ {expected:.3f} (linear between the traced ratios)",
            expected,
        )
    return _wrong(
        ex,
        f"{_fmt(answer, 3)} is not where the loss crosses {budget}",
        "find the two traced ratios around the crossing and interpolate linearly between them",
        expected,
    )


def check_worst_siblings(
    answer: Any, query_ids: Sequence[str], ranked: Mapping[str, Sequence[str]], ds: Dataset, split: str = "test"
) -> CheckResult:
    """06.4 — of the worst queries, how many have a lookalike (sibling) of a gold code as their top hit.

    Args:
        answer: the count.
        query_ids: the worst queries (``worst_queries(...).index``).
        ranked: the tuned model's test run.
    """
    ex = "06.4"
    siblings = sibling_map(ds.extras.get("lookalikes", []))
    hits = []
    for q in query_ids:
        gold = {d for d, s in ds.qrels[split][q].items() if s > 0}
        sibs = set().union(*(siblings.get(g, set()) for g in gold)) - gold
        top = list(ranked.get(q, []))[:1]
        if top and top[0] in sibs:
            hits.append(q)
    expected = len(hits)
    if _number(answer) == expected:
        return _right(
            ex,
            f"{expected} of {len(query_ids)} worst queries rank a sibling of their gold code first: "
            "read those two descriptions to judge model error vs incomplete judgement",
            hits,
        )
    return _wrong(
        ex,
        f"{answer!r} is not the count",
        "siblings = dg.sibling_map(ds.extras['lookalikes']); count the queries whose ranked[q][0] is in the "
        "siblings of a gold code (and is not gold itself)",
        hits,
    )
