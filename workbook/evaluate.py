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

from workbook.files import atomic_write

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


def _repeated_doc(name: str, qid: str, docs: Sequence[str]) -> None:
    seen: set[str] = set()
    for rank, doc in enumerate(docs, start=1):
        if doc in seen:
            raise ValueError(
                f"{name}: query {qid!r} ranks doc {doc!r} twice (again at rank {rank}); a ranking lists each doc once, "
                "or Recall@K and nDCG@K could exceed 1. Keep each doc's best rank: list(dict.fromkeys(docs))"
            )
        seen.add(doc)


def evaluate_ranking(
    ranked: Ranking, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS, name: str = "run"
) -> RetrievalResult:
    """Score ranked lists against judgements.

    Args:
        ranked: query id -> doc ids, best first, each doc once (extra queries are ignored).
        qrels: query id -> doc id -> grade (> 0 relevant).
        metrics: names like ``"ndcg@10"``.
        name: label for tables.

    Returns:
        A :class:`RetrievalResult` whose ``per_query`` index is the sorted query ids.

    Raises:
        ValueError: a judged query's ranking lists a doc more than once (naming the query, doc and rank).
    """
    rows = {}
    for qid in sorted(qrels):
        judged = qrels[qid]
        if not any(g > 0 for g in judged.values()):
            continue
        docs = list(ranked.get(qid, []))
        if len(set(docs)) != len(docs):
            _repeated_doc(name, qid, docs)
        rows[qid] = query_metrics(docs, judged, metrics)
    if not rows:
        raise ValueError(f"{name}: no judged query with a relevant document")
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(metrics))
    frame.index.name = "query"
    return RetrievalResult(name=name, per_query=frame)


def results_table(results: Iterable[RetrievalResult], digits: int = 4) -> pd.DataFrame:
    """One row per run, one column per metric (means), rounded."""
    return pd.DataFrame([r.summary() for r in results]).round(digits)


