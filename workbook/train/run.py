"""One fine-tuning run with sentence-transformers' trainer: arguments, checkpoints, best model, resume."""

from __future__ import annotations

import contextlib
import copy
import math
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

from workbook import worklog
from workbook.config import Config, seed_everything
from workbook.memory import plan_training_memory, release_freed
from workbook.models import quiet_trainer_logs
from workbook.train.recipes import (
    DEFAULT_RECIPE,
    LOSSES,
    Recipe,
    _add_lora,
    _merge_lora,
    build_loss,
    get_recipe,
    trainable_parameters,
)


@dataclass
class TrainedModel:
    """A fine-tuned model: the loaded model, its saved folder and its card."""

    model: object
    path: Path
    card: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


def forward_key(cfg: Config) -> list:
    """What a run's folder key adds for how its batches are embedded: ``[]`` for one padded forward per column (the
    keys of runs saved before chunks existed), else the chunk size, since chunked runs draw other dropout masks."""
    return [] if cfg.train_chunk_rows is None else [{"train_chunk_rows": cfg.train_chunk_rows}]


@contextlib.contextmanager
def length_chunked(model, rows: int | None) -> Iterator[None]:
    """Within the block, ``model`` embeds each batch in chunks of ``rows`` texts of similar length, each padded only
    to its own longest text; the sentence embeddings come back in the batch's order.

    sentence-transformers pads a whole column (and the merged candidate columns) to its longest text, so a batch of
    short and long texts computes mostly padding. Each text is encoded independently, so without dropout the
    embeddings, the loss and the gradients are the plain forward's up to float rounding (``tests/test_train.py``
    checks it); in training, dropout masks are drawn per chunk, so a seeded run is as reproducible as before but its
    weights differ from the unchunked run's like another dropout draw. The model's own forward is back after the
    block (also on error). ``rows=None``: no change.
    """
    if not rows:
        yield
        return
    import torch

    plain = model.forward

    def forward(features, **kwargs):
        mask = features["attention_mask"]
        n, width = mask.shape
        if n <= rows:
            return plain(features, **kwargs)
        lengths = mask.sum(1)
        order = torch.argsort(lengths, descending=True, stable=True)
        parts = []
        for idx in torch.split(order, rows):
            w = int(lengths[idx].max())  # padding is on the right (BERT-style tokenizers)
            chunk = {k: (v[idx][:, :w] if v.dim() == 2 and v.shape == (n, width) else v[idx])
                     if torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == n else v
                     for k, v in features.items()}  # fmt: skip
            parts.append(plain(chunk, **kwargs)["sentence_embedding"])
        return {"sentence_embedding": torch.cat(parts)[torch.argsort(order)]}

    model.forward = forward  # an instance attribute: what the losses call through model(...)
    try:
        yield
    finally:
        del model.forward


def training_arguments(
    cfg: Config,
    recipe: Recipe,
    output_dir: str | Path,
    eval_steps: int | None = None,
    evaluator=None,
    max_steps: int = -1,
    show_progress: bool = True,
):
    """The trainer settings of a run: no-duplicates batches, warm-up, seeds, and (with an evaluator) dev evaluation
    plus a checkpoint every ``eval_steps`` with the best one by dev nDCG@10 kept; bf16 on a GPU that supports it."""
    import torch
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    eval_steps = eval_steps or cfg.train_eval_steps
    cuda = torch.cuda.is_available()
    name = getattr(evaluator, "name", "") or "dev"
    return SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=recipe.epochs,
        max_steps=max_steps,
        per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        warmup_steps=recipe.warmup_ratio,  # a float below 1 is a ratio of the total steps (transformers >= 5)
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        eval_strategy="steps" if evaluator is not None else "no",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        save_total_limit=2,
        load_best_model_at_end=evaluator is not None,
        metric_for_best_model=f"eval_{name}_cosine_ndcg@10" if evaluator is not None else None,
        greater_is_better=True,
        logging_steps=max(1, eval_steps // 2),
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        dataloader_pin_memory=cuda,
        report_to="none",
        disable_tqdm=not show_progress,
    )


def planned_steps(rows: int, recipe: Recipe, max_steps: int = -1) -> int:
    """Optimiser steps a run of ``rows`` rows takes at most (``max_steps`` when set, else ``recipe.epochs`` passes of
    ``recipe.batch_size``-row batches)."""
    return max_steps if max_steps > 0 else math.ceil(math.ceil(rows / recipe.batch_size) * recipe.epochs)


