"""One place for run mode (fast/full), seeds, paths, model names and sizes.

Fast mode is switched on by the environment variable ``WORKBOOK_FAST=1`` (the test suite sets it).
It shrinks data and steps; it never skips a code path.
"""

from __future__ import annotations

import dataclasses
import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FAST_ENV = "WORKBOOK_FAST"
#: Fast mode's ``Config.train_chunk_rows`` (texts per length-sorted chunk of a training batch).
FAST_TRAIN_CHUNK_ROWS = 16
CACHE_ENV = "WORKBOOK_CACHE"
SEED_ENV = "WORKBOOK_SEED"

# Progress bars update at most every 2 s: executed notebooks keep a readable log instead of thousands of updates.
# tqdm reads TQDM_* defaults when it is first imported, and every workbook module imports this one first.
os.environ.setdefault("TQDM_MININTERVAL", "2")
# tqdm.auto warns (with a machine path) when ipywidgets is absent and falls back to text bars: that is fine.
warnings.filterwarnings("ignore", message="IProgress not found")

#: The repository root (this file lives in ``<root>/workbook/config.py``).
ROOT = Path(__file__).resolve().parent.parent


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def is_fast() -> bool:
    """True when ``WORKBOOK_FAST`` asks for fast mode."""
    return _truthy(os.environ.get(FAST_ENV))


def _auto_chunk_rows(fast: bool) -> int | None:
    """What ``Config.train_chunk_rows="auto"`` resolves to in a mode."""
    return FAST_TRAIN_CHUNK_ROWS if fast else None