def slice_table(columns: Mapping[str, pd.Series], slices: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Mean of each run's per-query values (rows) over all queries and per query slice (columns, after ``all``).

    The one slice-mean of the package (:func:`by_slice` and ``diagnose.metric_by_slice`` lay it out). An empty slice
    is NaN; the last row, ``queries``, counts each column's queries.

    Args:
        columns: run name -> per-query values (one ``per_query`` column), indexed by query id.
        slices: slice name -> query ids.
    """
    rows, sizes = {}, {}
    for name, col in columns.items():
        rows[name] = {"all": col.mean()}
        sizes["all"] = len(col)
        for s, qids in slices.items():
            kept = col.index.intersection(list(qids))
            rows[name][s] = col.loc[kept].mean() if len(kept) else float("nan")
            sizes[s] = len(kept)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.loc["queries"] = pd.Series(sizes)
    return frame


def by_slice(
    results: Iterable[RetrievalResult], slices: Mapping[str, Sequence[str]], metric: str = "recall@10", digits: int = 4
) -> pd.DataFrame:
    """Mean ``metric`` per run (rows) and query slice (columns, after ``all``); the last row counts the queries.

    Args:
        results: runs scored on the same queries.
        slices: slice name -> query ids (e.g. from ``workbook.data.slice_queries``).
        metric: a column of the runs' ``per_query``.
    """
    return slice_table({res.name: res.per_query[metric] for res in results}, slices).round(digits)


# ------------------------------------------------------------------------------------------------ uncertainty


def bootstrap_ci(values, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of per-query values (``scipy.stats.bootstrap``)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if values.size < 2 or np.all(values == values[0]):
        return float(values.mean()), float(values.mean())
    res = stats.bootstrap(
        (values,), np.mean, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
        random_state=np.random.default_rng(seed),
    )  # fmt: skip
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def results_with_ci(
    results: Iterable[RetrievalResult],
    metrics: Sequence[str] = ("recall@10", "ndcg@10"),
    n_resamples: int = 2000,
    seed: int = 0,
    digits: int = 4,
) -> pd.DataFrame:
    """Mean and 95% bootstrap CI of each metric per run: columns ``<metric>``, ``<metric> lo``, ``<metric> hi``."""
    rows = {}
    for res in results:
        row = {}
        for m in metrics:
            col = res.per_query[m].to_numpy()
            lo, hi = bootstrap_ci(col, n_resamples=n_resamples, seed=seed)
            row.update({m: col.mean(), f"{m} lo": lo, f"{m} hi": hi})
        rows[res.name] = row
    return pd.DataFrame.from_dict(rows, orient="index").round(digits)


@dataclass(frozen=True)
class PairedComparison:
    """Run B minus run A on the same queries: mean difference, its 95% bootstrap CI and a paired test's p-value."""

    metric: str
    a: str
    b: str
    queries: int
    mean_a: float
    mean_b: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    b_better: int
    a_better: int
    n_resamples: int = 2000

    @property
    def p_floor(self) -> float:
        """The smallest p-value the two-sided test can return with ``n_resamples`` flips: ``2 / (n_resamples + 1)``."""
        return 2 / (self.n_resamples + 1)

    @property
    def p_text(self) -> str:
        """The p-value as prose should print it: ``p ≤ 0.001`` at the test's floor (it cannot go lower), else
        ``p = 0.0123``."""
        if self.p_value <= self.p_floor * (1 + 1e-9):
            return f"p ≤ {self.p_floor:.1g}"
        return f"p = {self.p_value:.3g}"

    @property
    def significant(self) -> bool:
        """The CI excludes zero (and so, at 95%, the paired test rejects "no difference")."""
        return self.ci_low > 0 or self.ci_high < 0

    def as_series(self) -> pd.Series:
        """One row for a table, named ``"<metric>: B - A"``; the columns are the same for every pair (A and B are
        named by the row), so rows of different pairs stack into one table."""
        return pd.Series(
            {"queries": self.queries, "A": round(self.mean_a, 4), "B": round(self.mean_b, 4),
             "delta": round(self.delta, 4), "95% CI": f"[{self.ci_low:+.4f}, {self.ci_high:+.4f}]",
             "p-value": self.p_text, "B better": self.b_better, "A better": self.a_better},
            name=f"{self.metric}: {self.b} - {self.a}",
        )  # fmt: skip


def paired_comparison(
    a: RetrievalResult, b: RetrievalResult, metric: str = "recall@10", n_resamples: int = 2000, seed: int = 0
) -> PairedComparison:
    """Compare two runs query by query: bootstrap CI of the mean difference and a paired randomisation test.

    The test (``scipy.stats.permutation_test``, ``permutation_type="samples"``) flips, per query, which run each
    value came from: under "no difference" that changes nothing, so the p-value is the share of flips whose mean
    difference is at least as extreme as the observed one.
    """
    from scipy import stats

    joined = a.per_query[[metric]].join(b.per_query[[metric]], lsuffix="_a", rsuffix="_b", how="inner")
    if joined.empty:
        raise ValueError(f"{a.name} and {b.name} share no query")
    va, vb = joined[f"{metric}_a"].to_numpy(), joined[f"{metric}_b"].to_numpy()
    diff = vb - va
    lo, hi = bootstrap_ci(diff, n_resamples=n_resamples, seed=seed)
    if np.all(diff == 0):
        p = 1.0
    else:
        test = stats.permutation_test(
            (vb, va), lambda x, y, axis=-1: np.mean(x - y, axis=axis), permutation_type="samples",
            n_resamples=n_resamples, random_state=np.random.default_rng(seed), vectorized=True,
        )  # fmt: skip
        p = float(test.pvalue)
    return PairedComparison(
        metric=metric, a=a.name, b=b.name, queries=len(diff), mean_a=float(va.mean()), mean_b=float(vb.mean()),
        delta=float(diff.mean()), ci_low=lo, ci_high=hi, p_value=p, b_better=int((diff > 0).sum()),
        a_better=int((diff < 0).sum()), n_resamples=n_resamples,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------ error analysis


def worst_queries(
    result: RetrievalResult,
    ranked: Ranking,
    ds,
    split: str,
    metric: str = "mrr@10",
    n: int = 10,
    shown: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """The ``n`` queries of ``split`` with the lowest ``metric``: query, gold codes, top hits.

    Ties (many queries share a score of 0) are broken by a seeded shuffle, not by query id: ids group queries by
    kind (the case study's ``code-...`` exact-code queries sort together), so an id order would show one kind only.
    """
    per_query = result.per_query[metric]
    shuffled = per_query.sample(frac=1.0, random_state=seed)
    col = shuffled.sort_values(kind="stable")
    rows = []
    for qid in col.index[:n]:
        gold = sorted(d for d, s in ds.qrels[split][qid].items() if s > 0)
        rows.append(
            {"query": ds.queries[qid], metric: round(float(col[qid]), 3),
             "gold": "; ".join(f"{d} {ds.corpus[d]['text']}" for d in gold[:shown]),
             "top results": "; ".join(f"{d} {ds.corpus[d]['text']}" for d in list(ranked.get(qid, []))[:shown])}
        )  # fmt: skip
    frame = pd.DataFrame(rows)
    frame.index = list(col.index[:n])
    frame.index.name = "query id"
    return frame


# ------------------------------------------------------------------------------------------------ truncation, merging


def truncate(emb: np.ndarray, dim: int) -> np.ndarray:
    """The first ``dim`` coordinates of each vector, L2-normalised again (how Matryoshka embeddings are served)."""
    if not 1 <= dim <= emb.shape[1]:
        raise ValueError(f"dim must be in 1..{emb.shape[1]}, got {dim}")
    cut = np.ascontiguousarray(emb[:, :dim], dtype=np.float32)
    return cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)


def interpolate_weights(base, tuned, alpha: float):
    """A model whose weights are ``(1 - alpha) * base + alpha * tuned`` (linear merging, a.k.a. WiSE-FT).

    Written here because sentence-transformers' merging needs ``mergekit``, which is not among the course's offline
    packages; a linear merge of two models of the same architecture is one weighted sum per tensor.

    Args:
        base: the model before fine-tuning.
        tuned: the fine-tuned model (same architecture).
        alpha: 0 gives the base model, 1 the tuned one.
    """
    import copy

    import torch

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    a, b = base.state_dict(), tuned.state_dict()
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        raise ValueError("interpolate_weights needs two models of the same architecture")
    if alpha in (0.0, 1.0):  # an end is that model's own weights, bit for bit (lerp can flip the sign of a zero), so
        return copy.deepcopy(base if alpha == 0.0 else tuned)  # its fingerprint, and every cache keyed on it, match
    merged = copy.deepcopy(tuned)
    with torch.no_grad():
        merged.load_state_dict(
            {k: torch.lerp(a[k].float(), b[k].float(), alpha).to(a[k].dtype) if a[k].is_floating_point() else b[k]
             for k in a}  # fmt: skip
        )
    return merged


def pick_merge_ratio(curve: pd.DataFrame, max_general_loss: float = 0.01, min_gain_share: float = 0.0) -> float:
    """The interpolation ratio to ship: the largest ``alpha`` whose general-domain loss is at most
    ``max_general_loss`` and whose domain gain is at least ``min_gain_share`` of the fully tuned model's.

    Args:
        curve: one row per ``alpha`` (index) with columns ``domain gain`` and ``general loss`` (both vs alpha 0,
            in metric units; a loss is positive when the general metric dropped).
        max_general_loss: the forgetting budget (0.01 = 1 nDCG point).
        min_gain_share: the least share of the alpha=1 gain the pick must keep.

    Raises:
        ValueError: no ratio meets both conditions.
    """
    full_gain = float(curve.loc[curve.index.max(), "domain gain"])
    within = curve["general loss"] <= max_general_loss + 1e-12
    ok = curve[within & (curve["domain gain"] >= min_gain_share * full_gain)]
    if ok.empty:
        raise ValueError(f"no ratio keeps the general loss <= {max_general_loss} with {min_gain_share:.0%} of the gain")
    return float(ok.index.max())


def interpolation_curve(
    base, tuned, alphas: Sequence[float], score_domain, score_general, precision: str = "fp32"
) -> pd.DataFrame:
    """Score base<->tuned weight interpolations on the domain and on a general set.

    Args:
        base, tuned: the models at alpha 0 and alpha 1 (used as they are there in fp32; copied for another precision).
        alphas: ratios to trace; 0 must be among them (the reference for gains and losses).
        score_domain, score_general: ``model -> float`` (e.g. domain dev Recall@10, SciFact nDCG@10).
        precision: the curve's inference precision (:mod:`workbook.precision`): the curve only chooses a ratio on dev,
            so it may run in bf16 where that is native (``cfg.curve_precision``); the chosen merge is then scored on
            test by the caller, in fp32.

    Returns:
        One row per alpha: ``domain``, ``general``, ``domain gain`` and ``general loss`` (vs alpha 0).
    """
    import copy

    from tqdm.auto import tqdm

    from workbook.precision import _device_of, resolve, set_precision

    if 0.0 not in alphas:
        raise ValueError("alphas must include 0 (the base model, the reference)")
    rows = {}
    for alpha in tqdm(sorted(alphas), desc="interpolations"):
        model = base if alpha == 0 else tuned if alpha == 1 else interpolate_weights(base, tuned, alpha)
        if resolve(precision, _device_of(model)) != "fp32":  # copy the ends only to change them
            model = set_precision(model if 0 < alpha < 1 else copy.deepcopy(model), precision)
        rows[float(alpha)] = {"domain": float(score_domain(model)), "general": float(score_general(model))}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "alpha"
    frame["domain gain"] = frame["domain"] - frame.loc[0.0, "domain"]
    frame["general loss"] = frame.loc[0.0, "general"] - frame["general"]
    return frame


def save_results(results: pd.DataFrame | Mapping, path) -> None:
    """Write a results table (``orient="index"``) or a dict as JSON, atomically, for the README and the benchmarks."""
    import json
    from pathlib import Path


    if isinstance(results, pd.DataFrame):
        text = results.to_json(orient="index", indent=1, double_precision=4)
    else:
        text = json.dumps(results, indent=1, default=float)
    atomic_write(Path(path), text + "\n")
