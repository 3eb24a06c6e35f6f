"""Contrastive fine-tuning of the base embedding model with sentence-transformers' trainer (v3+ API).

Recipes (:data:`RECIPES`), all on (query, relevant doc, hard negative) rows:

- ``mnrl`` — ``MultipleNegativesRankingLoss``: each query must score its own doc above its mined hard negative and
  above every other doc in the batch. Batches come from the ``NO_DUPLICATES`` sampler: a text never appears twice in
  one batch, so two queries of the same code cannot make each other's positive a (false) in-batch negative.
- ``cached-mnrl`` — ``CachedMultipleNegativesRankingLoss`` (GradCache): a 4x larger batch, so 4x more in-batch
  negatives, at the activation memory of a small mini-batch; costs an extra forward pass.
- ``matryoshka`` — ``MatryoshkaLoss`` over MNRL at 384/256/128/64 dims: embeddings that still work when truncated.
- ``lora`` — MNRL training only a LoRA adapter (peft) on the attention projections; merged into the weights when
  saved, so the result loads and serves like any other model.

Two more losses for hard negatives (:data:`LOSSES`): ``mnrl-hard`` (MNRL that weights each explicit hard negative by
its detached similarity) and ``gist`` (``GISTEmbedLoss`` guided by a frozen copy of the starting model); and
``margin-mse`` for GPL-style pseudo-labels on synthetic rows (:mod:`workbook.train.gpl`).

Data sources: ``real`` (the train split's human queries: the "production logs" case), ``synthetic`` (notebook 04's
generated queries) and ``both``. Hard negatives come from notebook 03's miner (:mod:`workbook.negatives`), the
positive's curated lookalikes, or both (``negatives=``; :mod:`workbook.negatives.lookalike`).

Each run keeps checkpoints, evaluates on dev while training (best checkpoint kept), resumes from its last checkpoint
when interrupted, and saves the final model with ``workbook_card.json`` (base model, data hash, recipe, dev metrics).

Modules:

- :mod:`workbook.train.recipes` — recipes, the loss registry, LoRA
- :mod:`workbook.train.rows` — training rows and their sources
- :mod:`workbook.train.devsets` — dev scoring during and after training
- :mod:`workbook.train.run` — one fine-tuning run
- :mod:`workbook.train.lookalike` — lookalike-aware runs compared on dev, and the pick rule
- :mod:`workbook.train.stage` — a short second stage on lookalike siblings, from a trained model
- :mod:`workbook.train.gpl` — GPL-style pseudo-labels (a cross-encoder's margins) for MarginMSE
- :mod:`workbook.train.cards` — the trained-model cache (load_or_train) and its card (:mod:`workbook.cards`)
"""
from __future__ import annotations

from workbook.train.cards import (  # noqa: F401
    CARD_FILE,
    load_or_train,
    read_card,
    run_dir,
    write_card,
)
from workbook.train.devsets import (  # noqa: F401
    candidate_dev_metrics,
    candidate_dev_results,
    dev_candidates,
    dev_evaluator,
    full_dev_metrics,
    pool_scorer,
)
from workbook.train.gpl import GPL_RECIPE, pseudo_labels  # noqa: F401

# Every public name of the submodules, so `from workbook.train import load_or_train` keeps working.
from workbook.train.lookalike import (  # noqa: F401
    LOOKALIKE_VARIANTS,
    PICK_RULE,
    RECALL_SLACK,
    Variant,
    full_budget_candidate,
    full_budget_challenger,
    full_budget_comparison,
    get_variant,
    lookalike_dev_metrics,
    pick_lookalike_variant,
)
from workbook.train.recipes import (  # noqa: F401
    DEFAULT_NEGATIVES,
    DEFAULT_NUM_NEGATIVES,
    DEFAULT_RECIPE,
    DEFAULT_SOURCE,
    LOSSES,
    RECIPES,
    Loss,
    Recipe,
    _merge_lora,
    build_loss,
    final_training,
    get_recipe,
    trainable_parameters,
)
from workbook.train.rows import (  # noqa: F401
    SOURCES,
    data_hash,
    sample_rows,
    synthetic_dataset,
    synthetic_training_set_path,
    training_data,
    training_data_with_stats,
)
from workbook.train.run import (  # noqa: F401
    TrainedModel,
    fine_tune,
    length_chunked,
    planned_steps,
    training_arguments,
)
from workbook.train.stage import SIBLING_STAGE, final_model, sibling_rows, sibling_stage  # noqa: F401
