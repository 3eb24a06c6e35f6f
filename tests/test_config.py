from __future__ import annotations

import random

import numpy as np
import torch

from workbook.config import default_config, get_config, is_fast


def test_fast_mode_follows_environment(monkeypatch):
    monkeypatch.setenv("WORKBOOK_FAST", "1")
    assert is_fast() and get_config().fast and get_config().mode == "fast"
    monkeypatch.setenv("WORKBOOK_FAST", "0")
    cfg = get_config()
    assert not cfg.fast and cfg.mode == "full"
    assert cfg.icd10cm_dir.name == "full"


def test_explicit_arguments_win(monkeypatch):
    monkeypatch.setenv("WORKBOOK_FAST", "1")
    cfg = get_config(fast=False, seed=7, batch_size=8)
    assert (cfg.fast, cfg.seed, cfg.batch_size) == (False, 7, 8)
    assert cfg.replace(fast=True).icd10cm_dir.name == "fast"


def test_length_chunks_default_to_fast_mode_only_and_follow_a_mode_change():
    import pytest

    from workbook.config import FAST_TRAIN_CHUNK_ROWS
    from workbook.train.run import forward_key

    fast, full = default_config(fast=True), default_config(fast=False)
    assert (fast.train_chunk_rows, full.train_chunk_rows) == (FAST_TRAIN_CHUNK_ROWS, None)
    assert forward_key(full) == []  # full-mode run folders keep the keys of the committed runs
    assert forward_key(fast) == [{"train_chunk_rows": FAST_TRAIN_CHUNK_ROWS}]
    assert fast.replace(fast=False).train_chunk_rows is None and full.replace(fast=True).train_chunk_rows == 16
    assert default_config(fast=True, train_chunk_rows=None).replace(fast=True).train_chunk_rows is None
    assert default_config(fast=False, train_chunk_rows=8).replace(fast=True).train_chunk_rows == 8  # chosen: kept
    with pytest.raises(ValueError, match="train_chunk_rows"):
        default_config(train_chunk_rows=0)


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBOOK_CACHE", str(tmp_path))
    cfg = get_config()
    assert cfg.cache_dir == tmp_path and cfg.models_dir == tmp_path / "models"


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_get_config_seeds_every_generator():
    get_config(seed=123)
    first = _draw()
    get_config(seed=123)
    assert _draw() == first
    get_config(seed=124)
    assert _draw() != first


def test_library_fallback_config_does_not_reseed(tmp_path):
    """A helper called without a config (here the mpnet lookup) must not reset the run's random generators."""
    from workbook.models import model_path

    get_config()
    np.random.rand(3), torch.rand(3), random.random()  # the run has drawn: its generators moved on
    states = np.random.get_state()[1].copy(), torch.get_rng_state().clone(), random.getstate()
    assert default_config().seed == 42
    model_path("all-mpnet-base-v2")  # falls back to default_config() inside
    assert np.array_equal(np.random.get_state()[1], states[0])
    assert torch.equal(torch.get_rng_state(), states[1]) and random.getstate() == states[2]
