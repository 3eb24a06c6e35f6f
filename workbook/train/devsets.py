"""Dev-split scoring while and after training: candidate pools, the evaluator, whole-corpus metrics."""

from __future__ import annotations

from collections.abc import Sequence

from workbook.config import Config
from workbook.data import Dataset
from workbook.evaluate import evaluate_ranking
from workbook.models import load_model
from workbook.retrieval import BM25Index, DenseIndex, bm25_ranking, dense_ranking, encode, encode_cached

# ------------------------------------------------------------------------------------------------ dev evaluation


def dev_candidates(cfg: Config, ds: Dataset, model, split: str = "dev", n: int | None = None) -> list[str]:
    """Doc ids of the in-training dev corpus: every gold doc of ``split`` and its lookalike siblings (when the
    dataset has ``extras["lookalikes"]``), plus, per query, the base ``model``'s and BM25's top ``n``
    (``cfg.dev_eval_candidates``).

    Encoding 74,714 docs at every evaluation would cost minutes on CPU; the candidates keep what matters for ranking
    (the gold docs and the distractors a retriever actually confuses them with, siblings included, so the sibling
    confusion can be measured on them). Final dev numbers use the full corpus.

    Args:
        model: one model, or several (e.g. both ends of a weight interpolation): each adds its own top ``n``.

    Returns:
        The doc ids, in corpus order.
    """
    from workbook.diagnose.collapse import sibling_map

    n = n or cfg.dev_eval_candidates
    keep = {d for docs in ds.qrels[split].values() for d, s in docs.items() if s > 0}
    siblings = sibling_map(ds.extras.get("lookalikes", []))
    keep |= {s for d in list(keep) for s in siblings.get(d, ())}
    models = list(model) if isinstance(model, list | tuple) else [model]
    runs = [dense_ranking(m, ds, split, k=n, cache_dir=cfg.cache_dir / "embeddings", show_progress=False)
            for m in models]
    runs.append(bm25_ranking(ds, split, k=n, index=BM25Index.from_dataset(ds)))
    for run in runs:
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
    ranked = dense_ranking(model, ds, split, k=cfg.top_k, cache_dir=cfg.cache_dir / "embeddings", show_progress=False)
    res = evaluate_ranking(ranked, ds.qrels[split], ["recall@1", "recall@10", "recall@100", "mrr@10", "ndcg@10"])
    return {k: round(float(v), 4) for k, v in res.summary().items()}


def candidate_dev_metrics(
    cfg: Config, ds: Dataset, model, split: str = "dev", base=None, docs: Sequence[str] | None = None
) -> dict[str, float]:
    """The metrics of :func:`full_dev_metrics`, over :func:`dev_candidates` (chosen by ``base``) instead of the corpus.

    About a quarter of the full corpus in the case study, so four times cheaper to encode: for comparing many runs on
    one footing (every run and the base scored on the same candidates). Absolute values are higher than over the whole
    corpus, because the distractors are fewer.
    """
    res = candidate_dev_results(cfg, ds, model, split, base, docs)
    return {k: round(float(v), 4) for k, v in res.summary().items()}


def pool_scorer(cfg: Config, ds: Dataset, docs: Sequence[str], metric: str, split: str = "dev", encoded=()):
    """``model -> metric`` on ``split`` over the candidate ``docs`` only (e.g. :func:`dev_candidates` of both ends of a
    weight interpolation): a curve that chooses a ratio on dev encodes the pool at each point, not the corpus.

    Over a pool that holds every gold doc, each gold doc ranks at least as high as over the whole corpus, so recall and
    nDCG are upper bounds of the whole-corpus values, equal for a model whose own top ``n`` is in the pool.

    Args:
        encoded: models whose whole-corpus embeddings are cached anyway (the ends of the curve): their pool rows are
            read from those instead of encoding the pool again.

    Returns:
        The scoring function.
    """
    reuse = {id(m) for m in encoded}

    def score(model) -> float:
        res = candidate_dev_results(cfg, ds, model, split, docs=docs, whole_corpus=id(model) in reuse)
        return float(res.summary()[metric])

    return score


def candidate_dev_results(cfg: Config, ds: Dataset, model, split: str = "dev", base=None,
                          docs: Sequence[str] | None = None, name: str = "run", whole_corpus: bool = False):
    """:func:`candidate_dev_metrics` per query (a :class:`~workbook.evaluate.RetrievalResult` named ``name``), for
    confidence intervals (:func:`workbook.evaluate.results_with_ci`) and paired comparisons between runs.

    Args:
        whole_corpus: take the candidates' rows of the model's whole-corpus embeddings (encoded once and cached)
            instead of encoding the candidates: for a model whose corpus is encoded anyway.
    """
    if docs is None:
        docs = dev_candidates(cfg, ds, base or load_model(cfg.base_model, cfg), split)
    cache = cfg.cache_dir / "embeddings"
    if whole_corpus:
        row = {d: i for i, d in enumerate(ds.doc_ids())}
        doc_emb = encode_cached(model, ds.doc_texts(), cache, show_progress=False)[[row[d] for d in docs]]
    else:
        doc_emb = encode_cached(model, [ds.doc_text(d) for d in docs], cache, show_progress=False)
    query_ids = sorted(ds.qrels[split])
    q_emb = encode(model, [ds.queries[q] for q in query_ids], show_progress=False)
    ranked = DenseIndex(doc_emb, docs).ranked(query_ids, q_emb, cfg.top_k)
    return evaluate_ranking(ranked, ds.qrels[split], ["recall@1", "recall@10", "recall@100", "mrr@10", "ndcg@10"],
                            name=name)


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
