"""Retrieval: dense (sentence-transformers + exact faiss search), BM25 (bm25s), hybrid (RRF) and cross-encoder
reranking, each behind one interface, :class:`Retriever`: ``rank(queries, k)`` returns query id -> ranked doc ids.

Embeddings are L2-normalised, so the inner product faiss computes is the cosine similarity. Search runs in query
batches, so memory stays bounded (never a full query x doc matrix for large corpora). The functions
:func:`dense_ranking`, :func:`bm25_ranking` and :func:`rerank` rank one split of a dataset with the same retrievers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from workbook import worklog
from workbook.config import Config
from workbook.data import Dataset
from workbook.files import atomic_save
from workbook.models import MINILM, ModelNotAvailableError, model_path, quiet_loading, quiet_trainer_logs
from workbook.precision import inference, precision_of, set_precision

#: Query id -> doc ids, best first.
Ranking = dict[str, list[str]]


@runtime_checkable
class Retriever(Protocol):
    """Anything that ranks a corpus for queries: dense, BM25, hybrid and reranked retrievers below, or your own.

    A team adds a baseline to the pipeline or a notebook comparison by writing one class with these two members.
    """

    name: str

    def rank(self, queries: Mapping[str, str], k: int) -> Ranking:
        """Query id -> the top-``k`` doc ids for each query text, best first."""
        ...


def model_fingerprint(model) -> str:
    """A short hash of a model's weights, so caches keyed on it follow the model, not its folder name.

    The hash is kept on the model with the state it was taken from (each tensor's storage and version counter, which
    every in-place change such as an optimiser step bumps), so asking again for unchanged weights costs no rehash
    (hashing mpnet's 440 MB took about a second, and every cached encode asks).
    """
    memo = getattr(model, _FINGERPRINT_ATTR, None)
    if memo is not None and precision_of(model) == "int8":  # hashed before quantizing (packed int8 weights are frozen)
        return memo[1]
    state = sorted(model.state_dict().items())
    stamp = tuple((name, t.data_ptr(), t._version, tuple(t.shape), str(t.dtype)) for name, t in state)
    if memo is not None and memo[0] == stamp:
        return memo[1]
    digest = hashlib.sha1()
    for name, tensor in state:
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    fingerprint = digest.hexdigest()[:16]
    with contextlib.suppress(AttributeError, TypeError):  # an object that takes no attributes is simply rehashed
        object.__setattr__(model, _FINGERPRINT_ATTR, (stamp, fingerprint))
    return fingerprint


#: Where :func:`model_fingerprint` keeps its last hash on a model, with the weights' state it was taken from.
_FINGERPRINT_ATTR = "_workbook_fingerprint"


def _cache_key(model, texts: Iterable[str]) -> str:
    """A key of a model's weights, its inference precision (the stamp :func:`workbook.precision.set_precision` left)
    and a sequence of texts, for the on-disk caches of embeddings and scores (fp32 keys are those of the caches
    written before precisions existed)."""
    digest = hashlib.sha1(model_fingerprint(model).encode())
    precision = precision_of(model)
    if precision != "fp32":
        digest.update(f"precision={precision}".encode())
    for t in texts:
        digest.update(t.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def _save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` through a temporary file and a rename, so a killed job never leaves a half-written cache file."""
    atomic_save(path, lambda tmp: np.save(tmp, array))


def encode(
    model, texts: Sequence[str], batch_size: int = 64, desc: str | None = None, show_progress: bool = True
) -> np.ndarray:
    """Encode texts to L2-normalised float32 vectors (sentence-transformers sorts by length within the call), at the
    model's inference precision (:mod:`workbook.precision`)."""
    with inference(model), worklog.timed("encode", texts=len(texts), what=partial(_cache_key, model, texts)):
        emb = model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=show_progress and len(texts) > batch_size,
        )
    return np.ascontiguousarray(emb, dtype=np.float32)


