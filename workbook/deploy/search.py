"""Search with the guard: a :class:`GuardedSearch` refuses a query model its collection was not built with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from workbook.deploy._common import _dimension
from workbook.deploy.errors import ModelMismatchError
from workbook.deploy.store import QdrantStore
from workbook.retrieval import encode, model_fingerprint


class GuardedSearch:
    """Search one collection (or alias) with one query model, refusing a model the collection was not built with.

    It is a :class:`workbook.retrieval.Retriever` (``name`` and :meth:`rank`), so a served collection can stand in any
    comparison beside the dense, BM25, hybrid and reranked retrievers.

    The model's fingerprint is computed once (its weights must not change afterwards); every search re-resolves the
    alias, so a retriever bound to ``production`` notices a cut-over to another model's collection and raises
    :class:`ModelMismatchError` instead of returning nonsense.
    """

    def __init__(self, deployment: QdrantStore, target: str, model, *, allow_incomplete: bool = False):
        self.deployment = deployment
        self.target = target
        self.model = model
        self.allow_incomplete = allow_incomplete
        self.fingerprint = model_fingerprint(model)
        self.dimension = _dimension(model)
        self.collection = self.check()

    @property
    def name(self) -> str:
        """The target searched (the :class:`workbook.retrieval.Retriever` name)."""
        return self.target

    def check(self) -> str:
        """The collection behind the target, after checking it was built with this model and is complete."""
        dep = self.deployment
        meta = dep.metadata(self.target) if self.allow_incomplete else dep._require_complete(self.target)
        if meta["model_fingerprint"] != self.fingerprint:
            via = f" (behind alias {self.target!r})" if self.target != meta["collection"] else ""
            raise ModelMismatchError(
                f"collection {meta['collection']!r}{via} was built with model version {meta['model_version']!r} "
                f"(fingerprint {meta['model_fingerprint']}, {meta.get('dimension')}-d); the query model has "
                f"fingerprint {self.fingerprint} ({self.dimension}-d). Query and document vectors must come from the "
                f"same model: load version {meta['model_version']!r} (Deployment.retriever() does)"
            )
        return meta["collection"]

    def search(self, texts: Sequence[str], k: int = 10, batch: int = 256) -> list[list[tuple[str, float]]]:
        """Top-``k`` (doc id, score) per query text, best first."""
        from qdrant_client import models as qm  # heavy (~2 s): imported on first search, not with the package

        collection = self.check()
        emb = encode(self.model, list(texts), show_progress=False)
        client = self.deployment.client
        if len(texts) == 1:
            results = [client.query_points(collection, query=emb[0].tolist(), limit=k, with_payload=["doc_id"])]
        else:
            results = []
            for lo in range(0, len(texts), batch):
                requests = [
                    qm.QueryRequest(query=v.tolist(), limit=k, with_payload=["doc_id"]) for v in emb[lo : lo + batch]
                ]
                results += client.query_batch_points(collection, requests=requests)
        return [[(p.payload["doc_id"], float(p.score)) for p in r.points] for r in results]

    def rank(self, queries: Mapping[str, str], k: int = 10) -> dict[str, list[str]]:
        """Query id -> top-``k`` doc ids."""
        hits = self.search(list(queries.values()), k)
        return {q: [d for d, _ in h] for q, h in zip(queries, hits, strict=True)}
