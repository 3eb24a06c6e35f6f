"""Datasets in BEIR layout: load, validate, save, describe, subset, and check for train/eval leakage.

A dataset folder holds ``corpus.jsonl`` (``_id``, ``text``, optional ``title`` and ``metadata``),
``queries.jsonl`` (``_id``, ``text``, optional ``metadata``) and ``qrels/<split>.tsv``
(``query-id``, ``corpus-id``, ``score``; a header row is optional). Every problem found on load is reported
with the file, the line and the field, all at once, so a team can fix its export in one pass.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from workbook.config import Config, default_config
from workbook.files import atomic_write, jsonl_text

SPLITS = ("train", "dev", "test")
_QRELS_HEADER = ("query-id", "corpus-id", "score")
_MAX_REPORTED = 25


@dataclass(frozen=True)
class Problem:
    """One validation problem: where it is and what is wrong."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}: {what}{self.message}"


class DatasetError(ValueError):
    """A dataset failed validation; ``problems`` lists every problem found (file, line, field)."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:_MAX_REPORTED])
        more = len(self.problems) - _MAX_REPORTED
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(self.problems)} problem(s) in the dataset:\n{shown}{tail}")


@dataclass
class Dataset:
    """A retrieval dataset: corpus, queries, and relevance judgements per split.

    Attributes:
        corpus: doc id -> ``{"title": str, "text": str, "metadata": dict}`` (insertion order kept).
        queries: query id -> query text.
        qrels: split name -> query id -> doc id -> relevance (int > 0 means relevant).
        query_meta: query id -> metadata dict (e.g. ``slices``); empty when the file has none.
        name: a short label for tables.
        extras: other files of the folder parsed by the caller (e.g. lookalike groups).
    """

    corpus: dict[str, dict]
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]]
    query_meta: dict[str, dict] = field(default_factory=dict)
    name: str = "dataset"
    extras: dict = field(default_factory=dict)

    @property
    def splits(self) -> list[str]:
        """Split names in the usual order (train, dev, test, then others alphabetically)."""
        order = {s: i for i, s in enumerate(SPLITS)}
        return sorted(self.qrels, key=lambda s: (order.get(s, len(order)), s))

    def doc_text(self, doc_id: str) -> str:
        """``title + " " + text`` (the BEIR convention used for encoding)."""
        doc = self.corpus[doc_id]
        return f"{doc.get('title', '')} {doc['text']}".strip()

    def doc_ids(self) -> list[str]:
        """Corpus ids in file order."""
        return list(self.corpus)

    def doc_texts(self) -> list[str]:
        """``doc_text`` for every document, in :meth:`doc_ids` order."""
        return [self.doc_text(d) for d in self.corpus]

    def split_queries(self, split: str) -> dict[str, str]:
        """The queries judged in ``split`` (id -> text), sorted by id."""
        if split not in self.qrels:
            raise KeyError(f"{self.name}: no split {split!r}; splits are {self.splits}")
        return {q: self.queries[q] for q in sorted(self.qrels[split])}

    def relevant(self, split: str) -> dict[str, set[str]]:
        """Query id -> set of relevant doc ids (score > 0) for ``split``."""
        return {q: {d for d, s in docs.items() if s > 0} for q, docs in sorted(self.qrels[split].items())}


# --------------------------------------------------------------------------------------------------- loading


def read_jsonl_objects(path: Path, problems: list[Problem], not_object: str) -> list[tuple[int, dict]]:
    """The (line number, object) of each non-blank line of a JSON Lines file, collecting every bad line in ``problems``
    (named by file and line: not JSON, or not an object, with the ``not_object`` message) instead of stopping."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(Problem(path.name, lineno, None, f"not valid JSON ({exc.msg})"))
                continue
            if not isinstance(obj, dict):
                problems.append(Problem(path.name, lineno, None, not_object))
                continue
            rows.append((lineno, obj))
    return rows


