"""Inference precision (workbook.precision): what runs where, what the caches key on, and the defaults the bench
allows (bench/precision.py, bench/results/precision.json)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import workbook.precision as precision
from workbook.config import get_config
from workbook.models import MINILM, MPNET, load_model
from workbook.precision import cpu_flags, inference, precision_of, resolve, set_precision
from workbook.retrieval import _cache_key, encode, encode_cached, model_fingerprint

BENCH = Path(__file__).resolve().parent.parent / "bench" / "results" / "precision.json"
TEXTS = ["Type 1 diabetes mellitus with ketoacidosis", "Type 2 diabetes mellitus with ketoacidosis",
         "ST elevation myocardial infarction of anterior wall", "Malignant neoplasm of left conjunctiva"]  # fmt: skip


@pytest.fixture(scope="module")
def minilm():
    return load_model(MINILM)


@pytest.fixture
def native(monkeypatch):
    """This CPU taken as one with native bf16 (autocast still runs where it is emulated, only slower)."""
    monkeypatch.setattr(precision, "native_bf16", lambda device="cpu": True)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_bf16_falls_back_to_fp32_without_native_support_and_unknown_names_are_refused(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert resolve("bf16") == "fp32" and resolve("int8") == "int8" and resolve("fp32") == "fp32"
    assert resolve("int8", "cuda:0") == "fp32"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert resolve("bf16") == "bf16"
    with pytest.raises(ValueError, match="unknown precision 'fp16'; choose one of fp32, bf16, int8"):
        resolve("fp16")


def test_bf16_encodes_close_to_fp32_and_is_cached_apart(minilm, native, tmp_path):
    bf16 = set_precision(load_model(MINILM), "bf16")
    assert precision_of(bf16) == "bf16" and precision_of(minilm) == "fp32"
    assert model_fingerprint(bf16) == model_fingerprint(minilm)  # the same weights ...
    a = encode_cached(minilm, TEXTS, tmp_path, show_progress=False)
    b = encode_cached(bf16, TEXTS, tmp_path, show_progress=False)
    assert len(list(tmp_path.glob("emb-*.npy"))) == 2  # ... but a cached fp32 vector never stands in for bf16
    assert not np.array_equal(a, b)  # the arithmetic really changed
    assert (a * b).sum(axis=1).min() > 0.99  # and barely moved the vectors
    assert np.array_equal(b, encode(bf16, TEXTS, show_progress=False))


def test_the_inference_context_autocasts_only_a_bf16_model(minilm, native):
    import torch

    x = torch.ones(2, 2)
    with inference(minilm):
        assert (x @ x).dtype == torch.float32
    with inference(set_precision(load_model(MINILM), "bf16")):
        assert (x @ x).dtype == torch.bfloat16


def test_int8_keeps_the_fp32_hash_and_keys_its_caches_apart(minilm):
    int8 = load_model(MINILM, precision="int8")
    assert precision_of(int8) == "int8" and model_fingerprint(int8) == model_fingerprint(minilm)
    assert _cache_key(int8, TEXTS) != _cache_key(minilm, TEXTS)
    before = hashlib.sha1(model_fingerprint(minilm).encode())  # the key of the caches written before precisions
    for text in TEXTS:
        before.update(text.encode("utf-8") + b"\0")
    assert _cache_key(minilm, TEXTS) == before.hexdigest()[:20]  # fp32 caches written before still match
    vectors = encode(int8, TEXTS, show_progress=False)
    assert vectors.shape == (4, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)


def test_the_defaults_are_the_precisions_the_bench_picked():
    """The config's defaults are bench/precision.py's picks: a precision within its rule (nDCG@10 within 0.5 points of
    fp32 on every corpus, and faster) and, of those, the one closest to fp32; int8 is refused where it failed."""
    result = json.loads(BENCH.read_text())
    cfg = get_config(fast=True)
    picks, per = result["decision"]["picks"], result["decision"]["per_precision"]
    assert cfg.comparator_precision == picks[MPNET]
    assert cfg.reranker_precision == picks["reranker (MiniLM cross-encoder)"]
    assert cfg.curve_precision == picks[MINILM]  # the merge curve's models are MiniLMs
    assert result["native_bf16"]  # bf16 was measured where it runs, not as its fp32 fallback
    assert per[MPNET]["int8"]["max ndcg change (points)"] > 0.5 and not per[MPNET]["int8"]["default"]
    rows = [r for r in result["runs"] if r["precision"] == "bf16"]
    assert rows and all(r["ran as"] == "bf16" for r in rows)


def test_the_allocator_settings_stay_off_because_the_bench_measured_their_memory_cost():
    """bench/allocator.py: the MALLOC_* settings speed up long texts but raise peak RSS, and learners' laptops have
    8-16 GB, so the Makefile does not export them; the day the bench shows no memory cost, this test says so."""
    root = BENCH.parent.parent.parent
    measured = json.loads((root / "bench" / "results" / "allocator.json").read_text())
    peaks = measured["peak RSS MB"]
    assert peaks["MALLOC_* exports"] > peaks["glibc defaults"]
    assert "MALLOC_" not in (root / "Makefile").read_text()


def test_the_merge_curve_scores_in_its_precision_and_leaves_the_callers_models_fp32(minilm, native):
    from workbook.evaluate import interpolation_curve

    tuned = load_model(MINILM)
    seen = []

    def score(model):
        seen.append(precision_of(model))
        return 1.0

    curve = interpolation_curve(minilm, tuned, [0.0, 0.5, 1.0], score, score, precision="bf16")
    assert seen == ["bf16"] * 6 and list(curve.index) == [0.0, 0.5, 1.0]
    assert precision_of(minilm) == precision_of(tuned) == "fp32"
