"""workbook.files: the one place for atomic writes, JSON/JSONL and hashes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from workbook import files


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = files.atomic_write(tmp_path / "a" / "x.txt", "old\n")
    with pytest.raises(RuntimeError):
        files.atomic_save(path, lambda tmp: (tmp.write_text("half"), (_ for _ in ()).throw(RuntimeError("killed"))))
    assert path.read_text() == "old\n" and sorted(p.name for p in path.parent.iterdir()) == ["x.txt"]


def test_atomic_save_keeps_the_suffix_for_writers_that_add_one(tmp_path):
    # np.save appends ".npy" to a name without it: the temporary file must keep the suffix
    path = files.atomic_save(tmp_path / "emb.npy", lambda tmp: np.save(tmp, np.arange(3)))
    assert np.load(path).tolist() == [0, 1, 2] and sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy"]


def test_json_round_trip_writes_nan_as_null_and_sorts_sets(tmp_path):
    path = files.write_json(tmp_path / "r.json", {"a": np.float64("nan"), "b": np.int64(3), "c": {2, 1}, "d": (1.5,)})
    assert files.read_json(path) == {"a": None, "b": 3, "c": [1, 2], "d": [1.5]}


def test_iter_jsonl_names_file_line_and_field(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "1", "text": "a"}\n\n{"id": "2"}\n')
    with pytest.raises(KeyError, match=r"rows.jsonl:3: field 'text' is missing"):
        list(files.iter_jsonl(path, ["id", "text"], error=KeyError))
    path.write_text('{"id": "1"}\n{"id": \n')
    with pytest.raises(ValueError, match=r"rows.jsonl:2: not valid JSON"):
        list(files.iter_jsonl(path))
    files.write_jsonl(path, [{"id": "é"}])
    assert list(files.iter_jsonl(path, ["id"])) == [(1, {"id": "é"})]


def test_hashes_are_the_plain_sha256_of_their_input(tmp_path):
    path = files.atomic_write_bytes(tmp_path / "b.bin", b"\x00abc" * 1000)
    assert files.file_sha256(path) == hashlib.sha256(b"\x00abc" * 1000).hexdigest()
    assert files.text_sha256("é", 8) == hashlib.sha256("é".encode()).hexdigest()[:8]
    obj = {"b": [1, 2], "a": np.float32(0.5)}
    canonical = json.dumps({"a": 0.5, "b": [1, 2]}, sort_keys=True)
    assert files.json_sha256(obj) == hashlib.sha256(canonical.encode()).hexdigest()
