"""The shadow test: the candidate retriever run beside production on the same queries, and its report."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workbook.deploy.search import GuardedSearch
from workbook.evaluate import DEFAULT_METRICS, RetrievalResult, evaluate_ranking


@dataclass
class ShadowReport:
    """The old (serving) and new (candidate) retrievers run side by side on the same queries.

    Attributes:
        overlap: per query: ``labelled`` (bool) and ``overlap`` (|top-k old ∩ top-k new| / k).
        old, new: metrics of each on the labelled queries (per query kept).
        latency_ms: per sampled query, one query at a time (encode + search): columns ``old``, ``new``.
    """

    old_name: str
    new_name: str
    k: int
    metric: str
    overlap: pd.DataFrame
    old: RetrievalResult
    new: RetrievalResult
    latency_ms: pd.DataFrame
    old_ranked: dict[str, list[str]] = field(default_factory=dict)
    new_ranked: dict[str, list[str]] = field(default_factory=dict)

    def outcomes(self, metric: str | None = None) -> pd.Series:
        """Per labelled query: ``win`` (new better on ``metric``), ``loss`` or ``tie``."""
        metric = metric or self.metric
        delta = self.new.per_query[metric] - self.old.per_query[metric]
        return pd.Series(np.select([delta > 1e-12, delta < -1e-12], ["win", "loss"], "tie"), index=delta.index)

    def examples(
        self, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], outcome: str = "win", n: int = 5
    ) -> pd.DataFrame:
        """The labelled queries the candidate won (or lost) by most: the query, its relevant docs, each side's top
        hit and the gate metric of each side."""
        delta = self.new.per_query[self.metric] - self.old.per_query[self.metric]
        picked = delta[self.outcomes() == outcome]
        picked = picked.sort_index().sort_values(ascending=outcome != "win", kind="stable").index[:n]
        rows = []
        for q in picked:
            rows.append(
                {
                    "query": queries[q],
                    "relevant": ", ".join(sorted(d for d, g in qrels[q].items() if g > 0)),
                    f"top-1 {self.old_name}": (self.old_ranked.get(q) or ["-"])[0],
                    f"top-1 {self.new_name}": (self.new_ranked.get(q) or ["-"])[0],
                    f"{self.metric} old": round(float(self.old.per_query.loc[q, self.metric]), 3),
                    f"{self.metric} new": round(float(self.new.per_query.loc[q, self.metric]), 3),
                }
            )
        return pd.DataFrame(rows, index=pd.Index(list(picked), name="query id"))

    def metric_table(self) -> pd.DataFrame:
        """Mean of each metric, old vs new, and the delta."""
        old, new = self.old.summary(), self.new.summary()
        return pd.DataFrame({"old": old, "new": new, "delta": new - old}).round(4)

    def summary(self) -> pd.Series:
        """The numbers the gate reads: overlap, win rate, the gate metric old/new/delta, latency p50/p95."""
        counts = self.outcomes().value_counts()
        wins, losses, ties = (int(counts.get(x, 0)) for x in ("win", "loss", "tie"))
        lab = self.overlap[self.overlap["labelled"]]["overlap"]
        unl = self.overlap[~self.overlap["labelled"]]["overlap"]
        k = self.k
        out = {
            f"overlap@{k} labelled": lab.mean() if len(lab) else float("nan"),
            f"overlap@{k} unlabelled": unl.mean() if len(unl) else float("nan"),
            "wins": wins,
            "losses": losses,
            "ties": ties,
            "win rate": wins / (wins + losses) if wins + losses else float("nan"),  # no decided query: no rate
            f"{self.metric} old": self.old[self.metric],
            f"{self.metric} new": self.new[self.metric],
            f"{self.metric} delta": self.new[self.metric] - self.old[self.metric],
        }
        for side in ("old", "new"):
            out[f"latency p50 {side} (ms)"] = float(np.percentile(self.latency_ms[side], 50))
            out[f"latency p95 {side} (ms)"] = float(np.percentile(self.latency_ms[side], 95))
        out["latency p95 ratio"] = out["latency p95 new (ms)"] / out["latency p95 old (ms)"]
        return pd.Series(out, name=f"{self.new_name} vs {self.old_name}")

    def latency_ratio_ci(self, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
        """Paired percentile-bootstrap CI of the p95 latency ratio (new / old), resampling the timed queries.

        Old and new were timed on the same queries, interleaved, so a query is resampled with both its timings and a
        load spike that hit both sides cancels in the ratio. Fewer than two timed queries: the ratio itself, twice.
        """
        from scipy import stats

        old, new = (self.latency_ms[side].to_numpy(dtype=float) for side in ("old", "new"))
        ratio = float(np.percentile(new, 95) / np.percentile(old, 95))
        if len(old) < 2:
            return ratio, ratio

        def p95_ratio(o: np.ndarray, n: np.ndarray, axis: int = -1) -> np.ndarray:
            return np.percentile(n, 95, axis=axis) / np.percentile(o, 95, axis=axis)

        res = stats.bootstrap((old, new), p95_ratio, paired=True, vectorized=True, n_resamples=n_resamples,
                              confidence_level=confidence, method="percentile",
                              random_state=np.random.default_rng(seed))  # fmt: skip
        return float(res.confidence_interval.low), float(res.confidence_interval.high)


def sample_queries(queries: Mapping[str, str], n: int, seed: int) -> dict[str, str]:
    """A seeded sample of ``n`` queries (all when fewer), sorted by id."""
    ids = sorted(queries)
    if len(ids) > n:
        ids = sorted(np.random.default_rng(seed).choice(ids, size=n, replace=False).tolist())
    return {q: queries[q] for q in ids}


def overlap_at_k(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """|top-k of a ∩ top-k of b| / k."""
    return len(set(a[:k]) & set(b[:k])) / k


def shadow_test(
    old: GuardedSearch,
    new: GuardedSearch,
    labelled: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    unlabelled: Mapping[str, str] | None = None,
    *,
    k: int = 10,
    metrics: Sequence[str] = DEFAULT_METRICS,
    metric: str = "ndcg@10",
    latency_queries: int = 200,
    seed: int = 0,
) -> ShadowReport:
    """Run the candidate beside production on the same queries, without serving its answers.

    Args:
        old, new: the serving and the candidate retrievers (each with its own model: the guard checks).
        labelled: query id -> text for queries with judgements in ``qrels`` (metrics, win rate, overlap).
        unlabelled: query id -> text for traffic without judgements (overlap only): how much answers would change.
        k: depth of the overlap.
        metrics, metric: metrics to report; the one the win rate and the gate use.
        latency_queries: how many queries (seeded sample of all) to time one at a time, old and new interleaved.

    Returns:
        The report; :func:`promotion_gate` turns it into a decision.
    """
    unlabelled = dict(unlabelled or {})
    depth = max(k, *(int(m.split("@")[1]) for m in metrics))
    queries = {**labelled, **unlabelled}
    old_rank = old.rank(queries, depth)
    new_rank = new.rank(queries, depth)
    overlap = pd.DataFrame(
        {
            "labelled": [q in labelled for q in queries],
            "overlap": [overlap_at_k(old_rank[q], new_rank[q], k) for q in queries],
        },
        index=pd.Index(list(queries), name="query"),
    )
    judged = {q: qrels[q] for q in labelled}
    old_res = evaluate_ranking({q: old_rank[q] for q in labelled}, judged, metrics, name=old.collection)
    new_res = evaluate_ranking({q: new_rank[q] for q in labelled}, judged, metrics, name=new.collection)
    rng = np.random.default_rng(seed)
    sample = sorted(rng.choice(list(queries), size=min(latency_queries, len(queries)), replace=False).tolist())
    for r in (old, new):  # warm-up: the first call pays for lazy initialisation
        r.search([queries[sample[0]]], k)
    times = {"old": [], "new": []}
    for i, q in enumerate(sample):
        order = (("old", old), ("new", new)) if i % 2 == 0 else (("new", new), ("old", old))
        for side, r in order:
            t0 = time.perf_counter()
            r.search([queries[q]], k)
            times[side].append((time.perf_counter() - t0) * 1000)
    latency = pd.DataFrame(times, index=pd.Index(sample, name="query"))
    return ShadowReport(
        old.collection, new.collection, k, metric, overlap, old_res, new_res, latency, old_rank, new_rank
    )
