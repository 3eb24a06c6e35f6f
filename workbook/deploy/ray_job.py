"""The re-embedding job on Ray Data: the same contract as :func:`workbook.deploy.jobs.run_reembed`, encoded by an
actor pool that spans every CPU (or GPU) of a Ray cluster.

The pipeline: the job's batches (the checkpoint's unit: ``batch_size`` documents, in corpus order) become the rows of
a Ray dataset → ``map_batches`` hands each to an encoder actor (one model load per actor, ``actors`` of them, each
with ``cpus_per_actor`` CPUs, or ``gpus_per_actor`` GPUs) → the driver receives the vectors **in batch order**
(``preserve_order``) and writes each batch to the vector store, then checkpoints it. So the guarantees are those of
the single-process job:

- deterministic point ids (UUIDv5 of the doc id): a batch written twice overwrites itself;
- a batch is checkpointed only after it is stored, so a killed **driver** resumes, on the next run, from the first
  batch the checkpoint does not record;
- a killed **worker** (an actor's process) is restarted by Ray and its batch retried (Ray Data's actor pools run with
  ``max_restarts=-1`` and ``max_task_retries=-1``): the job finishes in the same run;
- the vectors equal the single-process job's: each batch is encoded alone, with the same ``encode_batch_size``, by the
  same registered model (each actor loads it through the registry, which checks the weights against the card);
- the collection is stamped with the model version, its fingerprint and the corpus hash, ``building`` until the last
  batch is in, then ``complete``.

Writes go through the driver because Qdrant's embedded local mode lets one process open the store; against a Qdrant
server, the driver's writes are small next to the encoding. At a larger scale the dataset's rows would be references
to corpus shards read by the actors; the batch rows here carry their texts, which suits corpora up to a few million
short documents.

Ray is the optional extra ``scale`` (``pip install -e '.[scale]'``); this module imports it only when a job runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from workbook.deploy.errors import DeployError
from workbook.deploy.jobs import JobReport, _checkpoint, _open_collection, _plan, _resume_from, _upsert_batch
from workbook.deploy.registry import ModelRegistry
from workbook.deploy.store import QdrantStore

#: What a Ray worker needs beside the package itself: offline models, one torch thread per CPU it was given.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


class _Encoder:
    """A Ray Data actor: loads a registered model once (the registry checks its fingerprint against the card),
    then encodes one job batch per call."""

    def __init__(self, registry_root: str, version: str, encode_batch_size: int, threads: int, device: str | None):
        import torch

        torch.set_num_threads(max(1, threads))
        self.model = ModelRegistry(registry_root).load(version, device=device)
        self.encode_batch_size = encode_batch_size

    def __call__(self, batch: dict) -> dict:
        from workbook.retrieval import encode

        vectors = [encode(self.model, list(texts), batch_size=self.encode_batch_size, show_progress=False)
                   for texts in batch["texts"]]  # fmt: skip
        return {"batch": batch["batch"], "vectors": np.array([v.tobytes() for v in vectors], dtype=object),
                "pid": np.full(len(vectors), os.getpid())}  # fmt: skip


#: Ray Data's internal logger that warns, once per process, that progress bars are off (we turn them off on purpose:
#: the driver shows its own). An internal name: ``tests/test_scale.py`` fails when it moves.
RAY_PROGRESS_LOGGER = "ray.data._internal.progress"


def connect(address: str | None = None) -> dict:
    """Connect this process to Ray (``address``: a cluster's ``host:port``; ``None``: the running one, if any, or a
    new local one), with the workers' environment. Returns the cluster's resources (CPU, GPU counts)."""
    logging.getLogger("ray.widgets.util").setLevel(logging.WARNING)  # "install ipywidgets" at import otherwise
    import ray
    import ray.data  # configures its loggers on import: quieten them after

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # one INFO line per plan and dataset otherwise
    logging.getLogger(RAY_PROGRESS_LOGGER).setLevel(logging.ERROR)  # "Progress bars disabled": we turn them off
    if not ray.is_initialized():
        ray.init(address=address, runtime_env={"env_vars": WORKER_ENV}, log_to_driver=False,
                 include_dashboard=False, configure_logging=False)  # fmt: skip
    return ray.cluster_resources()


def cluster_nodes() -> int:
    """Live nodes of the cluster this process is connected to (0 when it is not connected)."""
    import ray

    return sum(n["Alive"] for n in ray.nodes()) if ray.is_initialized() else 0


def disconnect() -> bool:
    """Disconnect this process from Ray (the cluster keeps running); returns whether it is still connected."""
    import ray

    ray.shutdown()
    return ray.is_initialized()


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports on 127.0.0.1 (all held open while they are picked, so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


logger = logging.getLogger(__name__)

#: Attempts per node: a node whose ``ray start`` exits during start-up (a port taken between picking and binding,
#: a GCS overloaded past Ray's own 30 s registration wait) is started again with new ports.
NODE_START_ATTEMPTS = 3
#: What ``ray start --block`` prints once its node is registered with the cluster (Ray's ``scripts.py``): the node is
#: up. Read from the node's log, so waiting costs no process (a ``ray status`` poll imports Ray: seconds each, and
#: over a minute on 2 busy cores).
_NODE_UP = "This command will now block forever"
#: The ``ray start`` options whose ports the node's agents would otherwise pick themselves and report through port
#: files, which the raylet waits for only 15 s (Ray issue 65983: on 2 busy cores the dashboard agent's imports alone
#: take longer, and the raylet exits with "Timed out waiting for file .../metrics_agent_port_...").
_AGENT_PORT_OPTIONS = ("--metrics-export-port", "--dashboard-agent-grpc-port", "--dashboard-agent-listen-port",
                       "--runtime-env-agent-port")  # fmt: skip


@contextlib.contextmanager
def local_cluster(
    nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 256, temp_dir: str | Path | None = None
) -> Iterator[str]:
    """A real Ray cluster on this machine, on 127.0.0.1: a head node and ``nodes - 1`` worker nodes, each a
    ``ray start --block`` process group of its own, stopped (and only they) on exit.

    Every port is chosen here, the agents' too (so the raylet never waits on a slow agent's port file), each node's
    output goes to a log file that also tells when the node is up, and a node whose ``ray start`` exits during
    start-up is started again (:data:`NODE_START_ATTEMPTS` in all); the error after the last attempt quotes its log.

    Yields:
        The cluster's address (``127.0.0.1:PORT``) for :func:`connect` or ``run_reembed_ray(address=...)``.
    """
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists() and shutil.which("ray") is None:
        raise DeployError("the `ray` command is missing: install the scale extra (pip install -e '.[scale]')")
    ray_cmd = str(ray_bin) if ray_bin.exists() else "ray"
    env = {**os.environ, **WORKER_ENV, "RAY_USAGE_STATS_ENABLED": "0"}
    logs = Path(tempfile.mkdtemp(prefix="workbook-ray-start-"))
    procs: list[subprocess.Popen] = []
    address = ""

    def start(node: int) -> None:
        nonlocal address
        for attempt in range(1, NODE_START_ATTEMPTS + 1):
            gcs, *agent_ports = _free_ports(1 + len(_AGENT_PORT_OPTIONS))
            if node == 0:
                address = f"127.0.0.1:{gcs}"
                # --no-monitor (hidden, no autoscaler on a fixed local cluster) and no log monitor: two Python processes
                # fewer on the cores the node's agents start on
                role = ["--head", f"--port={gcs}", "--include-dashboard=false", "--no-monitor"]
                role += [f"--temp-dir={Path(temp_dir).resolve()}"] if temp_dir is not None else []
            else:
                role = [f"--address={address}"]
            cmd = [ray_cmd, "start", *role, "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus_per_node}",
                   "--num-gpus=0", f"--object-store-memory={object_store_mb * 1024 * 1024}", "--disable-usage-stats",
                   "--include-log-monitor=false",
                   *[f"{opt}={port}" for opt, port in zip(_AGENT_PORT_OPTIONS, agent_ports, strict=True)]]  # fmt: skip
            log = logs / f"node{node}-attempt{attempt}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(proc)
            try:
                _wait_until_up(proc, log)
                return
            except DeployError:
                _stop([procs.pop()])
                if attempt == NODE_START_ATTEMPTS:
                    raise
                logger.warning("Ray node %d did not start (attempt %d of %d, log %s); starting it again",
                               node, attempt, NODE_START_ATTEMPTS, log)  # fmt: skip

    try:
        for node in range(nodes):
            start(node)
    except BaseException:
        _stop(procs)  # the start-up logs stay, for the error that names them
        raise
    shutil.rmtree(logs, ignore_errors=True)  # every node is up: its start-up logs are no longer needed
    try:
        yield address
    finally:
        _stop(procs)


def _stop(procs: list[subprocess.Popen], grace: float = 3.0) -> None:
    """Stop each ``ray start --block`` process group: SIGTERM, then SIGKILL to whatever of the group is left after
    ``grace`` seconds in all (a worker node ignored SIGTERM for over 30 s here, and a head that exits can leave its
    group's processes behind)."""
    for proc in reversed(procs):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in reversed(procs):
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for proc in reversed(procs):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _log_tail(log: Path, lines: int = 8) -> str:
    text = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
    return "\n".join(text[-lines:]) or "(no output)"


def _wait_until_up(proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Wait until ``ray start --block`` writes to ``log`` that its node is up; a ``ray start`` that exits first, or
    one still starting after ``timeout`` seconds, is an error quoting the end of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _NODE_UP in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise DeployError(f"`ray start` exited (code {proc.returncode}) before its node was up; the end of "
                              f"{log}:\n{_log_tail(log)}")  # fmt: skip
        time.sleep(0.5)
    raise DeployError(f"`ray start` did not bring its node up in {timeout:.0f} s; the end of {log}:\n{_log_tail(log)}")


def run_reembed_ray(
    store: QdrantStore,
    registry: ModelRegistry,
    version: str,
    doc_ids: Sequence[str],
    texts: Sequence[str],
    *,
    address: str | None = None,
    actors: int | None = None,
    cpus_per_actor: float = 1,
    gpus_per_actor: float = 0,
    batch_size: int = 256,
    encode_batch_size: int = 64,
    max_batches: int | None = None,
    show_progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
) -> JobReport:
    """Embed every document with model ``version`` into its collection, encoding on a Ray cluster's actor pool.

    Args:
        store, registry, version, doc_ids, texts, batch_size, encode_batch_size, max_batches, show_progress: as
            :meth:`workbook.deploy.Deployment.reembed`.
        address: the Ray cluster (``host:port`` of its head); ``None`` joins the one this process is connected to,
            or starts a local one on this machine.
        actors: encoder actors (default: as many as the cluster's CPUs allow at ``cpus_per_actor``, or its GPUs).
        cpus_per_actor, gpus_per_actor: what each actor reserves (a GPU actor encodes on its GPU).
        on_batch: called as ``on_batch(batch, worker_pid)`` after each batch is stored and checkpointed.

    Returns:
        What this run did (``processes`` = the actors), with its throughput.
    """
    import ray
    import ray.data

    card = registry.card(version)
    job = _plan(store, version, card, doc_ids, texts, batch_size)
    if _open_collection(store, job, card):
        return job.report(job.n_batches, job.n_batches)
    start = _resume_from(store, job)
    stop = job.n_batches if max_batches is None else min(job.n_batches, start + max_batches)
    resources = connect(address)
    if actors is None:
        per = gpus_per_actor if gpus_per_actor else cpus_per_actor
        actors = max(1, int(resources.get("GPU" if gpus_per_actor else "CPU", 1) // per))
    began = time.perf_counter()
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # the driver stores and checkpoints batches in corpus order
    ctx.enable_progress_bars = False
    rows = [{"batch": b, "texts": job.texts[job.rows(b)]} for b in range(start, stop)]
    encoded = ray.data.from_items(rows, override_num_blocks=max(1, len(rows))).map_batches(
        _Encoder,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs={"registry_root": str(registry.root.resolve()), "version": version,
                               "encode_batch_size": encode_batch_size, "threads": int(max(1, cpus_per_actor)),
                               "device": "cuda" if gpus_per_actor else None},
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor,
        # Ray Data's actor pools restart a dead actor and retry its batch (max_restarts = max_task_retries = -1).
    )  # fmt: skip
    upsert_s, expected = 0.0, start
    bar = tqdm(total=job.n, initial=min(start * job.batch_size, job.n), unit="doc", desc=f"re-embed {job.name} (ray)",
               disable=not show_progress)  # fmt: skip
    try:
        for row in encoded.iter_rows():
            b = int(row["batch"])
            if b != expected:
                raise DeployError(f"Ray returned batch {b} where batch {expected} was due: order was not preserved")
            vectors = np.frombuffer(row["vectors"], dtype=np.float32).reshape(-1, card.dimension)
            t0 = time.perf_counter()
            _upsert_batch(store, job, job.rows(b), vectors)
            upsert_s += time.perf_counter() - t0
            _checkpoint(job, b)  # only after the batch is stored
            expected = b + 1
            bar.update(job.rows(b).stop - job.rows(b).start)
            if on_batch is not None:
                on_batch(b, int(row["pid"]))
    finally:
        bar.close()
    if expected != stop:
        raise DeployError(f"the Ray job ended after batch {expected} of {stop}")
    wall = time.perf_counter() - began
    if stop == job.n_batches:
        store._mark_complete(job.name, job.n)
    return job.report(start, stop, wall - upsert_s, upsert_s, wall, actors)
