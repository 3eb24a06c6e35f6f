"""What is ICD-10-CM specific: the case study's prompt, its chapter-stratified sample, and its committed set."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from workbook.config import Config
from workbook.data import Dataset, equivalence_key
from workbook.files import iter_jsonl, read_json
from workbook.icd10cm import load_icd10cm
from workbook.synth.cache import CacheError
from workbook.synth.filters import eval_query_keys, lexical_overlap
from workbook.synth.prompts import QUERIES_PER_DOC, PromptTemplate, Shot

#: Documents sampled for the case study's synthetic set: from the fast-mode chapters, and from the others.
CASE_STUDY_FOCUS_DOCS = 700
CASE_STUDY_OTHER_DOCS = 2500

#: The attributes the case study's lookalikes differ by, with their values as :func:`workbook.synth.lookalike.words`
#: tokenises them (the synthetic set's lookalike filter drops a query that names a value its document contradicts).
CASE_STUDY_ATTRIBUTES = {
    "side": ("left", "right", "bilateral", "unilateral"),
    "diabetes type": ("type_1", "type_2"),
    "acuity": ("acute", "subacute", "chronic"),
    "encounter": ("initial", "subsequent", "sequela"),
}

_GENERIC = re.compile(r"\b(?:other|unspecified|NEC|NOS)\b", re.IGNORECASE)
_INSTRUCTION = (
    "Each diagnosis from a medical code list is followed by {n} other names, phrases or abbreviations "
    "that clinicians use for it."
)
#: The prompt variant asking for the clinician's own wording, not the code list's (``bench/synth_generators.py``).
CLINICIAN_INSTRUCTION = (
    "Each diagnosis from a medical code list is followed by {n} ways a clinician would actually write it in a note "
    "or type it into a search box: their own shorthand, everyday synonyms and abbreviations, not the list's wording."
)


# ------------------------------------------------------------------------------------------------ prompts


def zero_shot_template(n: int = QUERIES_PER_DOC) -> PromptTemplate:
    """The instruction alone, no examples: what a base model does with only a description of the task."""
    return PromptTemplate("zero-shot", _INSTRUCTION.format(n=n))


def few_shot_template(
    ds: Dataset,
    n_shots: int = 5,
    per_shot: int = QUERIES_PER_DOC,
    min_queries: int = 2,
    seed: int = 42,
    min_overlap: float = 0.1,
    max_overlap: float = 0.6,
    instruction: str = _INSTRUCTION,
    name: str = "few-shot",
) -> PromptTemplate:
    """A few-shot template from real training queries, so the model sees how users actually word them.

    Shots are documents with at least ``min_queries`` train-split inclusion-term queries judged on that document
    only that reword its description: lexical overlap between ``min_overlap`` (below it, inclusion terms are mostly
    sub-types such as "Holt-Oram syndrome" under "Congenital malformation syndromes ...", which teach the model to
    list other diseases) and ``max_overlap`` (above it they teach copying), at most 8 words, no parentheses.
    Descriptions have at most 8 words and are not catch-alls (no "other", "unspecified", "NEC", "NOS"). One shot
    per chapter, seeded; up to ``per_shot`` queries shown each.

    Args:
        ds: the dataset (its ``train`` split).
        n_shots: examples in the prompt.
        per_shot: queries shown per example (at most).
        min_queries: queries an example needs.
        seed: the sampling seed.
        min_overlap, max_overlap: the range of overlap an example query may have with its description.
        instruction: the instruction line, with ``{n}`` for ``per_shot`` (e.g. :data:`CLINICIAN_INSTRUCTION`).
        name: the template's name.

    Returns:
        The template; its shots' doc ids are recorded (leave them out of the documents to generate for).
    """
    per_doc: dict[str, list[str]] = {}
    for qid in sorted(ds.qrels.get("train", {})):
        docs = [d for d, s in ds.qrels["train"][qid].items() if s > 0]
        meta = ds.query_meta.get(qid, {})
        if len(docs) != 1 or meta.get("source", "inclusion-term") != "inclusion-term":
            continue
        text = ds.queries[qid].strip()
        overlap = lexical_overlap(text, ds.corpus[docs[0]]["text"])
        if min_overlap <= overlap <= max_overlap and len(text.split()) <= 8 and "(" not in text:
            per_doc.setdefault(docs[0], []).append(text)
    eligible = sorted(
        d
        for d, qs in per_doc.items()
        if len(qs) >= min_queries
        and len(ds.corpus[d]["text"].split()) <= 8
        and not _GENERIC.search(ds.corpus[d]["text"])
    )
    if len(eligible) < n_shots:
        raise ValueError(f"{ds.name}: only {len(eligible)} documents qualify as few-shot examples, {n_shots} asked")
    rng = random.Random(seed)
    rng.shuffle(eligible)
    shots: list[Shot] = []
    chapters: set[str] = set()
    for doc_id in eligible:  # one per chapter first (variety), then any
        chapter = ds.corpus[doc_id].get("metadata", {}).get("chapter")
        if chapter in chapters:
            continue
        chapters.add(chapter)
        shots.append(Shot(doc_id, ds.corpus[doc_id]["text"], tuple(sorted(per_doc[doc_id])[:per_shot])))
        if len(shots) == n_shots:
            break
    for doc_id in eligible:
        if len(shots) == n_shots:
            break
        if all(s.doc_id != doc_id for s in shots):
            shots.append(Shot(doc_id, ds.corpus[doc_id]["text"], tuple(sorted(per_doc[doc_id])[:per_shot])))
    shots.sort(key=lambda s: s.doc_id)
    return PromptTemplate(name, instruction.format(n=per_shot), tuple(shots))


# ------------------------------------------------------------------------------------------------ sampling


def docs_with_train_queries(ds: Dataset) -> set[str]:
    """Doc ids judged relevant to at least one training query."""
    return {d for docs in ds.qrels.get("train", {}).values() for d, s in docs.items() if s > 0}


def sample_codes(
    ds: Dataset,
    n_focus: int,
    n_other: int,
    focus_chapters: Sequence[str] = ("4", "9"),
    seed: int = 42,
    exclude: Iterable[str] = (),
) -> list[str]:
    """A seeded sample of documents to generate for, stratified so small chapters are not drowned out.

    ``n_focus`` come from ``focus_chapters`` (the fast-mode chapters, so fast mode has cached pairs too) and
    ``n_other`` from the rest, spread over chapters in proportion to the square root of their size (chapter 19,
    injuries, holds over half the codes). Within each chapter half are codes with a training query and half
    codes without one (synthetic queries matter most where no query log exists), as far as the chapter has them.

    Returns:
        Sorted doc ids.
    """
    excluded = set(exclude)
    with_train = docs_with_train_queries(ds)
    by_chapter: dict[str, list[str]] = {}
    for doc_id, doc in ds.corpus.items():
        if doc_id not in excluded:
            by_chapter.setdefault(str(doc.get("metadata", {}).get("chapter", "")), []).append(doc_id)
    rng = random.Random(seed)

    def allocate(chapters: list[str], total: int) -> dict[str, int]:
        weights = {c: math.sqrt(len(by_chapter[c])) for c in chapters}
        scale = sum(weights.values())
        quota = {c: min(len(by_chapter[c]), int(total * w / scale)) for c, w in weights.items()}
        for c in sorted(chapters, key=lambda c: -weights[c]):  # hand out the rounding remainder, biggest first
            if sum(quota.values()) >= total:
                break
            quota[c] = min(len(by_chapter[c]), quota[c] + total - sum(quota.values()))
        return quota

    def take(chapter: str, k: int) -> list[str]:
        docs = sorted(by_chapter[chapter])
        seen = [d for d in docs if d in with_train]
        unseen = [d for d in docs if d not in with_train]
        k_seen = min(len(seen), k // 2)
        k_unseen = min(len(unseen), k - k_seen)
        k_seen = min(len(seen), k - k_unseen)
        return rng.sample(seen, k_seen) + rng.sample(unseen, k_unseen)

    focus = [c for c in sorted(by_chapter) if c in set(focus_chapters)]
    other = [c for c in sorted(by_chapter) if c not in set(focus_chapters)]
    picked: list[str] = []
    for chapters, total in ((focus, n_focus), (other, n_other)):
        if chapters and total > 0:
            for chapter, k in sorted(allocate(chapters, total).items()):
                picked += take(chapter, k)
    order = {d: i for i, d in enumerate(ds.corpus)}
    return sorted(set(picked), key=order.__getitem__)


# ------------------------------------------------------------------------------------------------ the committed set


def synthetic_dir(cfg: Config) -> Path:
    """The case study's synthetic set folder: ``data/icd10cm/synthetic/`` (shared by both modes)."""
    return cfg.data_dir / "icd10cm" / "synthetic"


