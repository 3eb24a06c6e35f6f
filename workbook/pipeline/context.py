"""What the steps share: the run context (config, settings, data and models loaded once) and a step's declaration."""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from workbook.config import Config
from workbook.data import Dataset, DatasetError, Problem, load_dataset
from workbook.files import read_json
from workbook.icd10cm import load_icd10cm, load_lookalikes
from workbook.models import load_model
from workbook.pipeline.devsplit import carve_dev_split
from workbook.pipeline.settings import PipelineSettings
from workbook.pipeline.store import RESULT
from workbook.retrieval import BM25Index
from workbook.synth.examples import EXAMPLES_FILE, load_examples


class PipelineError(RuntimeError):
    """The pipeline cannot go on (e.g. no training pair left); the message says why and what to change."""


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
        """The dataset (validated on first use; ``extras["lookalikes"]`` from ``lookalikes.jsonl`` and
        ``extras["examples"]`` from ``examples.jsonl`` when present)."""
        if "ds" not in self._cache:
            if self.casestudy:
                ds = load_icd10cm(self.cfg)
            else:
                ds = load_dataset(self.dataset_dir)
                if (self.dataset_dir / "lookalikes.jsonl").is_file():
                    ds.extras["lookalikes"] = _checked_lookalikes(load_lookalikes, self.dataset_dir, ds)
            st = self.settings
            self._cache["dev"] = carve_dev_split(ds, self.cfg.seed, st.dev_share, st.dev_min_queries)
            if not self.casestudy and (self.dataset_dir / EXAMPLES_FILE).is_file():
                # after the dev split is carved: an example may not repeat a dev query either
                ds.extras["examples"] = load_examples(self.dataset_dir / EXAMPLES_FILE, ds)
            self._cache["ds"] = ds
        return self._cache["ds"]

    @property
    def dev(self) -> dict:
        """Where the dev split comes from (:func:`carve_dev_split`'s record)."""
        self.ds  # noqa: B018 - loading the dataset carves the dev split
        return self._cache["dev"]

    def model(self, name: str, precision: str = "fp32"):
        """A packaged or local SentenceTransformer by name (loaded once per inference precision)."""
        key = f"model:{name}:{precision}"
        if key not in self._cache:
            self._cache[key] = load_model(name, self.cfg, precision=precision)
        return self._cache[key]

    @property
    def base(self):
        """The base model (``cfg.base_model``)."""
        return self.model(self.cfg.base_model)

    def tuned(self):
        """The fine-tuned model of ``05_finetune``."""
        if "tuned" not in self._cache:
            from sentence_transformers import SentenceTransformer  # lazy: loads torch (seconds); only steps need it

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
