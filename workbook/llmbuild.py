"""A portable llama-cpp-python build, and a child-process check that the local LLM really decodes.

llama-cpp-python ships no Linux wheel, so pip compiles llama.cpp. By default llama.cpp builds for the build
machine's own CPU (``GGML_NATIVE``): on a Xeon with AMX such a build dies with SIGILL as soon as it decodes, and a
wheel built that way is reused from pip's cache whatever ``CMAKE_ARGS`` says later. Here the set-up builds with
``GGML_NATIVE=OFF`` (the x86-64 AVX2/FMA/F16C baseline of every laptop CPU since 2013; without AVX2 in
``/proc/cpuinfo`` it drops those too), never through pip's cache, and stamps the flags into the venv so a later
set-up rebuilds only when they change.

Stdlib only: the Makefile runs it (``python -m workbook.llmbuild install``) before the package's dependencies are
installed. ``python -m workbook.llmbuild smoke`` loads the packaged GGUF in a *child process* and generates a few
tokens; a crash there becomes an :class:`LLMBuildError` that names the cause and the rebuild command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "llama-cpp-python"
#: Flags of the portable build: no ``-march=native``; llama.cpp then enables the AVX2/FMA/F16C/BMI2 baseline.
PORTABLE_ARGS = ("-DGGML_NATIVE=OFF",)
#: Added on a CPU without AVX2 (pre-2013 x86-64, some Atom/Celeron): plain SSE code paths only.
NO_AVX2_ARGS = ("-DGGML_AVX=OFF", "-DGGML_AVX2=OFF", "-DGGML_FMA=OFF", "-DGGML_F16C=OFF", "-DGGML_BMI2=OFF")
STAMP_NAME = ".llama-build.json"
#: Free space a from-source build needs in the temp folder (measured peak ~700 MB; a margin on top).
BUILD_SPACE_BYTES = 1_500_000_000
SMOKE_TOKENS = 8


class LLMBuildError(RuntimeError):
    """The local LLM cannot be built or does not run; the message names the cause and the fix."""


class NoSpaceError(OSError):
    """A folder's file system has too little free space for what is about to be written there."""