def encode_cached(
    model,
    texts: Sequence[str],
    cache_dir: str | Path | None,
    batch_size: int = 64,
    show_progress: bool = True,
    chunk_size: int = 8192,
) -> np.ndarray:
    """:func:`encode`, cached on disk under a key of the model's weights and the texts.

    Inputs longer than ``chunk_size`` are encoded chunk by chunk, each chunk saved as it is done, so an interrupted
    encoding (an hour for a large model on CPU) resumes from the last finished chunk instead of starting over.
    """
    if cache_dir is None:
        return encode(model, texts, batch_size=batch_size, show_progress=show_progress)
    key = _cache_key(model, texts)
    path = Path(cache_dir) / f"emb-{key}.npy"
    if path.exists():
        return np.load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts_dir = Path(cache_dir) / f"emb-{key}.parts"
    if len(texts) <= chunk_size:
        emb = encode(model, texts, batch_size=batch_size, show_progress=show_progress)
    else:  # sentence-transformers has no resumable encode: keep finished chunks on disk (writes are atomic)
        from tqdm.auto import tqdm

        parts_dir.mkdir(exist_ok=True)
        starts = range(0, len(texts), chunk_size)
        parts = []
        for i in tqdm(starts, desc="encoding (chunks saved as they finish)", disable=not show_progress):
            part = parts_dir / f"{i:09d}-{chunk_size}.npy"
            if part.exists():
                parts.append(np.load(part))
                continue
            chunk = encode(model, texts[i : i + chunk_size], batch_size=batch_size, show_progress=False)
            _save_npy(part, chunk)
            parts.append(chunk)
        emb = np.concatenate(parts)
    _save_npy(path, emb)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return emb


