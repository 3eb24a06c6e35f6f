"""The trained-model cache: ``load_or_train`` trains once per recipe, data and base, and cards the result
(:mod:`workbook.cards`)."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from workbook.cards import CARD_FILE, read_card, write_card
from workbook.config import Config
from workbook.data import Dataset
from workbook.files import atomic_write
from workbook.models import load_model
from workbook.retrieval import model_fingerprint
from workbook.train.devsets import _dev_metrics, dev_evaluator
from workbook.train.gpl import pseudo_labels
from workbook.train.recipes import DEFAULT_RECIPE, DEFAULT_SOURCE, LOSSES, Recipe, final_training, get_recipe
from workbook.train.rows import data_hash, sample_rows, training_data_with_stats
from workbook.train.run import TrainedModel, fine_tune, forward_key


def _versions() -> dict[str, str]:
    import sentence_transformers
    import torch
    import transformers

    return {"sentence-transformers": sentence_transformers.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__}  # fmt: skip


def run_dir(cfg: Config, recipe: Recipe, source: str, max_rows: int | None, key: str, negatives: str = "mined") -> Path:
    """``artifacts/models/<mode>/<recipe>-<source>[-<negatives>][-<rows>]-<key>``: one folder per distinct run."""
    rows = "" if max_rows is None else f"-{max_rows}"
    negs = "" if negatives == "mined" else f"-{negatives}"
    return cfg.artifacts_dir / "models" / cfg.mode / f"{recipe.name}-{source}{negs}{rows}-{key}"


def load_or_train(
    cfg: Config,
    recipe: str | Recipe | None = None,
    source: str = DEFAULT_SOURCE,
    max_rows: int | None | str = "auto",
    ds: Dataset | None = None,
    base=None,
    show_progress: bool = True,
    synthetic_pairs: Sequence[tuple[str, str]] | None = None,
    dev_split: str | None = "dev",
    dev_scope: str = "corpus",
    negatives: str | None = None,
    labeller=None,
) -> TrainedModel:
    """The fine-tuned model for (recipe, data source, rows): loaded when this exact run is saved, else trained.

    The run folder is keyed on the recipe, the data source, the row budget, the seed, the base model's weights and
    the hash of the training rows, so a change to any of them trains a new model; an interrupted run resumes from
    its last checkpoint.

    Args:
        cfg: the run config.
        recipe: a name from :data:`RECIPES` or a :class:`Recipe`; ``None`` (with ``negatives=None``): the final
            training, :func:`~workbook.train.recipes.final_training` (the shipped model's first stage).
        source: ``"real"``, ``"synthetic"`` or ``"both"``.
        max_rows: training rows (seeded sample); ``"auto"`` is ``cfg.train_max_rows`` (fast: small; full: all).
        ds: the case study (loaded when ``None``).
        base: the base SentenceTransformer (``cfg.base_model`` when ``None``).
        synthetic_pairs: the synthetic source's (query, doc id) pairs (``None``: the case study's cached set).
        dev_split: the split evaluated during training (best checkpoint) and in the card; ``None`` or a split the
            dataset lacks trains without evaluation and keeps the last step.
        dev_scope: the card's dev metrics over the whole ``"corpus"`` or over the dev ``"candidates"`` (see
            :func:`candidate_dev_metrics`: cheaper, for comparing many runs). A saved run not yet scored in that scope
            is scored once and the scores are added to its card (``dev_scores``).
        negatives: where the negative columns come from: ``"mined"`` (notebook 03's set), ``"lookalike"`` (the
            positive's curated lookalikes) or ``"both"`` (see :mod:`workbook.negatives.lookalike`); ``None``: mined,
            or the final training's when ``recipe`` is ``None`` too.
        labeller: the cross-encoder whose margins label the rows, for a recipe whose loss needs labels
            (``margin-mse``: GPL, :mod:`workbook.train.gpl`); the labels are part of the rows' hash, so another
            labeller is another run.

    Returns:
        The :class:`TrainedModel`; ``card`` holds base model, data hash, recipe, timings and full-corpus dev metrics.
    """

    from workbook.icd10cm import load_icd10cm  # only when no dataset is given: the case study is the default

    ds = ds or load_icd10cm(cfg)
    if recipe is None and negatives is None:
        recipe, negatives = final_training(bool(ds.extras.get("lookalikes")))
    recipe, negatives = get_recipe(recipe or DEFAULT_RECIPE), negatives or "mined"
    base = base or load_model(cfg.base_model, cfg)
    rows = cfg.train_max_rows if max_rows == "auto" else max_rows
    data, mix = training_data_with_stats(cfg, ds, base, source, recipe.num_negatives, synthetic_pairs, negatives)
    data = sample_rows(data, rows, cfg.seed)
    if LOSSES[recipe.loss].needs_labels:
        if labeller is None:
            raise ValueError(f"recipe {recipe.name!r}: loss {recipe.loss!r} needs a teacher's scores: pass labeller=")
        data = pseudo_labels(labeller, data, batch_size=cfg.batch_size)
    digest = data_hash(data)
    base_fp = model_fingerprint(base)
    key = [asdict(recipe), source, rows, cfg.seed, base_fp, digest] + ([negatives] if negatives != "mined" else [])
    key += forward_key(cfg)
    key_src = json.dumps(key, sort_keys=True)
    folder = run_dir(cfg, recipe, source, rows, hashlib.sha256(key_src.encode()).hexdigest()[:10], negatives)
    final = folder / "model"
    if dev_scope not in ("corpus", "candidates"):
        raise ValueError(f"dev_scope must be 'corpus' or 'candidates', not {dev_scope!r}")
    dev_split = dev_split if dev_split in ds.qrels else None
    if (final / CARD_FILE).is_file():
        saved = load_saved_run(folder)
        model, card = saved.model, saved.card
        first = [card.get("dev_metrics", {}), card.get("dev_metrics_scope", "")]
        scored = card.setdefault("dev_scores", {card.get("dev_scope", "corpus"): first})
        if dev_split and dev_scope not in scored:  # scored once per scope, then kept in the card
            scored[dev_scope] = list(_dev_metrics(cfg, ds, model, dev_split, dev_scope, base))
            write_card(final, card)
        if dev_split:
            card.update(dev_metrics=scored[dev_scope][0], dev_metrics_scope=scored[dev_scope][1], dev_scope=dev_scope)
        return saved
    evaluator = dev_evaluator(cfg, ds, base, split=dev_split) if dev_split else None
    trained = fine_tune(cfg, base, data, folder, recipe, evaluator=evaluator, show_progress=show_progress)
    metrics, scope = ({}, "no dev split: not evaluated")
    if dev_split:
        metrics, scope = _dev_metrics(cfg, ds, trained.model, dev_split, dev_scope, base)
    card = {
        "name": folder.name,
        "base_model": cfg.base_model,
        "base_model_fingerprint": base_fp,
        "model_fingerprint": model_fingerprint(trained.model),
        "dataset": ds.name,
        "data": {"source": source, "rows": len(data), "sha256": digest, "columns": data.column_names,
                 "negatives": negatives, "negative_mix_all_rows": [asdict(m) for m in mix]},
        "seed": cfg.seed,
        "mode": cfg.mode,
        **trained.card,
        "dev_metrics": metrics,
        "dev_metrics_scope": scope,
        "dev_scope": dev_scope,
        "dev_scores": {dev_scope: [metrics, scope]} if dev_split else {},
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    return save_run(folder, trained, card)


def load_saved_run(folder: Path) -> TrainedModel:
    """A finished run from its folder (``model/`` with its card, and the training log when kept)."""
    from sentence_transformers import SentenceTransformer

    final = folder / "model"
    log = folder / "log_history.json"
    history = json.loads(log.read_text(encoding="utf-8")) if log.is_file() else []
    model = SentenceTransformer(str(final), local_files_only=True)
    return TrainedModel(model=model, path=final, card=read_card(final), history=history)


def save_run(folder: Path, trained: TrainedModel, card: dict) -> TrainedModel:
    """Finish a run in ``folder``: its training log, then its card (written last: a folder with a card is a finished
    run), and the checkpoints dropped (the best one is the saved model now)."""
    atomic_write(folder / "log_history.json", json.dumps(trained.history, indent=1) + "\n")
    write_card(trained.path, card)
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    return dataclasses.replace(trained, card=card)
