"""The case study's recipe as 2 DDP processes on CPU (torchrun, gloo): with MNRL's gather_across_devices the loss
trajectory equals one process's at the same global batch (notebook 08 also shows the run without gathering, whose
loss is a different, easier one)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

ARGS = ["--batch", "16", "--steps", "4", "--rows", "64", "--no-dropout"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(nproc: int, out, *extra: str) -> list[float]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), "-m", "workbook.train.distributed", "--out", str(out),
           *ARGS, *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    record = json.loads((out / "losses.json").read_text())
    assert record["processes"] == nproc and record["global_batch"] == 16 and len(record["losses"]) == 4
    return record["losses"]


@pytest.mark.slow  # 2 min; notebook 08 (executed by the suite) runs the same two torchruns and asserts the same
def test_two_processes_with_gathered_negatives_follow_the_one_process_trajectory(tmp_path):
    one_process = _torchrun(1, tmp_path / "ddp1")
    two = _torchrun(2, tmp_path / "ddp2", "--also-local")
    assert two == pytest.approx(one_process, rel=1e-4), (two, one_process)
    assert (tmp_path / "ddp2" / "model" / "config.json").is_file(), "rank 0 saves the model"
    local = json.loads((tmp_path / "ddp2" / "local" / "losses.json").read_text())
    assert not local["gather_across_devices"] and len(local["losses"]) == 4
    assert all(a < b for a, b in zip(local["losses"], one_process, strict=True))  # fewer, easier negatives
