"""Ship a new embedding model safely: model versions, a resumable re-embedding job, blue/green collections in
Qdrant, a shadow test, a promotion gate, an atomic alias cut-over and rollback.

A new embedding model means a new vector space: every document must be re-embedded, and a query must be encoded by
the very model that built the collection it searches. A :class:`Deployment` (one folder, ``root``) holds:

- ``models/``: the **model registry**, one saved folder per version with its card (``model_card.json``: base model,
  training-data hash, metrics, created, weights fingerprint) and ``registry.json`` listing the versions, which one is
  promoted and the promotion history (every write atomic);
- the **vector store**: one Qdrant collection per model version (``docs-<version>``); each point's payload carries
  its doc id and the model version, and the collection's own *metadata* (Qdrant collection metadata, which
  qdrant-client 1.20 supports in local mode and sends to a server) records the model version, its weights fingerprint
  (:func:`workbook.retrieval.model_fingerprint`), the corpus hash and the build status (``building``/``complete``).
  Traffic goes through the ``production`` alias, switched atomically;
- ``jobs/``: the re-embedding job's checkpoints (and logs of jobs run as separate processes).

**Local or server.** By default the store is Qdrant's embedded local mode, a folder (``root/qdrant``): no server to
run, every vector in memory and exact (brute-force) search, one process at a time (it locks the folder). That is
fine for the case study's 74,714 codes (tens of milliseconds a search) and slow well beyond it. Pass a URL instead,
``Deployment(root, url="http://qdrant.internal:6333", api_key=...)``, and the same code talks to a Qdrant server or
cluster (HNSW search, concurrent readers and writers, replication): that is how a team outgrows one machine. The
server must be recent enough to store collection metadata. The registry and the checkpoints stay in ``root`` either
way (put it on shared storage for a team).

Run the re-embedding job headless (the module's command line)::

    python -m workbook.deploy reembed ROOT VERSION DATASET_DIR [--url URL] [--batch-size 256] [--processes 1]
    python -m workbook.deploy status ROOT [--url URL]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from workbook.config import ROOT, Config
from workbook.data import _atomic_write
from workbook.evaluate import DEFAULT_METRICS, RetrievalResult, evaluate_ranking
from workbook.retrieval import encode, model_fingerprint

PRODUCTION_ALIAS = "production"
CARD_FILE = "model_card.json"
REGISTRY_FILE = "registry.json"
COLLECTION_PREFIX = "docs"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Point ids are UUIDv5 of the doc id in this namespace: the same doc always gets the same id, so re-upserting a
#: batch after a crash overwrites it instead of duplicating it.
_POINT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "workbook.deploy/doc")
_META_KEY = "workbook_deploy"


class DeployError(RuntimeError):
    """A deployment step cannot go on; the message says what is wrong and what to do."""


class UnknownVersionError(DeployError):
    """The model version is not in the registry (or its folder is gone)."""


class AliasError(DeployError):
    """An alias points nowhere (never created, or its collection is gone)."""


class IncompleteCollectionError(DeployError):
    """A collection's re-embedding job has not finished: it must not serve or be promoted."""


class ModelMismatchError(DeployError):
    """A collection is being queried (or written) with a model other than the one it was built with."""


class CheckpointError(DeployError):
    """A job checkpoint does not belong to this job (another corpus, model or batch size) or cannot be read."""


class PromotionRefused(DeployError):
    """The promotion gate did not pass (or was not run)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _shown(path: Path) -> str:
    """A path for messages: relative to the repository when inside it, ``$TMPDIR/...`` inside the temporary folder
    (no machine paths in notebook outputs)."""
    path = Path(path)
    if path.is_absolute() and path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT))
    tmp = Path(tempfile.gettempdir()).resolve()
    if path.is_absolute() and path.resolve().is_relative_to(tmp):
        return str(Path("$TMPDIR") / path.resolve().relative_to(tmp))
    return str(path)


def _check_version(version: str) -> str:
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise DeployError(
            f"model version {version!r} is not a valid name: use letters, digits, '.', '_' or '-' (e.g. 'v2'), "
            "at most 64 characters"
        )
    return version


def _read_json(path: Path, what: str, error: type[DeployError] = DeployError) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise error(f"{what} {_shown(path)} is missing") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what} {_shown(path)}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise error(f"{what} {_shown(path)}:1: must hold a JSON object")
    return data


def corpus_hash(doc_ids: Sequence[str], texts: Sequence[str]) -> str:
    """A short hash of the ordered (doc id, text) pairs: a checkpoint or collection belongs to one corpus."""
    digest = hashlib.sha1()
    for doc_id, text in zip(doc_ids, texts, strict=True):
        digest.update(str(doc_id).encode("utf-8") + b"\0" + text.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


def _dimension(model) -> int:
    """The model's embedding size (``get_embedding_dimension`` in sentence-transformers 6, the old name before)."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def point_id(doc_id: str) -> str:
    """The Qdrant point id of a document (UUIDv5 of its id: stable across runs and versions)."""
    return str(uuid.uuid5(_POINT_NAMESPACE, str(doc_id)))


# ------------------------------------------------------------------------------------------------ model versions


