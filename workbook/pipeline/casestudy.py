"""The pipeline on the ICD-10-CM case study, with the notebooks' settings and shared artifacts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from workbook.config import Config
from workbook.icd10cm import load_icd10cm
from workbook.pipeline.runner import RunSummary, run_pipeline
from workbook.pipeline.settings import PipelineSettings
from workbook.train import DEFAULT_RECIPE, DEFAULT_SOURCE


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
    load_icd10cm(cfg)  # builds the case study on first use
    run_dir = Path(run_dir) if run_dir is not None else default_casestudy_dir(cfg)
    return run_pipeline(cfg.icd10cm_dir, run_dir, cfg, settings or casestudy_settings(), casestudy=True, log=log)