def synthetic_set_path(cfg: Config) -> Path:
    """The filtered synthetic queries of the case study (every candidate with its verdict)."""
    return synthetic_dir(cfg) / "queries.jsonl"


def case_study_plan(cfg: Config, full: Dataset | None = None) -> tuple[Dataset, PromptTemplate, list[str]]:
    """The full dataset, the few-shot template and the sampled doc ids the case study's set is generated from."""
    full = full if full is not None else load_icd10cm(cfg.replace(fast=False))
    template = few_shot_template(full, seed=cfg.seed)
    codes = sample_codes(
        full, CASE_STUDY_FOCUS_DOCS, CASE_STUDY_OTHER_DOCS, cfg.fast_chapters, seed=cfg.seed,
        exclude=[s.doc_id for s in template.shots],
    )  # fmt: skip
    return full, template, codes


def _missing_set(path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"no synthetic set at {path}: build it with `python -m workbook.synth build` "
        "(about an hour on 2 CPU cores; resumable)"
    )


def load_synthetic_candidates(cfg: Config) -> pd.DataFrame:
    """Every candidate query of the case study's set with its filter verdict (``queries.jsonl`` as a table).

    Raises:
        FileNotFoundError: the set is not built (the message says how to build it).
        CacheError: a line cannot be read (file and line named).
    """
    path = synthetic_set_path(cfg)
    if not path.is_file():
        raise _missing_set(path)
    rows = [obj for _, obj in iter_jsonl(path, ("doc_id", "query", "kept", "dropped_by"), error=CacheError)]
    return pd.DataFrame(rows)


