"""Synthetic queries beside real ones: per-query profiles (length, overlap, the case study's slices) and a summary."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from workbook.data import Dataset
from workbook.icd10cm import is_abbreviation_query
from workbook.synth.filters import lexical_overlap


def real_items(ds: Dataset, split: str = "train", docs: Iterable[str] | None = None) -> list[tuple[str, list[str]]]:
    """(query text, relevant doc ids) of the real inclusion-term queries of ``split`` (optionally only those
    judged on ``docs``), sorted by query id."""
    keep = None if docs is None else set(docs)
    out = []
    for qid in sorted(ds.qrels.get(split, {})):
        if ds.query_meta.get(qid, {}).get("source", "inclusion-term") != "inclusion-term":
            continue
        rel = sorted(d for d, s in ds.qrels[split][qid].items() if s > 0)
        if keep is not None:
            rel = [d for d in rel if d in keep]
        if rel:
            out.append((ds.queries[qid], rel))
    return out


def query_profile(items: Sequence[tuple[str, Sequence[str]]], ds: Dataset, source: str) -> pd.DataFrame:
    """Per query: words, lexical overlap with its (best) doc, and the case study's slices it would fall in.

    ``abbreviation`` and ``colloquial`` use the case study's own definitions (:mod:`workbook.icd10cm`), so
    synthetic and real queries are measured alike.
    """
    rows = []
    for text, docs in items:
        overlap = max(lexical_overlap(text, ds.corpus[d]["text"]) for d in docs)
        rows.append(
            {"source": source, "query": text, "words": len(text.split()), "overlap": overlap,
             "abbreviation": is_abbreviation_query(text), "colloquial": overlap < 0.25}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=["source", "query", "words", "overlap", "abbreviation", "colloquial"])


def profile_summary(profiles: pd.DataFrame) -> pd.DataFrame:
    """One row per source: queries, mean/median words, mean overlap, and the % abbreviation / colloquial."""
    g = profiles.groupby("source", sort=False)
    return pd.DataFrame(
        {
            "queries": g.size(),
            "mean words": g["words"].mean().round(1),
            "median words": g["words"].median(),
            "mean overlap": g["overlap"].mean().round(3),
            "% colloquial": (100 * g["colloquial"].mean()).round(1),
            "% abbreviation": (100 * g["abbreviation"].mean()).round(1),
        }
    )
