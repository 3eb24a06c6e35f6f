"""The re-embedding job: a corpus embedded batch by batch into a version's collection, checkpointed and resumable."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbook.deploy._common import _META_KEY, _now, _read_json, _shown, corpus_hash, point_id
from workbook.deploy.errors import CheckpointError, DeployError, ModelMismatchError
from workbook.deploy.registry import ModelCard, ModelRegistry
from workbook.deploy.store import QdrantStore, _no_local_warning
from workbook.files import write_json
from workbook.retrieval import encode, model_fingerprint


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


@dataclass(frozen=True)
class _Job:
    """One job: its identity (``spec``, recorded in the collection's metadata and in every checkpoint), its corpus
    and its checkpoint file."""

    spec: dict  # collection, model_version, model_fingerprint, corpus_hash, docs, batch_size, batches
    doc_ids: list[str]
    texts: list[str]
    checkpoint: Path

    @property
    def name(self) -> str:
        return self.spec["collection"]

    @property
    def n(self) -> int:
        return self.spec["docs"]

    @property
    def batch_size(self) -> int:
        return self.spec["batch_size"]

    @property
    def n_batches(self) -> int:
        return self.spec["batches"]

    def rows(self, batch: int) -> slice:
        """The corpus rows of batch number ``batch``."""
        return slice(batch * self.batch_size, min((batch + 1) * self.batch_size, self.n))

    def report(self, start: int, stop: int, encode_s=0.0, upsert_s=0.0, wall_s=0.0, processes=1) -> JobReport:
        """The report of a run that did batches ``start`` to ``stop`` (exclusive)."""
        docs = max(0, min(stop * self.batch_size, self.n) - start * self.batch_size)
        return JobReport(self.name, self.spec["model_version"], self.n, self.n_batches, self.batch_size, start, stop,
                         docs, encode_s, upsert_s, wall_s, processes)  # fmt: skip


def run_reembed(
    store: QdrantStore,
    registry: ModelRegistry,
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
    """Embed every document with model ``version`` into its collection in ``store``, batch by batch, resumably.

    The arguments and the guarantees are those of :meth:`workbook.deploy.Deployment.reembed`, which calls this.
    """
    card, model = _registered_model(registry, version, model)
    job = _plan(store, version, card, doc_ids, texts, batch_size)
    if _open_collection(store, job, card):  # complete already: nothing to redo
        return job.report(job.n_batches, job.n_batches)
    start = _resume_from(store, job)
    stop = job.n_batches if max_batches is None else min(job.n_batches, start + max_batches)
    began = time.perf_counter()
    encode_s, upsert_s = _run_batches(store, job, model, range(start, stop), encode_batch_size=encode_batch_size,
                                      processes=processes, show_progress=show_progress)  # fmt: skip
    wall = time.perf_counter() - began
    if stop == job.n_batches:
        store._mark_complete(job.name, job.n)
    return job.report(start, stop, encode_s, upsert_s, wall, processes)


def _registered_model(registry: ModelRegistry, version: str, model) -> tuple[ModelCard, object]:
    """The card of ``version`` and its model: ``model`` after checking its fingerprint, or loaded when ``None``."""
    card = registry.card(version)
    if model is None:
        return card, registry.load(version)
    if (fp := model_fingerprint(model)) != card.fingerprint:
        raise ModelMismatchError(
            f"the model passed for version {version!r} has fingerprint {fp}, but version {version!r} was "
            f"registered with {card.fingerprint}: pass the registered model (or model=None to load it)"
        )
    return card, model


def _plan(store: QdrantStore, version: str, card: ModelCard, doc_ids, texts, batch_size: int) -> _Job:
    """The job for this corpus and batch size, after checking the corpus can be embedded (ids unique, non-empty)."""
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
    spec = {
        "collection": store.collection_name(version),
        "model_version": version,
        "model_fingerprint": card.fingerprint,
        "corpus_hash": corpus_hash(doc_ids, texts),
        "docs": len(doc_ids),
        "batch_size": batch_size,
        "batches": math.ceil(len(doc_ids) / batch_size),
    }
    return _Job(spec, doc_ids, texts, store.checkpoint_path(version))


def _open_collection(store: QdrantStore, job: _Job, card: ModelCard) -> bool:
    """Create the job's collection (status ``building``), or check an existing one holds this model's vectors of
    this corpus. Returns whether it is complete already."""
    from qdrant_client import models as qm  # heavy (~2 s): imported when a job runs, not with the package

    client = store.client
    if not client.collection_exists(job.name):
        client.create_collection(
            job.name,
            # Vectors are L2-normalised by encode(), so the dot product is the cosine: DOT spares local mode a
            # re-normalisation of every stored vector per query (240 ms -> ~25 ms a query on 75k points here).
            vectors_config=qm.VectorParams(size=card.dimension, distance=qm.Distance.DOT),
            **store.collection_options,
            metadata={
                _META_KEY: {
                    **job.spec,
                    "base_model": card.base_model,
                    "dimension": card.dimension,
                    "status": "building",
                    "created": _now(),
                }
            },
        )
        store._fast_local_writes(job.name)
        return False
    meta = store.metadata(job.name)
    for key in ("model_fingerprint", "corpus_hash"):
        if meta.get(key) != job.spec[key]:
            kind = ModelMismatchError if key == "model_fingerprint" else DeployError
            raise kind(
                f"collection {job.name!r} holds vectors for {key.replace('_', ' ')} {meta.get(key)}, this job has "
                f"{job.spec[key]}: refusing to mix them. Delete it (Deployment.delete_collection) to rebuild"
            )
    return meta.get("status") == "complete"


def _resume_from(store: QdrantStore, job: _Job) -> int:
    """The batch to start at: 0 without a checkpoint, else the first batch it does not record (or an earlier one
    the store lost). Raises :class:`CheckpointError` for a checkpoint of another job or one that cannot be read."""
    if not job.checkpoint.exists():
        return 0
    state = _read_json(job.checkpoint, "job checkpoint", CheckpointError)
    for key, value in job.spec.items():
        if state.get(key) != value:
            raise CheckpointError(
                f"job checkpoint {_shown(job.checkpoint)}: field '{key}' is {state.get(key)!r}, this job has "
                f"{value!r}. It belongs to another job: delete it to start over"
            )
    done = state.get("done")
    if not isinstance(done, int) or not 0 <= done <= job.n_batches:
        raise CheckpointError(f"job checkpoint {_shown(job.checkpoint)}: field 'done' must be 0..{job.n_batches}")
    return _first_missing_batch(store, job, done)


def _first_missing_batch(store: QdrantStore, job: _Job, done: int) -> int:
    """The batch to resume from: ``done`` when the store holds every recorded batch (the normal case), else the
    first recorded batch with a point missing (e.g. a power cut lost commits the checkpoint had recorded)."""
    recorded = min(done * job.batch_size, job.n)
    if int(store.client.count(job.name, exact=True).count) >= recorded:
        return done
    for b in range(done):
        ids = [point_id(d) for d in job.doc_ids[job.rows(b)]]
        if len(store.client.retrieve(job.name, ids=ids, with_payload=False, with_vectors=False)) < len(ids):
            return b
    return done


def _run_batches(
    store: QdrantStore, job: _Job, model, batches: range, *, encode_batch_size: int, processes: int, show_progress: bool
) -> tuple[float, float]:
    """Encode, upsert and checkpoint each of ``batches`` in turn. Returns the seconds spent encoding and upserting."""
    pool = model.start_multi_process_pool(["cpu"] * processes) if processes > 1 else None
    done_docs = min(batches.start * job.batch_size, job.n)
    bar = tqdm(total=job.n, initial=done_docs, unit="doc", desc=f"re-embed {job.name}", disable=not show_progress)
    encode_s = upsert_s = 0.0
    try:
        for b in batches:
            rows = job.rows(b)
            t0 = time.perf_counter()
            vectors = _encode_batch(model, pool, job.texts[rows], encode_batch_size)
            t1 = time.perf_counter()
            _upsert_batch(store, job, rows, vectors)
            t2 = time.perf_counter()
            encode_s += t1 - t0
            upsert_s += t2 - t1
            _checkpoint(job, b)
            bar.update(rows.stop - rows.start)
    finally:
        bar.close()
        if pool is not None:
            model.stop_multi_process_pool(pool)
    return encode_s, upsert_s


def _checkpoint(job: _Job, batch: int) -> None:
    """Record ``batch`` as done. Call it only after the batch is stored: a kill before it redoes the batch."""
    write_json(job.checkpoint, {**job.spec, "done": batch + 1, "updated": _now()})


def _encode_batch(model, pool, texts: list[str], batch_size: int) -> np.ndarray:
    """L2-normalised float32 vectors of ``texts``, in this process or with the multi-process ``pool``."""
    if pool is None:
        return encode(model, texts, batch_size=batch_size, show_progress=False)
    return model.encode(
        texts, pool=pool, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
    ).astype(np.float32)


def _upsert_batch(store: QdrantStore, job: _Job, rows: slice, vectors: np.ndarray) -> None:
    """Store one batch's vectors (point id = UUIDv5 of the doc id: a batch written twice overwrites itself)."""
    from qdrant_client import models as qm  # heavy (~2 s): imported when a job runs, not with the package

    ids = job.doc_ids[rows]
    with _no_local_warning():
        store.client.upsert(
            job.name,
            points=qm.Batch(
                ids=[point_id(d) for d in ids],
                vectors=vectors.tolist(),
                payloads=[{"doc_id": d, "model_version": job.spec["model_version"]} for d in ids],
            ),
            wait=True,
        )