class DenseIndex:
    """Exact inner-product search over normalised vectors with faiss (``IndexFlatIP``)."""

    def __init__(self, embeddings: np.ndarray, ids: Sequence[str]):
        import faiss

        if len(ids) != embeddings.shape[0]:
            raise ValueError(f"{len(ids)} ids for {embeddings.shape[0]} vectors")
        self.ids = list(ids)
        self.index = faiss.IndexFlatIP(embeddings.shape[1])
        self.index.add(np.ascontiguousarray(embeddings, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, row indices) for each query vector, searched ``batch_size`` queries at a time."""
        k = min(k, len(self.ids))
        scores, rows = [], []
        for start in range(0, queries.shape[0], batch_size):
            s, r = self.index.search(np.ascontiguousarray(queries[start : start + batch_size], dtype=np.float32), k)
            scores.append(s)
            rows.append(r)
        return np.vstack(scores), np.vstack(rows)

    def ranked(self, query_ids: Sequence[str], queries: np.ndarray, k: int) -> dict[str, list[str]]:
        """Query id -> top-``k`` doc ids, best first."""
        _, rows = self.search(queries, k)
        return {q: [self.ids[i] for i in row if i >= 0] for q, row in zip(query_ids, rows, strict=True)}


def dense_ranking(
    model,
    ds: Dataset,
    split: str,
    k: int = 100,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    show_progress: bool = True,
) -> dict[str, list[str]]:
    """Rank the whole corpus for every query of ``split`` with ``model`` (title + " " + text for docs).

    Returns:
        Query id -> top-``k`` doc ids.
    """
    return Dense(model, ds, cache_dir, batch_size, show_progress).rank(ds.split_queries(split), k)


@dataclass
class Dense:
    """A :class:`Retriever`: the whole corpus embedded with ``model`` (cached under ``cache_dir`` when given), exact
    cosine search."""

    model: object
    ds: Dataset
    cache_dir: str | Path | None = None
    batch_size: int = 64
    show_progress: bool = False
    name: str = "dense"

    def rank(self, queries: Mapping[str, str], k: int) -> Ranking:
        """Query id -> top-``k`` doc ids (title + " " + text for docs)."""
        doc_emb = encode_cached(self.model, self.ds.doc_texts(), self.cache_dir, batch_size=self.batch_size,
                                show_progress=self.show_progress)  # fmt: skip
        q_emb = encode(self.model, list(queries.values()), batch_size=self.batch_size, show_progress=self.show_progress)
        return DenseIndex(doc_emb, self.ds.doc_ids()).ranked(list(queries), q_emb, k)


# ------------------------------------------------------------------------------------------------ lexical + hybrid

#: bm25s's default pattern keeps tokens of two or more characters, which drops the "1" and "2" that tell type 1
#: from type 2 diabetes; one or more characters keeps them (codes like "E11.65" split into "e11", "65").
TOKEN_PATTERN = r"(?u)\b\w+\b"


class BM25Index:
    """BM25 (bm25s, Lucene variant) over the same ``title + " " + text`` strings the dense models see."""

    def __init__(self, texts: Sequence[str], ids: Sequence[str], k1: float = 1.5, b: float = 0.75):
        import bm25s

        self._bm25s = bm25s
        self.ids = list(ids)
        tokens = bm25s.tokenize(list(texts), token_pattern=TOKEN_PATTERN, stopwords="en", show_progress=False)
        self.retriever = bm25s.BM25(k1=k1, b=b)
        self.retriever.index(tokens, show_progress=False)

    @classmethod
    def from_dataset(cls, ds: Dataset, **kwargs) -> BM25Index:
        """Index a dataset's corpus."""
        return cls(ds.doc_texts(), ds.doc_ids(), **kwargs)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """Top-``k`` (doc id, score) per query; docs sharing no term with the query (score 0) are left out."""
        tokens = self._bm25s.tokenize(
            list(queries), token_pattern=TOKEN_PATTERN, stopwords="en", return_ids=False, show_progress=False
        )
        rows, scores = self.retriever.retrieve(tokens, k=min(k, len(self.ids)), show_progress=False, n_threads=1)
        return [
            [(self.ids[i], float(s)) for i, s in zip(row, srow, strict=True) if s > 0]
            for row, srow in zip(rows, scores, strict=True)
        ]

    def ranked(self, query_ids: Sequence[str], queries: Sequence[str], k: int) -> dict[str, list[str]]:
        """Query id -> top-``k`` doc ids, best first."""
        hits = self.search(queries, k)
        return {q: [d for d, _ in h] for q, h in zip(query_ids, hits, strict=True)}


def bm25_ranking(ds: Dataset, split: str, k: int = 100, index: BM25Index | None = None) -> dict[str, list[str]]:
    """Rank the corpus with BM25 for every query of ``split``."""
    return BM25(ds, index).rank(ds.split_queries(split), k)


@dataclass
class BM25:
    """A :class:`Retriever`: BM25 over the dataset's corpus (the index is built on first use unless given)."""

    ds: Dataset
    index: BM25Index | None = None
    name: str = "BM25"

    def rank(self, queries: Mapping[str, str], k: int) -> Ranking:
        """Query id -> top-``k`` doc ids; docs sharing no term with the query are left out."""
        self.index = self.index or BM25Index.from_dataset(self.ds)
        return self.index.ranked(list(queries), list(queries.values()), k)


def rrf(rankings: Sequence[dict[str, Sequence[str]]], k: int = 100, c: int = 60) -> dict[str, list[str]]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (c + rank of d), ranks from 1.

    Written here because neither faiss nor bm25s fuses runs; ties break by doc id so the result is deterministic.

    Args:
        rankings: query id -> ranked doc ids, one mapping per retriever.
        k: depth of the fused list.
        c: the RRF constant (60 in Cormack et al. 2009).
    """
    fused = {}
    for qid in sorted(set().union(*rankings)):
        scores: dict[str, float] = {}
        for ranking in rankings:
            for rank, doc in enumerate(ranking.get(qid, []), start=1):
                scores[doc] = scores.get(doc, 0.0) + 1.0 / (c + rank)
        fused[qid] = [d for d, _ in sorted(scores.items(), key=lambda x: (-x[1], x[0]))[:k]]
    return fused


@dataclass
class Hybrid:
    """A :class:`Retriever`: the reciprocal rank fusion (:func:`rrf`) of other retrievers' top-``k`` lists."""

    retrievers: Sequence[Retriever]
    c: int = 60
    name: str = "hybrid"

    def rank(self, queries: Mapping[str, str], k: int) -> Ranking:
        """Query id -> top-``k`` fused doc ids."""
        return rrf([r.rank(queries, k) for r in self.retrievers], k=k, c=self.c)


# ------------------------------------------------------------------------------------------------ reranking


def reranker_pairs(
    ds: Dataset, split: str, candidates: dict[str, Sequence[str]], n_queries: int, n_negatives: int, seed: int
):
    """Training rows for a cross-encoder: per sampled query, one relevant doc and ``n_negatives`` non-relevant docs
    drawn from the retriever's candidates (hard, because the retriever ranked them high). Queries with fewer
    candidates than that are skipped.

    Returns:
        A ``datasets.Dataset`` with columns ``query``, ``positive``, ``negative_1`` ... ``negative_<n>``.
    """
    import datasets

    rng = random.Random(seed)
    qids = sorted(ds.qrels[split])
    negs = [f"negative_{i}" for i in range(1, n_negatives + 1)]
    rows: dict[str, list] = {"query": [], "positive": [], **{n: [] for n in negs}}
    for qid in sorted(rng.sample(qids, min(n_queries, len(qids)))):
        judged = ds.qrels[split][qid]
        positives = sorted(d for d, s in judged.items() if s > 0)
        pool = [d for d in candidates.get(qid, []) if d not in judged]
        if len(pool) < n_negatives:
            continue
        rows["query"].append(ds.queries[qid])
        rows["positive"].append(ds.doc_text(rng.choice(positives)))
        for name, doc in zip(negs, rng.sample(pool, n_negatives), strict=True):
            rows[name].append(ds.doc_text(doc))
    return datasets.Dataset.from_dict(rows)


def train_reranker(
    train_data, out_dir: str | Path, cfg: Config, epochs: int = 1, batch_size: int = 16, in_batch: int = 2
):
    """Train a cross-encoder on the MiniLM backbone and save it to ``out_dir``.

    The loss is the cross-encoder ``MultipleNegativesRankingLoss``: each query's positive must outscore its hard
    negatives and ``in_batch`` other queries' positives (a listwise objective; pointwise binary cross-entropy
    learned little more than the base rate from a few thousand rows here). Uses sentence-transformers'
    ``CrossEncoderTrainer`` (GPU automatically when present).
    """
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss

    out = Path(out_dir)
    with quiet_loading():  # no "converting to CrossEncoder" note, load report (with machine paths) or weight bar
        model = CrossEncoder(str(model_path(MINILM, cfg)), num_labels=1, max_length=128, local_files_only=True)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        args = CrossEncoderTrainingArguments(
            output_dir=tmp, num_train_epochs=epochs, per_device_train_batch_size=batch_size, learning_rate=2e-4,
            warmup_steps=0.1, seed=cfg.seed, data_seed=cfg.seed, save_strategy="no", report_to="none",
            logging_steps=max(1, len(train_data) // batch_size // 5), dataloader_pin_memory=torch.cuda.is_available(),
            disable_tqdm=True,  # no bar, and in a notebook no progress table: a cold run's outputs read as a warm one's
        )  # fmt: skip
        loss = MultipleNegativesRankingLoss(model, num_negatives=in_batch)
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=train_data, loss=loss)
        quiet_trainer_logs(trainer)  # with no bar, transformers would print each log as a dict instead
        with worklog.timed("train reranker", rows=len(train_data), what=out.name):
            trainer.train()
        staged = Path(tmp) / "model"
        model.save_pretrained(str(staged))
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(staged), out)  # moved in whole: a cache folder is either complete or absent
    return model


