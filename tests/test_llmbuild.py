"""The portable llama.cpp build and the child-process smoke check: flags, the pin, the venv's own build, and the
clear errors for a crashing build, a broken GGUF, a missing compiler and a full disk."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from workbook import llmbuild
from workbook.config import get_config
from workbook.llmbuild import LLMBuildError, NoSpaceError

ROOT = Path(__file__).resolve().parent.parent


def test_portable_flags_follow_the_cpu(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f amx_int8 amx_tile\n")
    flags = llmbuild.cpu_flags(cpuinfo)
    assert {"avx2", "amx_int8"} <= flags
    assert llmbuild.cmake_args(flags) == "-DGGML_NATIVE=OFF"  # AMX and AVX-512 are never compiled in
    old = llmbuild.cmake_args({"fpu", "sse4_2"})  # a CPU without AVX2: plain SSE paths only
    assert old.startswith("-DGGML_NATIVE=OFF") and "-DGGML_AVX2=OFF" in old and "-DGGML_FMA=OFF" in old
    assert llmbuild.cpu_flags(tmp_path / "missing") is None and llmbuild.cmake_args(None) == "-DGGML_NATIVE=OFF"


def test_pin_is_read_from_pyproject(tmp_path):
    assert llmbuild.pinned_requirement(ROOT / "pyproject.toml") == "llama-cpp-python==0.3.36"
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project]\nname = "x"\n[project.optional-dependencies]\nllm = ["openai"]\n')
    with pytest.raises(LLMBuildError, match=r"pyproject.toml: .*no 'llama-cpp-python==VERSION' pin"):
        llmbuild.pinned_requirement(bad)


def test_this_venv_holds_the_portable_build(local_llm):
    """The set-up's stamp says GGML_NATIVE=OFF, and llama.cpp itself reports no AMX or AVX-512 code paths."""
    stamp = llmbuild.read_stamp(Path(sys.executable).parent.parent)
    assert stamp is not None, "no portable-build stamp in this venv: run `make setup`"
    assert stamp["requirement"] == llmbuild.pinned_requirement(ROOT / "pyproject.toml")
    assert "-DGGML_NATIVE=OFF" in stamp["cmake_args"]
    smoke = llmbuild.smoke_check(local_llm, n_tokens=4)
    assert smoke.tokens >= 1 and smoke.text.strip()
    assert "AMX_INT8 = 1" not in smoke.system_info and "AVX512 = 1" not in smoke.system_info, smoke.system_info


def test_a_crash_in_the_child_names_the_cause_and_the_rebuild():
    with pytest.raises(LLMBuildError) as err:
        llmbuild.run_child("import os, signal; os.kill(os.getpid(), signal.SIGILL)", [], "the smoke check")
    msg = str(err.value)
    assert "died with SIGILL" in msg and "compiled for another CPU" in msg
    assert llmbuild.rebuild_command() in msg and "install --force" in msg
    with pytest.raises(LLMBuildError, match=r"failed \(exit 3\):\nboom"):
        llmbuild.run_child("import sys; print('boom', file=sys.stderr); sys.exit(3)", [], "the smoke check")


def test_broken_gguf_files_fail_cleanly(tmp_path, local_llm):
    with pytest.raises(LLMBuildError, match="no model file at"):
        llmbuild.smoke_check(tmp_path / "missing.gguf")
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"<html>404</html>")
    with pytest.raises(LLMBuildError, match=r"is not a GGUF file \(it starts with b'<htm'.*workbook prepare"):
        llmbuild.smoke_check(not_gguf)
    truncated = tmp_path / "truncated.gguf"  # a real header, then the file ends: llama.cpp refuses it in the child
    with open(local_llm, "rb") as src:
        truncated.write_bytes(src.read(2_000_000))
    with pytest.raises(LLMBuildError, match=r"smoke check \(truncated.gguf\) (failed|died)"):
        llmbuild.smoke_check(truncated)


def test_missing_compiler_is_named_and_nothing_is_touched(tmp_path, monkeypatch):
    with pytest.raises(LLMBuildError, match=r"no C or C\+\+ compiler is on PATH.*apt-get install build-essential"):
        llmbuild.check_toolchain(path=str(tmp_path))
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    stamp = venv / llmbuild.STAMP_NAME
    stamp.write_text(json.dumps({"requirement": "llama-cpp-python==0.0.1", "cmake_args": "-DGGML_NATIVE=OFF"}))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(LLMBuildError, match="compiler"):
        llmbuild.install(venv / "bin" / "python", ROOT / "pyproject.toml")
    assert json.loads(stamp.read_text())["requirement"] == "llama-cpp-python==0.0.1"  # the old build's stamp stays


def test_the_build_is_skipped_when_the_stamp_matches(tmp_path, capsys):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    want = {"requirement": llmbuild.pinned_requirement(ROOT / "pyproject.toml"),
            "cmake_args": llmbuild.cmake_args(llmbuild.cpu_flags())}  # fmt: skip
    (venv / llmbuild.STAMP_NAME).write_text(json.dumps(want))
    assert llmbuild.install(venv / "bin" / "python", ROOT / "pyproject.toml") is False
    assert "portable build present" in capsys.readouterr().out


def test_no_space_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(NoSpaceError, match=r"no space for the llama.cpp build: .* GB free, .* GB needed"):
        llmbuild.check_space(tmp_path / "not" / "yet", need=free * 2)
    llmbuild.check_space(tmp_path, need=1)
    # The models cache: the mpnet assembly checks before it writes, and a full disk leaves the cache as it was.
    from workbook import models

    cfg = get_config(cache_dir=tmp_path / "cache")
    real = shutil.disk_usage

    def tiny_disk(path):
        return real(path)._replace(free=10_000_000)

    monkeypatch.setattr(shutil, "disk_usage", tiny_disk)
    with pytest.raises(NoSpaceError, match="no space for assembling all-mpnet-base-v2"):
        models.mpnet_path(cfg)
    assert not (tmp_path / "cache").exists()
