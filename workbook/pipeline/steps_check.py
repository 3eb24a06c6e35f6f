"""Steps 01-02: the dataset validated, and the cheap methods (dense, BM25, hybrid, reranker) on dev and test."""

from __future__ import annotations

from pathlib import Path

from workbook.data import Dataset, DatasetError, Problem, dataset_stats, find_leakage, slice_queries
from workbook.evaluate import by_slice, evaluate_ranking, results_table
from workbook.files import write_json
from workbook.models import canonical_name
from workbook.negatives import MiningError, training_pairs
from workbook.pipeline.context import RunContext
from workbook.pipeline.store import frame_to_json
from workbook.retrieval import BM25, Dense, Hybrid, Remembered, Reranked, Retriever, dense_ranking, load_reranker

METRICS = ("recall@1", "recall@10", "recall@100", "precision@10", "mrr@10", "map@100", "ndcg@10")
CI_METRICS = ("recall@10", "ndcg@10", "mrr@10")
GATE_METRIC = "recall@10"


# -- 01 validate ----------------------------------------------------------------------------------------------


def step_validate(ctx: RunContext, out: Path) -> dict:
    """Validate the dataset: loads it (every bad row reported), then checks the pipeline's own needs."""
    ds = ctx.ds
    problems = []
    if "test" not in ds.qrels:
        problems.append(Problem("qrels/test.tsv", None, None, "missing file: a test split is required"))
    elif not any(any(s > 0 for s in docs.values()) for docs in ds.qrels["test"].values()):
        problems.append(Problem("qrels/test.tsv", None, "score", "no test query has a relevant doc (score > 0)"))
    if "train" in ds.qrels:
        try:
            training_pairs(ds, "train")
        except MiningError as exc:
            problems.append(Problem("qrels/train.tsv", None, None, str(exc).replace("\n", " ")))
    leaks = find_leakage(ds)
    if leaks and not ctx.settings.allow_leakage:
        for leak in leaks:
            problems.append(
                Problem("queries.jsonl", None, "text", f"{leak.eval_split} query {leak.eval_query} repeats "
                        f"{leak.train_split} query {leak.train_query} ({leak.text!r}): fix the split or set "
                        "allow_leakage = true")
            )  # fmt: skip
    if problems:
        raise DatasetError(problems)
    stats = dataset_stats(ds)
    train_pairs = sum(1 for docs in ds.qrels.get("train", {}).values() for s in docs.values() if s > 0)
    slices = sorted({s for m in ds.query_meta.values() for s in m.get("slices", [])})
    return {
        "dataset": ds.name,
        "docs": len(ds.corpus),
        "queries": len(ds.queries),
        "dev": ctx.dev,
        "splits": ds.splits,
        "split_queries": {s: len(ds.qrels[s]) for s in ds.splits},
        "train_pairs": train_pairs,
        "leaks": len(leaks),
        "slices": slices,
        "lookalike_groups": len(ds.extras.get("lookalikes", [])),
        "stats": frame_to_json(stats),
    }


# -- 02 baselines ---------------------------------------------------------------------------------------------


def model_label(name: str) -> str:
    """A short label for a model name or folder."""
    return canonical_name(name) or Path(name).name


def eval_splits(ds: Dataset) -> list[str]:
    """The evaluation splits present: dev (when there is one) and test."""
    return [s for s in ("dev", "test") if s in ds.qrels]


#: The reranker baseline's name (as in notebook 02): a cross-encoder over the base model's hybrid top candidates.
RERANKER_METHOD = "reranker (hybrid top-k)"


