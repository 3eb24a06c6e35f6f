"""Fine-tuning recipes and the loss registry: one entry each; LoRA adapters added and merged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """One fine-tuning recipe: loss, adapter, batch and optimiser settings.

    Attributes:
        name: label for tables and folders.
        loss: a :data:`LOSSES` name: ``"mnrl"``, ``"cached-mnrl"``, ``"matryoshka"``, ``"mnrl-hard"`` (MNRL that
            up-weights the explicit hard negatives by their own similarity) or ``"gist"`` (GISTEmbed: a frozen copy
            of the starting model drops every in-batch negative it scores above the positive) or ``"margin-mse"``
            (GPL: regress the score margin on a cross-encoder's, the rows' ``label`` column; see
            :mod:`workbook.train.gpl`).
        lora: train a LoRA adapter only (``lora_r``, ``lora_alpha``, ``lora_dropout``) instead of every weight.
        num_negatives: mined hard negatives per row (0: in-batch negatives only).
        batch_size: rows per optimiser step (for ``cached-mnrl``: the large batch, split into ``mini_batch_size``).
        learning_rate: peak learning rate (linear warm-up over ``warmup_ratio`` of the steps, then linear decay).
        epochs: passes over the training rows.
        matryoshka_dims: dimensions trained by ``matryoshka`` (the first is the full size).
        hardness_strength: ``mnrl-hard``'s weight on a hard negative's (detached) similarity inside the softmax
            (5 as in EmbeddingGemma's recipe).
    """

    name: str = "mnrl"
    loss: str = "mnrl"
    lora: bool = False
    num_negatives: int = 1
    batch_size: int = 32
    mini_batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    epochs: float = 1.0
    matryoshka_dims: tuple[int, ...] = (384, 256, 128, 64)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    hardness_strength: float = 5.0

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"recipe {self.name!r}: loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.loss == "gist" and self.num_negatives > 1:  # GISTEmbedLoss raises "Expected 2 or 3 embeddings"
            raise ValueError(f"recipe {self.name!r}: the gist loss takes at most one negative per row "
                             f"(sentence-transformers' GISTEmbedLoss), got num_negatives={self.num_negatives}")


@dataclass(frozen=True)
class Loss:
    """One entry of the loss registry (:data:`LOSSES`).

    Attributes:
        build: ``build(model, recipe, mini_batch_size)`` -> the sentence-transformers loss; ``mini_batch_size`` is
            set when the memory plan asks for gradient caching (see :func:`build_loss`).
        caches_gradients: the loss itself splits each batch into ``recipe.mini_batch_size`` mini-batches.
        needs_labels: the rows need a ``label`` column (a teacher's scores, :func:`workbook.train.pseudo_labels`).
    """

    build: Callable[[object, Recipe, int | None], object]
    caches_gradients: bool = False
    needs_labels: bool = False


def _ranking_loss(model, mini_batch_size: int | None, **kwargs):
    """MNRL, or its gradient-caching twin (the same gradients, bounded activation memory) when given a mini-batch."""
    # sentence-transformers (and torch under it) load in seconds: imported where a loss is built, not on import
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    if mini_batch_size is None:
        return MultipleNegativesRankingLoss(model, **kwargs)
    return CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini_batch_size, **kwargs)


def _mnrl_hard(model, recipe: Recipe, mini_batch_size: int | None):
    """MNRL with hardness weighting on the explicit hard negatives only (``hardness_mode="hard_negatives"``)."""
    return _ranking_loss(model, mini_batch_size, hardness_mode="hard_negatives",
                         hardness_strength=recipe.hardness_strength)


def _gist(model, recipe: Recipe, mini_batch_size: int | None):
    """GISTEmbed with a frozen copy of the model as it is before training as the guide (cached when asked)."""
    import copy

    from sentence_transformers.sentence_transformer.losses import CachedGISTEmbedLoss, GISTEmbedLoss

    guide = copy.deepcopy(model).eval()
    for p in guide.parameters():
        p.requires_grad_(False)
    if mini_batch_size is None:
        return GISTEmbedLoss(model, guide=guide)
    return CachedGISTEmbedLoss(model, guide=guide, mini_batch_size=mini_batch_size)


def _cached_mnrl(model, recipe: Recipe, mini_batch_size: int | None):
    """GradCache MNRL in the recipe's mini-batches, or the memory plan's when those are smaller."""
    return _ranking_loss(model, min(recipe.mini_batch_size, mini_batch_size or recipe.mini_batch_size))


def _matryoshka(model, recipe: Recipe, mini_batch_size: int | None):
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    return MatryoshkaLoss(model, _ranking_loss(model, mini_batch_size), matryoshka_dims=list(recipe.matryoshka_dims))


def _margin_mse(model, recipe: Recipe, mini_batch_size: int | None):
    """MarginMSE (GPL): the model's score margin positive minus negative regressed on the rows' ``label`` margins."""
    from sentence_transformers.sentence_transformer.losses import MarginMSELoss

    return MarginMSELoss(model)


#: The losses a recipe can name. A new loss is one entry here; a new recipe is one entry of :data:`RECIPES`.
LOSSES: dict[str, Loss] = {
    "mnrl": Loss(lambda model, recipe, mini: _ranking_loss(model, mini)),
    "cached-mnrl": Loss(_cached_mnrl, caches_gradients=True),
    "matryoshka": Loss(_matryoshka),
    "mnrl-hard": Loss(_mnrl_hard),
    "gist": Loss(_gist),
    "margin-mse": Loss(_margin_mse, needs_labels=True),
}

RECIPES = {
    "mnrl": Recipe(),
    "cached-mnrl": Recipe(name="cached-mnrl", loss="cached-mnrl", batch_size=128, mini_batch_size=32),
    "matryoshka": Recipe(name="matryoshka", loss="matryoshka"),
    "lora": Recipe(name="lora", lora=True, learning_rate=1e-3),
}
#: The recipe and data source notebook 05 picks from the full-mode comparison on dev (see its table).
DEFAULT_RECIPE = "mnrl"
DEFAULT_SOURCE = "real"
#: Where the final training rows' negatives come from when the dataset has lookalike groups, and how many columns.
#: Chosen on dev in two stages (notebook 05 section 7, ``bench/lookalike.py``): a screen of five variants at 3,000
#: rows picked "both" (the positive's hardest sibling and a mined negative per row) by the rule fixed before the runs;
#: the confirmation at the full budget, that pick against mined negatives only, query by query on dev over the whole
#: corpus, picked "mined" by the same rule (the sibling column lowered the sibling confusion but cost more Recall@10
#: than the rule allows). ``tests/test_lookalike.py`` checks these against ``bench/results/lookalike.json``'s
#: ``full_budget.picked``. Without groups: :data:`DEFAULT_RECIPE` with mined negatives, as here.
DEFAULT_NEGATIVES = "mined"
DEFAULT_NUM_NEGATIVES = 1


def final_training(has_lookalikes: bool) -> tuple[Recipe, str]:
    """The final training's recipe and source of negatives (the first stage of the model notebooks 05-07 and
    ``workbook casestudy`` evaluate and ship; :func:`workbook.train.final_model` adds the sibling stage):
    :data:`DEFAULT_RECIPE`, with :data:`DEFAULT_NEGATIVES` in :data:`DEFAULT_NUM_NEGATIVES` columns when the dataset
    has lookalike groups, else with its mined negatives."""
    from dataclasses import replace

    recipe = get_recipe(DEFAULT_RECIPE)
    if not has_lookalikes:
        return recipe, "mined"
    return replace(recipe, num_negatives=DEFAULT_NUM_NEGATIVES), DEFAULT_NEGATIVES


def get_recipe(recipe: str | Recipe) -> Recipe:
    """A :class:`Recipe` by name (see :data:`RECIPES`), or the recipe itself."""
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise KeyError(f"unknown recipe {recipe!r}; known: {sorted(RECIPES)}")
    return RECIPES[recipe]


def build_loss(model, recipe: Recipe, mini_batch_size: int | None = None):
    """The recipe's loss, built by its :data:`LOSSES` entry (``sentence_transformers.sentence_transformer.losses``).

    Args:
        model: the model being trained.
        recipe: the recipe.
        mini_batch_size: when set, the in-batch ranking loss caches gradients in mini-batches of this many sequences
            (``CachedMultipleNegativesRankingLoss``: the same gradients as MNRL at bounded activation memory).
    """
    return LOSSES[recipe.loss].build(model, recipe, mini_batch_size)


def _add_lora(model, recipe: Recipe) -> None:
    from peft import LoraConfig, TaskType

    config = LoraConfig(
        task_type=TaskType.FEATURE_EXTRACTION,
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules=["query", "key", "value", "dense"],
    )
    model.add_adapter(config)


def _merge_lora(model) -> None:
    """Merge the trained LoRA adapter into the base weights and remove it, in place.

    The adapter was added through transformers' peft integration (``add_adapter``), which has no merge; peft's own
    ``merge_and_unload`` lives on ``PeftModel``, which this model is not. So: merge each LoRA layer, then put its base
    layer back in its place (what ``merge_and_unload`` does internally). The one private name it touches,
    transformers' ``_hf_peft_config_loaded``, is checked by ``tests/test_train.py``, which fails if it moves.
    """
    from peft.tuners.lora import LoraLayer

    auto = model.transformers_model
    for name, module in list(auto.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(auto.get_submodule(parent) if parent else auto, child, module.get_base_layer())
    if hasattr(auto, "peft_config"):
        del auto.peft_config
    auto._hf_peft_config_loaded = False


def trainable_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
