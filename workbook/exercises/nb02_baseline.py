"""Checks for notebook 02 (02_baseline): RRF constant, BM25 parameters, rerank depth, gate flip."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from workbook.data import Dataset
from workbook.diagnose import should_fine_tune
from workbook.evaluate import evaluate_ranking
from workbook.exercises._common import (
    CheckResult,
    _close,
    _compare_numbers,
    _fmt,
    _keyed,
    _number,
    _passing,
    _recall_at,
    _right,
    _wrong,
)
from workbook.icd10cm import slice_queries
from workbook.retrieval import BM25Index, bm25_ranking, rrf


def check_rrf_constant(
    answer: Mapping, rankings: Sequence[Mapping[str, Sequence[str]]], qrels: Mapping, k: int = 100
) -> CheckResult:
    """02.1 — Recall@1 and Recall@100 of the dense + BM25 hybrid with RRF constants ``c`` 10 and 200.

    Args:
        answer: ``{10: {"recall@1": .., "recall@100": ..}, 200: {...}}`` (other constants may be added).
        rankings: the fused runs (dense MiniLM and BM25 on dev, depth ``cfg.top_k``).
        qrels: the dev judgements.
        k: the fused depth.
    """
    ex = "02.1"
    if not isinstance(answer, Mapping) or not {10, 200} <= {int(c) for c in answer if _number(c) is not None}:
        return _wrong(
            ex,
            "the answer needs constants 10 and 200",
            'answer like {10: {"recall@1": 0.3, "recall@100": 0.8}, 200: {...}}',
        )
    expected = {}
    for c in sorted(answer, key=int):
        res = evaluate_ranking(rrf(list(rankings), k=k, c=int(c)), qrels, ["recall@1", "recall@100"])
        expected[int(c)] = {m: res[m] for m in ("recall@1", "recall@100")}
    for c, metrics in expected.items():
        got = answer[c] if c in answer else answer[str(c)]
        if not isinstance(got, Mapping) or not {"recall@1", "recall@100"} <= set(got):
            return _wrong(ex, f"c={c}: expected recall@1 and recall@100", "a dict of both metrics per constant")
        bad = _compare_numbers(
            ex,
            {f"c={c} {m}": got[m] for m in metrics},
            {f"c={c} {m}": v for m, v in metrics.items()},
            0.001,
            "fuse the same two dev runs with rrf(runs, k=cfg.top_k, c=c) and score them with "
            "evaluate_ranking on the dev qrels",
        )
        if bad is not None:
            return bad
    lo, hi = expected[10], expected[200]
    return _right(
        ex,
        f"c=10: R@1 {lo['recall@1']:.4f}, R@100 {lo['recall@100']:.4f}; c=200: R@1 {hi['recall@1']:.4f}, "
        f"R@100 {hi['recall@100']:.4f}. A small c lets one retriever's top ranks dominate; a large c "
        "approaches a plain vote count",
        expected,
    )


def check_bm25_params(answer: Mapping, ds: Dataset, split: str = "dev", k1: float = 0.9, b: float = 0.4) -> CheckResult:
    """02.2 — Recall@10 of BM25 with ``k1``, ``b`` on the ``exact-code`` slice and overall.

    Args:
        answer: ``{"exact-code": recall, "all": recall}``.
    """
    ex = "02.2"
    answer, bad = _keyed(ex, answer, ["exact-code", "all"], '{"exact-code": 0.99, "all": 0.55}')
    if bad is not None:
        return bad
    ranked = bm25_ranking(ds, split, k=10, index=BM25Index.from_dataset(ds, k1=k1, b=b))
    qrels = ds.qrels[split]
    codes = slice_queries(ds, split).get("exact-code", [])
    expected = {
        "exact-code": _recall_at(ranked, {q: qrels[q] for q in codes}) if codes else float("nan"),
        "all": _recall_at(ranked, qrels),
    }
    bad = _compare_numbers(
        ex,
        answer,
        expected,
        0.001,
        f"build BM25Index.from_dataset(ds, k1={k1}, b={b}), rank {split} with bm25_ranking and "
        "average Recall@10 over the exact-code queries and over all of them",
    )
    if bad is not None:
        return bad
    return _right(
        ex,
        f"BM25 k1={k1}, b={b} on {split}: exact-code {expected['exact-code']:.4f}, all {expected['all']:.4f}. "
        "b scales the length normalisation: with short, similar-length documents it changes little",
        expected,
    )


def check_rerank_depth(
    answer: Any,
    candidates: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    reranked: Mapping[str, Sequence[str]] | None = None,
    depth: int = 10,
) -> CheckResult:
    """02.3 — Recall@10 after reranking only the top ``depth`` candidates of the hybrid.

    Args:
        answer: the Recall@10 you measured.
        candidates: the hybrid run the reranker re-scored.
        qrels: the dev judgements.
        reranked: your reranked run (optional; checked for keeping each query's top ``depth`` set).
        depth: the depth reranked.
    """
    ex = "02.3"
    if reranked is not None:
        moved = sum(1 for q, docs in candidates.items() if list(reranked.get(q, []))[:depth] != list(docs)[:depth])
        changed_set = [
            q for q, docs in candidates.items() if set(list(reranked.get(q, []))[:depth]) != set(list(docs)[:depth])
        ]
        if changed_set:
            return _wrong(
                ex,
                f"{len(changed_set)} queries' top {depth} hold other documents than the candidates'",
                "rerank(cross_encoder, ds, split, candidates, depth) only reorders each query's top depth",
            )
        if moved == 0:
            return _wrong(
                ex,
                "the reranked run has the candidates' order everywhere: nothing was reranked",
                "pass the hybrid run as candidates and depth=10 to rerank()",
            )
    source = reranked if reranked is not None and depth > 10 else candidates
    expected = _recall_at(source, qrels)
    if _close(answer, expected, 0.001):
        why = (
            (
                "reranking the top 10 reorders the same 10 documents, so Recall@10 cannot change (MRR@10 and "
                "Recall@1 can)"
            )
            if depth <= 10
            else "documents below rank 10 can now move up"
        )
        return _right(ex, f"Recall@10 = {expected:.4f}: {why}", expected)
    return _wrong(
        ex,
        f"{_fmt(answer)} is not the Recall@10 of the run",
        "which documents are in the top 10 after reordering only the top 10?",
        expected,
    )


def check_gate_flip(answer: Any, gate: Mapping[str, Any], target: float) -> CheckResult:
    """02.4 — which check of the gate flips when the target becomes ``target`` (the best cheap score - 0.01).

    Args:
        answer: the check name that flips (or a list of names).
        gate: the arguments of ``should_fine_tune`` as notebook 02 measured them (with the original target).
        target: the new target.
    """
    ex = "02.4"
    before = should_fine_tune(**gate).checks  # point estimates: True, False or None (not measured)
    after = should_fine_tune(**{**gate, "target": target}).checks
    flipped = {n for n in before if before[n] is not after[n]}
    got = _passing(answer)
    if got == flipped:
        shown = "; ".join(f"{n}: {before[n]} -> {after[n]}" for n in sorted(flipped)) or "nothing flips"
        return _right(ex, f"target {target:.4f}: {shown}", sorted(flipped))
    return _wrong(
        ex,
        "not the check that flips",
        f"rerun should_fine_tune with target={target:.4f} and compare its checks with the original "
        f"decision's; the names are {list(before)}",
        sorted(flipped),
    )