def _check_id(obj: dict, fname: str, lineno: int, seen: dict[str, int], problems: list[Problem]) -> str | None:
    raw = obj.get("_id")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        problems.append(Problem(fname, lineno, "_id", "missing or empty id"))
        return None
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        problems.append(Problem(fname, lineno, "_id", f"id must be a string, got {type(raw).__name__}"))
        return None
    ident = str(raw)
    if ident in seen:
        problems.append(Problem(fname, lineno, "_id", f"duplicate id {ident!r} (first on line {seen[ident]})"))
        return None
    seen[ident] = lineno
    return ident


def _check_text(obj: dict, key: str, fname: str, lineno: int, problems: list[Problem], required: bool) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            problems.append(Problem(fname, lineno, key, "missing text"))
        return ""
    if not isinstance(value, str):
        problems.append(Problem(fname, lineno, key, f"must be a string, got {type(value).__name__}"))
        return ""
    if required and not value.strip():
        problems.append(Problem(fname, lineno, key, "empty text"))
    return value


def _load_corpus(path: Path, problems: list[Problem]) -> dict[str, dict]:
    corpus: dict[str, dict] = {}
    seen: dict[str, int] = {}
    for lineno, obj in read_jsonl_objects(path, problems, "each corpus line must be a JSON object"):
        ident = _check_id(obj, path.name, lineno, seen, problems)
        text = _check_text(obj, "text", path.name, lineno, problems, required=True)
        title = _check_text(obj, "title", path.name, lineno, problems, required=False)
        if ident is not None:
            corpus[ident] = {"title": title, "text": text, "metadata": obj.get("metadata") or {}}
    if not corpus and not problems:
        problems.append(Problem(path.name, None, None, "the corpus is empty"))
    return corpus


def _load_queries(path: Path, problems: list[Problem]) -> tuple[dict[str, str], dict[str, dict]]:
    queries: dict[str, str] = {}
    meta: dict[str, dict] = {}
    seen: dict[str, int] = {}
    for lineno, obj in read_jsonl_objects(path, problems, "each query line must be a JSON object"):
        ident = _check_id(obj, path.name, lineno, seen, problems)
        text = _check_text(obj, "text", path.name, lineno, problems, required=True)
        if ident is not None:
            queries[ident] = text
            if obj.get("metadata"):
                meta[ident] = obj["metadata"]
    return queries, meta


def _load_qrels(
    path: Path, corpus: dict, queries: dict, problems: list[Problem], rel_name: str
) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    seen: dict[tuple[str, str], int] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            cols = line.split("\t")
            if lineno == 1 and tuple(c.strip().lower() for c in cols) == _QRELS_HEADER:
                continue
            if len(cols) != 3:
                problems.append(Problem(rel_name, lineno, None, f"expected 3 tab-separated columns, got {len(cols)}"))
                continue
            qid, did, score = (c.strip() for c in cols)
            try:
                rel = int(score)
            except ValueError:
                problems.append(Problem(rel_name, lineno, "score", f"relevance must be an integer, got {score!r}"))
                continue
            bad = False
            if qid not in queries:
                problems.append(Problem(rel_name, lineno, "query-id", f"unknown query {qid!r} (not in queries.jsonl)"))
                bad = True
            if did not in corpus:
                problems.append(Problem(rel_name, lineno, "corpus-id", f"unknown doc {did!r} (not in corpus.jsonl)"))
                bad = True
            if (qid, did) in seen:
                problems.append(
                    Problem(rel_name, lineno, None, f"duplicate pair ({qid}, {did}) (first on line {seen[(qid, did)]})")
                )
                bad = True
            if bad:
                continue
            seen[(qid, did)] = lineno
            qrels.setdefault(qid, {})[did] = rel
    if not qrels and not any(p.file == rel_name for p in problems):
        problems.append(Problem(rel_name, None, None, "the split is empty (no judged query)"))
    return qrels


