"""A short second training stage on the distinctions: the trained model, tuned again on the training rows whose
positive has a lookalike sibling, each with that sibling as its hardest negative.

Issue 20's first attempt put a sibling column into the one long training: it lowered the sibling confusion but cost
Recall@10 at the full budget (``workbook.train.lookalike.full_budget_comparison``). A second stage leaves the domain
training as it is and spends a few steps on the distinctions only, from the model that already knows the domain:
its siblings are ordered by that model (the ones *it* confuses first), a mined negative keeps each row anchored to
the rest of the corpus, and one short pass (94 steps) keeps what the first stage learned. Training-split judgements only
(the miner's and :func:`~workbook.negatives.lookalike.lookalike_negatives`' rules); compared on dev with
:func:`~workbook.train.lookalike.full_budget_comparison` (``bench/lookalike.py --sibling-stage``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import asdict

from workbook.cards import CARD_FILE, write_card
from workbook.config import Config
from workbook.data import Dataset
from workbook.models import load_model
from workbook.retrieval import model_fingerprint
from workbook.train.cards import _versions, load_or_train, load_saved_run, save_run
from workbook.train.devsets import _dev_metrics
from workbook.train.recipes import Recipe
from workbook.train.rows import data_hash, sample_rows
from workbook.train.run import TrainedModel, fine_tune, forward_key

#: The stage's recipe: MNRL over (query, positive, hardest sibling, mined negative), one pass of
#: ``cfg.sibling_stage_rows`` rows. Its learning rate was chosen on dev (whole corpus) among 1e-5, 3e-5 and 5e-5 by
#: the lookalike pick rule (lowest sibling confusion@10 within a point of the starting model's Recall@10): 5e-5, the
#: first stage's own rate.
SIBLING_STAGE = Recipe(name="sibling-stage", loss="mnrl", num_negatives=2, learning_rate=5e-5, epochs=1)


class NoSiblingRows(ValueError):
    """The dataset has lookalike groups, but no training row's positive has a usable sibling: no stage to train."""


def sibling_rows(cfg: Config, ds: Dataset, model, base, max_rows: int | None | str = "auto", control: bool = False):
    """The stage's rows: training pairs whose positive has a usable sibling, as ``anchor, positive, negative_1``
    (the sibling ``model`` scores highest) ``, negative_2`` (a mined negative), seeded sample of ``max_rows``.

    Args:
        model: the model the stage starts from: it orders each positive's siblings.
        base: the base model notebook 03 mined the training set with (its cached set is reused).
        max_rows: rows kept; ``"auto"`` is ``cfg.sibling_stage_rows``.
        control: the control instead: the same number of rows drawn from *all* training rows, with two mined
            negatives and no sibling (the same steps spent without the distinctions).

    Returns:
        (``datasets.Dataset``, :class:`~workbook.negatives.lookalike.MixStats` of all candidate rows before sampling).
    """
    from workbook.negatives import load_or_mine_training_set
    from workbook.negatives.lookalike import lookalike_negatives, mix_negatives

    if not ds.extras.get("lookalikes"):
        raise ValueError(f"{ds.name}: the sibling stage needs lookalike groups (lookalikes.jsonl); it has none")
    max_rows = cfg.sibling_stage_rows if max_rows == "auto" else max_rows
    rows = load_or_mine_training_set(cfg, ds, base, with_ids=True)
    if control:  # every training row, mined negatives only: no sibling is ranked or used
        data, stats = mix_negatives(rows, ds, {}, "mined", SIBLING_STAGE.num_negatives)
        return sample_rows(data, max_rows, cfg.seed), stats
    pairs = list(zip(rows["query_id"], rows["positive_id"], strict=True))
    look = lookalike_negatives(ds, pairs, model, ds.extras["lookalikes"], cfg.cache_dir / "embeddings")
    keep = [i for i, pair in enumerate(pairs) if look.get(pair)]
    if not keep:
        raise NoSiblingRows(f"{ds.name}: no training row's positive has a usable sibling in lookalikes.jsonl")
    data, stats = mix_negatives(rows.select(keep), ds, look, "both", SIBLING_STAGE.num_negatives)
    return sample_rows(data, max_rows, cfg.seed), stats


