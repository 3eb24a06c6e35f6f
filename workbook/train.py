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

Data sources: ``real`` (the train split's human queries: the "production logs" case), ``synthetic`` (notebook 04's
generated queries) and ``both``. Hard negatives come from notebook 03's miner (:mod:`workbook.negatives`).

Each run keeps checkpoints, evaluates on dev while training (best checkpoint kept), resumes from its last checkpoint
when interrupted, and saves the final model with ``workbook_card.json`` (base model, data hash, recipe, dev metrics).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbook.config import Config, seed_everything
from workbook.data import Dataset, _atomic_write
from workbook.memory import plan_training_memory

CARD_FILE = "workbook_card.json"
SOURCES = ("real", "synthetic", "both")


@dataclass(frozen=True)
class Recipe:
    """One fine-tuning recipe: loss, adapter, batch and optimiser settings.

    Attributes:
        name: label for tables and folders.
        loss: ``"mnrl"``, ``"cached-mnrl"`` or ``"matryoshka"``.
        lora: train a LoRA adapter only (``lora_r``, ``lora_alpha``, ``lora_dropout``) instead of every weight.
        num_negatives: mined hard negatives per row (0: in-batch negatives only).
        batch_size: rows per optimiser step (for ``cached-mnrl``: the large batch, split into ``mini_batch_size``).
        learning_rate: peak learning rate (linear warm-up over ``warmup_ratio`` of the steps, then linear decay).
        epochs: passes over the training rows.
        matryoshka_dims: dimensions trained by ``matryoshka`` (the first is the full size).
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

    def __post_init__(self):
        if self.loss not in {"mnrl", "cached-mnrl", "matryoshka"}:
            raise ValueError(f"recipe {self.name!r}: loss must be mnrl, cached-mnrl or matryoshka, got {self.loss!r}")


RECIPES = {
    "mnrl": Recipe(),
    "cached-mnrl": Recipe(name="cached-mnrl", loss="cached-mnrl", batch_size=128, mini_batch_size=32),
    "matryoshka": Recipe(name="matryoshka", loss="matryoshka"),
    "lora": Recipe(name="lora", lora=True, learning_rate=1e-3),
}
#: The recipe and data source notebook 05 picks from the full-mode comparison on dev (see its table).
DEFAULT_RECIPE = "mnrl"
DEFAULT_SOURCE = "real"


@dataclass
class TrainedModel:
    """A fine-tuned model: the loaded model, its saved folder and its card."""

    model: object
    path: Path
    card: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


def get_recipe(recipe: str | Recipe) -> Recipe:
    """A :class:`Recipe` by name (see :data:`RECIPES`), or the recipe itself."""
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise KeyError(f"unknown recipe {recipe!r}; known: {sorted(RECIPES)}")
    return RECIPES[recipe]


# ------------------------------------------------------------------------------------------------ training data


def synthetic_dataset(ds: Dataset, pairs: Sequence[tuple[str, str]]) -> Dataset:
    """The case study's corpus with the synthetic (query, doc id) pairs as its ``train`` split.

    Identical query texts are merged into one query relevant to each of their docs (as the case study merges terms).
    """
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    by_text: dict[str, str] = {}
    for text, doc in pairs:
        if doc not in ds.corpus:
            raise KeyError(f"synthetic pair ({text!r}, {doc!r}): doc {doc!r} is not in the corpus of {ds.name}")
        qid = by_text.setdefault(text, f"syn{len(by_text):06d}")
        queries[qid] = text
        qrels.setdefault(qid, {})[doc] = 1
    return Dataset(corpus=ds.corpus, queries=queries, qrels={"train": qrels}, name=f"{ds.name}-synthetic")


def synthetic_training_set_path(cfg: Config) -> Path:
    """Where the synthetic source's mined rows are saved: beside notebook 03's set, ``<mode>-synthetic.jsonl``."""
    from workbook.negatives import training_set_path

    return training_set_path(cfg).with_name(f"{cfg.mode}-synthetic.jsonl")


def training_data(
    cfg: Config,
    ds: Dataset,
    model,
    source: str = "real",
    num_negatives: int = 1,
    synthetic_pairs: Sequence[tuple[str, str]] | None = None,
):
    """Training rows ``anchor, positive, negative_1..N`` for a data source, with hard negatives mined by the base
    ``model`` (notebook 03's settings, known false negatives excluded; cached under ``artifacts/negatives``).

    Args:
        source: ``"real"`` (train-split queries), ``"synthetic"`` (notebook 04's pairs) or ``"both"``.
        num_negatives: hard negatives kept per row (at most the 5 mined).
        synthetic_pairs: (query text, doc id) pairs to use as the synthetic source; ``None`` loads the case study's
            cached set (:func:`workbook.synth.load_synthetic_pairs`).

    Returns:
        A ``datasets.Dataset``; for ``both``, the real rows then the synthetic rows.
    """
    import datasets

    from workbook.negatives import load_or_mine_training_set

    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    parts = []
    if source in {"real", "both"}:
        parts.append(load_or_mine_training_set(cfg, ds, model))
    if source in {"synthetic", "both"}:
        if synthetic_pairs is None:
            from workbook.synth import load_synthetic_pairs

            synthetic_pairs = load_synthetic_pairs(cfg, ds)
        syn = synthetic_dataset(ds, synthetic_pairs)
        parts.append(load_or_mine_training_set(cfg, syn, model, path=synthetic_training_set_path(cfg)))
    columns = ["anchor", "positive"] + [f"negative_{i}" for i in range(1, num_negatives + 1)]
    parts = [p.select_columns(columns) for p in parts]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def sample_rows(data, max_rows: int | None, seed: int):
    """A seeded sample of at most ``max_rows`` rows (all rows, in order, when ``None`` or not fewer)."""
    if max_rows is None or len(data) <= max_rows:
        return data
    return data.shuffle(seed=seed).select(range(max_rows))


def data_hash(data) -> str:
    """SHA-256 of the training rows (every column, in order): the card's record of what the model saw."""
    digest = hashlib.sha256()
    for row in data:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ dev evaluation


def dev_candidates(cfg: Config, ds: Dataset, model, split: str = "dev", n: int | None = None) -> list[str]:
    """Doc ids of the in-training dev corpus: every gold doc of ``split`` plus, per query, the base ``model``'s and
    BM25's top ``n`` (``cfg.dev_eval_candidates``).

    Encoding 74,714 docs at every evaluation would cost minutes on CPU; the candidates keep what matters for ranking
    (the gold docs and the distractors a retriever actually confuses them with). Final dev numbers use the full corpus.
    """
    from workbook.retrieval import BM25Index, bm25_ranking, dense_ranking

    n = n or cfg.dev_eval_candidates
    keep = {d for docs in ds.qrels[split].values() for d, s in docs.items() if s > 0}
    dense = dense_ranking(model, ds, split, k=n, cache_dir=cfg.cache_dir / "embeddings", show_progress=False)
    lexical = bm25_ranking(ds, split, k=n, index=BM25Index.from_dataset(ds))
    for run in (dense, lexical):
        for docs in run.values():
            keep.update(docs)
    return [d for d in ds.doc_ids() if d in keep]


def dev_evaluator(cfg: Config, ds: Dataset, model, split: str = "dev", name: str = "dev"):
    """sentence-transformers' ``InformationRetrievalEvaluator`` over ``split`` on :func:`dev_candidates`."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    docs = dev_candidates(cfg, ds, model, split)
    return InformationRetrievalEvaluator(
        queries=ds.split_queries(split),
        corpus={d: ds.doc_text(d) for d in docs},
        relevant_docs=ds.relevant(split),
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[1, 10],
        precision_recall_at_k=[10],
        map_at_k=[100],
        batch_size=cfg.batch_size,
        name=name,
        write_csv=False,
    )


def full_dev_metrics(cfg: Config, ds: Dataset, model, split: str = "dev") -> dict[str, float]:
    """Recall@1/10/100, MRR@10 and nDCG@10 on ``split`` over the whole corpus (corpus embeddings cached)."""
    from workbook.evaluate import evaluate_ranking
    from workbook.retrieval import dense_ranking

    ranked = dense_ranking(model, ds, split, k=cfg.top_k, cache_dir=cfg.cache_dir / "embeddings", show_progress=False)
    res = evaluate_ranking(ranked, ds.qrels[split], ["recall@1", "recall@10", "recall@100", "mrr@10", "ndcg@10"])
    return {k: round(float(v), 4) for k, v in res.summary().items()}


# ------------------------------------------------------------------------------------------------ training


def candidate_dev_metrics(
    cfg: Config, ds: Dataset, model, split: str = "dev", base=None, docs: Sequence[str] | None = None
) -> dict[str, float]:
    """The metrics of :func:`full_dev_metrics`, over :func:`dev_candidates` (chosen by ``base``) instead of the corpus.

    About a quarter of the full corpus in the case study, so four times cheaper to encode: for comparing many runs on
    one footing (every run and the base scored on the same candidates). Absolute values are higher than over the whole
    corpus, because the distractors are fewer.
    """
    from workbook.evaluate import evaluate_ranking
    from workbook.models import load_model
    from workbook.retrieval import DenseIndex, encode, encode_cached

    if docs is None:
        docs = dev_candidates(cfg, ds, base or load_model(cfg.base_model, cfg), split)
    doc_emb = encode_cached(model, [ds.doc_text(d) for d in docs], cfg.cache_dir / "embeddings", show_progress=False)
    query_ids = sorted(ds.qrels[split])
    q_emb = encode(model, [ds.queries[q] for q in query_ids], show_progress=False)
    ranked = DenseIndex(doc_emb, docs).ranked(query_ids, q_emb, cfg.top_k)
    res = evaluate_ranking(ranked, ds.qrels[split], ["recall@1", "recall@10", "recall@100", "mrr@10", "ndcg@10"])
    return {k: round(float(v), 4) for k, v in res.summary().items()}


def _dev_metrics(cfg: Config, ds: Dataset, model, split: str, scope: str, base) -> tuple[dict[str, float], str]:
    """Dev metrics of ``model`` and a sentence saying over what they were computed."""
    if scope == "candidates":
        docs = dev_candidates(cfg, ds, base, split)
        n = len(docs)
        return candidate_dev_metrics(cfg, ds, model, split, docs=docs), (
            f"{ds.name} {split} split, {n} candidate docs (gold + base model's and BM25's top "
            f"{cfg.dev_eval_candidates}), exact cosine"
        )
    scope = f"{ds.name} {split} split, whole corpus ({len(ds.corpus)} docs), exact cosine"
    return full_dev_metrics(cfg, ds, model, split), scope


def build_loss(model, recipe: Recipe, mini_batch_size: int | None = None):
    """The recipe's loss (current import paths: ``sentence_transformers.sentence_transformer.losses``).

    Args:
        model: the model being trained.
        recipe: the recipe.
        mini_batch_size: when set, the in-batch ranking loss caches gradients in mini-batches of this many sequences
            (``CachedMultipleNegativesRankingLoss``: the same gradients as MNRL at bounded activation memory).
    """
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )

    if recipe.loss == "cached-mnrl" or mini_batch_size is not None:
        sizes = [recipe.mini_batch_size] if recipe.loss == "cached-mnrl" else []
        sizes += [mini_batch_size] if mini_batch_size is not None else []
        base = CachedMultipleNegativesRankingLoss(model, mini_batch_size=min(sizes))
        return MatryoshkaLoss(model, base, matryoshka_dims=list(recipe.matryoshka_dims)) \
            if recipe.loss == "matryoshka" else base  # fmt: skip
    base = MultipleNegativesRankingLoss(model)
    if recipe.loss == "matryoshka":
        return MatryoshkaLoss(model, base, matryoshka_dims=list(recipe.matryoshka_dims))
    return base


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
    layer back in its place (what ``merge_and_unload`` does internally).
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
        evaluator: a sentence-transformers evaluator run every ``eval_steps`` (e.g. :func:`dev_evaluator`).
        eval_steps: steps between evaluations/checkpoints (default ``cfg.train_eval_steps``).
        max_steps: stop after this many steps (``-1``: ``recipe.epochs`` epochs).
        callbacks: extra ``transformers.TrainerCallback`` objects.

    Returns:
        The trained model (best checkpoint when an evaluator was given), its folder and the training log.
    """
    import copy

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
    columns = {c: list(train_data[c]) for c in train_data.column_names}
    cached = recipe.mini_batch_size if recipe.loss == "cached-mnrl" else None
    memory_plan = plan_training_memory(model, columns, recipe.batch_size, cfg.train_memory_mb, cached)
    args = training_arguments(cfg, recipe, ckpt_dir, eval_steps, evaluator, max_steps, show_progress)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        loss=build_loss(model, recipe, memory_plan["mini_batch"]),
        evaluator=evaluator,
        callbacks=list(callbacks),
    )
    resume = any(ckpt_dir.glob("checkpoint-*"))
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
    }
    return TrainedModel(model=model, path=final, card=card, history=list(state.log_history))


