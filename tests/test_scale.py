"""The re-embedding job on Ray Data, on a real two-node Ray cluster started on 127.0.0.1 (``ray start --head`` plus a
worker node, stopped after): a worker killed mid-job, a driver killed mid-job and resumed, and vectors exactly equal
to the single-process job's. Needs the ``scale`` extra (``make test`` installs it)."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

pytest.importorskip("ray", reason="the scale extra is not installed: pip install -e '.[scale]'")

from workbook import deploy as dp  # noqa: E402
from workbook.config import get_config  # noqa: E402
from workbook.data import save_dataset, subset  # noqa: E402
from workbook.deploy.ray_job import local_cluster, run_reembed_ray  # noqa: E402
from workbook.icd10cm import load_icd10cm  # noqa: E402
from workbook.models import MINILM, load_model  # noqa: E402

CATEGORIES = {"E11", "I20", "I21", "I22", "I25", "I50"}  # 190 codes, as in tests/test_deploy.py
BATCH = 16  # 12 batches


@pytest.fixture(scope="module")
def ds():
    full = load_icd10cm(get_config(fast=True))
    return subset(full, doc_ids=[d for d in full.corpus if d[:3] in CATEGORIES], name="icd-slice")


@pytest.fixture(scope="module")
def model():
    return load_model(MINILM, get_config(fast=True))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, ds, model):
    """The single-process job's vectors (the contract the Ray job must meet exactly)."""
    with dp.Deployment(tmp_path_factory.mktemp("single")) as dep:
        dep.registry.register("v1", model, base_model=MINILM)
        assert dep.reembed("v1", ds.doc_ids(), ds.doc_texts(), batch_size=BATCH, show_progress=False).complete
        return dep.vectors("v1", ds.doc_ids())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import ray

    with local_cluster(nodes=2, cpus_per_node=1, temp_dir=tmp_path_factory.mktemp("ray")) as address:
        yield address
        ray.shutdown()  # this process's connection, before the cluster goes


def _deployment(path, model) -> dp.Deployment:
    dep = dp.Deployment(path)
    dep.registry.register("v1", model, base_model=MINILM)
    return dep