def baseline_reranker(ctx: RunContext):
    """The reranker baseline's cross-encoder and how it was got, or ``(None, why)``.

    ``cfg.reranker`` when set; else one trained on the train split's pairs with the base model's top-20 candidates as
    hard negatives, exactly as notebook 02 trains it (:func:`workbook.retrieval.load_reranker`, cached under
    ``.cache/rerankers`` keyed on its training data), so the case study reuses the one notebook 02 trained.
    """
    cfg, ds = ctx.cfg, ctx.ds
    if not ctx.settings.rerank_baseline:
        return None, "off (rerank_baseline = false)"
    if cfg.reranker:
        return load_reranker(cfg), f"cfg.reranker {cfg.reranker}"
    if not ds.qrels.get("train"):
        return None, "skipped: no train split to train it on"
    ctx.log("  reranker: train candidates and the cross-encoder (cached after the first run)")
    candidates = dense_ranking(ctx.base, ds, "train", k=20, cache_dir=ctx.emb_cache, show_progress=False)
    n = min(cfg.reranker_train_queries, len(ds.qrels["train"]))
    return load_reranker(cfg, ds, candidates, split="train"), f"trained on a sample of {n} train queries (cached)"


def baseline_retrievers(ctx: RunContext, reranker=None) -> list[Retriever]:
    """The cheap methods, in report order: dense base model(s), BM25, each dense model fused with BM25 (RRF) and,
    when given, the reranker over the base model's hybrid. A baseline is one more :class:`Retriever` here."""
    cfg, ds = ctx.cfg, ctx.ds
    models = [cfg.base_model] + ([cfg.comparator_model] if ctx.settings.comparator else [])
    precision = {cfg.comparator_model: cfg.comparator_precision, cfg.base_model: "fp32"}  # the base model: fp32
    dense = [Remembered(Dense(ctx.model(m, precision[m]), ds, ctx.emb_cache, cfg.batch_size, show_progress=True,
                              name=f"dense {model_label(m)}")) for m in models]  # fmt: skip
    lexical = Remembered(BM25(ds, ctx.bm25()))
    hybrids = [Remembered(Hybrid([d, lexical], name=f"hybrid {model_label(m)}+BM25"))
               for d, m in zip(dense, models, strict=True)]  # fmt: skip
    out: list[Retriever] = [*dense, lexical, *hybrids]
    if reranker is not None:
        out.append(Reranked(reranker, hybrids[0], ds, depth=cfg.rerank_depth, cache_dir=cfg.cache_dir / "rerank",
                            name=RERANKER_METHOD))  # fmt: skip
    return out


def step_baselines(ctx: RunContext, out: Path) -> dict:
    """Every baseline retriever (:func:`baseline_retrievers`) on dev and test; rankings, metrics and slices saved,
    and on dev each method's per-query gate metric and the slices' queries (the gate's inputs)."""
    cfg, ds = ctx.cfg, ctx.ds
    result: dict = {"methods": [], "metrics": {}, "slices": {}, "base_method": f"dense {model_label(cfg.base_model)}"}
    reranker, result["reranker"] = baseline_reranker(ctx)
    retrievers = baseline_retrievers(ctx, reranker)
    for split in eval_splits(ds):
        queries = ds.split_queries(split)
        runs: dict[str, dict[str, list[str]]] = {}
        for retriever in retrievers:
            ctx.log(f"  {split}: {retriever.name}")
            runs[retriever.name] = retriever.rank(queries, cfg.top_k)
        write_json(out / f"rankings_{split}.json", runs)
        results = [evaluate_ranking(r, ds.qrels[split], METRICS, name=n) for n, r in runs.items()]
        result["metrics"][split] = frame_to_json(results_table(results, digits=12))
        slices = slice_queries(ds, split)
        if slices:
            result["slices"][split] = frame_to_json(by_slice(results, slices, metric=GATE_METRIC, digits=12))
        if split == "dev":  # the gate's inputs: per-query values for its CIs, and which queries each slice holds
            per_query = {r.name: r.per_query[GATE_METRIC].to_dict() for r in results}
            write_json(out / "gate_dev.json", {"metric": GATE_METRIC, "slices": slices, "per_query": per_query})
        result["methods"] = list(runs)
    return result