# ------------------------------------------------------------------------------------------------ cards and caching


def write_card(path: str | Path, card: dict) -> Path:
    """Write ``workbook_card.json`` into a saved model folder (atomically)."""
    target = Path(path) / CARD_FILE
    _atomic_write(target, json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    return target


def read_card(path: str | Path) -> dict:
    """The ``workbook_card.json`` of a saved model folder.

    Raises:
        FileNotFoundError: naming the folder when it has no card.
    """
    target = Path(path) / CARD_FILE
    if not target.is_file():
        raise FileNotFoundError(f"{target}: no model card; is this a folder saved by workbook.train?")
    return json.loads(target.read_text(encoding="utf-8"))


def _versions() -> dict[str, str]:
    import sentence_transformers
    import torch
    import transformers

    return {"sentence-transformers": sentence_transformers.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__}  # fmt: skip


def run_dir(cfg: Config, recipe: Recipe, source: str, max_rows: int | None, key: str) -> Path:
    """``artifacts/models/<mode>/<recipe>-<source>[-<rows>]-<key>``: one folder per distinct training run."""
    rows = "" if max_rows is None else f"-{max_rows}"
    return cfg.artifacts_dir / "models" / cfg.mode / f"{recipe.name}-{source}{rows}-{key}"


def load_or_train(
    cfg: Config,
    recipe: str | Recipe = DEFAULT_RECIPE,
    source: str = DEFAULT_SOURCE,
    max_rows: int | None | str = "auto",
    ds: Dataset | None = None,
    base=None,
    show_progress: bool = True,
    synthetic_pairs: Sequence[tuple[str, str]] | None = None,
    dev_split: str | None = "dev",
    dev_scope: str = "corpus",
) -> TrainedModel:
    """The fine-tuned model for (recipe, data source, rows): loaded when this exact run is saved, else trained.

    The run folder is keyed on the recipe, the data source, the row budget, the seed, the base model's weights and
    the hash of the training rows, so a change to any of them trains a new model; an interrupted run resumes from
    its last checkpoint.

    Args:
        cfg: the run config.
        recipe: a name from :data:`RECIPES` or a :class:`Recipe`.
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

    Returns:
        The :class:`TrainedModel`; ``card`` holds base model, data hash, recipe, timings and full-corpus dev metrics.
    """
    from sentence_transformers import SentenceTransformer

    from workbook.icd10cm import load_icd10cm
    from workbook.models import load_model
    from workbook.retrieval import model_fingerprint

    recipe = get_recipe(recipe)
    ds = ds or load_icd10cm(cfg)
    base = base or load_model(cfg.base_model, cfg)
    rows = cfg.train_max_rows if max_rows == "auto" else max_rows
    data = training_data(cfg, ds, base, source, recipe.num_negatives, synthetic_pairs=synthetic_pairs)
    data = sample_rows(data, rows, cfg.seed)
    digest = data_hash(data)
    base_fp = model_fingerprint(base)
    key_src = json.dumps([asdict(recipe), source, rows, cfg.seed, base_fp, digest], sort_keys=True)
    folder = run_dir(cfg, recipe, source, rows, hashlib.sha256(key_src.encode()).hexdigest()[:10])
    final = folder / "model"
    if dev_scope not in ("corpus", "candidates"):
        raise ValueError(f"dev_scope must be 'corpus' or 'candidates', not {dev_scope!r}")
    dev_split = dev_split if dev_split in ds.qrels else None
    if (final / CARD_FILE).is_file():
        model = SentenceTransformer(str(final), local_files_only=True)
        log = folder / "log_history.json"
        history = json.loads(log.read_text(encoding="utf-8")) if log.is_file() else []
        card = read_card(final)
        first = [card.get("dev_metrics", {}), card.get("dev_metrics_scope", "")]
        scored = card.setdefault("dev_scores", {card.get("dev_scope", "corpus"): first})
        if dev_split and dev_scope not in scored:  # scored once per scope, then kept in the card
            scored[dev_scope] = list(_dev_metrics(cfg, ds, model, dev_split, dev_scope, base))
            write_card(final, card)
        if dev_split:
            card.update(dev_metrics=scored[dev_scope][0], dev_metrics_scope=scored[dev_scope][1], dev_scope=dev_scope)
        return TrainedModel(model=model, path=final, card=card, history=history)
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
        "data": {"source": source, "rows": len(data), "sha256": digest, "columns": data.column_names},
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
    _atomic_write(folder / "log_history.json", json.dumps(trained.history, indent=1) + "\n")
    write_card(final, card)  # written last: a folder with a card is a finished run
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # the best one is the saved model now
    return dataclasses.replace(trained, card=card)
