"""Checks for notebook 00 (00_setup_check): lookalike groups, colloquial recall, unseen codes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from workbook.data import Dataset
from workbook.exercises._common import (
    CheckResult,
    _compare_numbers,
    _keyed,
    _number,
    _recall_at,
    _right,
    _wrong,
)
from workbook.icd10cm import slice_queries
from workbook.retrieval import bm25_ranking, dense_ranking


def check_lookalike_groups(answer: Iterable, ds: Dataset, code: str = "I50.21") -> CheckResult:
    """00.1 — every lookalike group holding ``code``: its kind and its codes.

    Args:
        answer: the groups found: dicts with ``kind`` and ``codes`` (as in ``ds.extras["lookalikes"]``) or
            ``(kind, codes)`` pairs.
        ds: the case study (``extras["lookalikes"]``).
        code: the code asked about.
    """
    ex = "00.1"
    if code not in ds.corpus:
        return _wrong(ex, f"{code} is not in this corpus ({ds.name})", "pick a code of this mode's corpus")
    expected = {(g["kind"], tuple(sorted(g["codes"]))) for g in ds.extras["lookalikes"] if code in g["codes"]}
    try:
        got = {
            (g["kind"], tuple(sorted(g["codes"]))) if isinstance(g, Mapping) else (g[0], tuple(sorted(g[1])))
            for g in answer
        }
    except (TypeError, KeyError, IndexError):
        return _wrong(ex, "could not read the answer", "give a list of groups (dicts) or of (kind, codes) pairs")
    if got == expected:
        kinds = ", ".join(f"{k} ({len(c)} codes)" for k, c in sorted(expected))
        return _right(ex, f"{code} is in {len(expected)} lookalike group(s): {kinds}", sorted(expected))
    missing, extra = expected - got, got - expected
    parts = []
    if missing:
        parts.append(f"{len(missing)} group(s) missing (kinds: {', '.join(sorted(k for k, _ in missing))})")
    if extra:
        parts.append(f"{len(extra)} group(s) that do not hold {code} or whose codes differ")
    return _wrong(
        ex,
        "; ".join(parts),
        f"a code can sit in several groups (an Excludes1 note and its siblings): keep every group g of "
        f"ds.extras['lookalikes'] with {code!r} in g['codes']",
        sorted(expected),
    )


def check_colloquial_recall(
    answer: Mapping,
    ds: Dataset,
    model,
    split: str = "dev",
    cache_dir=None,
    winner: str | None = None,
) -> CheckResult:
    """00.2 — Recall@10 of BM25 and of the dense model on the ``colloquial`` queries of ``split``.

    Args:
        answer: ``{"BM25": recall, "dense": recall}``.
        ds: the case study.
        model: the dense model (all-MiniLM-L6-v2).
        split: the split measured (dev: test stays untouched until notebook 06).
        cache_dir: the embedding cache (``cfg.cache_dir / "embeddings"``).
        winner: your prediction, ``"BM25"`` or ``"dense"`` (optional).
    """
    ex = "00.2"
    answer, bad = _keyed(ex, answer, ["BM25", "dense"], '{"BM25": 0.31, "dense": 0.42}')
    if bad is not None:
        return bad
    qids = slice_queries(ds, split).get("colloquial", [])
    if not qids:
        return _wrong(ex, f"no colloquial query in {split}", "use a split with colloquial queries")
    qrels = {q: ds.qrels[split][q] for q in qids}
    expected = {
        "BM25": _recall_at(bm25_ranking(ds, split, k=10), qrels),
        "dense": _recall_at(dense_ranking(model, ds, split, k=10, cache_dir=cache_dir, show_progress=False), qrels),
    }
    best = max(expected, key=expected.get)
    bad = _compare_numbers(
        ex,
        answer,
        expected,
        0.005,
        f"keep only the {len(qids)} colloquial queries of {split} (slice_queries(ds, {split!r})['colloquial']), "
        "rank the whole corpus with each retriever and average Recall@10 over those queries",
    )
    if bad is not None:
        return bad
    if winner is not None and str(winner).strip().lower() != best.lower():
        return _wrong(
            ex,
            f"the numbers are right, but the prediction {winner!r} is not what they show",
            "compare the two numbers you measured: which retriever finds more colloquial queries' codes?",
            expected,
        )
    return _right(
        ex,
        f"colloquial {split} queries ({len(qids)}): BM25 {expected['BM25']:.3f}, dense {expected['dense']:.3f}; "
        f"{best} wins: colloquial wording shares few words with the code description",
        expected,
    )


def check_unseen_codes(answer: Any, ds: Dataset, split: str = "test") -> CheckResult:
    """00.3 — how many ``split`` queries have no relevant code that any training query is judged on.

    Args:
        answer: the count, computed from the qrels.
    """
    ex = "00.3"
    trained = {d for docs in ds.qrels.get("train", {}).values() for d, s in docs.items() if s > 0}
    unseen = [q for q, docs in ds.qrels[split].items() if not {d for d, s in docs.items() if s > 0} & trained]
    expected = len(unseen)
    meta = sum(ds.query_meta.get(q, {}).get("codes") == "unseen-code" for q in ds.qrels[split])
    if _number(answer) == expected:
        agree = "the same as the unseen-code slice" if meta == expected else f"the unseen-code slice says {meta}"
        return _right(
            ex, f"{expected} of {len(ds.qrels[split])} {split} queries are on unseen codes; {agree}", expected
        )
    return _wrong(
        ex,
        f"{answer!r} is not the count the qrels give",
        "collect every code judged relevant to a TRAIN query; a query is unseen-code when none of its relevant "
        "codes is in that set",
        expected,
    )
