"""Hard-negative mining with sentence-transformers' ``mine_hard_negatives`` (faiss), and an audit of the result.

Mining: one training row per (query, relevant doc) pair of a split; sentence-transformers groups rows that share
an anchor, so every relevant doc of a query is excluded from its candidates *provided every pair is passed*
(:class:`MiningSettings.one_positive_per_query` reproduces the common mistake of passing one). Candidates come from
the whole corpus through an exact faiss index searched in query batches, so no query x doc matrix is ever built.

Audit: a mined negative is a *known false negative* when the data itself says it is relevant or equivalent:

- ``judged``: it is relevant to the same query in the qrels of the label splits.
- ``same wording``: another query whose wording is the same under :func:`description_key` (e.g. "Lymphadenitis" and
  "Lymphadenitis NOS") is judged relevant to it in the label splits: the data gives that doc as an answer to this
  wording.
- ``same description``: its description is near-identical to a positive's: equal after :func:`description_key`
  (NFKC, case, punctuation, spaces, and the boilerplate qualifiers "NOS" / "NEC" / "not elsewhere classified",
  which in ICD-10-CM only say "no further detail given"). Word order and every other word are kept: with/without,
  left/right, type 1/type 2, initial/subsequent and "unspecified" (a code of its own) are the distinctions hard
  negatives must teach, and a bag-of-words comparison would wrongly merge "with X, without Y" and "without X, with Y".
- ``query names it``: the query's wording is, under the same key, the official description of that doc (e.g.
  "Viral pericarditis" is an inclusion term of I30.1 and the title of B33.23: both are right answers).

Label splits: the two label-based categories read judgements, and whatever feeds training (``exclude_known``, the
audit that picks a setting) reads the **training split's only** (``TRAIN_LABELS``): dev and test judgements must not
shape training data. An audit may read every split (``label_splits=None``) to *report* what held-out judgements would
flag, as a read-only check; the two label-free categories need no judgements at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from workbook.config import Config
from workbook.data import Dataset, _atomic_write, equivalence_key

#: Audit categories, in the order they are checked (a negative is counted once, under its first category).
FN_KINDS = ("judged", "same wording", "same description", "query names it")
#: The judgements training-side code may read: the training split's (see the module docstring).
TRAIN_LABELS = ("train",)


class MiningError(ValueError):
    """Bad mining input: a query without positives or a positive missing from the corpus (ids named)."""


#: The near-identity key of descriptions and queries: :func:`workbook.data.equivalence_key` (the project's one key
#: for "the same wording", also used by the leakage checks), under the name the audit's lesson uses.
description_key = equivalence_key


# ------------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class MiningSettings:
    """The miner's knobs (names as in ``sentence_transformers.util.mine_hard_negatives``).

    Attributes:
        name: a label for tables and plots.
        num_negatives: negatives per (query, positive) row.
        range_min: skip this many top-ranked candidates (the rank window's start).
        range_max: consider candidates up to this rank.
        absolute_margin: drop candidates scoring above ``positive - absolute_margin``.
        relative_margin: drop candidates scoring above ``positive - |positive| * relative_margin``.
        sampling_strategy: ``"top"`` (the hardest that pass) or ``"random"`` (sampled from those that pass).
        exclude_known: also drop every known false negative (see :func:`known_equivalents`), refilling from the
            window: a label-based filter, possible only where the data knows its equivalents.
        one_positive_per_query: pass only each query's first relevant doc (the mistake the audit catches).
    """

    name: str = "default"
    num_negatives: int = 5
    range_min: int = 0
    range_max: int = 50
    absolute_margin: float | None = None
    relative_margin: float | None = None
    sampling_strategy: str = "top"
    exclude_known: bool = False
    one_positive_per_query: bool = False

    def miner_kwargs(self) -> dict:
        """Arguments for ``mine_hard_negatives`` (asks for spare candidates when known ones will be dropped)."""
        window = self.range_max - self.range_min
        wanted = min(window, 2 * self.num_negatives) if self.exclude_known else self.num_negatives
        return {
            "range_min": self.range_min,
            "range_max": self.range_max,
            "absolute_margin": self.absolute_margin,
            "relative_margin": self.relative_margin,
            "num_negatives": wanted,
            "sampling_strategy": self.sampling_strategy,
        }


#: The label-free default picked in notebook 03 (full mode) from the audited trade-off by :func:`pick_setting`.
DEFAULT_SETTINGS = MiningSettings(name="window 10-60", num_negatives=5, range_min=10, range_max=60)
#: What notebook 03 saves for fine-tuning: the default plus the label-based filter of known false negatives.
TRAINING_SETTINGS = MiningSettings(
    name=f"{DEFAULT_SETTINGS.name} + exclude known", num_negatives=5, range_min=10, range_max=60, exclude_known=True
)


# ------------------------------------------------------------------------------------------------ input pairs


@dataclass(frozen=True)
class Skip:
    """A query left out of mining, and why."""

    query_id: str
    reason: str


def training_pairs(
    ds: Dataset, split: str = "train", query_ids: Iterable[str] | None = None, on_bad: str = "raise", first_only=False
) -> tuple[list[tuple[str, str]], list[Skip]]:
    """The (query id, relevant doc id) pairs of ``split`` to mine for, sorted, after checking them.

    Args:
        ds: the dataset.
        split: the qrels split.
        query_ids: restrict to these queries (each must be judged in ``split``).
        on_bad: ``"raise"`` a :class:`MiningError` naming every bad query/doc id, or ``"skip"`` them (reported).
        first_only: keep only each query's first relevant doc (sorted ids).

    Returns:
        The pairs and the skipped queries.
    """
    if on_bad not in {"raise", "skip"}:
        raise ValueError(f"on_bad must be 'raise' or 'skip', got {on_bad!r}")
    if split not in ds.qrels:
        raise MiningError(f"{ds.name}: no split {split!r}; splits are {ds.splits}")
    judged = ds.qrels[split]
    qids = sorted(judged) if query_ids is None else sorted(set(query_ids))
    pairs: list[tuple[str, str]] = []
    problems: list[Skip] = []
    for qid in qids:
        if qid not in judged:
            problems.append(Skip(qid, f"query {qid!r} is not judged in split {split!r}"))
            continue
        if qid not in ds.queries or not ds.queries[qid].strip():
            problems.append(Skip(qid, f"query {qid!r} has no text in queries"))
            continue
        positives = sorted(d for d, s in judged[qid].items() if s > 0)
        if not positives:
            problems.append(Skip(qid, f"query {qid!r} has no positive (relevance > 0) in split {split!r}"))
            continue
        missing = [d for d in positives if d not in ds.corpus]
        if missing:
            problems.append(Skip(qid, f"query {qid!r}: positive doc(s) {missing} not in the corpus"))
            continue
        pairs += [(qid, d) for d in (positives[:1] if first_only else positives)]
    if problems and on_bad == "raise":
        shown = "\n".join(f"  - {p.reason}" for p in problems[:25])
        more = f"\n  ... and {len(problems) - 25} more" if len(problems) > 25 else ""
        raise MiningError(f"{len(problems)} bad quer(y/ies) for mining in {ds.name}:\n{shown}{more}")
    if not pairs:
        raise MiningError(f"{ds.name}: nothing to mine in split {split!r} ({len(problems)} quer(y/ies) skipped)")
    return pairs, problems


# ------------------------------------------------------------------------------------------------ mining


@dataclass
class MinedNegatives:
    """The miner's output, by id: one row per (query, positive) pair, negatives best first.

    Attributes:
        rows: ``{"query_id", "positive", "positive_score", "negatives": [doc ids], "scores": [floats]}``.
        settings: the settings used.
        skipped: queries left out (``on_bad="skip"``).
        label_splits: the qrels splits whose judgements filtered the rows (``exclude_known``: the mined split only).
    """

    rows: list[dict]
    settings: MiningSettings
    skipped: list[Skip] = field(default_factory=list)
    label_splits: tuple[str, ...] = ()

    def to_dataset(self, ds: Dataset, num_negatives: int | None = None):
        """The trainer's format: a ``datasets.Dataset`` with ``anchor``, ``positive``, ``negative_1..N``.

        Rows with fewer than N negatives are left out (the n-tuple format needs N in every row).
        """
        import datasets

        n = num_negatives or self.settings.num_negatives
        cols: dict[str, list[str]] = {"anchor": [], "positive": [], **{f"negative_{i}": [] for i in range(1, n + 1)}}
        for row in self.rows:
            if len(row["negatives"]) < n:
                continue
            cols["anchor"].append(ds.queries[row["query_id"]])
            cols["positive"].append(ds.doc_text(row["positive"]))
            for i, neg in enumerate(row["negatives"][:n], start=1):
                cols[f"negative_{i}"].append(ds.doc_text(neg))
        return datasets.Dataset.from_dict(cols)


def _seed_miner_cache(model, corpus: list[str], doc_emb: np.ndarray, folder: Path) -> None:
    """Put already computed corpus embeddings where ``mine_hard_negatives(cache_folder=...)`` looks for them.

    The file name repeats sentence-transformers' own key (model card base name, prompts, corpus). If a later
    version changes that key, it simply encodes again: slower, never wrong. The folder is per model weights, because
    sentence-transformers' key names only the *base* model, which a fine-tuned model shares.
    """
    name = model.model_card_data.base_model or ""
    key = hashlib.sha256(repr((name, None, None, corpus)).encode(), usedforsecurity=False).hexdigest()
    path = folder / f"corpus_embeddings_{key}.npy"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".corpus_embeddings_{key}.tmp.npy"
        np.save(tmp, doc_emb)
        tmp.replace(path)


@contextlib.contextmanager
def _quiet_search(quiet: bool):
    """Silence the progress bar sentence-transformers draws around its faiss search (one line per call otherwise)."""
    from sentence_transformers.util import hard_negatives

    if not quiet or not hasattr(hard_negatives, "trange"):
        yield
        return
    original = hard_negatives.trange
    hard_negatives.trange = lambda *args, **kwargs: range(*args)
    try:
        yield
    finally:
        hard_negatives.trange = original


def mine_negatives(
    ds: Dataset,
    model,
    settings: MiningSettings = DEFAULT_SETTINGS,
    split: str = "train",
    query_ids: Iterable[str] | None = None,
    cache_dir: str | Path | None = None,
    cross_encoder=None,
    batch_size: int = 64,
    faiss_batch_size: int = 1024,
    on_bad: str = "raise",
    verbose: bool = False,
) -> MinedNegatives:
    """Mine hard negatives for every (query, positive) pair of ``split`` over the whole corpus.

    Calls ``sentence_transformers.util.mine_hard_negatives`` with ``use_faiss=True`` (exact inner product, queries
    searched ``faiss_batch_size`` at a time: memory is O(batch x corpus-dim), not O(queries x docs)).

    Args:
        ds: the dataset; every document is a candidate.
        model: the SentenceTransformer that ranks candidates.
        settings: the rank window, margins, N, sampling and filters.
        split: the qrels split whose queries are mined (``"train"``).
        query_ids: a subset of the split's queries.
        cache_dir: shared embedding cache (e.g. ``cfg.cache_dir / "embeddings"``): corpus and query embeddings are
            computed once per model weights.
        cross_encoder: optional CrossEncoder that re-scores the candidates (margins then apply to its scores).
        batch_size: encoding batch size.
        faiss_batch_size: queries per faiss search call.
        on_bad: ``"raise"`` or ``"skip"`` bad queries (see :func:`training_pairs`).
        verbose: let sentence-transformers print its statistics.

    Returns:
        The mined negatives by id.

    Raises:
        MiningError: a query without positives or a positive missing from the corpus (``on_bad="raise"``).
    """
    import datasets
    from sentence_transformers.util import mine_hard_negatives

    from workbook.retrieval import encode_cached, model_fingerprint

    pairs, skipped = training_pairs(ds, split, query_ids, on_bad, first_only=settings.one_positive_per_query)
    doc_ids = ds.doc_ids()
    corpus = ds.doc_texts()
    id_of_text: dict[str, str] = {}
    for d, t in zip(doc_ids, corpus, strict=True):
        id_of_text.setdefault(t, d)  # sentence-transformers de-duplicates texts: a twin can never be mined
    anchors = [ds.queries[q] for q, _ in pairs]
    positives = [ds.doc_text(d) for _, d in pairs]
    cache_folder = None
    if cache_dir is not None:
        cache_folder = Path(cache_dir) / f"miner-{model_fingerprint(model)}"
        unique = list(dict.fromkeys(corpus))
        emb = encode_cached(model, corpus, cache_dir, batch_size=batch_size, show_progress=verbose)
        row_of = {d: i for i, d in enumerate(doc_ids)}
        keep = [row_of[id_of_text[t]] for t in unique] if len(unique) != len(corpus) else slice(None)
        _seed_miner_cache(model, unique, emb[keep], cache_folder)
    with _quiet_search(not verbose):
        mined = mine_hard_negatives(
            datasets.Dataset.from_dict({"anchor": anchors, "positive": positives}),
            model,
            corpus=corpus,
            cross_encoder=cross_encoder,
            output_format="labeled-list",
            output_scores=True,
            batch_size=batch_size,
            faiss_batch_size=faiss_batch_size,
            use_faiss=True,
            verbose=verbose,
            cache_folder=None if cache_folder is None else str(cache_folder),
            **settings.miner_kwargs(),
        )
    found: dict[tuple[str, str], tuple[float, list[str], list[float]]] = {}
    for anchor, docs, scores in zip(mined["anchor"], mined["positive"], mined["scores"], strict=True):
        found[(anchor, id_of_text[docs[0]])] = (scores[0], [id_of_text[t] for t in docs[1:]], list(scores[1:]))
    # Only the mined split's own judgements (plus label-free rules): dev and test labels never shape training rows.
    known = _KnownIndex(ds, (split,)) if settings.exclude_known else None
    rows = []
    for (qid, pos), anchor in zip(pairs, anchors, strict=True):
        pos_score, negs, scores = found.get((anchor, pos), (float("nan"), [], []))
        if known is not None:
            drop = known.equivalents(qid)
            kept = [(n, s) for n, s in zip(negs, scores, strict=True) if n not in drop]
            negs, scores = [n for n, _ in kept], [s for _, s in kept]
        n = settings.num_negatives
        rows.append(
            {"query_id": qid, "positive": pos, "positive_score": pos_score, "negatives": negs[:n], "scores": scores[:n]}
        )
    return MinedNegatives(rows=rows, settings=settings, skipped=skipped, label_splits=known.splits if known else ())


# ------------------------------------------------------------------------------------------------ audit


def _label_splits(ds: Dataset, splits: Sequence[str] | None) -> tuple[str, ...]:
    """The qrels splits to read judgements from: ``splits`` (those present), or every split when ``None``."""
    return tuple(ds.qrels) if splits is None else tuple(s for s in splits if s in ds.qrels)


class _KnownIndex:
    """Lookups for the audit: a query's judgements in ``splits`` (``None``: every split), description keys, and docs
    by description key."""

    def __init__(self, ds: Dataset, splits: Sequence[str] | None):
        self.ds = ds
        self.splits = _label_splits(ds, splits)
        self.relevant: dict[str, set[str]] = defaultdict(set)
        for split in self.splits:
            for qid, docs in ds.qrels[split].items():
                self.relevant[qid] |= {d for d, s in docs.items() if s > 0}
        self.key = {d: description_key(doc["text"]) for d, doc in ds.corpus.items()}
        self.qkey = {q: description_key(t) for q, t in ds.queries.items()}
        self.by_wording: dict[str, set[str]] = defaultdict(set)
        for qid, docs in self.relevant.items():
            self.by_wording[self.qkey.get(qid, "")] |= docs
        self.by_key: dict[str, set[str]] = defaultdict(set)
        for d, k in self.key.items():
            self.by_key[k].add(d)

    def kind(self, qid: str, positives: set[str], neg: str) -> str | None:
        """The first audit category ``neg`` falls in for query ``qid``, or None (a true negative as far as known)."""
        if neg in self.relevant[qid]:
            return "judged"
        if neg in self.by_wording.get(self.qkey[qid], ()):
            return "same wording"
        if any(self.key.get(p) == self.key.get(neg) for p in positives):
            return "same description"
        if self.qkey[qid] == self.key.get(neg):
            return "query names it"
        return None

    def equivalents(self, qid: str) -> set[str]:
        """Every doc the audit would flag for ``qid`` (its judgements, same-wording judgements, description twins of
        its positives, docs it names)."""
        rel = self.relevant[qid]
        out = rel | self.by_wording.get(self.qkey[qid], set())
        for p in rel:
            out |= self.by_key.get(self.key.get(p, ""), set())
        return out | self.by_key.get(self.qkey[qid], set())


def known_equivalents(ds: Dataset, query_id: str, label_splits: Sequence[str] | None = TRAIN_LABELS) -> set[str]:
    """The docs the data knows are relevant or equivalent for ``query_id`` (what ``exclude_known`` drops), from the
    judgements of ``label_splits`` (default: the training split's only) plus the label-free rules."""
    return _KnownIndex(ds, label_splits).equivalents(query_id)


@dataclass
class Audit:
    """The audited false negatives of one mining run.

    Attributes:
        name: the settings' name.
        negatives: mined negatives in all rows.
        false_negatives: how many of them are known false negatives.
        by_kind: false negatives per category of :data:`FN_KINDS`.
        queries: queries mined for; ``queries_without_negatives``: those left with none in any row.
        rows: (query, positive) rows; ``short_rows``: rows with fewer than N negatives (left out of the n-tuple set).
        flagged: one row per false negative (query id, query, positive, negative, kind, rank, score).
        label_splits: the qrels splits whose judgements the audit read.
        range_min: the settings' rank-window start (:func:`pick_setting` breaks ties with it).
    """

    name: str
    negatives: int
    false_negatives: int
    by_kind: dict[str, int]
    queries: int
    queries_without_negatives: int
    rows: int
    short_rows: int
    flagged: pd.DataFrame
    label_splits: tuple[str, ...] = TRAIN_LABELS
    range_min: int = 0

    @property
    def fn_rate(self) -> float:
        """False negatives / mined negatives (0 when nothing was mined)."""
        return self.false_negatives / self.negatives if self.negatives else 0.0

    def summary(self) -> dict:
        """One table row."""
        return {
            "setting": self.name,
            "negatives": self.negatives,
            "false negatives": self.false_negatives,
            "FN rate %": round(100 * self.fn_rate, 3),
            **{f"FN {k}": v for k, v in self.by_kind.items()},
            "queries": self.queries,
            "queries with no negative": self.queries_without_negatives,
            "rows short of N": self.short_rows,
            "labels from": "+".join(self.label_splits),
        }


def audit(
    ds: Dataset, mined: MinedNegatives, name: str | None = None, label_splits: Sequence[str] | None = TRAIN_LABELS
) -> Audit:
    """Count the known false negatives among ``mined`` (see the module docstring for the four categories).

    Args:
        ds: the dataset.
        mined: the mining run.
        name: the label in tables (default: the settings' name).
        label_splits: the qrels splits whose judgements count: the training split (default: an audit that picks a
            setting must not read held-out labels), or ``None`` for every split (a read-only report).
    """
    known = _KnownIndex(ds, label_splits)
    positives: dict[str, set[str]] = defaultdict(set)
    for row in mined.rows:
        positives[row["query_id"]].add(row["positive"])
    flagged = []
    by_kind = dict.fromkeys(FN_KINDS, 0)
    total = 0
    with_negatives: set[str] = set()
    for row in mined.rows:
        qid = row["query_id"]
        rel = known.relevant[qid] | positives[qid]
        if row["negatives"]:
            with_negatives.add(qid)
        for rank, (neg, score) in enumerate(zip(row["negatives"], row["scores"], strict=True), start=1):
            total += 1
            kind = known.kind(qid, rel, neg)
            if kind:
                by_kind[kind] += 1
                flagged.append(
                    {"query_id": qid, "query": ds.queries[qid], "positive": row["positive"], "negative": neg,
                     "kind": kind, "rank": rank, "score": round(float(score), 4)}
                )  # fmt: skip
    cols = ["query_id", "query", "positive", "negative", "kind", "rank", "score"]
    return Audit(
        name=name or mined.settings.name,
        negatives=total,
        false_negatives=len(flagged),
        by_kind=by_kind,
        queries=len(positives),
        queries_without_negatives=len(set(positives) - with_negatives),
        rows=len(mined.rows),
        short_rows=sum(len(r["negatives"]) < mined.settings.num_negatives for r in mined.rows),
        flagged=pd.DataFrame(flagged, columns=cols),
        label_splits=known.splits,
        range_min=mined.settings.range_min,
    )


def audit_table(audits: Sequence[Audit]) -> pd.DataFrame:
    """One row per audited setting."""
    return pd.DataFrame([a.summary() for a in audits]).set_index("setting")


def pick_setting(audits: Sequence[Audit], max_lost: float = 0.05) -> str:
    """The setting to use: the lowest audited false-negative rate among those that leave at most ``max_lost`` of
    the queries without any negative; ties go to fewer such queries, then to more negatives, then to the larger
    rank-window start (the audit counts only the false negatives the data *knows*, a lower bound, and the unknown
    ones crowd the top ranks, so between equally clean settings the one that skips more of them is the safer), then
    to list order.

    Raises:
        ValueError: no setting keeps enough queries.
    """
    ok = [(i, a) for i, a in enumerate(audits) if a.queries_without_negatives <= max_lost * a.queries]
    if not ok:
        raise ValueError(f"every setting leaves more than {max_lost:.0%} of the queries without a negative")
    return min(
        ok, key=lambda x: (x[1].fn_rate, x[1].queries_without_negatives, -x[1].negatives, -x[1].range_min, x[0])
    )[1].name


# ------------------------------------------------------------------------------------------------ Excludes1


def excludes1_partners(ds: Dataset) -> dict[str, set[str]]:
    """Doc id -> the docs a curated Excludes1 note says it is *not* (``extras["lookalikes"]``, kind excludes1)."""
    partners: dict[str, set[str]] = defaultdict(set)
    for group in ds.extras.get("lookalikes", []):
        if group["kind"] == "excludes1":
            for c in group["codes"]:
                partners[c] |= set(group["codes"]) - {c}
    return dict(partners)


def excludes1_overlap(ds: Dataset, mined: MinedNegatives) -> dict:
    """How mined negatives relate to the curated Excludes1 lookalikes of each row's positive.

    Returns:
        ``rows with Excludes1 partners``, ``share of those rows mining at least one`` partner,
        ``partner recall`` (partners mined / partners of those rows), ``share of negatives that are partners``
        (over all mined negatives) and ``partners flagged as false negatives`` (should be 0: Excludes1 says "not").
    """
    partners = excludes1_partners(ds)
    known = _KnownIndex(ds, TRAIN_LABELS)
    rows = hit_rows = found = wanted = is_partner = flagged = 0
    total = sum(len(r["negatives"]) for r in mined.rows)
    for row in mined.rows:
        mine = partners.get(row["positive"], set()) - known.relevant[row["query_id"]]
        negs = set(row["negatives"])
        is_partner += len(negs & mine)
        if not mine:
            continue
        rows += 1
        hit_rows += bool(negs & mine)
        found += len(negs & mine)
        wanted += len(mine)
        flagged += sum(known.kind(row["query_id"], {row["positive"]}, n) is not None for n in negs & mine)
    return {
        "rows with Excludes1 partners": rows,
        "share of those rows mining at least one": round(hit_rows / rows, 4) if rows else 0.0,
        "partner recall": round(found / wanted, 4) if wanted else 0.0,
        "share of negatives that are partners": round(is_partner / total, 4) if total else 0.0,
        "partners flagged as false negatives": flagged,
    }


def side_by_side(ds: Dataset, mined: MinedNegatives, n: int = 5, seed: int = 0, shown: int = 3) -> pd.DataFrame:
    """Rows whose positive has Excludes1 partners: the query, the positive, the partners and the mined negatives."""
    import random

    partners = excludes1_partners(ds)
    candidates = [r for r in mined.rows if partners.get(r["positive"]) and r["negatives"]]
    picked = sorted(random.Random(seed).sample(candidates, min(n, len(candidates))), key=lambda r: r["query_id"])

    def label(d: str) -> str:
        return f"{d} {ds.corpus[d]['text']}"

    return pd.DataFrame(
        [
            {
                "query": ds.queries[r["query_id"]],
                "positive": label(r["positive"]),
                "Excludes1 lookalikes": "; ".join(label(d) for d in sorted(partners[r["positive"]])[:shown]),
                "mined negatives": "; ".join(label(d) for d in r["negatives"][:shown]),
            }
            for r in picked
        ]
    )


# ------------------------------------------------------------------------------------------------ saving


def training_set_path(cfg: Config) -> Path:
    """Where notebook 03 saves the mined training set for notebook 05: ``artifacts/negatives/<mode>-train.jsonl``."""
    return cfg.artifacts_dir / "negatives" / f"{cfg.mode}-train.jsonl"


def data_digest(ds: Dataset, pairs: Iterable[tuple[str, str]]) -> str:
    """A short hash of what mining saw: the corpus ids and each (query text, positive id) pair, in order."""
    digest = hashlib.sha256()
    for did in ds.corpus:
        digest.update(did.encode() + b"\0")
    for qid, did in pairs:
        digest.update(f"{ds.queries[qid]}\t{did}\n".encode())
    return digest.hexdigest()[:16]


def save_training_set(ds: Dataset, mined: MinedNegatives, path: str | Path, model_id: str = "") -> Path:
    """Write the mined rows as JSONL (anchor, positive, negative_1..N plus ids) and a ``.meta.json`` beside it.

    Rows with fewer than N negatives are left out, as in :meth:`MinedNegatives.to_dataset`. The meta file records the
    settings, the model's fingerprint and :func:`data_digest` of the mined pairs, so a stale set is never reused.
    """
    path = Path(path)
    n = mined.settings.num_negatives
    lines = []
    for r in mined.rows:
        if len(r["negatives"]) < n:
            continue
        rec = {"anchor": ds.queries[r["query_id"]], "positive": ds.doc_text(r["positive"])}
        rec.update({f"negative_{i}": ds.doc_text(d) for i, d in enumerate(r["negatives"][:n], start=1)})
        rec.update({"query_id": r["query_id"], "positive_id": r["positive"], "negative_ids": r["negatives"][:n]})
        lines.append(json.dumps(rec, ensure_ascii=False))
    _atomic_write(path, "\n".join(lines) + "\n")
    meta = {
        "settings": asdict(mined.settings),
        "rows": len(lines),
        "dataset": ds.name,
        "data": data_digest(ds, [(r["query_id"], r["positive"]) for r in mined.rows]),
        "model": model_id,
        "labels": list(mined.label_splits),  # whose judgements filtered the rows (never dev or test)
    }
    _atomic_write(path.with_suffix(".meta.json"), json.dumps(meta, indent=2) + "\n")
    return path


def load_training_set(path: str | Path, with_ids: bool = False):
    """Load a set written by :func:`save_training_set` as a ``datasets.Dataset`` the trainer takes.

    Args:
        path: the ``.jsonl`` file.
        with_ids: keep ``query_id``/``positive_id``/``negative_ids`` (the trainer would read them as inputs: off).

    Raises:
        FileNotFoundError: naming the file and how to build it.
    """
    import datasets

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no mined training set at {path}; run notebook 03 or load_or_mine_training_set()")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not with_ids:
        rows = [{k: v for k, v in r.items() if k not in {"query_id", "positive_id", "negative_ids"}} for r in rows]
    return datasets.Dataset.from_list(rows)


def load_or_mine_training_set(
    cfg: Config,
    ds: Dataset,
    model,
    settings: MiningSettings = TRAINING_SETTINGS,
    with_ids: bool = False,
    path: str | Path | None = None,
    split: str = "train",
):
    """The saved training set when it was mined with ``settings``, ``model``'s weights and the same pairs of
    ``split``; otherwise mine it (shared embedding cache) and save it.

    Args:
        path: where the set lives; ``None`` is :func:`training_set_path` (the case study's train split).
    """
    from workbook.retrieval import model_fingerprint

    path = Path(path) if path is not None else training_set_path(cfg)
    meta_path = path.with_suffix(".meta.json")
    pairs, _ = training_pairs(ds, split)
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if (
            meta.get("settings") == asdict(settings)
            and meta.get("model") == model_fingerprint(model)
            and meta.get("data") == data_digest(ds, pairs)
            and meta.get("labels") == ([split] if settings.exclude_known and split in ds.qrels else [])
        ):
            return load_training_set(path, with_ids=with_ids)
    mined = mine_negatives(ds, model, settings, split=split, cache_dir=cfg.cache_dir / "embeddings")
    save_training_set(ds, mined, path, model_id=model_fingerprint(model))
    return load_training_set(path, with_ids=with_ids)