def test_a_killed_driver_resumes_and_a_killed_worker_is_replaced_with_the_single_process_vectors(
    cluster, ds, model, reference, tmp_path
):
    data_dir = save_dataset(ds, tmp_path / "corpus")
    n_batches = -(-len(ds.corpus) // BATCH)
    with _deployment(tmp_path / "ray", model) as dep:
        # 1. The driver, a separate process (the command line: Deployment.reembed(engine="ray")), is killed
        #    (SIGKILL) once its checkpoint records 3 batches.
        ckpt = dep.checkpoint_path("v1")
        cmd = dp.reembed_command(dep.root, "v1", data_dir, batch_size=BATCH, ray_address=cluster)
        assert cmd[-4:] == ["--engine", "ray", "--ray-address", cluster]
        dep.close()  # local mode: one process at a time opens the store
        killed_at = dp.kill_job_after(cmd, ckpt, batches=3, timeout=600)
        assert 3 <= killed_at < n_batches - 3, "the driver must be killed mid-run"
        assert json.loads(ckpt.read_text())["done"] == killed_at
        assert dep.metadata(dep.collection_name("v1"))["status"] == "building"

        # 2. The job resumes from the checkpoint; two batches in, the worker that encoded a batch is killed.
        killed: list[int] = []
        served: list[tuple[int, int]] = []

        def kill_a_worker_once(batch: int, pid: int) -> None:
            served.append((batch, pid))
            if batch == killed_at + 1 and not killed:
                os.kill(pid, signal.SIGKILL)  # the actor's process, as an OOM kill or a lost node would
                killed.append(pid)

        report = run_reembed_ray(dep, dep.registry, "v1", ds.doc_ids(), ds.doc_texts(), address=cluster,
                                 batch_size=BATCH, show_progress=False, on_batch=kill_a_worker_once)  # fmt: skip
        assert report.started_at_batch == killed_at and report.complete
        assert report.processes == 2, "one encoder actor per CPU of the two nodes"
        assert report.docs_this_run == len(ds.corpus) - killed_at * BATCH
        assert [b for b, _ in served] == list(range(killed_at, n_batches)), "stored and checkpointed in order"
        # A live worker was killed mid-job (os.kill raised nothing) and the job still finished every batch in this
        # run: Ray restarted the actor or moved its work to the other one (batches it had finished may still arrive).
        assert killed, "a worker was killed while the job ran"

        # 3. Nothing lost or duplicated, every vector equal to the single-process job's, the collection stamped.
        audit = dep.audit("v1", ds.doc_ids())
        assert audit.to_dict() == {"points": len(ds.corpus), "distinct doc ids": len(ds.corpus), "missing": 0,
                                   "unexpected": 0, "duplicated": 0}  # fmt: skip
        np.testing.assert_array_equal(dep.vectors("v1", ds.doc_ids()), reference)
        meta = dep.metadata(dep.collection_name("v1"))
        assert meta["status"] == "complete" and meta["model_version"] == "v1"
        assert meta["model_fingerprint"] == dep.registry.card("v1").fingerprint


def test_the_ray_engine_refuses_what_it_cannot_honour(tmp_path, model):
    with _deployment(tmp_path / "dep", model) as dep:
        with pytest.raises(dp.DeployError, match="actors="):
            dep.reembed("v1", ["a"], ["text"], engine="ray", processes=2)
        with pytest.raises(dp.DeployError, match="engine must be"):
            dep.reembed("v1", ["a"], ["text"], engine="spark")


def test_cluster_settings_pass_through_and_the_switch_still_works(tmp_path, ds, model):
    """Replication, write consistency and shards are create_collection settings of the deployment; embedded local
    mode accepts and ignores them, so the same job and alias switch run with a cluster's settings in place."""
    options = {"replication_factor": 2, "write_consistency_factor": 2, "shard_number": 2}
    with dp.Deployment(tmp_path / "dep", collection_options=options) as dep:
        dep.registry.register("v1", model, base_model=MINILM)
        assert dep.collection_options == options
        ids, texts = ds.doc_ids()[:32], ds.doc_texts()[:32]
        assert dep.reembed("v1", ids, texts, batch_size=BATCH, show_progress=False).complete
        assert dep.promote("v1")["switched"]
        assert dep.aliases()[dep.alias] == dep.collection_name("v1")


def test_a_node_that_exits_during_start_up_is_an_error_quoting_its_log(tmp_path):
    """What `ray start` printed before it exited is in the error (Ray's own message omits the raylet's reason)."""
    import subprocess
    import sys

    from workbook.deploy.errors import DeployError
    from workbook.deploy.ray_job import _wait_until_up

    log = tmp_path / "node0-attempt1.log"
    with open(log, "wb") as out:
        code = "print('Timed out waiting for file metrics_agent_port'); exit(1)"
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)
    proc.wait()
    with pytest.raises(DeployError, match=r"exited \(code 1\)[\s\S]*Timed out waiting for file metrics_agent_port"):
        _wait_until_up(proc, log)


def test_every_port_a_node_is_given_is_distinct():
    from workbook.deploy.ray_job import _AGENT_PORT_OPTIONS, _free_ports

    ports = _free_ports(1 + len(_AGENT_PORT_OPTIONS))
    assert len(set(ports)) == len(ports) and all(p > 0 for p in ports)


def test_the_line_that_says_a_node_is_up_is_still_rays():
    """`local_cluster` reads readiness from what `ray start --block` prints once its node is registered: if Ray
    rewords it, this fails here instead of every cluster start waiting out its timeout."""
    import inspect

    import ray.scripts.scripts as ray_scripts

    from workbook.deploy.ray_job import _NODE_UP

    assert _NODE_UP in inspect.getsource(ray_scripts)


def test_the_logger_that_warns_progress_bars_are_off_is_still_rays():
    """`connect` quietens Ray Data's one "Progress bars disabled" warning by its logger's name (an internal module):
    if Ray moves it, this fails here instead of the warning coming back into notebook 08's committed output."""
    import importlib
    import inspect

    from workbook.deploy.ray_job import RAY_PROGRESS_LOGGER

    module = importlib.import_module(RAY_PROGRESS_LOGGER)
    assert module.logger.name == RAY_PROGRESS_LOGGER and "Progress bars disabled" in inspect.getsource(module)