def load_provenance(cfg: Config) -> dict:
    """The case study's synthetic set provenance (``provenance.json``)."""
    path = synthetic_dir(cfg) / "provenance.json"
    if not path.is_file():
        raise _missing_set(path)
    return read_json(path)


def load_synthetic_pairs(cfg: Config, ds: Dataset | None = None) -> list[tuple[str, str]]:
    """The case study's synthetic training pairs for ``cfg.mode``: (query text, doc id), sorted.

    Only queries every filter kept, whose doc is in the corpus of ``cfg.mode`` (``load_icd10cm(cfg)`` unless
    ``ds`` is given), and, checked again here, whose normalised text matches no dev/test query of that dataset.

    Raises:
        FileNotFoundError: the set is not built (the message names the file and how to build it).
        CacheError: a line of ``queries.jsonl`` cannot be read (file and line named).
    """
    if ds is None:
        ds = load_icd10cm(cfg)
    frame = load_synthetic_candidates(cfg)
    leaks = eval_query_keys(ds, ("dev", "test"))
    pairs = {
        (q, d)
        for q, d, kept in zip(frame["query"], frame["doc_id"], frame["kept"], strict=True)
        if kept and d in ds.corpus and equivalence_key(q) not in leaks
    }
    return sorted(pairs, key=lambda p: (p[1], p[0]))
