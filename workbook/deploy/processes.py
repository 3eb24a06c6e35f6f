"""Jobs as separate processes: the headless job's command line, a SIGKILL mid-job, and the multi-process benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from workbook.deploy.errors import DeployError
from workbook.files import read_json
from workbook.retrieval import encode


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


def reembed_command(
    root: str | Path,
    version: str,
    dataset: str | Path,
    *,
    url: str | None = None,
    batch_size: int = 256,
    processes: int = 1,
    ray_address: str | None = None,
) -> list[str]:
    """The command line that runs the re-embedding job headless (``python -m workbook.deploy reembed ...``); with
    ``ray_address``, on that Ray cluster (``--engine ray``)."""
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
    cmd += ["--engine", "ray", "--ray-address", ray_address] if ray_address else []
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
            return int(read_json(checkpoint)["done"])
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
