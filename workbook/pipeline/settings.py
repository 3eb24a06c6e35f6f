"""The pipeline's settings (:class:`PipelineSettings`) and settings files (TOML or JSON), read and checked."""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import asdict, dataclass
from pathlib import Path

from workbook.config import Config
from workbook.diagnose import DOMAIN_SLICES
from workbook.files import clean_json
from workbook.negatives import NEGATIVE_SOURCES
from workbook.train import DEFAULT_RECIPE, RECIPES, SOURCES


class SettingsError(ValueError):
    """A settings file or value is wrong; the message names the file and the key."""


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
        generator_parallel: documents the local generator decodes side by side (1 to 4; 1: one at a time through
            llama-cpp-python's ``create_completion``, the committed case-study set's decoder). Any value above 1
            gives the same text as any other; 4 generated 2.1x as many documents per second as 1 on 2 cores.
        source: training data: ``"real"``, ``"synthetic"``, ``"both"`` or ``"auto"`` (real when there is a train
            split, plus synthetic when generated).
        recipe: a recipe of :data:`workbook.train.RECIPES`.
        negatives: where the rows' negatives come from: ``"mined"``, ``"lookalike"`` or ``"both"`` (the dataset's
            ``lookalikes.jsonl`` groups: :mod:`workbook.negatives.lookalike`), or ``"auto"``
            (:data:`workbook.train.DEFAULT_NEGATIVES` when the dataset has lookalike groups, else mined).
        max_rows: training rows: an integer, ``"auto"`` (``cfg.train_max_rows``) or ``"all"``.
        sibling_stage: after training, a short second stage on lookalike siblings
            (:func:`workbook.train.sibling_stage`, ``cfg.sibling_stage_rows`` rows) when the dataset has lookalike
            groups and a train split; skipped (and said so in the step's result) otherwise.
        train_batch_size, train_epochs, learning_rate: recipe overrides (``None``: the recipe's).
        truncate_dims: embedding sizes for the truncation (Matryoshka) curve.
        umap_groups: lookalike groups drawn before and after tuning (when the dataset has ``lookalikes.jsonl``; the
            name is kept from when the picture was a UMAP).
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
    generator_parallel: int = 4
    source: str = "auto"
    recipe: str = DEFAULT_RECIPE
    negatives: str = "auto"
    max_rows: int | str | None = "auto"
    sibling_stage: bool = True
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
            "negatives": ("auto", *NEGATIVE_SOURCES),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key!r} must be one of {list(allowed)}, got {getattr(self, key)!r}")
        if isinstance(self.max_rows, str) and self.max_rows not in ("auto", "all"):
            raise ValueError(f"'max_rows' must be an integer, 'auto' or 'all', got {self.max_rows!r}")
        if isinstance(self.max_rows, int) and self.max_rows < 1:
            raise ValueError(f"'max_rows' must be at least 1, got {self.max_rows}")
        from workbook.synth.batched import check_parallel

        check_parallel(self.generator_parallel, "'generator_parallel'")
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
     "gate_min_win_rate", "gate_max_p95_latency_ms", "gate_max_latency_ratio", "gate_min_overlap", "generator_threads",
     "curve_precision"}
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


# Hand-written rather than pydantic/cattrs: ~40 lines over two dataclasses' hints, errors worded with file and key.
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
    return clean_json(out)
