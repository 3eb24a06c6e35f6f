"""Lookalike collapse (notebooks 01 and 06): sibling vs random cosines, sibling confusion, gold-vs-sibling margins."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from workbook.data import Dataset
from workbook.retrieval import encode, encode_cached

# ------------------------------------------------------------------------------------------------ lookalike collapse


def sibling_map(groups: Iterable[Mapping]) -> dict[str, set[str]]:
    """Code -> its siblings: the other codes of every lookalike group that holds it.

    Args:
        groups: lookalike groups, each with a ``codes`` list (as in ``ds.extras["lookalikes"]``).
    """
    out: dict[str, set[str]] = defaultdict(set)
    for g in groups:
        codes = set(g["codes"])
        for c in codes:
            out[c] |= codes - {c}
    return dict(out)


def sibling_pair_cosines(emb: np.ndarray, ids: Sequence[str], groups: Iterable[Mapping]) -> pd.DataFrame:
    """Cosine of every pair of codes inside each lookalike group (pairs with a code missing from ``ids`` are skipped).

    Returns:
        One row per (group, pair): ``group_id``, ``kind``, ``a``, ``b``, ``cosine``.
    """
    row = {d: i for i, d in enumerate(ids)}
    rows = []
    for g in groups:
        codes = sorted(c for c in set(g["codes"]) if c in row)
        if len(codes) < 2:
            continue
        idx = np.array([row[c] for c in codes])
        sims = emb[idx] @ emb[idx].T
        for i in range(len(codes)):
            for j in range(i + 1, len(codes)):
                rows.append((g.get("group_id", ""), g.get("kind", ""), codes[i], codes[j], float(sims[i, j])))
    return pd.DataFrame(rows, columns=["group_id", "kind", "a", "b", "cosine"])


def random_pair_cosines(
    emb: np.ndarray, n_pairs: int = 10_000, seed: int = 0, strata: Sequence | None = None
) -> np.ndarray:
    """Cosine of ``n_pairs`` random pairs of distinct rows (seeded); within the same stratum when ``strata`` is given.

    Args:
        emb: L2-normalised vectors, one per row.
        n_pairs: pairs to draw (with replacement over pairs).
        seed: random seed.
        strata: one label per row (e.g. the ICD chapter); pairs are then drawn inside a label, labels weighted by
            their number of rows.
    """
    rng = np.random.default_rng(seed)
    n = emb.shape[0]
    if strata is None:
        a = rng.integers(0, n, n_pairs)
        b = (a + rng.integers(1, n, n_pairs)) % n  # never a == b
    else:
        labels = np.asarray(strata)
        members = {lab: np.flatnonzero(labels == lab) for lab in sorted(set(labels.tolist()))}
        members = {k: v for k, v in members.items() if v.size >= 2}
        if not members:
            raise ValueError("no stratum holds two rows")
        pool = np.concatenate(list(members.values()))
        a = rng.choice(pool, n_pairs)
        b = np.empty_like(a)
        where = {int(i): lab for lab, rows in members.items() for i in rows}
        for k, i in enumerate(a):
            rows = members[where[int(i)]]
            j = rows[rng.integers(0, rows.size - 1)]
            b[k] = j if j != i else rows[-1]  # rows[-1] is drawn only in place of i: uniform over the others
    return (emb[a] * emb[b]).sum(axis=1)


def _gold(judged: Mapping[str, int]) -> set[str]:
    return {d for d, s in judged.items() if s > 0}


def sibling_confusion(
    ranked: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    siblings: Mapping[str, set[str]],
    k: int,
) -> pd.DataFrame:
    """Per query: is a sibling of a gold code ranked above every gold doc inside the top ``k``?

    A query's siblings are the siblings of any of its gold codes, less the gold codes themselves; queries without
    siblings are left out. When no gold doc is in the top ``k``, any sibling there counts as ranked above it.

    Returns:
        Indexed by query id: ``gold_rank`` and ``sibling_rank`` (1-based rank of the first gold doc / first sibling
        in the top ``k``, NaN when none), ``confused`` (bool). The confusion rate@k is ``confused.mean()``.
    """
    rows = {}
    for qid in sorted(qrels):
        gold = _gold(qrels[qid])
        sibs = set().union(*(siblings.get(c, set()) for c in gold)) - gold if gold else set()
        if not sibs:
            continue
        top = list(ranked.get(qid, []))[:k]
        g = next((r for r, d in enumerate(top, 1) if d in gold), np.nan)
        s = next((r for r, d in enumerate(top, 1) if d in sibs), np.nan)
        confused = bool(s == s and (g != g or s < g))  # x == x is False only for NaN
        rows[qid] = {"gold_rank": g, "sibling_rank": s, "confused": confused}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["gold_rank", "sibling_rank", "confused"])
    frame.index.name = "query"
    return frame.astype({"gold_rank": float, "sibling_rank": float, "confused": bool})


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def telling_words(
    ranked: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    queries: Mapping[str, str],
    doc_text: Callable[[str], str],
    siblings: Mapping[str, set[str]],
    k: int = 10,
) -> pd.DataFrame:
    """For each query a sibling beats (:func:`sibling_confusion`): does the query name a word that tells its gold
    code from that sibling, a word of the gold's text that the sibling's text lacks?

    A word-overlap heuristic, not a proof: a query with no telling word needs knowledge (a synonym, a convention of
    the coding rules) that the wording alone does not give; one with a telling word is a distinction the model could
    read off the text and missed.

    Returns:
        Indexed by the confused query ids: ``query``, ``gold`` (the best-ranked gold code, or the first), ``sibling``
        (the first sibling above it), ``telling`` (the telling words, sorted, joined by spaces; empty when none).
    """
    confused = sibling_confusion(ranked, qrels, siblings, k)
    rows = {}
    for qid in confused.index[confused["confused"]]:
        gold = _gold(qrels[qid])
        top = list(ranked[qid])[:k]
        sibs = set().union(*(siblings.get(c, set()) for c in gold)) - gold
        sib = next(d for d in top if d in sibs)
        first = next((d for d in top if d in gold), min(gold))
        said = _words(queries[qid])
        telling = set().union(*((_words(doc_text(g)) - _words(doc_text(sib))) & said for g in gold))
        rows[qid] = {"query": queries[qid], "gold": first, "sibling": sib, "telling": " ".join(sorted(telling))}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["query", "gold", "sibling", "telling"])
    frame.index.name = "query id"
    return frame


def sibling_margins(
    q_emb: np.ndarray,
    query_ids: Sequence[str],
    doc_emb: np.ndarray,
    doc_ids: Sequence[str],
    qrels: Mapping[str, Mapping[str, int]],
    siblings: Mapping[str, set[str]],
) -> pd.DataFrame:
    """Per query: margin = cosine to its best gold doc - cosine to its best sibling (negative = collapse).

    Returns:
        Indexed by query id (queries with a sibling only): ``gold``, ``gold_score``, ``sibling``,
        ``sibling_score``, ``margin``.
    """
    row = {d: i for i, d in enumerate(doc_ids)}
    rows = {}
    for qi, qid in enumerate(query_ids):
        gold = sorted(d for d in _gold(qrels.get(qid, {})) if d in row)
        sibs = sorted(set().union(*(siblings.get(c, set()) for c in gold)) - set(gold) & row.keys()) if gold else []
        if not sibs:
            continue
        gs = doc_emb[[row[d] for d in gold]] @ q_emb[qi]
        ss = doc_emb[[row[d] for d in sibs]] @ q_emb[qi]
        gi, si = int(np.argmax(gs)), int(np.argmax(ss))
        rows[qid] = {
            "gold": gold[gi],
            "gold_score": float(gs[gi]),
            "sibling": sibs[si],
            "sibling_score": float(ss[si]),
            "margin": float(gs[gi] - ss[si]),
        }
    frame = pd.DataFrame.from_dict(
        rows, orient="index", columns=["gold", "gold_score", "sibling", "sibling_score", "margin"]
    )
    frame.index.name = "query"
    return frame


def collapse_summary(
    pairs: pd.DataFrame, random_cos: np.ndarray, confusion: pd.DataFrame, margins: pd.DataFrame, k: int
) -> pd.Series:
    """The headline collapse numbers in one Series (means over pairs/queries, median margin)."""
    return pd.Series(
        {
            "sibling pair cosine (mean)": float(pairs["cosine"].mean()),
            "random pair cosine (mean)": float(np.mean(random_cos)),
            f"sibling confusion rate@{k}": float(confusion["confused"].mean()),
            "margin gold - best sibling (median)": float(margins["margin"].median()),
            "queries with negative margin": float((margins["margin"] < 0).mean()),
            "queries measured": float(len(margins)),
        },
        name="lookalike collapse",
    )


def score_table(
    query_texts: Sequence[str], q_emb: np.ndarray, doc_ids: Sequence[str], doc_emb: np.ndarray, gold: Sequence[str]
) -> pd.DataFrame:
    """A worked example: cosine of each query (row) to each doc of a group (column), with its gold and the winner."""
    frame = pd.DataFrame(q_emb @ doc_emb.T, index=list(query_texts), columns=list(doc_ids)).round(3)
    frame.index.name = "query"
    winner = frame.idxmax(axis=1)
    frame.insert(0, "gold", list(gold))
    frame["closest"] = winner
    frame["margin"] = [
        round(frame.loc[q, g] - max(v for d, v in frame.loc[q, list(doc_ids)].items() if d != g), 3)
        for q, g in zip(frame.index, frame["gold"], strict=True)
    ]
    return frame


def collapse_distributions(
    model, ds: Dataset, qrels: Mapping[str, Mapping[str, int]], cache_dir: str | Path | None = None
) -> dict:
    """The two per-item distributions behind lookalike collapse, for histograms and summaries.

    Returns:
        ``pairs``: :func:`sibling_pair_cosines` over every lookalike group; ``margins``: :func:`sibling_margins` of
        the queries of ``qrels``; ``doc_emb``: the corpus embeddings they came from (the shared cache).
    """
    doc_ids = ds.doc_ids()
    doc_emb = encode_cached(model, ds.doc_texts(), cache_dir, show_progress=False)
    query_ids = sorted(qrels)
    q_emb = encode(model, [ds.queries[q] for q in query_ids], show_progress=False)
    groups = ds.extras["lookalikes"]
    return {
        "pairs": sibling_pair_cosines(doc_emb, doc_ids, groups),
        "margins": sibling_margins(q_emb, query_ids, doc_emb, doc_ids, qrels, sibling_map(groups)),
        "doc_emb": doc_emb,
    }


def measure_collapse(
    model,
    ds: Dataset,
    qrels: Mapping[str, Mapping[str, int]],
    ranked: Mapping[str, Sequence[str]],
    k: int = 10,
    cache_dir: str | Path | None = None,
    seed: int = 0,
) -> pd.Series:
    """The lookalike-collapse numbers of notebook 01 (:func:`collapse_summary`) for ``model`` on ``qrels``' queries.

    Args:
        ranked: ``model``'s ranking for those queries (for the sibling-confusion rate@k).
        cache_dir: the shared embedding cache (corpus embeddings are computed once per model weights).
    """
    dist = collapse_distributions(model, ds, qrels, cache_dir)
    random_cos = random_pair_cosines(dist["doc_emb"], 20_000, seed=seed)
    confusion = sibling_confusion(ranked, qrels, sibling_map(ds.extras["lookalikes"]), k=k)
    return collapse_summary(dist["pairs"], random_cos, confusion, dist["margins"], k=k)