def load_dataset(path: str | Path, splits: Iterable[str] | None = None, name: str | None = None) -> Dataset:
    """Load and validate a BEIR-layout dataset folder.

    Args:
        path: folder holding ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/*.tsv``.
        splits: splits to load; ``None`` loads every ``qrels/*.tsv`` found (sorted).
        name: label for tables; defaults to the folder name.

    Returns:
        The dataset.

    Raises:
        DatasetError: listing every problem (file, line, field) when the folder is not a valid dataset.
    """
    root = Path(path)
    problems: list[Problem] = []
    if not root.is_dir():
        raise DatasetError([Problem(str(root), None, None, "no such dataset folder")])
    for fname in ("corpus.jsonl", "queries.jsonl"):
        if not (root / fname).is_file():
            problems.append(Problem(fname, None, None, f"missing file (expected {root / fname})"))
    qdir = root / "qrels"
    if splits is None:
        split_files = sorted(qdir.glob("*.tsv")) if qdir.is_dir() else []
        if not split_files:
            problems.append(Problem("qrels/", None, None, "no qrels/<split>.tsv file found"))
    else:
        split_files = [qdir / f"{s}.tsv" for s in splits]
        for f in split_files:
            if not f.is_file():
                problems.append(Problem(f"qrels/{f.name}", None, None, "missing file"))
    if problems:
        raise DatasetError(problems)

    corpus = _load_corpus(root / "corpus.jsonl", problems)
    queries, meta = _load_queries(root / "queries.jsonl", problems)
    qrels = {f.stem: _load_qrels(f, corpus, queries, problems, f"qrels/{f.name}") for f in split_files}
    if problems:
        raise DatasetError(problems)
    return Dataset(corpus=corpus, queries=queries, qrels=qrels, query_meta=meta, name=name or root.name)


# --------------------------------------------------------------------------------------------------- saving


def save_dataset(ds: Dataset, path: str | Path) -> Path:
    """Write ``ds`` in BEIR layout (each file written atomically; ids in the dataset's order).

    Returns:
        The folder written.
    """
    root = Path(path)
    corpus_rows = []
    for did, doc in ds.corpus.items():
        row = {"_id": did, "title": doc.get("title", ""), "text": doc["text"]}
        if doc.get("metadata"):
            row["metadata"] = doc["metadata"]
        corpus_rows.append(row)
    query_rows = []
    for qid, text in ds.queries.items():
        row = {"_id": qid, "text": text}
        if ds.query_meta.get(qid):
            row["metadata"] = ds.query_meta[qid]
        query_rows.append(row)
    atomic_write(root / "corpus.jsonl", jsonl_text(corpus_rows))
    atomic_write(root / "queries.jsonl", jsonl_text(query_rows))
    for split, judged in ds.qrels.items():
        lines = ["\t".join(_QRELS_HEADER)]
        lines += [f"{q}\t{d}\t{s}" for q, docs in judged.items() for d, s in docs.items()]
        atomic_write(root / "qrels" / f"{split}.tsv", "\n".join(lines) + "\n")
    return root


# --------------------------------------------------------------------------------------------------- helpers


