"""The :class:`Deployment`: registry, store and jobs under one folder, with the blue/green cut-over and rollback."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from workbook.deploy._common import COLLECTION_PREFIX, PRODUCTION_ALIAS
from workbook.deploy.errors import DeployError, PromotionRefused
from workbook.deploy.gate import GateDecision
from workbook.deploy.jobs import JobReport, run_reembed
from workbook.deploy.registry import ModelRegistry
from workbook.deploy.search import GuardedSearch
from workbook.deploy.store import QdrantStore


class Deployment(QdrantStore):
    """A model registry, a Qdrant store (local folder or server) and job checkpoints under one ``root``.

    Args:
        root: the deployment folder (``models/``, ``qdrant/`` in local mode, ``jobs/``).
        url: a Qdrant server or cluster URL; ``None`` (default) uses embedded local mode in ``root/qdrant``.
        api_key: the server's API key, if it needs one.
        alias: the alias production traffic uses.
        prefix: collection names are ``<prefix>-<version>``.
        collection_options: extra ``create_collection`` arguments for a server or cluster (``replication_factor``,
            ``write_consistency_factor``, ``shard_number``); embedded local mode accepts and ignores them.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        url: str | None = None,
        api_key: str | None = None,
        alias: str = PRODUCTION_ALIAS,
        prefix: str = COLLECTION_PREFIX,
        collection_options: dict | None = None,
    ):
        super().__init__(root, url=url, api_key=api_key, alias=alias, prefix=prefix,
                         collection_options=collection_options)  # fmt: skip
        self.registry = ModelRegistry(self.root / "models")

    # -- the re-embedding job
    def reembed(
        self,
        version: str,
        doc_ids: Sequence[str],
        texts: Sequence[str],
        *,
        model=None,
        batch_size: int = 256,
        encode_batch_size: int = 64,
        processes: int = 1,
        max_batches: int | None = None,
        show_progress: bool = True,
        engine: str = "local",
        ray_address: str | None = None,
        actors: int | None = None,
    ) -> JobReport:
        """Embed every document with model ``version`` into its collection, batch by batch, resumably.

        Each batch is encoded, upserted (point id = UUIDv5 of the doc id, so a batch written twice is not
        duplicated) and only then recorded in the checkpoint (written atomically). Killed at any moment, the job
        reruns from the first batch the checkpoint does not record: nothing is lost, nothing duplicated, and the
        vectors equal an uninterrupted run's (a batch's vectors depend on that batch only). When every batch is in,
        the collection's status becomes ``complete``; until then it can be neither searched nor promoted.

        Args:
            version: a registered model version.
            doc_ids, texts: the corpus, in a fixed order (the checkpoint checks it is the same corpus).
            model: the loaded model of ``version`` (checked against its card); ``None`` loads it from the registry.
            batch_size: documents per checkpointed batch.
            encode_batch_size: sentence-transformers' batch size inside a batch.
            processes: > 1 encodes with sentence-transformers' multi-process pool (``start_multi_process_pool``).
            max_batches: stop after this many batches in this run (a bounded work window); ``None`` runs to the end.
            engine: ``"local"`` (this process, or its multi-process pool) or ``"ray"``: the batches are encoded by a
                Ray Data actor pool (:mod:`workbook.deploy.ray_job`, the ``scale`` extra), with the same guarantees.
            ray_address: with ``engine="ray"``, the cluster (``host:port``); ``None`` starts or joins a local one.
            actors: with ``engine="ray"``, the encoder actors (default: one per CPU of the cluster).

        Returns:
            What this run did, with its throughput (:meth:`JobReport.projection` for the cost estimate).
        """
        if engine == "ray":
            from workbook.deploy.ray_job import run_reembed_ray

            if model is not None or processes != 1:
                raise DeployError("engine='ray' loads the registered model in each actor: pass neither model nor "
                                  "processes (use actors=)")  # fmt: skip
            return run_reembed_ray(self, self.registry, version, doc_ids, texts, address=ray_address, actors=actors,
                                   batch_size=batch_size, encode_batch_size=encode_batch_size,
                                   max_batches=max_batches, show_progress=show_progress)  # fmt: skip
        if engine != "local":
            raise DeployError(f"engine must be 'local' or 'ray', got {engine!r}")
        return run_reembed(self, self.registry, version, doc_ids, texts, model=model, batch_size=batch_size,
                           encode_batch_size=encode_batch_size, processes=processes, max_batches=max_batches,
                           show_progress=show_progress)  # fmt: skip

    # -- serving
    def retriever(self, target: str | None = None, model=None, *, allow_incomplete: bool = False) -> GuardedSearch:
        """A searcher bound to ``target`` (default: the production alias).

        Args:
            model: the query encoder; ``None`` loads, from the registry, the version the collection was built with
                (the safe way: the index says which model it needs).
        """
        target = target or self.alias
        if model is None:
            model = self.registry.load(self.metadata(target)["model_version"])
        return GuardedSearch(self, target, model, allow_incomplete=allow_incomplete)

    # -- blue/green
    def promote(self, version: str, decision: GateDecision | None = None, *, force: bool = False) -> dict:
        """Point the production alias at ``version``'s collection, in one atomic alias operation.

        The first promotion (nothing in production yet) needs no gate. Later ones need a passed
        :class:`GateDecision` for this version, unless ``force=True``.

        Raises:
            UnknownVersionError, IncompleteCollectionError, PromotionRefused: with what to do.
        """
        self.registry.card(version)
        name = self.collection_name(version)
        if not self.client.collection_exists(name):
            raise DeployError(f"version {version!r} has no collection {name!r}: run its re-embedding job first")
        self._require_complete(name)
        current = self.aliases().get(self.alias)
        if current == name:
            return {"production": version, "previous": version, "switched": False}
        if current is not None and not force:
            _check_decision(decision, version, current)
        previous = self.metadata(current)["model_version"] if current in self.collections() else None
        self._point_alias(name, replace=current is not None)
        self.registry._record("promote", version, previous)
        return {"production": version, "previous": previous, "switched": True}

    def rollback(self) -> dict:
        """Point production back at the version promoted before the current one.

        Raises:
            AliasError: nothing is in production.
            DeployError: nothing to roll back to, the registry and the alias disagree, or the previous collection
                is gone.
        """
        current = self.production()
        history = self.registry.production_history
        if not history or history[-1] != current:
            raise DeployError(
                f"the alias {self.alias!r} serves version {current!r} but the registry says "
                f"{history[-1] if history else 'nothing'} was promoted last: someone switched the alias by hand. "
                "Promote the intended version explicitly instead of rolling back"
            )
        if len(history) < 2:
            raise DeployError(f"nothing to roll back to: {current!r} is the only version ever promoted")
        previous = history[-2]
        name = self.collection_name(previous)
        if name not in self.collections():
            raise DeployError(f"cannot roll back to {previous!r}: its collection {name!r} was deleted; rebuild it")
        self._require_complete(name)
        self._point_alias(name, replace=True)
        self.registry._record("rollback", previous, current)
        return {"production": previous, "previous": current, "switched": True}

    def _point_alias(self, collection: str, *, replace: bool) -> None:
        """Point the production alias at ``collection`` in one request (no moment without the alias)."""
        from qdrant_client import models as qm  # heavy (~2 s): imported on a cut-over, not with the package

        ops = [qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=self.alias))] if replace else []
        ops.append(
            qm.CreateAliasOperation(create_alias=qm.CreateAlias(collection_name=collection, alias_name=self.alias))
        )
        self.client.update_collection_aliases(change_aliases_operations=ops)


def _check_decision(decision: GateDecision | None, version: str, current: str) -> None:
    """Refuse a promotion over the serving collection ``current`` without a passed gate decision for ``version``."""
    if decision is None:
        raise PromotionRefused(
            f"promoting {version!r} over the serving collection {current!r} needs a gate decision: run "
            "shadow_test() and promotion_gate(), or pass force=True"
        )
    if decision.version != version:
        raise PromotionRefused(f"the gate decision is for version {decision.version!r}, not {version!r}")
    if not decision.passed:
        failed = decision.checks.loc[~decision.checks["passed"]].index.tolist()
        raise PromotionRefused(f"version {version!r} failed the promotion gate: {'; '.join(failed)}")