@dataclass(frozen=True)
class ModelCard:
    """What a model version is: where it came from, what it was trained on, how good it was, when it was made."""

    version: str
    base_model: str
    train_data_hash: str | None
    metrics: dict
    created: str
    fingerprint: str
    dimension: int
    recipe: dict = field(default_factory=dict)
    notes: str = ""

    def to_dict(self) -> dict:
        """The card as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "card") -> ModelCard:
        """Read a card written by :meth:`to_dict`; a missing field is a clear error naming it."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in data
        ]
        if missing:
            raise DeployError(f"{where}: field(s) {', '.join(missing)} missing from the model card")
        return cls(**{k: data[k] for k in names if k in data})


class ModelRegistry:
    """Saved model versions (one folder each, with its card) and ``registry.json`` (versions, promotion history).

    Args:
        root: the registry folder (created on first write).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.file = self.root / REGISTRY_FILE

    # -- reading
    def _data(self) -> dict:
        if not self.file.exists():
            return {"format": 1, "versions": {}, "production": [], "events": []}
        data = _read_json(self.file, "model registry")
        for key, kind in (("versions", dict), ("production", list), ("events", list)):
            if not isinstance(data.get(key), kind):
                raise DeployError(f"model registry {_shown(self.file)}: field '{key}' missing or not a {kind.__name__}")
        return data

    def _write(self, data: dict) -> None:
        _atomic_write(self.file, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def versions(self) -> list[str]:
        """Registered versions, in registration order."""
        return list(self._data()["versions"])

    def card(self, version: str) -> ModelCard:
        """The card of ``version``.

        Raises:
            UnknownVersionError: no such version in the registry.
        """
        versions = self._data()["versions"]
        if version not in versions:
            known = ", ".join(versions) or "none yet"
            raise UnknownVersionError(
                f"no model version {version!r} in the registry {_shown(self.file)} (registered: {known}); "
                "register it first with ModelRegistry.register"
            )
        return ModelCard.from_dict(versions[version]["card"], where=f"{_shown(self.file)}: version {version!r}")

    def path(self, version: str) -> Path:
        """The saved model folder of ``version``.

        Raises:
            UnknownVersionError: the version is not registered, or its folder is missing.
        """
        self.card(version)
        folder = self.root / self._data()["versions"][version]["folder"]
        if not (folder / CARD_FILE).is_file() or not (folder / "modules.json").is_file():
            raise UnknownVersionError(
                f"model version {version!r} is registered but its folder {_shown(folder)} is missing or incomplete "
                f"(no {CARD_FILE} or modules.json): restore it or register the version again"
            )
        return folder

    def load(self, version: str, device: str | None = None):
        """Load ``version`` as a SentenceTransformer and check its weights still match the card's fingerprint."""
        from workbook.models import load_model

        folder = self.path(version)
        model = load_model(str(folder), device=device)
        card = self.card(version)
        actual = model_fingerprint(model)
        if actual != card.fingerprint:
            raise ModelMismatchError(
                f"the weights in {_shown(folder)} (fingerprint {actual}) are not those registered as version "
                f"{version!r} (fingerprint {card.fingerprint}): the folder was changed after registration"
            )
        return model

    @property
    def promoted(self) -> str | None:
        """The version promoted last (what ``production`` should point to), or ``None``."""
        stack = self._data()["production"]
        return stack[-1] if stack else None

    @property
    def production_history(self) -> list[str]:
        """Promoted versions, oldest first; the last is in production, a rollback returns to the one before."""
        return list(self._data()["production"])

    def events(self) -> pd.DataFrame:
        """Every promotion and rollback: time, action, version, previous version."""
        rows = [{**e, "previous": e.get("previous") or "-"} for e in self._data()["events"]]
        return pd.DataFrame(rows, columns=["at", "action", "version", "previous"])

    def table(self) -> pd.DataFrame:
        """One row per version: base model, data hash, fingerprint, dimension, created, key metrics, promoted."""
        promoted = self.promoted
        rows = []
        for version in self.versions():
            card = self.card(version)
            row = {
                "version": version,
                "base model": card.base_model,
                "train data hash": card.train_data_hash or "-",
                "fingerprint": card.fingerprint,
                "dim": card.dimension,
                "created": card.created,
                **{k: round(float(v), 4) for k, v in sorted(card.metrics.items())},
                "promoted": version == promoted,
            }
            rows.append(row)
        return pd.DataFrame(rows).set_index("version") if rows else pd.DataFrame()

    # -- writing
    def register(
        self,
        version: str,
        model,
        *,
        base_model: str,
        train_data_hash: str | None = None,
        metrics: Mapping[str, float] | None = None,
        recipe: Mapping | None = None,
        notes: str = "",
        overwrite: bool = False,
    ) -> ModelCard:
        """Save ``model`` as ``version`` with its card, and list it in ``registry.json``.

        The model is saved into a temporary folder renamed into place, so a crash leaves no half-saved version.

        Args:
            version: a short name (``v1``, ``2025-06-tuned``); becomes part of the collection name.
            model: a SentenceTransformer.
            base_model: the model it was fine-tuned from (or its own name for an off-the-shelf model).
            train_data_hash: a hash of the training data (``None`` for a model not trained here).
            metrics: metric name -> value measured when it was made (e.g. dev Recall@10).
            recipe: how it was made (loss, steps, learning rate, the trainer's own card, ...).
            overwrite: replace an existing version (refused by default: versions are immutable).

        Returns:
            The card written.
        """
        from transformers.utils import logging as hf_logging

        _check_version(version)
        data = self._data()
        if version in data["versions"] and not overwrite:
            raise DeployError(
                f"model version {version!r} is already registered in {_shown(self.file)}: versions are immutable, "
                "pick a new name (or pass overwrite=True)"
            )
        if version in data["production"] and overwrite:
            raise DeployError(f"model version {version!r} has been promoted: it cannot be overwritten")
        card = ModelCard(
            version=version,
            base_model=base_model,
            train_data_hash=train_data_hash,
            metrics={k: float(v) for k, v in (metrics or {}).items()},
            created=_now(),
            fingerprint=model_fingerprint(model),
            dimension=_dimension(model),
            recipe=json.loads(json.dumps(dict(recipe or {}), default=str)),
            notes=notes,
        )
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / version
        with tempfile.TemporaryDirectory(dir=self.root, prefix=f".{version}-") as tmp:
            staged = Path(tmp) / "model"
            hf_logging.disable_progress_bar()
            try:
                model.save(str(staged))
            finally:
                hf_logging.enable_progress_bar()
            (staged / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(staged, target)
        data["versions"][version] = {"folder": version, "card": card.to_dict()}
        self._write(data)
        return card

    def _record(self, action: str, version: str, previous: str | None) -> None:
        data = self._data()
        if action == "promote":
            data["production"].append(version)
        else:  # rollback
            data["production"].pop()
        data["events"].append({"at": _now(), "action": action, "version": version, "previous": previous})
        self._write(data)


# ------------------------------------------------------------------------------------------------ re-embedding job


@dataclass
class JobReport:
    """What one run of the re-embedding job did, and what it says about throughput and cost."""

    collection: str
    version: str
    docs: int
    batches: int
    batch_size: int
    started_at_batch: int
    batches_done: int
    docs_this_run: int
    encode_s: float
    upsert_s: float
    wall_s: float
    processes: int = 1

    @property
    def complete(self) -> bool:
        """Every batch is in the collection."""
        return self.batches_done == self.batches

    @property
    def docs_per_s(self) -> float:
        """Documents embedded and stored per second in this run (encode + upsert + checkpoint)."""
        return self.docs_this_run / self.wall_s if self.wall_s > 0 else float("nan")

    def projection(self, n_docs: int = 1_000_000, price_per_hour: float | None = None) -> pd.Series:
        """Throughput and cost estimate: docs/s measured here, the time ``n_docs`` would take on this machine, and
        its cost at ``price_per_hour`` (your machine's hourly price; omitted when ``None``)."""
        hours = n_docs / self.docs_per_s / 3600
        out = {
            "docs/s": round(self.docs_per_s, 1),
            "encode share of time": round(self.encode_s / self.wall_s, 3) if self.wall_s else float("nan"),
            f"hours for {n_docs:,} docs": round(hours, 2),
        }
        if price_per_hour is not None:
            out[f"cost for {n_docs:,} docs at {price_per_hour}/h"] = round(hours * price_per_hour, 2)
        return pd.Series(out, name=self.collection)

    def summary(self) -> pd.Series:
        """The report's fields and throughput as one Series."""
        out = dataclasses.asdict(self)
        out.update({"complete": self.complete, "docs/s": round(self.docs_per_s, 1)})
        for key in ("encode_s", "upsert_s", "wall_s"):
            out[key] = round(out[key], 2)
        return pd.Series(out, name=self.collection)


@contextmanager
def _no_local_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Local mode is not recommended")
        yield


# ------------------------------------------------------------------------------------------------ the deployment


class Deployment:
    """A model registry, a Qdrant store (local folder or server) and job checkpoints under one ``root``.

    Args:
        root: the deployment folder (``models/``, ``qdrant/`` in local mode, ``jobs/``).
        url: a Qdrant server or cluster URL; ``None`` (default) uses embedded local mode in ``root/qdrant``.
        api_key: the server's API key, if it needs one.
        alias: the alias production traffic uses.
        prefix: collection names are ``<prefix>-<version>``.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        url: str | None = None,
        api_key: str | None = None,
        alias: str = PRODUCTION_ALIAS,
        prefix: str = COLLECTION_PREFIX,
    ):
        self.root = Path(root)
        self.url = url
        self.api_key = api_key
        self.alias = alias
        self.prefix = prefix
        self.registry = ModelRegistry(self.root / "models")
        self.jobs_dir = self.root / "jobs"
        self.store_path = None if url else self.root / "qdrant"
        self._client = None
        self._meta_cache: dict[str, dict] = {}

    # -- connection
    @property
    def client(self):
        """The ``QdrantClient`` (opened on first use; local mode locks the folder until :meth:`close`)."""
        if self._client is None:
            from qdrant_client import QdrantClient

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

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _fast_local_writes(self, collection: str) -> None:
        """Local mode stores points in SQLite and commits (with an fsync) once per *point*: 5,000 points took 91 s
        here. Write-ahead logging with ``synchronous=NORMAL`` commits without the fsync (1.2 s for the same 5,000)
        and is still durable when the process crashes or is killed, which is what the job's checkpoints guard
        against (a power cut may lose the last commits; the job then re-embeds the batches it cannot find).
        qdrant-client has no option for this, so it reaches into its (pinned, 1.20) local storage; a no-op on a
        server and if the internals move."""
        if self.url:
            return
        try:
            conn = self._client._client.collections[collection].storage.storage
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except (AttributeError, KeyError, TypeError):
            pass

    # -- collections and aliases
    def collection_name(self, version: str) -> str:
        """The collection of a model version: ``<prefix>-<version>``."""
        return f"{self.prefix}-{_check_version(version)}"

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
        (self.jobs_dir / f"{name}.json").unlink(missing_ok=True)

    def _require_complete(self, target: str) -> dict:
        meta = self.metadata(target)
        if meta.get("status") != "complete" or meta["points"] != meta.get("docs"):
            raise IncompleteCollectionError(
                f"collection {meta['collection']!r} (model version {meta.get('model_version')}) is half-built: "
                f"status {meta.get('status')!r}, {meta['points']:,} of {meta.get('docs', 0):,} documents. Resume its "
                "re-embedding job (Deployment.reembed) before searching or promoting it"
            )
        return meta

    # -- the re-embedding job
    def checkpoint_path(self, version: str) -> Path:
        """The job checkpoint of a version's collection."""
        return self.jobs_dir / f"{self.collection_name(version)}.json"

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

        Returns:
            What this run did, with its throughput (:meth:`JobReport.projection` for the cost estimate).
        """
        from qdrant_client import models as qm
        from tqdm.auto import tqdm

        card = self.registry.card(version)
        if model is None:
            model = self.registry.load(version)
        elif (fp := model_fingerprint(model)) != card.fingerprint:
            raise ModelMismatchError(
                f"the model passed for version {version!r} has fingerprint {fp}, but version {version!r} was "
                f"registered with {card.fingerprint}: pass the registered model (or model=None to load it)"
            )
        doc_ids, texts = [str(d) for d in doc_ids], list(texts)
        if len(doc_ids) != len(texts):
            raise DeployError(f"{len(doc_ids)} doc ids for {len(texts)} texts")
        if not doc_ids:
            raise DeployError("the corpus is empty: nothing to embed")
        if len(set(doc_ids)) != len(doc_ids):
            dup = next(d for d in doc_ids if doc_ids.count(d) > 1)
            raise DeployError(f"doc id {dup!r} appears more than once: ids must be unique (they key the points)")
        if batch_size < 1:
            raise DeployError(f"batch_size must be >= 1, got {batch_size}")
        n, chash = len(doc_ids), corpus_hash(doc_ids, texts)
        n_batches = math.ceil(n / batch_size)
        name = self.collection_name(version)
        expected = {
            "collection": name,
            "model_version": version,
            "model_fingerprint": card.fingerprint,
            "corpus_hash": chash,
            "docs": n,
            "batch_size": batch_size,
            "batches": n_batches,
        }
        client = self.client

        if client.collection_exists(name):
            meta = self.metadata(name)
            for key in ("model_fingerprint", "corpus_hash"):
                if meta.get(key) != expected[key]:
                    kind = ModelMismatchError if key == "model_fingerprint" else DeployError
                    raise kind(
                        f"collection {name!r} holds vectors for {key.replace('_', ' ')} {meta.get(key)}, this job has "
                        f"{expected[key]}: refusing to mix them. Delete it (Deployment.delete_collection) to rebuild"
                    )
            if meta.get("status") == "complete":
                return JobReport(name, version, n, n_batches, batch_size, n_batches, n_batches, 0, 0.0, 0.0, 0.0)
        else:
            client.create_collection(
                name,
                # Vectors are L2-normalised by encode(), so the dot product is the cosine: DOT spares local mode a
                # re-normalisation of every stored vector per query (240 ms -> ~25 ms a query on 75k points here).
                vectors_config=qm.VectorParams(size=card.dimension, distance=qm.Distance.DOT),
                metadata={
                    _META_KEY: {
                        **expected,
                        "base_model": card.base_model,
                        "dimension": card.dimension,
                        "status": "building",
                        "created": _now(),
                    }
                },
            )
            self._fast_local_writes(name)

        ckpt_file = self.checkpoint_path(version)
        start = 0
        if ckpt_file.exists():
            state = _read_json(ckpt_file, "job checkpoint", CheckpointError)
            for key, value in expected.items():
                if state.get(key) != value:
                    raise CheckpointError(
                        f"job checkpoint {_shown(ckpt_file)}: field '{key}' is {state.get(key)!r}, this job has "
                        f"{value!r}. It belongs to another job: delete it to start over"
                    )
            done = state.get("done")
            if not isinstance(done, int) or not 0 <= done <= n_batches:
                raise CheckpointError(f"job checkpoint {_shown(ckpt_file)}: field 'done' must be 0..{n_batches}")
            start = self._first_missing_batch(name, doc_ids, batch_size, done)
        stop = n_batches if max_batches is None else min(n_batches, start + max_batches)

        encode_s = upsert_s = 0.0
        began = time.perf_counter()
        pool = model.start_multi_process_pool(["cpu"] * processes) if processes > 1 else None
        bar = tqdm(
            total=n, initial=min(start * batch_size, n), unit="doc", desc=f"re-embed {name}", disable=not show_progress
        )
        try:
            for b in range(start, stop):
                lo, hi = b * batch_size, min((b + 1) * batch_size, n)
                t0 = time.perf_counter()
                if pool is None:
                    vectors = encode(model, texts[lo:hi], batch_size=encode_batch_size, show_progress=False)
                else:
                    vectors = model.encode(
                        texts[lo:hi],
                        pool=pool,
                        batch_size=encode_batch_size,
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                    ).astype(np.float32)
                t1 = time.perf_counter()
                with _no_local_warning():
                    client.upsert(
                        name,
                        points=qm.Batch(
                            ids=[point_id(d) for d in doc_ids[lo:hi]],
                            vectors=vectors.tolist(),
                            payloads=[{"doc_id": d, "model_version": version} for d in doc_ids[lo:hi]],
                        ),
                        wait=True,
                    )
                t2 = time.perf_counter()
                encode_s += t1 - t0
                upsert_s += t2 - t1
                # The checkpoint is written only after the batch is stored: a kill before this line redoes the batch.
                _atomic_write(ckpt_file, json.dumps({**expected, "done": b + 1, "updated": _now()}, indent=1) + "\n")
                bar.update(hi - lo)
        finally:
            bar.close()
            if pool is not None:
                model.stop_multi_process_pool(pool)
        wall = time.perf_counter() - began
        if stop == n_batches:
            self._finish(name, n)
        return JobReport(
            name,
            version,
            n,
            n_batches,
            batch_size,
            start,
            stop,
            max(0, min(stop * batch_size, n) - start * batch_size),
            encode_s,
            upsert_s,
            wall,
            processes,
        )

    def _first_missing_batch(self, name: str, doc_ids: list[str], batch_size: int, done: int) -> int:
        """The batch to resume from: ``done`` when the store holds every recorded batch (the normal case), else the
        first recorded batch with a point missing (e.g. a power cut lost commits the checkpoint had recorded)."""
        recorded = min(done * batch_size, len(doc_ids))
        if int(self.client.count(name, exact=True).count) >= recorded:
            return done
        for b in range(done):
            ids = [point_id(d) for d in doc_ids[b * batch_size : (b + 1) * batch_size]]
            if len(self.client.retrieve(name, ids=ids, with_payload=False, with_vectors=False)) < len(ids):
                return b
        return done

    def _finish(self, name: str, n: int) -> None:
        points = int(self.client.count(name, exact=True).count)
        if points != n:
            raise DeployError(f"collection {name!r} holds {points:,} points after the job, expected {n:,}")
        meta = self.client.get_collection(name).config.metadata[_META_KEY]
        self.client.update_collection(name, metadata={_META_KEY: {**meta, "status": "complete", "completed": _now()}})
        self._meta_cache.pop(name, None)

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

    # -- serving
    def retriever(self, target: str | None = None, model=None, *, allow_incomplete: bool = False) -> Retriever:
        """A searcher bound to ``target`` (default: the production alias).

        Args:
            model: the query encoder; ``None`` loads, from the registry, the version the collection was built with
                (the safe way: the index says which model it needs).
        """
        target = target or self.alias
        if model is None:
            model = self.registry.load(self.metadata(target)["model_version"])
        return Retriever(self, target, model, allow_incomplete=allow_incomplete)

    # -- blue/green
    def promote(self, version: str, decision: GateDecision | None = None, *, force: bool = False) -> dict:
        """Point the production alias at ``version``'s collection, in one atomic alias operation.

        The first promotion (nothing in production yet) needs no gate. Later ones need a passed
        :class:`GateDecision` for this version, unless ``force=True``.

        Raises:
            UnknownVersionError, IncompleteCollectionError, PromotionRefused: with what to do.
        """
        from qdrant_client import models as qm

        self.registry.card(version)
        name = self.collection_name(version)
        if not self.client.collection_exists(name):
            raise DeployError(f"version {version!r} has no collection {name!r}: run its re-embedding job first")
        self._require_complete(name)
        current = self.aliases().get(self.alias)
        if current == name:
            return {"production": version, "previous": version, "switched": False}
        if current is not None and not force:
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
        previous = self.metadata(current)["model_version"] if current in self.collections() else None
        ops = []
        if current is not None:
            ops.append(qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=self.alias)))
        ops.append(qm.CreateAliasOperation(create_alias=qm.CreateAlias(collection_name=name, alias_name=self.alias)))
        self.client.update_collection_aliases(change_aliases_operations=ops)  # one request: no moment without alias
        self.registry._record("promote", version, previous)
        return {"production": version, "previous": previous, "switched": True}

    def rollback(self) -> dict:
        """Point production back at the version promoted before the current one.

        Raises:
            AliasError: nothing is in production.
            DeployError: nothing to roll back to, the registry and the alias disagree, or the previous collection
                is gone.
        """
        from qdrant_client import models as qm

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
        self.client.update_collection_aliases(
            change_aliases_operations=[
                qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=self.alias)),
                qm.CreateAliasOperation(create_alias=qm.CreateAlias(collection_name=name, alias_name=self.alias)),
            ]
        )
        self.registry._record("rollback", previous, current)
        return {"production": previous, "previous": current, "switched": True}


# ------------------------------------------------------------------------------------------------ search + guard


class Retriever:
    """Search one collection (or alias) with one query model, refusing a model the collection was not built with.

    The model's fingerprint is computed once (its weights must not change afterwards); every search re-resolves the
    alias, so a retriever bound to ``production`` notices a cut-over to another model's collection and raises
    :class:`ModelMismatchError` instead of returning nonsense.
    """

    def __init__(self, deployment: Deployment, target: str, model, *, allow_incomplete: bool = False):
        self.deployment = deployment
        self.target = target
        self.model = model
        self.allow_incomplete = allow_incomplete
        self.fingerprint = model_fingerprint(model)
        self.dimension = _dimension(model)
        self.collection = self.check()

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
        from qdrant_client import models as qm

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

    def ranked(self, queries: Mapping[str, str], k: int = 10) -> dict[str, list[str]]:
        """Query id -> top-``k`` doc ids."""
        hits = self.search(list(queries.values()), k)
        return {q: [d for d, _ in h] for q, h in zip(queries, hits, strict=True)}


# ------------------------------------------------------------------------------------------------ shadow test + gate


@dataclass
class ShadowReport:
    """The old (serving) and new (candidate) retrievers run side by side on the same queries.

    Attributes:
        overlap: per query: ``labelled`` (bool) and ``overlap`` (|top-k old ∩ top-k new| / k).
        old, new: metrics of each on the labelled queries (per query kept).
        latency_ms: per sampled query, one query at a time (encode + search): columns ``old``, ``new``.
    """

    old_name: str
    new_name: str
    k: int
    metric: str
    overlap: pd.DataFrame
    old: RetrievalResult
    new: RetrievalResult
    latency_ms: pd.DataFrame
    old_ranked: dict[str, list[str]] = field(default_factory=dict)
    new_ranked: dict[str, list[str]] = field(default_factory=dict)

    def outcomes(self, metric: str | None = None) -> pd.Series:
        """Per labelled query: ``win`` (new better on ``metric``), ``loss`` or ``tie``."""
        metric = metric or self.metric
        delta = self.new.per_query[metric] - self.old.per_query[metric]
        return pd.Series(np.select([delta > 1e-12, delta < -1e-12], ["win", "loss"], "tie"), index=delta.index)

    def examples(
        self, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], outcome: str = "win", n: int = 5
    ) -> pd.DataFrame:
        """The labelled queries the candidate won (or lost) by most: the query, its relevant docs, each side's top
        hit and the gate metric of each side."""
        delta = self.new.per_query[self.metric] - self.old.per_query[self.metric]
        picked = delta[self.outcomes() == outcome]
        picked = picked.sort_index().sort_values(ascending=outcome != "win", kind="stable").index[:n]
        rows = []
        for q in picked:
            rows.append(
                {
                    "query": queries[q],
                    "relevant": ", ".join(sorted(d for d, g in qrels[q].items() if g > 0)),
                    f"top-1 {self.old_name}": (self.old_ranked.get(q) or ["-"])[0],
                    f"top-1 {self.new_name}": (self.new_ranked.get(q) or ["-"])[0],
                    f"{self.metric} old": round(float(self.old.per_query.loc[q, self.metric]), 3),
                    f"{self.metric} new": round(float(self.new.per_query.loc[q, self.metric]), 3),
                }
            )
        return pd.DataFrame(rows, index=pd.Index(list(picked), name="query id"))

    def metric_table(self) -> pd.DataFrame:
        """Mean of each metric, old vs new, and the delta."""
        old, new = self.old.summary(), self.new.summary()
        return pd.DataFrame({"old": old, "new": new, "delta": new - old}).round(4)

    def summary(self) -> pd.Series:
        """The numbers the gate reads: overlap, win rate, the gate metric old/new/delta, latency p50/p95."""
        counts = self.outcomes().value_counts()
        wins, losses, ties = (int(counts.get(x, 0)) for x in ("win", "loss", "tie"))
        lab = self.overlap[self.overlap["labelled"]]["overlap"]
        unl = self.overlap[~self.overlap["labelled"]]["overlap"]
        k = self.k
        out = {
            f"overlap@{k} labelled": lab.mean() if len(lab) else float("nan"),
            f"overlap@{k} unlabelled": unl.mean() if len(unl) else float("nan"),
            "wins": wins,
            "losses": losses,
            "ties": ties,
            "win rate": wins / (wins + losses) if wins + losses else 0.5,
            f"{self.metric} old": self.old[self.metric],
            f"{self.metric} new": self.new[self.metric],
            f"{self.metric} delta": self.new[self.metric] - self.old[self.metric],
        }
        for side in ("old", "new"):
            out[f"latency p50 {side} (ms)"] = float(np.percentile(self.latency_ms[side], 50))
            out[f"latency p95 {side} (ms)"] = float(np.percentile(self.latency_ms[side], 95))
        out["latency p95 ratio"] = out["latency p95 new (ms)"] / out["latency p95 old (ms)"]
        return pd.Series(out, name=f"{self.new_name} vs {self.old_name}")


def sample_queries(queries: Mapping[str, str], n: int, seed: int) -> dict[str, str]:
    """A seeded sample of ``n`` queries (all when fewer), sorted by id."""
    ids = sorted(queries)
    if len(ids) > n:
        ids = sorted(np.random.default_rng(seed).choice(ids, size=n, replace=False).tolist())
    return {q: queries[q] for q in ids}


def refusal(action) -> str:
    """Run ``action`` (a callable) and return the :class:`DeployError` it raises as ``"ErrorClass: message"``.

    For showing faults in a notebook; raises ``AssertionError`` when the action succeeds instead.
    """
    try:
        action()
    except DeployError as exc:
        return f"{type(exc).__name__}: {exc}"
    raise AssertionError("expected a DeployError, but the action succeeded")


def overlap_at_k(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """|top-k of a ∩ top-k of b| / k."""
    return len(set(a[:k]) & set(b[:k])) / k


def shadow_test(
    old: Retriever,
    new: Retriever,
    labelled: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    unlabelled: Mapping[str, str] | None = None,
    *,
    k: int = 10,
    metrics: Sequence[str] = DEFAULT_METRICS,
    metric: str = "ndcg@10",
    latency_queries: int = 200,
    seed: int = 0,
) -> ShadowReport:
    """Run the candidate beside production on the same queries, without serving its answers.

    Args:
        old, new: the serving and the candidate retrievers (each with its own model: the guard checks).
        labelled: query id -> text for queries with judgements in ``qrels`` (metrics, win rate, overlap).
        unlabelled: query id -> text for traffic without judgements (overlap only): how much answers would change.
        k: depth of the overlap.
        metrics, metric: metrics to report; the one the win rate and the gate use.
        latency_queries: how many queries (seeded sample of all) to time one at a time, old and new interleaved.

    Returns:
        The report; :func:`promotion_gate` turns it into a decision.
    """
    unlabelled = dict(unlabelled or {})
    depth = max(k, *(int(m.split("@")[1]) for m in metrics))
    queries = {**labelled, **unlabelled}
    old_rank = old.ranked(queries, depth)
    new_rank = new.ranked(queries, depth)
    overlap = pd.DataFrame(
        {
            "labelled": [q in labelled for q in queries],
            "overlap": [overlap_at_k(old_rank[q], new_rank[q], k) for q in queries],
        },
        index=pd.Index(list(queries), name="query"),
    )
    judged = {q: qrels[q] for q in labelled}
    old_res = evaluate_ranking({q: old_rank[q] for q in labelled}, judged, metrics, name=old.collection)
    new_res = evaluate_ranking({q: new_rank[q] for q in labelled}, judged, metrics, name=new.collection)
    rng = np.random.default_rng(seed)
    sample = sorted(rng.choice(list(queries), size=min(latency_queries, len(queries)), replace=False).tolist())
    for r in (old, new):  # warm-up: the first call pays for lazy initialisation
        r.search([queries[sample[0]]], k)
    times = {"old": [], "new": []}
    for i, q in enumerate(sample):
        order = (("old", old), ("new", new)) if i % 2 == 0 else (("new", new), ("old", old))
        for side, r in order:
            t0 = time.perf_counter()
            r.search([queries[q]], k)
            times[side].append((time.perf_counter() - t0) * 1000)
    latency = pd.DataFrame(times, index=pd.Index(sample, name="query"))
    return ShadowReport(
        old.collection, new.collection, k, metric, overlap, old_res, new_res, latency, old_rank, new_rank
    )


@dataclass
class GateDecision:
    """Whether ``version`` may replace production: each check with its value, threshold and verdict.

    :func:`promotion_gate` is an improvement gate: a candidate no better than production (e.g. the same model)
    fails it.
    """

    version: str
    passed: bool
    checks: pd.DataFrame

    def __bool__(self) -> bool:
        return self.passed


def promotion_gate(report: ShadowReport, cfg: Config, version: str) -> GateDecision:
    """Turn a shadow test into a promote / do-not-promote decision with the thresholds in ``cfg`` (``gate_*``).

    This is an **improvement gate**: it promotes a fine-tuned candidate only when it is strictly better than
    production on the labelled queries, so a candidate identical to production (every query a tie) fails it.

    Checks: the gate metric's delta must exceed ``gate_min_metric_delta`` (strictly); the win rate, wins / (wins +
    losses) with ties excluded, must exceed ``gate_min_win_rate`` (strictly) over at least one decided query; the
    candidate's p95 latency relative to production (and against an absolute budget when
    ``cfg.gate_max_p95_latency_ms`` is set) must stay within bounds; and overlap with production on unlabelled
    queries must stay above a floor (near zero means the new index is broken, not better).
    """
    s = report.summary()
    metric = cfg.gate_metric
    delta = float(report.new[metric] - report.old[metric])
    outcomes = report.outcomes(metric)
    wins, losses = int((outcomes == "win").sum()), int((outcomes == "loss").sum())
    win_rate = wins / (wins + losses) if wins + losses else float("nan")  # no decided query: no evidence either way
    overlap_key = f"overlap@{report.k} unlabelled"
    overlap = s[overlap_key] if not np.isnan(s[overlap_key]) else s[f"overlap@{report.k} labelled"]
    p95, ratio = s["latency p95 new (ms)"], s["latency p95 ratio"]
    rows = [
        (f"{metric} delta > {cfg.gate_min_metric_delta:g}", delta, cfg.gate_min_metric_delta),
        (f"win rate > {cfg.gate_min_win_rate:g} (ties excluded)", win_rate, cfg.gate_min_win_rate),
        (f"p95 latency ratio <= {cfg.gate_max_latency_ratio:g}", ratio, cfg.gate_max_latency_ratio),
        (f"overlap@{report.k} >= {cfg.gate_min_overlap:g}", overlap, cfg.gate_min_overlap),
    ]  # fmt: skip
    passed = [
        delta > cfg.gate_min_metric_delta,
        wins + losses > 0 and win_rate > cfg.gate_min_win_rate,
        ratio <= cfg.gate_max_latency_ratio,
        overlap >= cfg.gate_min_overlap,
    ]
    if cfg.gate_max_p95_latency_ms is not None:  # an absolute budget only when one is configured
        rows.insert(2, (f"p95 latency <= {cfg.gate_max_p95_latency_ms:g} ms", p95, cfg.gate_max_p95_latency_ms))
        passed.insert(2, p95 <= cfg.gate_max_p95_latency_ms)
    checks = pd.DataFrame(rows, columns=["check", "value", "threshold"]).set_index("check")
    checks["passed"] = passed
    checks["value"] = checks["value"].astype(float).round(4)
    checks["passed"] = checks["passed"].astype(bool)
    return GateDecision(version=version, passed=bool(checks["passed"].all()), checks=checks)


# ------------------------------------------------------------------------------------------------ multi-process


def compare_encoding(model, texts: Sequence[str], processes: int = 2, batch_size: int = 64) -> pd.DataFrame:
    """Docs/s of one process vs sentence-transformers' multi-process pool of ``processes`` CPU workers.

    The pool's start-up (spawning workers, each loading torch and the model) is timed separately: it is paid once
    per job. Returns one row per setting: docs/s, seconds, start-up seconds.
    """
    texts = list(texts)
    encode(model, texts[:batch_size], batch_size=batch_size, show_progress=False)  # warm-up
    t0 = time.perf_counter()
    encode(model, texts, batch_size=batch_size, show_progress=False)
    single = time.perf_counter() - t0
    t0 = time.perf_counter()
    pool = model.start_multi_process_pool(["cpu"] * processes)
    try:
        model.encode(texts[: 2 * batch_size], pool=pool, batch_size=batch_size)  # workers load the model
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.encode(texts, pool=pool, batch_size=batch_size, normalize_embeddings=True)
        pooled = time.perf_counter() - t0
    finally:
        model.stop_multi_process_pool(pool)
    rows = {
        "1 process": {"docs/s": len(texts) / single, "seconds": single, "start-up s": 0.0},
        f"pool of {processes}": {"docs/s": len(texts) / pooled, "seconds": pooled, "start-up s": startup},
    }
    return pd.DataFrame.from_dict(rows, orient="index").round(2)


# ------------------------------------------------------------------------------------------------ jobs as processes


def reembed_command(
    root: str | Path,
    version: str,
    dataset: str | Path,
    *,
    url: str | None = None,
    batch_size: int = 256,
    processes: int = 1,
) -> list[str]:
    """The command line that runs the re-embedding job headless (``python -m workbook.deploy reembed ...``)."""
    cmd = [
        sys.executable,
        "-m",
        "workbook.deploy",
        "reembed",
        str(root),
        version,
        str(dataset),
        "--batch-size",
        str(batch_size),
        "--processes",
        str(processes),
        "--no-progress",
    ]
    return cmd + (["--url", url] if url else [])


def kill_job_after(cmd: Sequence[str], checkpoint: str | Path, batches: int, timeout: float = 3600) -> int:
    """Start a job process and SIGKILL it (no clean-up, like a crash or an OOM kill) once its checkpoint records
    at least ``batches`` batches.

    Returns:
        The batches the checkpoint records after the kill.

    Raises:
        DeployError: the job ended (or timed out) before reaching ``batches``.
    """
    checkpoint = Path(checkpoint)
    log = checkpoint.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)

    def done() -> int:
        try:
            return int(json.loads(checkpoint.read_text())["done"])
        except (OSError, ValueError, KeyError):  # not written yet
            return 0

    with open(log, "w") as out:
        # its own session, so the kill reaches the job and any worker processes it started, and nothing else
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while done() < batches:
                if proc.poll() is not None:
                    raise DeployError(f"the job exited (code {proc.returncode}) before {batches} batches; see {log}")
                if time.monotonic() > deadline:
                    raise DeployError(f"the job did not reach {batches} batches in {timeout:.0f} s; see {log}")
                time.sleep(0.02)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return done()


# ------------------------------------------------------------------------------------------------ command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m workbook.deploy reembed|status``: run the re-embedding job headless, or show the store."""
    parser = argparse.ArgumentParser(prog="python -m workbook.deploy", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    job = sub.add_parser("reembed", help="embed a BEIR corpus with a registered model version (resumable)")
    job.add_argument("root")
    job.add_argument("version")
    job.add_argument("dataset", help="a BEIR-layout folder (its corpus.jsonl is embedded, title + text)")
    job.add_argument("--batch-size", type=int, default=256)
    job.add_argument("--encode-batch-size", type=int, default=64)
    job.add_argument("--processes", type=int, default=1)
    job.add_argument("--no-progress", action="store_true")
    status = sub.add_parser("status", help="list collections, versions and aliases")
    status.add_argument("root")
    for p in (job, status):
        p.add_argument("--url", default=None, help="a Qdrant server URL (default: local mode in ROOT/qdrant)")
        p.add_argument("--api-key-env", default="QDRANT_API_KEY", help="environment variable holding the API key")
    args = parser.parse_args(argv)
    with Deployment(args.root, url=args.url, api_key=os.environ.get(args.api_key_env)) as dep:
        if args.command == "status":
            print(dep.status().to_string())
            return 0
        from workbook.data import load_dataset

        ds = load_dataset(args.dataset)
        report = dep.reembed(
            args.version,
            ds.doc_ids(),
            ds.doc_texts(),
            batch_size=args.batch_size,
            encode_batch_size=args.encode_batch_size,
            processes=args.processes,
            show_progress=not args.no_progress,
        )
        print(json.dumps(report.summary().to_dict(), default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