def normalize_query(text: str) -> str:
    """Normalise a query for duplicate/leakage checks: NFKC, lower case, punctuation to spaces, one space."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w]+", " ", text)
    return " ".join(text.split())


_BOILERPLATE = re.compile(r"\b(?:not elsewhere classified|nec|nos)\b")


def equivalence_key(text: str) -> str:
    """The one key for "the same wording", used everywhere (leakage, merging, mining filters, synthetic guards).

    :func:`normalize_query`, then the boilerplate qualifiers "NOS" / "NEC" / "not elsewhere classified" removed (in
    ICD-10-CM they only say "no further detail given": "Lymphadenitis" and "Lymphadenitis NOS" are one wording).
    Word order and every other word are kept: "with X, without Y" and "without X, with Y" stay different.
    """
    return " ".join(_BOILERPLATE.sub(" ", normalize_query(text)).split())


#: Function words left out when two wordings are compared (with ICD's "NOS", "not otherwise specified").
STOPWORDS = frozenset({"of", "and", "or", "the", "with", "without", "in", "to", "a", "an", "for", "on", "by", "due",
                       "other", "nos"})  # fmt: skip


def content_words(text: str) -> set[str]:
    """The words of ``text`` after :func:`normalize_query`, function words (:data:`STOPWORDS`) left out."""
    return {w for w in normalize_query(text).split() if w not in STOPWORDS}


def jaccard(a: set[str], b: set[str]) -> float:
    """Shared over combined: 0 when nothing is shared (or both are empty), 1 for the same set."""
    return len(a & b) / len(a | b) if a | b else 0.0


def lexical_overlap(query: str, passage: str) -> float:
    """Jaccard overlap of two texts' content words (0 = none shared, 1 = same words): the measure behind the case
    study's ``colloquial`` slice and lookalike siblings, and the synthetic-query overlap filter."""
    return jaccard(content_words(query), content_words(passage))


@dataclass(frozen=True)
class Leak:
    """An eval-split query whose wording (:func:`equivalence_key`) also appears in a training split."""

    eval_split: str
    eval_query: str
    train_split: str
    train_query: str
    text: str


def find_leakage(
    ds: Dataset, train_splits: Sequence[str] = ("train",), eval_splits: Sequence[str] = ("dev", "test")
) -> list[Leak]:
    """Eval queries whose wording equals a training query's under :func:`equivalence_key` (sorted by eval split,
    query id): "Lymphadenitis NOS" in test repeats "Lymphadenitis" in train.

    Splits that the dataset lacks are ignored, so a dataset without a train split has no leakage.
    """
    seen: dict[str, tuple[str, str]] = {}
    for split in train_splits:
        for qid in sorted(ds.qrels.get(split, {})):
            seen.setdefault(equivalence_key(ds.queries[qid]), (split, qid))
    leaks = []
    for split in eval_splits:
        for qid in sorted(ds.qrels.get(split, {})):
            key = equivalence_key(ds.queries[qid])
            if key in seen:
                leaks.append(Leak(split, qid, seen[key][0], seen[key][1], key))
    return leaks


def dataset_stats(ds: Dataset) -> pd.DataFrame:
    """One row per split: queries, judged pairs, relevant docs per query, mean query and doc length (words)."""
    doc_words = [len(ds.doc_text(d).split()) for d in ds.corpus]
    rows = []
    for split in ds.splits:
        judged = ds.qrels[split]
        rel_per_q = [sum(1 for s in docs.values() if s > 0) for docs in judged.values()]
        qwords = [len(ds.queries[q].split()) for q in judged]
        rows.append(
            {
                "split": split,
                "queries": len(judged),
                "judged pairs": sum(len(v) for v in judged.values()),
                "relevant/query": round(sum(rel_per_q) / max(len(rel_per_q), 1), 2),
                "query words": round(sum(qwords) / max(len(qwords), 1), 1),
                "docs": len(ds.corpus),
                "doc words": round(sum(doc_words) / max(len(doc_words), 1), 1),
            }
        )
    return pd.DataFrame(rows).set_index("split")


def subset(
    ds: Dataset,
    doc_ids: Iterable[str] | None = None,
    query_ids: Iterable[str] | None = None,
    splits: Iterable[str] | None = None,
    name: str | None = None,
) -> Dataset:
    """A smaller dataset: only these docs / queries / splits; judgements on dropped docs are dropped,
    and a query left with no relevant doc is dropped from that split. Corpus order is kept."""
    keep_docs = set(ds.corpus) if doc_ids is None else set(doc_ids)
    keep_q = set(ds.queries) if query_ids is None else set(query_ids)
    keep_splits = ds.splits if splits is None else list(splits)
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for split in keep_splits:
        judged = {}
        for qid, docs in ds.qrels[split].items():
            kept = {d: s for d, s in docs.items() if d in keep_docs}
            if qid in keep_q and any(s > 0 for s in kept.values()):
                judged[qid] = kept
        qrels[split] = judged
    used_q = {q for judged in qrels.values() for q in judged}
    return Dataset(
        corpus={d: doc for d, doc in ds.corpus.items() if d in keep_docs},
        queries={q: t for q, t in ds.queries.items() if q in used_q},
        qrels=qrels,
        query_meta={q: m for q, m in ds.query_meta.items() if q in used_q},
        name=name or ds.name,
        extras=dict(ds.extras),
    )