def load_reranker(
    cfg: Config, ds: Dataset | None = None, candidates: dict[str, Sequence[str]] | None = None, split: str = "train"
):
    """The reranker: ``cfg.reranker`` when set (any local cross-encoder folder), else one trained on ``split``
    pairs from ``candidates`` and cached under ``cfg.cache_dir / "rerankers"`` (keyed on its training data). It scores
    at ``cfg.reranker_precision`` (:mod:`workbook.precision`); training is always fp32.

    Raises:
        ModelNotAvailableError: ``cfg.reranker`` is not a local folder.
    """
    from sentence_transformers.cross_encoder import CrossEncoder

    if cfg.reranker:
        if not Path(cfg.reranker).is_dir():
            raise ModelNotAvailableError(
                f"reranker {cfg.reranker!r} is not a local folder; no model hub is reachable offline"
            )
        return set_precision(CrossEncoder(cfg.reranker, local_files_only=True), cfg.reranker_precision)
    if ds is None or candidates is None:
        raise ValueError("training a reranker needs the dataset and the retriever's candidates for its split")
    pairs = reranker_pairs(ds, split, candidates, cfg.reranker_train_queries, cfg.reranker_negatives, cfg.seed)
    digest = hashlib.sha1(json.dumps(pairs.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
    folder = cfg.cache_dir / "rerankers" / f"minilm-ce-{digest}"
    if (folder / "config.json").exists():
        return set_precision(CrossEncoder(str(folder), local_files_only=True), cfg.reranker_precision)
    return set_precision(train_reranker(pairs, folder, cfg), cfg.reranker_precision)


def rerank(
    cross_encoder,
    ds: Dataset,
    split: str,
    candidates: dict[str, Sequence[str]],
    depth: int,
    batch_size: int = 64,
    show_progress: bool = True,
    cache_dir: str | Path | None = None,
) -> dict[str, list[str]]:
    """Re-score each query's top-``depth`` candidates with a cross-encoder; the rest keep their order after them.

    Args:
        cache_dir: when given, the scores are kept there as ``.npy`` under a key of the cross-encoder's weights and
            the (query, doc) pairs, so scoring the same candidates again (a re-run notebook) is a file read.
    """
    return _rerank(cross_encoder, ds, ds.split_queries(split), candidates, depth, batch_size, show_progress, cache_dir)


def _rerank(cross_encoder, ds: Dataset, queries: Mapping[str, str], candidates: Mapping[str, Sequence[str]], depth: int,
            batch_size: int, show_progress: bool, cache_dir: str | Path | None) -> Ranking:  # fmt: skip
    pairs, spans = [], {}
    for qid, text in queries.items():
        head = list(candidates.get(qid, []))[:depth]
        spans[qid] = (len(pairs), head)
        pairs += [(text, ds.doc_text(d)) for d in head]
    key = partial(_cache_key, getattr(cross_encoder, "model", cross_encoder), [t for pair in pairs for t in pair])
    path = None if cache_dir is None else Path(cache_dir) / f"rerank-{key()}.npy"
    if path is not None and path.exists():
        scores = np.load(path)
    else:
        with inference(cross_encoder), worklog.timed("rerank", pairs=len(pairs), what=key):
            scores = cross_encoder.predict(pairs, batch_size=batch_size, show_progress_bar=show_progress)
        scores = np.asarray(scores, dtype=np.float32)
        if path is not None:
            _save_npy(path, scores)  # atomic_save makes the folder
    out = {}
    for qid, (start, head) in spans.items():
        s = scores[start : start + len(head)]
        order = sorted(range(len(head)), key=lambda i: (-float(s[i]), i))
        out[qid] = [head[i] for i in order] + list(candidates.get(qid, []))[depth:]
    return out


@dataclass
class Reranked:
    """A :class:`Retriever`: a first-stage retriever's top ``depth`` re-scored by a cross-encoder (the rest keep
    their order after them); scores cached under ``cache_dir`` when given."""

    cross_encoder: object
    first_stage: Retriever
    ds: Dataset
    depth: int = 30
    cache_dir: str | Path | None = None
    batch_size: int = 64
    show_progress: bool = False
    name: str = "reranker"

    def rank(self, queries: Mapping[str, str], k: int) -> Ranking:
        """Query id -> the first stage's top-``k``, its head reranked."""
        candidates = self.first_stage.rank(queries, k)
        return _rerank(self.cross_encoder, self.ds, queries, candidates, self.depth, self.batch_size,
                       self.show_progress, self.cache_dir)  # fmt: skip


@dataclass
class Remembered:
    """A :class:`Retriever` that keeps its last ranking: a hybrid and the run of one of its parts then rank the same
    queries once (the pipeline reports both)."""

    inner: Retriever
    _last: tuple = ((), None)

    @property
    def name(self) -> str:
        """The wrapped retriever's name."""
        return self.inner.name

    def rank(self, queries: Mapping[str, str], k: int) -> Ranking:
        """The wrapped retriever's ranking, computed once per (queries, k)."""
        key = (tuple(queries.items()), k)
        if self._last[0] != key:
            self._last = (key, self.inner.rank(queries, k))
        return self._last[1]
