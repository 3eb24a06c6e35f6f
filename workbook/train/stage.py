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

from workbook.cards import CARD_FILE
from workbook.config import Config
from workbook.data import Dataset
from workbook.retrieval import model_fingerprint
from workbook.train.cards import load_saved_run, save_run
from workbook.train.recipes import Recipe
from workbook.train.rows import data_hash, sample_rows
from workbook.train.run import TrainedModel, fine_tune

#: The stage's recipe: MNRL over (query, positive, hardest sibling, mined negative), one pass of 3,000 rows. Its
#: learning rate was chosen on dev (whole corpus) among 1e-5, 3e-5 and 5e-5 by the lookalike pick rule (lowest
#: sibling confusion@10 within a point of the starting model's Recall@10): 5e-5, the first stage's own rate.
SIBLING_STAGE = Recipe(name="sibling-stage", loss="mnrl", num_negatives=2, learning_rate=5e-5, epochs=1)
#: Rows the stage trains on (a seeded sample of the training rows that have a sibling): 94 steps of 32.
SIBLING_STAGE_ROWS = 3000


def sibling_rows(cfg: Config, ds: Dataset, model, base, max_rows: int | None = SIBLING_STAGE_ROWS):
    """The stage's rows: training pairs whose positive has a usable sibling, as ``anchor, positive, negative_1``
    (the sibling ``model`` scores highest) ``, negative_2`` (a mined negative), seeded sample of ``max_rows``.

    Args:
        model: the model the stage starts from: it orders each positive's siblings.
        base: the base model notebook 03 mined the training set with (its cached set is reused).

    Returns:
        (``datasets.Dataset``, :class:`~workbook.negatives.lookalike.MixStats` of all sibling rows before sampling).
    """
    from workbook.negatives import load_or_mine_training_set
    from workbook.negatives.lookalike import lookalike_negatives, mix_negatives

    if not ds.extras.get("lookalikes"):
        raise ValueError(f"{ds.name}: the sibling stage needs lookalike groups (lookalikes.jsonl); it has none")
    rows = load_or_mine_training_set(cfg, ds, base, with_ids=True)
    pairs = list(zip(rows["query_id"], rows["positive_id"], strict=True))
    look = lookalike_negatives(ds, pairs, model, ds.extras["lookalikes"], cfg.cache_dir / "embeddings")
    keep = [i for i, pair in enumerate(pairs) if look.get(pair)]
    data, stats = mix_negatives(rows.select(keep), ds, look, "both", SIBLING_STAGE.num_negatives)
    return sample_rows(data, max_rows, cfg.seed), stats


def sibling_stage(
    cfg: Config,
    ds: Dataset,
    start: TrainedModel,
    base,
    recipe: Recipe = SIBLING_STAGE,
    max_rows: int | None = SIBLING_STAGE_ROWS,
    show_progress: bool = True,
) -> TrainedModel:
    """``start``'s model tuned again on :func:`sibling_rows`: loaded when this exact stage is saved, else trained.

    The folder is keyed on the recipe, the rows' hash, the seed and ``start``'s weights, beside ``start``'s folder
    (``<start>-sibling-stage-<key>``); the card names the run it started from.

    Args:
        start: the trained model to start from (e.g. ``load_or_train(cfg)``, the final training).
        base: the base model (its mined training set is reused for the mined negative column).
        recipe: the stage's recipe (:data:`SIBLING_STAGE`).
        max_rows: rows trained on (:data:`SIBLING_STAGE_ROWS`).

    Returns:
        The :class:`TrainedModel`; no dev metrics in its card (compare with ``full_budget_comparison``).
    """
    data, stats = sibling_rows(cfg, ds, start.model, base, max_rows)
    digest, start_fp = data_hash(data), model_fingerprint(start.model)
    key = hashlib.sha256(json.dumps([asdict(recipe), max_rows, cfg.seed, start_fp, digest]).encode()).hexdigest()[:10]
    folder = start.path.parent.with_name(f"{start.path.parent.name}-{recipe.name}-{key}")
    if (folder / "model" / CARD_FILE).is_file():
        return load_saved_run(folder)
    trained = fine_tune(cfg, start.model, data, folder, recipe, show_progress=show_progress)
    card = {
        "name": folder.name,
        "started_from": start.path.parent.name,
        "start_model_fingerprint": start_fp,
        "model_fingerprint": model_fingerprint(trained.model),
        "base_model": cfg.base_model,
        "dataset": ds.name,
        "data": {"rows": len(data), "sha256": digest, "columns": data.column_names, "negatives": "sibling + mined",
                 "sibling_rows_before_sampling": asdict(stats)},  # fmt: skip
        "seed": cfg.seed,
        "mode": cfg.mode,
        **trained.card,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    return save_run(folder, trained, card)