def rebuild_command() -> str:
    """The shell command (run in the project folder) that rebuilds llama-cpp-python portably in its venv."""
    return ".venv/bin/python -m workbook.llmbuild install --force"


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The CPU feature flags listed in ``cpuinfo`` (``None`` where there is no such file, e.g. not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def cmake_args(flags: set[str] | None = None) -> str:
    """``CMAKE_ARGS`` for a build that runs on any x86-64 CPU (and on this one when it lacks AVX2).

    Args:
        flags: the CPU's feature flags (:func:`cpu_flags`); ``None`` (unknown) keeps the AVX2 baseline.
    """
    args = list(PORTABLE_ARGS)
    if flags is not None and "avx2" not in flags:
        args += NO_AVX2_ARGS
    return " ".join(args)


def pinned_requirement(pyproject: str | Path = "pyproject.toml") -> str:
    """The ``llama-cpp-python==X`` pin of the project's ``llm`` extra (one source of truth: pyproject.toml).

    Raises:
        LLMBuildError: the file has no such pin.
    """
    data = tomllib.loads(Path(pyproject).read_text())
    for req in data.get("project", {}).get("optional-dependencies", {}).get("llm", []):
        name, sep, version = req.partition("==")
        if sep and name.split("[")[0].strip() == PACKAGE:
            return f"{PACKAGE}=={version.strip()}"
    raise LLMBuildError(f"{pyproject}: [project.optional-dependencies] llm has no '{PACKAGE}==VERSION' pin")


def check_toolchain(path: str | None = None) -> None:
    """Check that a C and a C++ compiler are on ``PATH`` (pip brings cmake and ninja itself).

    Raises:
        LLMBuildError: naming the missing compiler and how to install one.
    """
    missing = [
        kind
        for kind, names in (("C", ("cc", "gcc", "clang")), ("C++", ("c++", "g++", "clang++")))
        if not any(shutil.which(n, path=path) for n in names)
    ]
    if missing:
        raise LLMBuildError(
            f"{PACKAGE} compiles llama.cpp from source and no {' or '.join(missing)} compiler is on PATH. Install "
            "one (Debian/Ubuntu: apt-get install build-essential; Fedora: dnf install gcc-c++; macOS: "
            "xcode-select --install), then run: make setup"
        )


def check_space(folder: str | Path, need: int = BUILD_SPACE_BYTES, what: str = "the llama.cpp build") -> None:
    """Check that ``folder``'s file system has ``need`` bytes free, before anything is written there.

    Raises:
        NoSpaceError: naming the folder, what is free and what is needed.
    """
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < need:
        raise NoSpaceError(
            f"no space for {what}: {folder} has {free / 1e9:.2f} GB free, {need / 1e9:.2f} GB needed. Free some space "
            "(or point TMPDIR at a larger disk) and run the set-up again; nothing was changed."
        )


def _stamp(venv: Path) -> Path:
    return venv / STAMP_NAME


def read_stamp(venv: str | Path) -> dict | None:
    """What the last portable build in ``venv`` was (requirement and CMAKE_ARGS), or ``None``."""
    try:
        return json.loads(_stamp(Path(venv)).read_text())
    except (OSError, ValueError):
        return None


def pip_build(python: str | Path, requirement: str, args: str, target: str | Path | None = None) -> None:
    """Compile ``requirement`` with ``CMAKE_ARGS=args`` and install it, never through pip's cache (so a wheel built
    with other flags is neither reused nor left behind for a later install to reuse).

    Args:
        python: the interpreter whose pip installs it.
        requirement: e.g. ``llama-cpp-python==0.3.36``.
        args: the ``CMAKE_ARGS``.
        target: install into this folder (``pip --target``) instead of replacing the venv's copy.

    Raises:
        LLMBuildError: no compiler, or pip failed (its output was streamed above).
        NoSpaceError: too little free space in the temporary folder for the build.
    """
    check_toolchain()
    check_space(tempfile.gettempdir())
    env = {**os.environ, "CMAKE_ARGS": args}
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    where = ["--target", str(target)] if target is not None else ["--force-reinstall"]
    cmd = [str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", "--no-deps", *where, requirement]
    if subprocess.run(cmd, env=env).returncode != 0:
        raise LLMBuildError(f"building {requirement} failed (pip's output is above); command: {' '.join(cmd)}")


def install(python: str | Path, pyproject: str | Path = "pyproject.toml", force: bool = False) -> bool:
    """Build and install the pinned llama-cpp-python portably into ``python``'s venv, unless already done.

    The build skips pip's cache (:func:`pip_build`), and the flags it used are stamped into the venv. When it fails,
    the venv keeps the copy it had (pip replaces it only after a successful build) and a later set-up tries again.

    Args:
        python: the venv's interpreter.
        pyproject: where the pin is read.
        force: rebuild even when the stamp matches.

    Returns:
        Whether a build ran.

    Raises:
        LLMBuildError: no compiler, or pip failed (its output was streamed above).
        NoSpaceError: too little free space in the temporary folder for the build.
    """
    venv = Path(python).parent.parent
    want = {"requirement": pinned_requirement(pyproject),
            "cmake_args": os.environ.get("CMAKE_ARGS") or cmake_args(cpu_flags())}  # fmt: skip
    if not force and read_stamp(venv) == want:
        print(f"{want['requirement']}: portable build present ({want['cmake_args']})")
        return False
    check_toolchain()  # before the stamp goes: a machine without a compiler keeps its build and its record
    print(f"building {want['requirement']} for any x86-64 CPU (CMAKE_ARGS={want['cmake_args']}); ~7 min on 2 cores")
    _stamp(venv).unlink(missing_ok=True)
    pip_build(python, want["requirement"], want["cmake_args"])
    _stamp(venv).write_text(json.dumps(want, indent=1) + "\n")
    return True


#: What the smoke check's model continues.
SMOKE_PROMPT = "Question: What is the capital of France?\nAnswer:"

_CHILD = r"""
import contextlib, io, json, sys
from llama_cpp import Llama, llama_print_system_info
path, n, prompt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with contextlib.redirect_stderr(io.StringIO()):
    llm = Llama(model_path=path, n_ctx=256, n_threads=1, seed=0, verbose=False)
out = llm.create_completion(prompt, max_tokens=n, temperature=0.0)
info = llama_print_system_info()
print(json.dumps({"text": out["choices"][0]["text"], "tokens": out["usage"]["completion_tokens"],
                  "system_info": info.decode() if isinstance(info, bytes) else str(info)}))
llm.close()
"""


@dataclass(frozen=True)
class SmokeResult:
    """What the child process generated, and llama.cpp's report of the CPU features it was built with."""

    text: str
    tokens: int
    system_info: str


def explain_exit(returncode: int, stderr: str, what: str) -> LLMBuildError:
    """An error for a child process that failed: a signal death names the build as the cause, and the fix."""
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        cause = {
            "SIGILL": "llama.cpp executed a CPU instruction this machine cannot run: it was compiled for another "
            "CPU (a native build, or a wheel reused from pip's cache)",
            "SIGKILL": "the process was killed, most often by the kernel for lack of memory",
        }.get(sig, "llama.cpp crashed")
        return LLMBuildError(
            f"{what} died with {sig}: {cause}. Rebuild llama-cpp-python portably with: {rebuild_command()}"
        )
    tail = "\n".join(stderr.strip().splitlines()[-8:])
    return LLMBuildError(f"{what} failed (exit {returncode}):\n{tail}")


def run_child(code: str, args: Sequence[str], what: str, timeout: float = 600) -> str:
    """Run ``python -c code args`` in a child process and return its stdout; any failure is an LLMBuildError."""
    try:
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise LLMBuildError(f"{what} did not finish within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise explain_exit(proc.returncode, proc.stderr, what)
    return proc.stdout


def smoke_check(
    model_path: str | Path, n_tokens: int = SMOKE_TOKENS, timeout: float = 600, prompt: str = SMOKE_PROMPT
) -> SmokeResult:
    """Load a GGUF with llama.cpp in a child process and generate ``n_tokens`` greedily after ``prompt``.

    An instruction-tuned model may end a bare question at once (SmolLM2-135M-Instruct does): give it the start of
    an answer to continue.

    A crash (SIGILL from a non-portable build), a broken file or a missing package fails here, in a child, with a
    message that names the cause, instead of killing the notebook kernel or the test run that would load it later.

    Raises:
        LLMBuildError: the file is missing or not a GGUF, llama-cpp-python is not installed, or decoding failed.
    """
    path = Path(model_path)
    what = f"the local LLM smoke check ({path.name})"
    if not path.is_file():
        raise LLMBuildError(f"{what}: no model file at {path}")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise LLMBuildError(
            f"{what}: {path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'); delete it and run "
            "`workbook prepare` to assemble it again from its package"
        )
    out = run_child(_CHILD, [str(path), str(n_tokens), prompt], what, timeout)
    try:
        got = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise LLMBuildError(f"{what}: the child printed no result: {out[-500:]!r}") from exc
    if got["tokens"] < 1:
        raise LLMBuildError(f"{what}: llama.cpp generated no token")
    return SmokeResult(got["text"], int(got["tokens"]), got["system_info"])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m workbook.llmbuild install|smoke``."""
    parser = argparse.ArgumentParser(prog="python -m workbook.llmbuild", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="build the pinned llama-cpp-python portably into this interpreter's venv")
    inst.add_argument("--pyproject", default="pyproject.toml")
    inst.add_argument("--force", action="store_true", help="rebuild even when the stamp matches")
    sub.add_parser("args", help="print the CMAKE_ARGS the portable build uses on this machine")
    args = parser.parse_args(argv)
    try:
        if args.command == "args":
            print(cmake_args(cpu_flags()))
        else:
            install(sys.executable, args.pyproject, force=args.force)
    except (LLMBuildError, NoSpaceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
