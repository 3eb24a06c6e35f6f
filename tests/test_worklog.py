"""The work log: a cold run lists each piece of work once per time it was done; a cache hit writes nothing."""

from __future__ import annotations

import pytest

from workbook import worklog
from workbook.models import load_model
from workbook.retrieval import encode, encode_cached


def test_the_log_lists_work_done_and_marks_what_was_done_twice(tmp_path, monkeypatch):
    log = tmp_path / "work.jsonl"
    texts = ["left conjunctiva", "right conjunctiva", "type 2 diabetes"]
    encode(load_model("minilm"), texts, show_progress=False)  # not logged: the variable is not set yet
    assert not log.exists()
    monkeypatch.setenv(worklog.ENV, str(log))
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "notebooks/05_fine_tune.ipynb::Cell 3 (call)")
    model = load_model("minilm")
    encode_cached(model, texts, tmp_path / "emb", show_progress=False)  # computed
    encode_cached(model, texts, tmp_path / "emb", show_progress=False)  # a cache hit: not logged
    encode(model, texts, show_progress=False)  # the same work again, uncached
    encode(model, texts[:2], show_progress=False)
    lines = worklog.read(log)
    assert [line["texts"] for line in lines] == [3, 3, 2]
    assert lines[0]["what"] == lines[1]["what"] != lines[2]["what"]
    assert {line["where"] for line in lines} == {"notebooks/05_fine_tune.ipynb"}
    assert worklog.summary(lines)["encode"] | {"seconds": 0} == {
        "count": 3, "seconds": 0, "repeated": 1, "repeated_seconds": round(lines[1]["seconds"], 1)
    }  # fmt: skip


def test_a_test_is_named_without_its_phase_and_a_broken_line_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/test_train.py::test_x (call)")
    assert worklog.where() == "tests/test_train.py::test_x"
    path = tmp_path / "work.jsonl"
    path.write_text('{"kind": "encode", "seconds": 1}\n{"kind": "tra\n')
    with pytest.raises(ValueError, match=r"work.jsonl:2: not valid JSON"):
        worklog.read(path)
    assert worklog.read(tmp_path / "absent.jsonl") == []


def test_a_notebook_run_by_make_casestudy_is_named_by_the_variable_nbrun_sets(monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.setenv("WORKBOOK_NOTEBOOK", "05_fine_tune.ipynb")
    assert worklog.where() == "05_fine_tune.ipynb"
    monkeypatch.delenv("WORKBOOK_NOTEBOOK")
    assert worklog.where()  # the command line
