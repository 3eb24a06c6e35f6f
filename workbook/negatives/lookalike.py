"""Curated lookalike negatives: the siblings of a training row's positive, from the dataset's lookalike groups.

Mined negatives come from the base model's neighbourhood of the *query*; in the case study that neighbourhood is
mostly other chapters' near-synonyms, and the in-batch negatives are random codes. So the model rarely sees E10.21
beside E11.21 while it trains, which is exactly the distinction lookalike collapse (notebook 01) is about. The
groups (Excludes1 pairs, a category's codes, a parent's children) are structure, not labels: they come from the
classification itself, never from the qrels.

A sibling becomes a negative for a row only when it is not a known equivalent of the query: the same rule as the
mining filter (:class:`workbook.negatives.known._KnownIndex` with the **training split's** judgements only, plus the
label-free description rules), so "Lymphadenitis" never teaches against "Lymphadenitis NOS". Siblings are ranked by
the base model's cosine to the query, hardest first (the lookalike the model confuses most).

How the two kinds fill a row's ``N`` negative columns (:data:`NEGATIVE_SOURCES`):

- ``mined``: the first ``N`` mined negatives (notebook 03's set, as before).
- ``lookalike``: the ``N`` hardest siblings; a row with fewer siblings is filled with mined negatives.
- ``both``: siblings and mined negatives alternately (sibling first), each filling the other's shortfall.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from workbook.data import Dataset
from workbook.diagnose.collapse import sibling_map
from workbook.negatives.known import _KnownIndex
from workbook.negatives.settings import TRAIN_LABELS
from workbook.retrieval import encode_cached

#: How a row's negative columns are filled (see the module docstring).
NEGATIVE_SOURCES = ("mined", "lookalike", "both")


@dataclass(frozen=True)
class MixStats:
    """What :func:`mix_negatives` did: rows, rows that got at least one sibling, and the negatives of each kind."""

    source: str
    rows: int
    rows_with_sibling: int
    sibling_negatives: int
    mined_negatives: int

    @property
    def sibling_share(self) -> float:
        """The share of negatives that are siblings."""
        total = self.sibling_negatives + self.mined_negatives
        return self.sibling_negatives / total if total else 0.0


def lookalike_negatives(
    ds: Dataset,
    pairs: Iterable[tuple[str, str]],
    model,
    groups: Sequence[Mapping] | None = None,
    cache_dir=None,
    label_splits: Sequence[str] | None = TRAIN_LABELS,
) -> dict[tuple[str, str], list[str]]:
    """The siblings of each (query id, positive id) pair that may serve as its negatives, hardest first.

    Args:
        ds: the dataset (its ``extras["lookalikes"]`` unless ``groups`` is given).
        pairs: (query id, positive doc id) training pairs.
        model: the base model that ranks siblings by cosine to the query.
        groups: lookalike groups (dicts with ``codes``); default ``ds.extras["lookalikes"]``.
        cache_dir: the shared embedding cache (the corpus is encoded once per model weights).
        label_splits: whose judgements mark known equivalents (training code: the training split only).

    Returns:
        (query id, positive id) -> sibling doc ids, highest base cosine first (ties by id); empty when the positive
        has no sibling left after the filter.
    """
    groups = ds.extras.get("lookalikes", []) if groups is None else groups
    siblings = sibling_map(groups)
    known = _KnownIndex(ds, label_splits)
    pairs = list(pairs)
    candidates: dict[tuple[str, str], list[str]] = {}
    for qid, pos in pairs:
        drop = known.equivalents(qid) | {pos}
        candidates[(qid, pos)] = sorted(d for d in siblings.get(pos, ()) if d not in drop and d in ds.corpus)
    if not any(candidates.values()):
        return candidates
    doc_ids = ds.doc_ids()
    row = {d: i for i, d in enumerate(doc_ids)}
    doc_emb = encode_cached(model, ds.doc_texts(), cache_dir, show_progress=False)
    qids = sorted({q for (q, _), c in candidates.items() if c})
    q_texts = [ds.queries[q] for q in qids]  # the same queries for every run from one base: cached like the corpus
    q_emb = dict(zip(qids, encode_cached(model, q_texts, cache_dir, show_progress=False), strict=True))
    out = {}
    for key, cands in candidates.items():
        if len(cands) > 1:
            scores = doc_emb[[row[d] for d in cands]] @ q_emb[key[0]]
            order = sorted(range(len(cands)), key=lambda i: (-float(scores[i]), cands[i]))
            cands = [cands[i] for i in order]
        out[key] = cands
    return out


def _fill(source: str, look: Sequence[str], mined: Sequence[str], n: int) -> list[str]:
    """A row's ``n`` negatives from its siblings and its mined negatives (see :data:`NEGATIVE_SOURCES`)."""
    if source == "mined":
        streams = [mined]
    elif source == "lookalike":
        streams = [look, mined]
    else:  # both: alternate, sibling first
        streams = [[x for pair in zip(look, mined, strict=False) for x in pair]
                   + list(look[len(mined):]) + list(mined[len(look):])]
    out: list[str] = []
    for stream in streams:
        for d in stream:
            if len(out) == n:
                return out
            if d not in out:
                out.append(d)
    return out


def mix_negatives(rows, ds: Dataset, lookalikes: Mapping[tuple[str, str], Sequence[str]], source: str,
                  num_negatives: int):
    """Training rows ``anchor, positive, negative_1..N`` whose negatives come from ``source``.

    Args:
        rows: a mined training set with ids (``load_or_mine_training_set(..., with_ids=True)``).
        ds: the dataset the ids refer to.
        lookalikes: :func:`lookalike_negatives` of those rows' pairs.
        source: one of :data:`NEGATIVE_SOURCES`.
        num_negatives: negative columns (rows that cannot fill them are left out, as the miner does).

    Returns:
        (``datasets.Dataset``, :class:`MixStats`).
    """
    import datasets

    if source not in NEGATIVE_SOURCES:
        raise ValueError(f"negatives must be one of {NEGATIVE_SOURCES}, got {source!r}")
    cols: dict[str, list[str]] = {"anchor": [], "positive": []}
    cols.update({f"negative_{i}": [] for i in range(1, num_negatives + 1)})
    with_sibling = n_sib = n_mined = 0
    for qid, pos, mined in zip(rows["query_id"], rows["positive_id"], rows["negative_ids"], strict=True):
        look = list(lookalikes.get((qid, pos), ())) if source != "mined" else []
        negs = _fill(source, look, list(mined), num_negatives)
        if len(negs) < num_negatives:
            continue
        sib = sum(d in look for d in negs)
        with_sibling += sib > 0
        n_sib += sib
        n_mined += len(negs) - sib
        cols["anchor"].append(ds.queries[qid])
        cols["positive"].append(ds.doc_text(pos))
        for i, d in enumerate(negs, start=1):
            cols[f"negative_{i}"].append(ds.doc_text(d))
    stats = MixStats(source, len(cols["anchor"]), with_sibling, n_sib, n_mined)
    return datasets.Dataset.from_dict(cols), stats


def sibling_coverage(lookalikes: Mapping[tuple[str, str], Sequence[str]]) -> float:
    """The share of training pairs with at least one usable sibling."""
    return float(np.mean([bool(v) for v in lookalikes.values()])) if lookalikes else 0.0