# --------------------------------------------------------------------------------------------------- SciFact


#: SciFact train claims held out as the general-domain dev set (``load_scifact(with_dev=True)``): full, fast mode.
SCIFACT_DEV_CLAIMS = (300, 50)


def load_scifact(cfg: Config | None = None, with_dev: bool = False) -> Dataset:
    """SciFact (general science; claims CC BY 4.0, abstracts ODC-By 1.0), the forgetting check set.

    Full mode: the whole shipped copy (5,183 abstracts; test and train splits). Fast mode: the test split only,
    a seeded sample of ``cfg.scifact_fast_queries`` claims, every doc judged for a kept claim plus a seeded sample
    of ``cfg.scifact_fast_extra_docs`` other abstracts (long texts: each model encodes the subset once).

    Args:
        cfg: the run's config (mode, seed).
        with_dev: add a ``dev`` split, a seeded sample of :data:`SCIFACT_DEV_CLAIMS` train claims (full, fast mode;
            their judged abstracts join the fast subset): the general-domain dev set on which choices such as the
            merge ratio are made, so that SciFact *test* is reported once. The workbook never trains on SciFact, so
            its train claims are held out by construction; in full mode the other train claims stay in ``train``.
    """
    cfg = cfg or default_config()
    ds = load_dataset(cfg.scifact_dir, name="scifact")
    rng = random.Random(cfg.seed)
    dev_q: list[str] = []
    if with_dev:
        n_dev = SCIFACT_DEV_CLAIMS[1] if cfg.fast else SCIFACT_DEV_CLAIMS[0]
        dev_q = sorted(random.Random(cfg.seed + 1).sample(sorted(ds.qrels["train"]), n_dev))
        dev_set = set(dev_q)
        ds.qrels["dev"] = {q: ds.qrels["train"][q] for q in dev_q}
        ds.qrels["train"] = {q: v for q, v in ds.qrels["train"].items() if q not in dev_set}
    if not cfg.fast:
        return ds
    test_q = sorted(ds.qrels["test"])
    queries = sorted(rng.sample(test_q, min(cfg.scifact_fast_queries, len(test_q))))
    kept = set(queries) | set(dev_q)
    judged_set = {d for split in ("test", "dev") for q, docs in ds.qrels.get(split, {}).items() if q in kept
                  for d in docs}
    others = [d for d in ds.corpus if d not in judged_set]
    extra = rng.sample(others, min(cfg.scifact_fast_extra_docs, len(others)))
    splits = ["test", "dev"] if with_dev else ["test"]
    return subset(ds, doc_ids=judged_set | set(extra), query_ids=queries + dev_q, splits=splits, name="scifact-fast")


def slice_queries(ds: Dataset, split: str) -> dict[str, list[str]]:
    """Slice name -> sorted query ids of ``split`` in that slice: each query's ``query_meta`` ``slices`` list, plus its
    ``codes`` field when present (the case study's ``seen-code``/``unseen-code``)."""
    out: dict[str, list[str]] = defaultdict(list)
    for qid in sorted(ds.qrels[split]):
        m = ds.query_meta.get(qid, {})
        for s in m.get("slices", []):
            out[s].append(qid)
        if "codes" in m:
            out[m["codes"]].append(qid)
    return dict(out)