@dataclass(frozen=True)
class Config:
    """Settings for one run; build it with :func:`get_config`.

    Sizes that differ between modes are resolved here so that notebooks and the command line read one value.
    """

    fast: bool
    seed: int = 42
    root: Path = ROOT
    data_dir: Path = ROOT / "data"
    cache_dir: Path = ROOT / ".cache"
    artifacts_dir: Path = ROOT / "artifacts"
    # Models: short names understood by workbook.models.load_model, or a local path.
    base_model: str = "all-MiniLM-L6-v2"
    comparator_model: str = "all-mpnet-base-v2"
    # Inference-only arithmetic (workbook.precision; bench/precision.py has the speed and metric change of each):
    # the comparator's encodes and the reranker's scores run in bf16 where the CPU computes bf16 natively (AVX-512
    # BF16 or AMX; fp32 elsewhere, where bf16 would be emulated and slower). Base and tuned models stay fp32.
    comparator_precision: str = "bf16"
    reranker_precision: str = "bf16"
    # The merge curve (notebook 06) only chooses a ratio on dev: its models (base, tuned and the merges) score in this
    # precision; the chosen merge is scored on test in fp32.
    curve_precision: str = "bf16"
    # ICD-10-CM case study: the chapters fast mode draws from (4 = endocrine E00-E89, 9 = circulatory I00-I99); the
    # synthetic set over-samples them. Fast mode itself keeps only some of their categories (icd10cm.FAST_CATEGORIES).
    fast_chapters: tuple[str, ...] = ("4", "9")
    # SciFact: fast mode keeps the docs judged for its claims plus this many sampled others, and this many test claims
    # (abstracts are long, and each model that reads SciFact encodes the subset once).
    scifact_fast_extra_docs: int = 50
    scifact_fast_queries: int = 50
    # Encoding.
    batch_size: int = 64
    # Training: activation memory (MiB) one optimiser step may take. A step estimated above it (long documents, big
    # batches) trains with gradient caching instead (CachedMNRL mini-batches: the same gradients, bounded memory),
    # so a 16 GB laptop never swaps; short texts (the case study's codes) stay far below it and train as configured.
    train_memory_mb: int = 1536
    # Training: embed each batch in length-sorted chunks of this many texts, each padded only to its own longest text
    # (workbook.train.length_chunked). The case study's batches are half padding: chunks of 16 make a fast-mode run's
    # steps 1.6x faster (bench/train_step.py). None: one padded forward per column, as sentence-transformers does.
    # "auto" (resolved when the config is built): 16 in fast mode, None in full mode until the full case study is
    # re-run with it, since dropout masks are drawn per chunk, so the trained weights differ from the committed runs'
    # like another dropout draw (the loss and gradients without dropout do not). A run's folder key includes it.
    train_chunk_rows: int | None | str = "auto"
    # Retrieval depth kept for evaluation (Recall@100 needs 100).
    top_k: int = 100
    # Reranker: a cross-encoder folder to use; None trains one on the train split (no pretrained one ships offline).
    reranker: str | None = None
    reranker_negatives: int = 3
    # The target a retriever must reach on dev Recall@10 for "no need to fine-tune" (notebook 02's decision gate).
    target_recall_at_10: float = 0.9
    # Deploy (notebook 07): the promotion gate a new model must pass in the shadow test against production. It is an
    # improvement gate: metric delta and win rate must EXCEED their thresholds (a model identical to production fails),
    # measured on labelled queries; latency and overlap on all shadow queries.
    gate_metric: str = "ndcg@10"
    gate_min_metric_delta: float = 0.0  # new - old mean of gate_metric must be above this
    gate_min_win_rate: float = 0.5  # wins / (wins + losses) on gate_metric, ties excluded, must be above this
    # An absolute p95 budget (ms, query encoding + search, one query at a time) for the candidate; None checks only
    # the ratio to production, since absolute latency depends on the machine (and its load) more than on the model.
    gate_max_p95_latency_ms: float | None = None
    gate_max_latency_ratio: float = 1.5  # new p95 / old p95
    gate_min_overlap: float = 0.1  # mean overlap@10 with production on unlabelled queries (below: a broken index)
    # Synthetic queries from an OpenAI-compatible endpoint (workbook.synth.OpenAIGenerator); None reads the
    # environment ($WORKBOOK_LLM_BASE_URL, $WORKBOOK_LLM_MODEL). The API key is read from $OPENAI_API_KEY only.
    llm_base_url: str | None = None
    llm_model: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.train_chunk_rows == "auto":
            object.__setattr__(self, "train_chunk_rows", _auto_chunk_rows(self.fast))
        elif self.train_chunk_rows is not None and (not isinstance(self.train_chunk_rows, int)
                                                    or self.train_chunk_rows < 1):
            raise ValueError(f"train_chunk_rows must be a positive integer, None or 'auto', "
                             f"not {self.train_chunk_rows!r}")

    @property
    def mode(self) -> str:
        """``"fast"`` or ``"full"``."""
        return "fast" if self.fast else "full"

    @property
    def icd10cm_dir(self) -> Path:
        """The case-study dataset folder for this mode (built on first use)."""
        return self.data_dir / "icd10cm" / self.mode

    @property
    def scifact_dir(self) -> Path:
        """The SciFact copy shipped in ``data/scifact``."""
        return self.data_dir / "scifact"

    @property
    def models_dir(self) -> Path:
        """Where assembled models (e.g. all-mpnet-base-v2) are cached."""
        return self.cache_dir / "models"

    @property
    def reranker_train_queries(self) -> int:
        """Training queries sampled to train the reranker (each with 1 positive + ``reranker_negatives``; fast mode:
        100, about a minute of cross-encoder training on 2 CPU cores)."""
        return 100 if self.fast else 3000

    @property
    def rerank_depth(self) -> int:
        """Candidates the reranker re-scores per query."""
        return 20 if self.fast else 30

    @property
    def train_max_rows(self) -> int | None:
        """Training rows of the final fine-tune (``None``: every mined row; fast mode: a small sample, 12 steps of 32:
        with 8, notebook 07's shadow test no longer sees v2 change most answers, its fast-mode check)."""
        return 384 if self.fast else None

    @property
    def compare_max_rows(self) -> int:
        """Training rows per run when recipes and data sources are compared on an equal budget (notebook 05; fast
        mode: two steps of 32, the code path, not a measurement)."""
        return 64 if self.fast else 1000

    @property
    def lookalike_compare_rows(self) -> int:
        """Training rows per run when the sources of negatives are compared (notebook 05, ``bench/lookalike.py``):
        94 steps of 32 in full mode, under the evaluation interval, so each run keeps its last step; fast mode: one
        step (the code path, not a measurement)."""
        return 32 if self.fast else 3000

    @property
    def sibling_stage_rows(self) -> int:
        """Training rows of the second stage on lookalike siblings (:mod:`workbook.train.stage`): 94 steps of 32 in
        full mode; fast mode: one step (the code path, not a measurement)."""
        return 32 if self.fast else 3000

    @property
    def train_eval_steps(self) -> int:
        """Evaluate on dev (and save a checkpoint) every this many optimiser steps during fine-tuning."""
        return 6 if self.fast else 100

    @property
    def dev_eval_candidates(self) -> int:
        """Per dev query, the base retrievers' top-N docs that join the gold docs in the in-training dev corpus (fast
        mode: 5, a pool about a third smaller, encoded by every run it scores)."""
        return 5 if self.fast else 10

    @property
    def shadow_queries(self) -> int:
        """Labelled (and as many unlabelled) queries the deploy shadow test samples (local Qdrant searches by brute
        force: about 50 ms a query on the full corpus here)."""
        return 300 if self.fast else 1000

    def replace(self, **changes) -> Config:
        """A copy with some fields changed (a new ``fast`` re-resolves a mode-default ``train_chunk_rows``)."""
        mode_default = self.train_chunk_rows == _auto_chunk_rows(self.fast)
        if "fast" in changes and "train_chunk_rows" not in changes and mode_default:
            changes["train_chunk_rows"] = "auto"
        return dataclasses.replace(self, **changes)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and, when present, CUDA).

    String hashing (set and dict order of ``str`` keys) is fixed by ``PYTHONHASHSEED`` only when it is set before
    the interpreter starts: the Makefile and the test configuration export it; setting it here would do nothing.
    """
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # torch is a dependency; keep config importable without it all the same
        return
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def default_config(fast: bool | None = None, seed: int | None = None, **overrides) -> Config:
    """The run's :class:`Config` from the environment, without touching any random generator.

    Library functions fall back to this when no config is passed: seeding there would reset every generator in
    the middle of a run, so the same run would give other numbers depending on which helper was called when.
    Arguments as :func:`get_config`.
    """
    if fast is None:
        fast = is_fast()
    if seed is None:
        seed = int(os.environ.get(SEED_ENV, "42"))
    if CACHE_ENV in os.environ and "cache_dir" not in overrides:
        overrides["cache_dir"] = Path(os.environ[CACHE_ENV])
    # No model or dataset hub is reachable here: make the Hugging Face libraries fail fast instead of hanging.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    return Config(fast=fast, seed=seed, **overrides)


def get_config(fast: bool | None = None, seed: int | None = None, **overrides) -> Config:
    """Build the run's :class:`Config` and seed every random generator (a notebook's or a command's set-up call).

    Args:
        fast: force fast (True) or full (False) mode; ``None`` reads ``WORKBOOK_FAST``.
        seed: the seed; ``None`` reads ``WORKBOOK_SEED`` or uses 42.
        **overrides: any other :class:`Config` field.

    Returns:
        The config, with ``random``, NumPy and torch seeded from ``config.seed``.
    """
    cfg = default_config(fast, seed, **overrides)
    seed_everything(cfg.seed)
    return cfg
