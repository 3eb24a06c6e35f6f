"""`make lab`, the README's optional third command, serves the notebooks for a root user and a normal user alike: a
real JupyterLab server on 127.0.0.1, listed through its REST API, then stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

from workbook.config import ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_lab_serves_the_notebooks(tmp_path):
    port, token = _free_port(), "course-test-token"
    args = f"--port={port} --no-browser --ServerApp.port_retries=0 --IdentityProvider.token={token}"
    # -o: treat the set-up stamp as done (the test command already ran the set-up); the recipe is the README's.
    cmd = ["make", "--no-print-directory", "-o", ".venv/.setup-done", "lab", f"LAB_ARGS={args}"]
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = tmp_path / "lab.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        listing, deadline = None, time.monotonic() + 120
        while listing is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/api/contents?token={token}"
                with urllib.request.urlopen(url, timeout=5) as resp:
                    listing = json.load(resp)
            except OSError:
                time.sleep(0.5)
        assert listing is not None, f"the lab did not serve (exit code {proc.poll()}):\n{log.read_text()[-2000:]}"
        names = {item["name"] for item in listing["content"]}
        assert {"00_setup_check.ipynb", "05_fine_tune.ipynb"} <= names, sorted(names)
        assert "Use --allow-root" not in log.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