def _no_final_checkpoint():
    """A trainer callback that skips the checkpoint transformers saves at the last step: without an evaluator no best
    checkpoint is chosen, and :func:`fine_tune` saves the final model itself at once (the checkpoint's optimiser state
    took 0.6 s of a one-step run here). The periodic checkpoints that a resume starts from are kept."""
    from transformers import TrainerCallback

    class _NoFinalCheckpoint(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_save = False
            return control

    return _NoFinalCheckpoint()


def _training_identity(base, columns: dict, recipe: Recipe, max_steps: int, cfg: Config) -> str:
    """What a training computes, for the work log: the base weights, the rows, the recipe, the steps and the seed."""
    from workbook.files import json_sha256
    from workbook.retrieval import model_fingerprint

    identity = [model_fingerprint(base), columns, asdict(recipe), max_steps, cfg.seed, cfg.train_chunk_rows]
    return json_sha256(identity, 20)


def fine_tune(
    cfg: Config,
    base,
    train_data,
    out_dir: str | Path,
    recipe: str | Recipe = DEFAULT_RECIPE,
    evaluator=None,
    eval_steps: int | None = None,
    max_steps: int = -1,
    callbacks: Sequence = (),
    show_progress: bool = True,
) -> TrainedModel:
    """Fine-tune a copy of ``base`` on ``train_data`` and save it to ``out_dir/model``.

    Checkpoints go to ``out_dir/checkpoints`` every ``eval_steps`` (with a dev evaluation when ``evaluator`` is given,
    keeping the best by dev nDCG@10); if checkpoints are already there, training resumes from the last one.

    Args:
        cfg: the run config (seed; GPU used automatically when present).
        base: the SentenceTransformer to start from (not modified).
        train_data: a ``datasets.Dataset`` with ``anchor``, ``positive`` and optional ``negative_*`` columns.
        out_dir: the run folder.
        recipe: a name from :data:`RECIPES` or a :class:`Recipe`.
        evaluator: a sentence-transformers evaluator run every ``eval_steps`` (e.g. :func:`dev_evaluator`); dropped
            when the run is no longer than ``eval_steps`` (its only evaluation would be at the last step, which is
            kept anyway).
        eval_steps: steps between evaluations/checkpoints (default ``cfg.train_eval_steps``).
        max_steps: stop after this many steps (``-1``: ``recipe.epochs`` epochs).
        callbacks: extra ``transformers.TrainerCallback`` objects.

    Returns:
        The trained model (best checkpoint when an evaluator was given), its folder and the training log.
    """
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainer

    recipe = get_recipe(recipe)
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    model = copy.deepcopy(base)
    # The trainer seeds only when it is built, after the model: seed here so the LoRA adapter's random
    # initialisation (and anything else drawn before training) is the same on every run with this seed.
    seed_everything(cfg.seed)
    if recipe.lora:
        _add_lora(model, recipe)
    trainable, total = trainable_parameters(model)
    steps = planned_steps(len(train_data), recipe, max_steps)
    if steps == 1 and recipe.warmup_ratio > 0:  # a warm-up would take the only step, at learning rate 0: no change
        recipe = replace(recipe, warmup_ratio=0.0)
    if evaluator is not None and steps <= (eval_steps or cfg.train_eval_steps):
        evaluator = None  # one evaluation, at the last step, has nothing to choose from: the last step is kept anyway
    # the text columns: a label column (MarginMSE's margins; the data collator's "label"/"score") is not tokenised
    columns = {c: list(train_data[c]) for c in train_data.column_names if c not in ("label", "score")}
    cached = recipe.mini_batch_size if LOSSES[recipe.loss].caches_gradients else None
    memory_plan = plan_training_memory(model, columns, recipe.batch_size, cfg.train_memory_mb, cached)
    args = training_arguments(cfg, recipe, ckpt_dir, eval_steps, evaluator, max_steps, show_progress)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        loss=build_loss(model, recipe, memory_plan["mini_batch"]),
        evaluator=evaluator,
        callbacks=list(callbacks) + ([] if evaluator is not None else [_no_final_checkpoint()]),
    )
    quiet_trainer_logs(trainer)
    resume = any(ckpt_dir.glob("checkpoint-*"))
    identity = partial(_training_identity, base, columns, recipe, max_steps, cfg)  # computed only when logging
    with length_chunked(model, cfg.train_chunk_rows), worklog.timed("train", identity, rows=len(train_data),
                                                                    steps=steps):  # fmt: skip
        output = trainer.train(resume_from_checkpoint=True if resume else None)
    if recipe.lora:
        _merge_lora(model)
    final = out / "model"
    if final.exists():
        shutil.rmtree(final)
    model.save_pretrained(str(final))
    state = trainer.state
    card = {
        "recipe": asdict(recipe),
        "rows": len(train_data),
        "steps": state.global_step,
        "resumed": resume,
        "parameters": total,
        "trainable_parameters": trainable,
        "train_seconds": round(output.metrics["train_runtime"], 1),  # this process only, when resumed
        "rows_per_second": round(output.metrics["train_samples_per_second"], 2),
        "best_checkpoint": Path(state.best_model_checkpoint).name if state.best_model_checkpoint else None,
        "best_dev_ndcg@10_candidates": state.best_metric,
        "memory_plan": memory_plan,
        "length_chunk_rows": cfg.train_chunk_rows,  # None: one padded forward per column
    }
    history = list(state.log_history)
    # The trainer's freed activations, gradients and optimiser state stay in glibc's heap otherwise: measured after a
    # fast-mode run of the default recipe, 2.3 GB of RSS with 0.17 GB of live tensors; 0.9 GB once handed back.
    del trainer, output, state
    release_freed()
    return TrainedModel(model=model, path=final, card=card, history=history)
