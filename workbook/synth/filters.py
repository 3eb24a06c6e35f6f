"""The filters that keep the useful synthetic queries (format, copy, duplicate, overlap, round-trip, lookalike,
leakage)."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from workbook.data import Dataset, equivalence_key, lexical_overlap
from workbook.retrieval import BM25Index, DenseIndex, encode, encode_cached
from workbook.synth.lookalike import LookalikeCheck

#: The filters, in the order they run (a query is counted under the first filter that drops it).
FILTERS = ("format", "copy", "duplicate", "overlap", "round-trip", "lookalike", "leakage")

_SCAFFOLD = re.compile(r"\b(?:diagnosis|other names|passage|search queries|queries|entry)\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class FilterSettings:
    """The filters' thresholds.

    Attributes:
        max_words, max_chars: longer outputs are dropped as ``too long`` (real queries: 99% have at most 18 words).
        max_overlap: the lexical-overlap ceiling (:func:`lexical_overlap` with the passage); about the 95th
            percentile of the real training queries of the case study (0.75).
        round_trip_k: the source doc must be in the top k of the base model or of BM25.
        eval_splits: splits whose queries synthetic data must never match.
    """

    max_words: int = 20
    max_chars: int = 160
    max_overlap: float = 0.75
    round_trip_k: int = 20
    eval_splits: tuple[str, ...] = ("dev", "test")


_WORD = re.compile(r"[^\W\d_]{2,}")
_CODE = re.compile(r"^[A-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?$")
_REPEAT = re.compile(r"\b(\w+)(?:\W+\1\b){2,}", re.IGNORECASE)


def format_problem(query: str, cut_off: bool = False, max_words: int = 20, max_chars: int = 160) -> str | None:
    """Why an output is unusable as a query (``"empty"``, ``"cut off"``, ``"too long"``, ``"garbled"``), or ``None``.

    Garbled means: no word of two letters or more (a bare ICD-10-CM code such as ``E11.65`` is allowed: the case
    study has exact-code queries); under 40% letters among the non-space characters; a word repeated three times in
    a row; the prompt's own labels ("Diagnosis:", "Passage:"); unbalanced brackets; control or replacement
    characters. On the case study's 13,412 real queries these rules (with the length limits) flag 0.3%.
    ``cut_off`` marks the last item of a completion that hit the token limit.
    """
    text = query.strip()
    if not text:
        return "empty"
    if cut_off:
        return "cut off"
    if len(text) > max_chars or len(text.split()) > max_words:
        return "too long"
    if _CODE.match(text):
        return None
    visible = [c for c in text if not c.isspace()]
    letters = sum(c.isalpha() for c in visible)
    if (
        not _WORD.search(text)
        or letters < 0.4 * len(visible)
        or _REPEAT.search(text)
        or _SCAFFOLD.search(text)
        or text.count("(") != text.count(")")
        or text.count("[") != text.count("]")
        or any(c == "\ufffd" or not (c.isprintable() or c.isspace()) for c in text)
    ):
        return "garbled"
    return None


def passage_views(ds: Dataset, doc_id: str) -> list[str]:
    """The texts a query may not simply copy: the description, the title without its code, and both together."""
    doc = ds.corpus[doc_id]
    title = doc.get("title", "")
    bare_title = title[len(doc_id) :].strip() if title.startswith(doc_id) else title
    return [t for t in (doc["text"], bare_title, ds.doc_text(doc_id)) if t.strip()]


def is_copy(query: str, passages: Sequence[str]) -> bool:
    """True when the query is one of the passages again (same words in the same order, NOS/NEC ignored)."""
    key = equivalence_key(query)
    return bool(key) and any(key == equivalence_key(p) for p in passages)


def eval_query_keys(ds: Dataset, splits: Sequence[str] = ("dev", "test")) -> dict[str, str]:
    """Wording (:func:`workbook.data.equivalence_key`) -> query id of every query judged in ``splits`` (what synthetic
    queries must not match)."""
    keys: dict[str, str] = {}
    for split in splits:
        for qid in sorted(ds.qrels.get(split, {})):
            keys.setdefault(equivalence_key(ds.queries[qid]), qid)
    return keys


class RoundTrip:
    """Round-trip retrievability: where the source doc ranks for a query, under a dense model and under BM25.

    Args:
        ds: the corpus to search (every document, so lookalikes compete).
        model: the base sentence-transformers model.
        k: ranks beyond ``k`` count as not retrieved.
        cache_dir: the shared embedding cache (the corpus is encoded once per model).
    """

    def __init__(self, ds: Dataset, model, k: int = 20, cache_dir: str | Path | None = None):
        self.ds, self.model, self.k = ds, model, k
        doc_emb = encode_cached(model, ds.doc_texts(), cache_dir)
        self.dense = DenseIndex(doc_emb, ds.doc_ids())
        self._row_of = {d: i for i, d in enumerate(self.dense.ids)}
        self.bm25 = BM25Index.from_dataset(ds)

    def ranks(self, queries: Sequence[str], doc_ids: Sequence[str]) -> pd.DataFrame:
        """Rank (1 = top) of each query's source doc under each retriever; ``NaN`` when beyond ``k``.

        Returns:
            Columns ``dense_rank`` and ``bm25_rank``, one row per query.
        """
        if not len(queries):
            return pd.DataFrame({"dense_rank": [], "bm25_rank": []}, dtype=float)
        emb = encode(self.model, list(queries), show_progress=False)
        _, rows = self.dense.search(emb, self.k)
        dense = []
        for row, doc in zip(rows, doc_ids, strict=True):
            hit = np.flatnonzero(row == self._row_of[doc])
            dense.append(float(hit[0] + 1) if hit.size else np.nan)
        hits = self.bm25.search(list(queries), self.k)
        bm25 = [
            next((float(i) for i, (hit, _) in enumerate(h, start=1) if hit == d), np.nan)
            for h, d in zip(hits, doc_ids, strict=True)
        ]
        return pd.DataFrame({"dense_rank": dense, "bm25_rank": bm25})


def apply_filters(
    candidates: pd.DataFrame,
    ds: Dataset,
    round_trip: RoundTrip | None,
    settings: FilterSettings | None = None,
    lookalikes: LookalikeCheck | None = None,
) -> pd.DataFrame:
    """Run the filters in :data:`FILTERS` order; each sees only what the earlier ones kept.

    Args:
        candidates: ``doc_id``, ``query`` and optionally ``cut_off`` (see :meth:`GenerationRun.candidates`),
            in a deterministic order (duplicates keep the first occurrence).
        ds: the dataset (passages, and its eval splits for the leakage guard).
        round_trip: the retrievers for the ``round-trip`` filter (``None`` skips that one filter, reported as 0).
        settings: thresholds.
        lookalikes: the ``lookalike`` filter (:class:`workbook.synth.lookalike.LookalikeCheck`): a query whose
            distinguishing words point to a lookalike of its source is relabelled to it or dropped (``None`` skips
            it, reported as 0).

    Returns:
        A copy with ``dropped_by`` (a filter name, ``""`` if kept), ``why`` (detail), ``overlap``,
        ``dense_rank``, ``bm25_rank``, ``kept``, and ``source_doc`` (the document the query was generated for;
        ``doc_id`` is the one it is kept for, another only where the lookalike filter relabelled it).
    """
    st = settings or FilterSettings()
    out = candidates.reset_index(drop=True).copy()
    if "cut_off" not in out:
        out["cut_off"] = False
    missing = sorted({d for d in out["doc_id"] if d not in ds.corpus})
    if missing:
        raise KeyError(f"{len(missing)} candidate doc id(s) not in {ds.name}'s corpus, e.g. {missing[:5]}")
    dropped = [""] * len(out)
    why = [""] * len(out)

    def alive() -> list[int]:
        return [i for i in range(len(out)) if not dropped[i]]

    for i, row in out.iterrows():
        problem = format_problem(str(row["query"]), bool(row["cut_off"]), st.max_words, st.max_chars)
        if problem:
            dropped[i], why[i] = "format", problem
    for i in alive():
        row = out.loc[i]
        if is_copy(row["query"], passage_views(ds, row["doc_id"])):
            dropped[i], why[i] = "copy", "repeats the passage"
    first_doc: dict[str, str] = {}
    for i in alive():
        key, doc = equivalence_key(out.at[i, "query"]), out.at[i, "doc_id"]
        if key in first_doc:
            dropped[i], why[i] = "duplicate", "same doc" if first_doc[key] == doc else f"also for {first_doc[key]}"
        else:
            first_doc[key] = doc
    out["overlap"] = [
        lexical_overlap(q, ds.corpus[d]["text"]) for q, d in zip(out["query"], out["doc_id"], strict=True)
    ]
    for i in alive():
        if out.at[i, "overlap"] > st.max_overlap:
            dropped[i], why[i] = "overlap", f"{out.at[i, 'overlap']:.2f} > {st.max_overlap}"
    out["dense_rank"] = np.nan
    out["bm25_rank"] = np.nan
    if round_trip is not None:
        idx = alive()
        ranks = round_trip.ranks(out.loc[idx, "query"].tolist(), out.loc[idx, "doc_id"].tolist())
        out.loc[idx, "dense_rank"] = ranks["dense_rank"].to_numpy()
        out.loc[idx, "bm25_rank"] = ranks["bm25_rank"].to_numpy()
        for i in idx:
            if np.isnan(out.at[i, "dense_rank"]) and np.isnan(out.at[i, "bm25_rank"]):
                dropped[i], why[i] = "round-trip", f"source not in top {round_trip.k}"
    out["source_doc"] = out["doc_id"]
    if lookalikes is not None:
        for i in alive():
            verdict = lookalikes.check(str(out.at[i, "query"]), str(out.at[i, "doc_id"]))
            if verdict.action == "drop":
                dropped[i], why[i] = "lookalike", verdict.why
            elif verdict.action == "relabel":
                out.at[i, "doc_id"] = verdict.doc_id
    leaks = eval_query_keys(ds, st.eval_splits)
    for i in alive():
        qid = leaks.get(equivalence_key(out.at[i, "query"]))
        if qid is not None:
            dropped[i], why[i] = "leakage", f"= eval query {qid}"
    out["dropped_by"] = dropped
    out["why"] = why
    out["kept"] = out["dropped_by"] == ""
    return out


def kept_pairs(filtered: pd.DataFrame) -> list[tuple[str, str]]:
    """The distinct (query, doc id) pairs :func:`apply_filters` kept, sorted by doc id then query (training rows)."""
    kept = filtered[filtered["kept"]]
    return sorted({(q, d) for q, d in zip(kept["query"], kept["doc_id"], strict=True)}, key=lambda p: (p[1], p[0]))


def filter_report(filtered: pd.DataFrame) -> pd.DataFrame:
    """Per filter, in order: queries in, dropped, kept, the share dropped, and the reasons (most common first)."""
    rows = []
    remaining = len(filtered)
    for name in FILTERS:
        hit = filtered[filtered["dropped_by"] == name]
        reasons = hit["why"].str.replace(r"^(= eval query|also for) .*", r"\1 ...", regex=True)
        reasons = reasons.str.replace(r"^[\d.]+ > .*", "above ceiling", regex=True)
        reasons = reasons.str.replace(r"^source not in top \d+", "not retrieved", regex=True)
        reasons = reasons.str.replace(r"^points to .*", "points to several lookalikes", regex=True)
        reasons = reasons.str.replace(r"^names (.+?) '[^']*', not in .*", r"names another \1", regex=True)
        counts = reasons.value_counts()
        rows.append(
            {"filter": name, "in": remaining, "dropped": len(hit), "kept": remaining - len(hit),
             "dropped %": round(100 * len(hit) / remaining, 1) if remaining else 0.0,
             "reasons": ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}
        )  # fmt: skip
        remaining -= len(hit)
    return pd.DataFrame(rows).set_index("filter")


def filter_examples(filtered: pd.DataFrame, ds: Dataset, per_filter: int = 2, seed: int = 0) -> pd.DataFrame:
    """A few seeded examples of what each filter dropped, beside the passage (and some kept ones)."""
    rng = random.Random(seed)
    rows = []
    for name in (*FILTERS, ""):
        idx = sorted(filtered.index[filtered["dropped_by"] == name])
        for i in sorted(rng.sample(idx, min(per_filter, len(idx)))):
            r = filtered.loc[i]
            rows.append(
                {"filter": name or "(kept)", "doc": r["doc_id"], "passage": ds.corpus[r["doc_id"]]["text"],
                 "query": r["query"], "why": r["why"]}
            )  # fmt: skip
    return pd.DataFrame(rows)
