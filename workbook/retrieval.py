"""Dense retrieval: encode texts with a sentence-transformers model and search them exactly with faiss.

Embeddings are L2-normalised, so the inner product faiss computes is the cosine similarity. Search runs in query
batches, so memory stays bounded (never a full query x doc matrix for large corpora).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workbook.data import Dataset


def model_fingerprint(model) -> str:
    """A short hash of a model's weights, so caches keyed on it follow the model, not its folder name."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def encode(
    model, texts: Sequence[str], batch_size: int = 64, desc: str | None = None, show_progress: bool = True
) -> np.ndarray:
    """Encode texts to L2-normalised float32 vectors (sentence-transformers sorts by length within the call)."""
    emb = model.encode(
        list(texts),
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=show_progress and len(texts) > batch_size,
    )
    return np.ascontiguousarray(emb, dtype=np.float32)


def encode_cached(
    model, texts: Sequence[str], cache_dir: str | Path | None, batch_size: int = 64, show_progress: bool = True
) -> np.ndarray:
    """:func:`encode`, cached on disk under a key of the model's weights and the texts."""
    if cache_dir is None:
        return encode(model, texts, batch_size=batch_size, show_progress=show_progress)
    digest = hashlib.sha1(model_fingerprint(model).encode())
    for t in texts:
        digest.update(t.encode("utf-8"))
        digest.update(b"\0")
    path = Path(cache_dir) / f"emb-{digest.hexdigest()[:20]}.npy"
    if path.exists():
        return np.load(path)
    emb = encode(model, texts, batch_size=batch_size, show_progress=show_progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, emb)
    tmp.replace(path)
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
    doc_emb = encode_cached(model, ds.doc_texts(), cache_dir, batch_size=batch_size, show_progress=show_progress)
    queries = ds.split_queries(split)
    q_emb = encode(model, list(queries.values()), batch_size=batch_size, show_progress=show_progress)
    index = DenseIndex(doc_emb, ds.doc_ids())
    return index.ranked(list(queries), q_emb, k)
