"""Mining hard negatives with sentence-transformers' ``mine_hard_negatives`` over the whole corpus."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbook.data import Dataset
from workbook.files import atomic_save
from workbook.negatives.known import _KnownIndex
from workbook.negatives.settings import DEFAULT_SETTINGS, MiningSettings, Skip, training_pairs
from workbook.retrieval import encode_cached, model_fingerprint

# ------------------------------------------------------------------------------------------------ mining


@dataclass
class MinedNegatives:
    """The miner's output, by id: one row per (query, positive) pair, negatives best first.

    Attributes:
        rows: ``{"query_id", "positive", "positive_score", "negatives": [doc ids], "scores": [floats]}``.
        settings: the settings used.
        skipped: queries left out (``on_bad="skip"``).
        label_splits: the qrels splits whose judgements filtered the rows (``exclude_known``: the mined split only).
    """

    rows: list[dict]
    settings: MiningSettings
    skipped: list[Skip] = field(default_factory=list)
    label_splits: tuple[str, ...] = ()

    def to_dataset(self, ds: Dataset, num_negatives: int | None = None):
        """The trainer's format: a ``datasets.Dataset`` with ``anchor``, ``positive``, ``negative_1..N``.

        Rows with fewer than N negatives are left out (the n-tuple format needs N in every row).
        """
        import datasets

        n = num_negatives or self.settings.num_negatives
        cols: dict[str, list[str]] = {"anchor": [], "positive": [], **{f"negative_{i}": [] for i in range(1, n + 1)}}
        for row in self.rows:
            if len(row["negatives"]) < n:
                continue
            cols["anchor"].append(ds.queries[row["query_id"]])
            cols["positive"].append(ds.doc_text(row["positive"]))
            for i, neg in enumerate(row["negatives"][:n], start=1):
                cols[f"negative_{i}"].append(ds.doc_text(neg))
        return datasets.Dataset.from_dict(cols)


def _seed_miner_cache(model, corpus: list[str], doc_emb: np.ndarray, folder: Path) -> None:
    """Put already computed corpus embeddings where ``mine_hard_negatives(cache_folder=...)`` looks for them.

    The file name repeats sentence-transformers' own key (model card base name, prompts, corpus). If a later
    version changes that key, it simply encodes again: slower, never wrong. The folder is per model weights, because
    sentence-transformers' key names only the *base* model, which a fine-tuned model shares.
    """
    name = model.model_card_data.base_model or ""
    key = hashlib.sha256(repr((name, None, None, corpus)).encode(), usedforsecurity=False).hexdigest()
    path = folder / f"corpus_embeddings_{key}.npy"
    if not path.exists():
        atomic_save(path, lambda tmp: np.save(tmp, doc_emb))


@contextlib.contextmanager
def _quiet_search(quiet: bool):
    """Silence the progress bar sentence-transformers draws around its faiss search (one line per call otherwise)."""
    from sentence_transformers.util import hard_negatives

    if not quiet or not hasattr(hard_negatives, "trange"):
        yield
        return
    original = hard_negatives.trange
    hard_negatives.trange = lambda *args, **kwargs: range(*args)
    try:
        yield
    finally:
        hard_negatives.trange = original


def mine_negatives(
    ds: Dataset,
    model,
    settings: MiningSettings = DEFAULT_SETTINGS,
    split: str = "train",
    query_ids: Iterable[str] | None = None,
    cache_dir: str | Path | None = None,
    cross_encoder=None,
    batch_size: int = 64,
    faiss_batch_size: int = 1024,
    on_bad: str = "raise",
    verbose: bool = False,
) -> MinedNegatives:
    """Mine hard negatives for every (query, positive) pair of ``split`` over the whole corpus.

    Calls ``sentence_transformers.util.mine_hard_negatives`` with ``use_faiss=True`` (exact inner product, queries
    searched ``faiss_batch_size`` at a time: memory is O(batch x corpus-dim), not O(queries x docs)).

    Args:
        ds: the dataset; every document is a candidate.
        model: the SentenceTransformer that ranks candidates.
        settings: the rank window, margins, N, sampling and filters.
        split: the qrels split whose queries are mined (``"train"``).
        query_ids: a subset of the split's queries.
        cache_dir: shared embedding cache (e.g. ``cfg.cache_dir / "embeddings"``): corpus and query embeddings are
            computed once per model weights.
        cross_encoder: optional CrossEncoder that re-scores the candidates (margins then apply to its scores).
        batch_size: encoding batch size.
        faiss_batch_size: queries per faiss search call.
        on_bad: ``"raise"`` or ``"skip"`` bad queries (see :func:`training_pairs`).
        verbose: let sentence-transformers print its statistics.

    Returns:
        The mined negatives by id.

    Raises:
        MiningError: a query without positives or a positive missing from the corpus (``on_bad="raise"``).
    """
    # datasets and sentence-transformers (torch) take seconds to import: loaded when mining, not on import
    import datasets
    from sentence_transformers.util import mine_hard_negatives

    pairs, skipped = training_pairs(ds, split, query_ids, on_bad, first_only=settings.one_positive_per_query)
    doc_ids = ds.doc_ids()
    corpus = ds.doc_texts()
    id_of_text: dict[str, str] = {}
    for d, t in zip(doc_ids, corpus, strict=True):
        id_of_text.setdefault(t, d)  # sentence-transformers de-duplicates texts: a twin can never be mined
    anchors = [ds.queries[q] for q, _ in pairs]
    positives = [ds.doc_text(d) for _, d in pairs]
    cache_folder = None
    if cache_dir is not None:
        cache_folder = Path(cache_dir) / f"miner-{model_fingerprint(model)}"
        unique = list(dict.fromkeys(corpus))
        emb = encode_cached(model, corpus, cache_dir, batch_size=batch_size, show_progress=verbose)
        row_of = {d: i for i, d in enumerate(doc_ids)}
        keep = [row_of[id_of_text[t]] for t in unique] if len(unique) != len(corpus) else slice(None)
        _seed_miner_cache(model, unique, emb[keep], cache_folder)
    with _quiet_search(not verbose):
        mined = mine_hard_negatives(
            datasets.Dataset.from_dict({"anchor": anchors, "positive": positives}),
            model,
            corpus=corpus,
            cross_encoder=cross_encoder,
            output_format="labeled-list",
            output_scores=True,
            batch_size=batch_size,
            faiss_batch_size=faiss_batch_size,
            use_faiss=True,
            verbose=verbose,
            cache_folder=None if cache_folder is None else str(cache_folder),
            **settings.miner_kwargs(),
        )
    found: dict[tuple[str, str], tuple[float, list[str], list[float]]] = {}
    for anchor, docs, scores in zip(mined["anchor"], mined["positive"], mined["scores"], strict=True):
        found[(anchor, id_of_text[docs[0]])] = (scores[0], [id_of_text[t] for t in docs[1:]], list(scores[1:]))
    # Only the mined split's own judgements (plus label-free rules): dev and test labels never shape training rows.
    known = _KnownIndex(ds, (split,)) if settings.exclude_known else None
    rows = []
    for (qid, pos), anchor in zip(pairs, anchors, strict=True):
        pos_score, negs, scores = found.get((anchor, pos), (float("nan"), [], []))
        if known is not None:
            drop = known.equivalents(qid)
            kept = [(n, s) for n, s in zip(negs, scores, strict=True) if n not in drop]
            negs, scores = [n for n, _ in kept], [s for _, s in kept]
        n = settings.num_negatives
        rows.append(
            {"query_id": qid, "positive": pos, "positive_score": pos_score, "negatives": negs[:n], "scores": scores[:n]}
        )
    return MinedNegatives(rows=rows, settings=settings, skipped=skipped, label_splits=known.splits if known else ())