def sibling_stage(
    cfg: Config,
    ds: Dataset,
    start: TrainedModel,
    base,
    recipe: Recipe = SIBLING_STAGE,
    max_rows: int | None | str = "auto",
    show_progress: bool = True,
    control: bool = False,
    dev_split: str | None = "dev",
) -> TrainedModel:
    """``start``'s model tuned again on :func:`sibling_rows`: loaded when this exact stage is saved, else trained.

    The folder is keyed on the recipe, the rows' hash, the seed and ``start``'s weights, beside ``start``'s folder
    (``<start>-sibling-stage-<key>``, ``-control`` for the control); the card names the run it started from and
    carries the dev metrics over the whole corpus, like :func:`~workbook.train.cards.load_or_train`'s.

    Args:
        start: the trained model to start from (e.g. ``load_or_train(cfg)``, the first stage).
        base: the base model (its mined training set is reused for the mined negative column).
        recipe: the stage's recipe (:data:`SIBLING_STAGE`).
        max_rows: rows trained on (``"auto"``: ``cfg.sibling_stage_rows``).
        control: train the control (:func:`sibling_rows`' random rows, mined negatives only) instead.
        dev_split: the split scored into the card (``None`` or a split the dataset lacks: not scored).

    Returns:
        The :class:`TrainedModel`.
    """
    max_rows = cfg.sibling_stage_rows if max_rows == "auto" else max_rows
    data, stats = sibling_rows(cfg, ds, start.model, base, max_rows, control=control)
    digest, start_fp = data_hash(data), model_fingerprint(start.model)
    key_src = [asdict(recipe), max_rows, cfg.seed, start_fp, digest] + forward_key(cfg)
    key = hashlib.sha256(json.dumps(key_src).encode()).hexdigest()[:10]
    name = f"{start.path.parent.name}-{recipe.name}-{key}" + ("-control" if control else "")
    folder = start.path.parent.with_name(name)
    dev_split = dev_split if dev_split in ds.qrels else None
    if (folder / "model" / CARD_FILE).is_file():
        saved = load_saved_run(folder)
        if dev_split and "dev_metrics" not in saved.card:  # a stage saved before cards carried them: scored once
            metrics, scope = _dev_metrics(cfg, ds, saved.model, dev_split, "corpus", base)
            saved.card.update(dev_metrics=metrics, dev_metrics_scope=scope, dev_scope="corpus")
            write_card(saved.path, saved.card)
        return saved
    trained = fine_tune(cfg, start.model, data, folder, recipe, show_progress=show_progress)
    metrics, scope = _dev_metrics(cfg, ds, trained.model, dev_split, "corpus", base) if dev_split else ({}, "")
    card = {
        "name": folder.name,
        "started_from": start.path.parent.name,
        "start_model_fingerprint": start_fp,
        "model_fingerprint": model_fingerprint(trained.model),
        "base_model": cfg.base_model,
        "base_model_fingerprint": model_fingerprint(base),
        "dataset": ds.name,
        "data": {"rows": len(data), "sha256": digest, "columns": data.column_names,
                 "negatives": "mined (control)" if control else "sibling + mined",
                 "rows_before_sampling": asdict(stats)},  # fmt: skip
        "seed": cfg.seed,
        "mode": cfg.mode,
        **trained.card,
        "dev_metrics": metrics,
        "dev_metrics_scope": scope or "no dev split: not evaluated",
        "dev_scope": "corpus",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    return save_run(folder, trained, card)


def final_model(cfg: Config, ds: Dataset | None = None, base=None, show_progress: bool = True) -> TrainedModel:
    """The model notebooks 05-07 evaluate and ship, and ``workbook run`` trains by default: the final training
    (:func:`~workbook.train.recipes.final_training` through :func:`~workbook.train.cards.load_or_train`), then, when
    the dataset has lookalike groups, :func:`sibling_stage` on it; without groups, the final training as it is.

    Args:
        ds: the case study (loaded when ``None``).
        base: the base SentenceTransformer (``cfg.base_model`` when ``None``).

    Returns:
        The :class:`TrainedModel` (loaded from its saved folders when both stages are saved).
    """
    from workbook.icd10cm import load_icd10cm  # only when no dataset is given: the case study is the default

    ds = ds or load_icd10cm(cfg)
    base = base or load_model(cfg.base_model, cfg)
    first = load_or_train(cfg, ds=ds, base=base, show_progress=show_progress)
    if not ds.extras.get("lookalikes"):
        return first
    return sibling_stage(cfg, ds, first, base, show_progress=show_progress)
