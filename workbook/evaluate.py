"""IR metrics with per-query values kept: Recall@K, Precision@K, MRR@K, MAP@K, nDCG@K.

Written here (vectorised over one ranked list per query) rather than taken from sentence-transformers'
``InformationRetrievalEvaluator`` because that evaluator returns only means, and the later lessons need the
per-query values for bootstrap confidence intervals, paired tests and slices. The definitions follow
``pytrec_eval`` (the BEIR/MTEB scorer) and ``tests/test_evaluate.py`` checks them against it on the same runs:

- Recall@K = relevant in top K / all relevant; Precision@K = relevant in top K / K;
- MRR@K = 1 / rank of the first relevant doc in the top K (0 if none);
- MAP@K = sum of Precision@i at each relevant rank i <= K, divided by the number of relevant docs;
- nDCG@K with linear gains (gain = relevance grade) and log2(rank + 1) discounts.

Queries without any relevant doc are left out (as BEIR does); a judged query missing from the run scores 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_METRICS = ("recall@1", "recall@10", "recall@100", "precision@10", "mrr@10", "map@100", "ndcg@10")
_KINDS = ("recall", "precision", "mrr", "map", "ndcg")

Ranking = Mapping[str, Sequence[str]]
Qrels = Mapping[str, Mapping[str, int]]


def _parse(metric: str) -> tuple[str, int]:
    try:
        kind, k = metric.lower().split("@")
        k_int = int(k)
    except ValueError as exc:
        raise ValueError(f"metric {metric!r} must look like 'ndcg@10'") from exc
    if kind not in _KINDS or k_int < 1:
        raise ValueError(f"metric {metric!r}: kind must be one of {_KINDS} and K >= 1")
    return kind, k_int


def query_metrics(ranked: Sequence[str], judged: Mapping[str, int], metrics: Iterable[str]) -> dict[str, float]:
    """All ``metrics`` for one query's ranked doc ids against its judgements (doc id -> grade)."""
    grades = np.array([judged.get(d, 0) for d in ranked], dtype=float)
    grades[grades < 0] = 0
    hits = grades > 0
    n_rel = sum(1 for g in judged.values() if g > 0)
    ideal = np.sort(np.array([g for g in judged.values() if g > 0], dtype=float))[::-1]
    out = {}
    for metric in metrics:
        kind, k = _parse(metric)
        h, g = hits[:k], grades[:k]
        if kind == "recall":
            value = h.sum() / n_rel
        elif kind == "precision":
            value = h.sum() / k
        elif kind == "mrr":
            first = np.flatnonzero(h)
            value = 1.0 / (first[0] + 1) if first.size else 0.0
        elif kind == "map":
            ranks = np.flatnonzero(h) + 1
            value = (np.arange(1, ranks.size + 1) / ranks).sum() / n_rel
        else:  # ndcg
            disc = 1.0 / np.log2(np.arange(2, k + 2))
            dcg = (g * disc[: g.size]).sum()
            idcg = (ideal[:k] * disc[: min(k, ideal.size)]).sum()
            value = dcg / idcg
        out[metric] = float(value)
    return out


@dataclass
class RetrievalResult:
    """Metrics of one run: ``per_query`` (a row per judged query) and their means."""

    name: str
    per_query: pd.DataFrame

    def summary(self) -> pd.Series:
        """Mean of each metric over queries."""
        s = self.per_query.mean(numeric_only=True)
        s.name = self.name
        return s

    def __getitem__(self, metric: str) -> float:
        return float(self.per_query[metric].mean())


def evaluate_ranking(
    ranked: Ranking, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS, name: str = "run"
) -> RetrievalResult:
    """Score ranked lists against judgements.

    Args:
        ranked: query id -> doc ids, best first (extra queries are ignored).
        qrels: query id -> doc id -> grade (> 0 relevant).
        metrics: names like ``"ndcg@10"``.
        name: label for tables.

    Returns:
        A :class:`RetrievalResult` whose ``per_query`` index is the sorted query ids.
    """
    rows = {}
    for qid in sorted(qrels):
        judged = qrels[qid]
        if not any(g > 0 for g in judged.values()):
            continue
        rows[qid] = query_metrics(list(ranked.get(qid, [])), judged, metrics)
    if not rows:
        raise ValueError(f"{name}: no judged query with a relevant document")
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(metrics))
    frame.index.name = "query"
    return RetrievalResult(name=name, per_query=frame)


def results_table(results: Iterable[RetrievalResult], digits: int = 4) -> pd.DataFrame:
    """One row per run, one column per metric (means), rounded."""
    return pd.DataFrame([r.summary() for r in results]).round(digits)


def by_slice(
    results: Iterable[RetrievalResult], slices: Mapping[str, Sequence[str]], metric: str = "recall@10", digits: int = 4
) -> pd.DataFrame:
    """Mean ``metric`` per run (rows) and query slice (columns, after ``all``); the last row counts the queries.

    Args:
        results: runs scored on the same queries.
        slices: slice name -> query ids (e.g. from ``workbook.icd10cm.slice_queries``).
        metric: a column of the runs' ``per_query``.
    """
    rows, sizes = {}, {}
    for res in results:
        col = res.per_query[metric]
        rows[res.name] = {"all": col.mean()}
        sizes["all"] = len(col)
        for name, qids in slices.items():
            kept = col.index.intersection(list(qids))
            rows[res.name][name] = col.loc[kept].mean() if len(kept) else float("nan")
            sizes[name] = len(kept)
    frame = pd.DataFrame.from_dict(rows, orient="index").round(digits)
    frame.loc["queries"] = pd.Series(sizes)
    return frame
