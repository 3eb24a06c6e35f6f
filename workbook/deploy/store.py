"""The Qdrant side of a deployment: the connection, collections, aliases and the deploy metadata they carry."""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd

from workbook.deploy._common import (
    _META_KEY,
    COLLECTION_PREFIX,
    PRODUCTION_ALIAS,
    _check_version,
    _now,
    _shown,
    point_id,
)
from workbook.deploy.errors import AliasError, DeployError, IncompleteCollectionError


@contextmanager
def _no_local_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Local mode is not recommended")
        yield


def tune_local_sqlite(client, collection: str) -> bool:
    """Switch the SQLite database under a local-mode collection to write-ahead logging with ``synchronous=NORMAL``
    (why: :meth:`QdrantStore._fast_local_writes`). Returns whether it could.

    qdrant-client has no option for this, so this is the one place the package touches qdrant-client internals
    (pinned 1.20): ``QdrantClient._client`` (the ``QdrantLocal`` backend) ``.collections[name]`` (a
    ``LocalCollection``) ``.storage`` (its ``CollectionPersistence``) ``.storage`` (the ``sqlite3.Connection``).
    Where that path is gone it warns and leaves SQLite's defaults (slow, still correct); tests/test_deploy.py fails
    loudly if the installed qdrant-client no longer has it.
    """
    try:
        conn = client._client.collections[collection].storage.storage
        if not isinstance(conn, sqlite3.Connection):
            raise TypeError(f"storage.storage is a {type(conn).__name__}, not a sqlite3.Connection")
    except (AttributeError, KeyError, TypeError) as exc:
        warnings.warn(
            f"qdrant-client's local storage internals have moved ({type(exc).__name__}: {exc}): collection "
            f"{collection!r} keeps SQLite's default, slow writes (an fsync per point)",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return True


class QdrantStore:
    """A Qdrant store (local folder or server) holding one collection per model version, and its job checkpoints.

    Args:
        root: the deployment folder (``qdrant/`` in local mode, ``jobs/``).
        url: a Qdrant server or cluster URL; ``None`` (default) uses embedded local mode in ``root/qdrant``.
        api_key: the server's API key, if it needs one.
        alias: the alias production traffic uses.
        prefix: collection names are ``<prefix>-<version>``.
        collection_options: extra ``create_collection`` arguments (replication, write consistency, shards).
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
        self.root = Path(root)
        #: Extra ``create_collection`` arguments for every version's collection on a server or cluster
        #: (``replication_factor``, ``write_consistency_factor``, ``shard_number``); local mode ignores them.
        self.collection_options = dict(collection_options or {})
        self.url = url
        self.api_key = api_key
        self.alias = alias
        self.prefix = prefix
        self.jobs_dir = self.root / "jobs"
        self.store_path = None if url else self.root / "qdrant"
        self._client = None
        self._meta_cache: dict[str, dict] = {}

    # -- connection
    @property
    def client(self):
        """The ``QdrantClient`` (opened on first use; local mode locks the folder until :meth:`close`)."""
        if self._client is None:
            from qdrant_client import QdrantClient  # heavy (~2 s): imported on first use, not with the package

            if self.url:
                self._client = QdrantClient(url=self.url, api_key=self.api_key, timeout=60)
            else:
                self.store_path.mkdir(parents=True, exist_ok=True)
                try:
                    with _no_local_warning():
                        self._client = QdrantClient(path=str(self.store_path))
                except RuntimeError as exc:
                    raise DeployError(
                        f"the local Qdrant store {_shown(self.store_path)} is open in another process (local mode "
                        "allows one at a time): close it there (Deployment.close) or use a Qdrant server"
                    ) from exc
                for name in self._client.get_collections().collections:
                    self._fast_local_writes(name.name)
        return self._client

    def close(self) -> None:
        """Close the client (in local mode this releases the folder for another process)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._meta_cache.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _fast_local_writes(self, collection: str) -> None:
        """Local mode stores points in SQLite and commits (with an fsync) once per *point*: 5,000 points took 91 s
        here. Write-ahead logging with ``synchronous=NORMAL`` commits without the fsync (1.2 s for the same 5,000)
        and is still durable when the process crashes or is killed, which is what the job's checkpoints guard
        against (a power cut may lose the last commits; the job then re-embeds the batches it cannot find).
        A no-op on a server; see :func:`tune_local_sqlite` for the qdrant-client internals it needs."""
        if not self.url:
            tune_local_sqlite(self._client, collection)

    # -- collections and aliases
    def collection_name(self, version: str) -> str:
        """The collection of a model version: ``<prefix>-<version>``."""
        return f"{self.prefix}-{_check_version(version)}"

    def checkpoint_path(self, version: str) -> Path:
        """The job checkpoint of a version's collection."""
        return self.jobs_dir / f"{self.collection_name(version)}.json"

    def aliases(self) -> dict[str, str]:
        """Alias -> collection."""
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def collections(self) -> list[str]:
        """Collection names, sorted."""
        return sorted(c.name for c in self.client.get_collections().collections)

    def resolve(self, target: str) -> str:
        """The collection behind ``target`` (a collection name or an alias).

        Raises:
            AliasError: ``target`` is neither, or it is an alias to a collection that no longer exists.
        """
        collections = set(self.collections())
        if target in collections:
            return target
        aliases = self.aliases()
        if target not in aliases:
            hint = " (nothing has been promoted yet: promote a version first)" if target == self.alias else ""
            raise AliasError(
                f"alias {target!r} points nowhere: there is no such alias or collection{hint}. "
                f"Aliases: {aliases or 'none'}; collections: {sorted(collections) or 'none'}"
            )
        if aliases[target] not in collections:
            raise AliasError(f"alias {target!r} points to collection {aliases[target]!r}, which does not exist")
        return aliases[target]

    def metadata(self, target: str) -> dict:
        """The deploy metadata recorded with the collection behind ``target`` (version, fingerprint, status...).

        Raises:
            AliasError: ``target`` points nowhere.
            DeployError: the collection was not built by this module (it has no deploy metadata).
        """
        name = self.resolve(target)
        if name in self._meta_cache:
            return self._meta_cache[name]
        info = self.client.get_collection(name)
        meta = (info.config.metadata or {}).get(_META_KEY)
        if not isinstance(meta, dict) or "model_fingerprint" not in meta:
            raise DeployError(
                f"collection {name!r} has no deployment metadata (model version, fingerprint): it was not built by "
                "Deployment.reembed, so nothing says which model its vectors come from"
            )
        meta = {**meta, "collection": name, "points": int(info.points_count or 0)}
        if meta.get("status") == "complete":  # a complete collection never changes: cache it
            self._meta_cache[name] = meta
        return meta

    def status(self) -> pd.DataFrame:
        """One row per collection: model version, fingerprint, status, points, docs expected, aliases."""
        aliases = self.aliases()
        rows = []
        for name in self.collections():
            try:
                meta = self.metadata(name)
            except DeployError:
                meta = {"model_version": "?", "status": "not a deploy collection"}
            rows.append(
                {
                    "collection": name,
                    "model version": meta.get("model_version"),
                    "fingerprint": meta.get("model_fingerprint"),
                    "status": meta.get("status"),
                    "points": int(self.client.count(name, exact=True).count),
                    "docs": meta.get("docs"),
                    "aliases": ", ".join(sorted(a for a, c in aliases.items() if c == name)),
                }
            )
        return pd.DataFrame(
            rows, columns=["collection", "model version", "fingerprint", "status", "points", "docs", "aliases"]
        ).set_index("collection")

    def production(self) -> str:
        """The model version serving ``production`` (read from the collection the alias points to)."""
        return self.metadata(self.alias)["model_version"]

    def delete_collection(self, version: str) -> None:
        """Drop a version's collection and its checkpoint (refused while an alias points to it)."""
        name = self.collection_name(version)
        held = [a for a, c in self.aliases().items() if c == name]
        if held:
            raise DeployError(f"collection {name!r} is behind alias(es) {held}: switch them away before deleting it")
        self.client.delete_collection(name)
        self._meta_cache.pop(name, None)
        self.checkpoint_path(version).unlink(missing_ok=True)

    def _require_complete(self, target: str) -> dict:
        meta = self.metadata(target)
        if meta.get("status") != "complete" or meta["points"] != meta.get("docs"):
            raise IncompleteCollectionError(
                f"collection {meta['collection']!r} (model version {meta.get('model_version')}) is half-built: "
                f"status {meta.get('status')!r}, {meta['points']:,} of {meta.get('docs', 0):,} documents. Resume its "
                "re-embedding job (Deployment.reembed) before searching or promoting it"
            )
        return meta

    def _mark_complete(self, name: str, n: int) -> None:
        """Record in collection ``name``'s metadata that its job finished, after checking it holds ``n`` points."""
        points = int(self.client.count(name, exact=True).count)
        if points != n:
            raise DeployError(f"collection {name!r} holds {points:,} points after the job, expected {n:,}")
        meta = self.client.get_collection(name).config.metadata[_META_KEY]
        self.client.update_collection(name, metadata={_META_KEY: {**meta, "status": "complete", "completed": _now()}})
        self._meta_cache.pop(name, None)

    # -- reading back
    def audit(self, version: str, doc_ids: Sequence[str]) -> pd.Series:
        """Check a version's collection holds every doc exactly once: points, distinct doc ids, missing, unexpected,
        duplicated (read back from the payloads)."""
        name = self.resolve(self.collection_name(version))
        seen: list[str] = []
        offset = None
        while True:
            points, offset = self.client.scroll(
                name, limit=10_000, offset=offset, with_payload=["doc_id"], with_vectors=False
            )
            seen += [p.payload["doc_id"] for p in points]
            if offset is None:
                break
        expected = set(map(str, doc_ids))
        found = set(seen)
        return pd.Series(
            {
                "points": len(seen),
                "distinct doc ids": len(found),
                "missing": len(expected - found),
                "unexpected": len(found - expected),
                "duplicated": len(seen) - len(found),
            },
            name=name,
        )

    def vectors(self, version: str, doc_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of ``doc_ids`` in a version's collection, in that order."""
        name = self.resolve(self.collection_name(version))
        out = []
        for lo in range(0, len(doc_ids), 1000):
            chunk = [str(d) for d in doc_ids[lo : lo + 1000]]
            got = {
                p.payload["doc_id"]: p.vector
                for p in self.client.retrieve(
                    name, ids=[point_id(d) for d in chunk], with_payload=["doc_id"], with_vectors=True
                )
            }
            missing = [d for d in chunk if d not in got]
            if missing:
                raise DeployError(f"collection {name!r} has no point for doc(s) {missing[:5]}")
            out += [got[d] for d in chunk]
        return np.asarray(out, dtype=np.float32)
