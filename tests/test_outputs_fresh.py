"""Committed full-mode outputs are the outputs of the code beside them: every course notebook is stamped by a complete
full-mode run of its current code cells (workbook.nbrun), or listed in notebooks/PENDING.json with the reason."""

from __future__ import annotations

import json

import pytest

from workbook import nbrun
from workbook.config import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PENDING = json.loads((ROOT / "notebooks" / nbrun.PENDING).read_text(encoding="utf-8"))["pending"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_come_from_the_current_code_or_are_listed_as_pending(path):
    state = nbrun.freshness(path)
    if path.name in PENDING:
        assert state != "fresh", f"{path.name} is stamped fresh by a full run: remove it from notebooks/PENDING.json"
        assert PENDING[path.name].strip(), "say why it is pending"
    else:
        assert state == "fresh", (
            f"{path.name}: code changed since its last full-mode run ({state}); rerun it (`workbook notebooks "
            f"{path.name[:2]}`) or list it in notebooks/PENDING.json with the reason"
        )


SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=lambda p: p.stem)
def test_committed_outputs_carry_no_progress_bars(path):
    """Committed outputs show results, not machinery: a bar's states left in a notebook are dropped with
    ``nbrun.strip_progress`` (which ``workbook notebooks`` runs after each full run)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    bars = [i for i, cell in enumerate(nb["cells"]) for o in cell.get("outputs", []) if nbrun.is_progress_output(o)]
    assert not bars, f"{path.name}: progress-bar outputs in cells {sorted(set(bars))}; run nbrun.strip_progress"


def test_pending_lists_only_course_notebooks():
    assert set(PENDING) <= {p.name for p in NOTEBOOKS}


def test_stamp_tracks_code_not_prose(tmp_path):
    nb = {"cells": [{"cell_type": "markdown", "source": ["# 0.5"], "metadata": {}},
                    {"cell_type": "code", "source": ["x = 1\n", "x"], "metadata": {}, "outputs": [],
                     "execution_count": 1}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    path = tmp_path / "01_x.ipynb"
    path.write_text(json.dumps(nb))
    assert nbrun.freshness(path) == "unstamped"
    nbrun.stamp(path, "full")
    assert nbrun.freshness(path) == "fresh"
    nb = json.loads(path.read_text())
    nb["cells"][0]["source"] = ["# prose edited"]
    path.write_text(json.dumps(nb))
    assert nbrun.freshness(path) == "fresh"  # prose is checked against outputs by test_prose_claims instead
    nb["cells"][1]["source"] = ["x = 2\n", "x"]
    path.write_text(json.dumps(nb))
    assert nbrun.freshness(path) == "stale"
    nbrun.stamp(path, "fast")
    assert nbrun.freshness(path) == "unstamped"  # a fast-mode run does not vouch for full-mode outputs


def test_a_full_run_unlists_the_notebook(tmp_path):
    pending = tmp_path / nbrun.PENDING
    pending.write_text(json.dumps({"about": "x", "pending": {"01_x.ipynb": "why", "02_y.ipynb": "why"}}))
    nbrun.unlist_pending(tmp_path / "01_x.ipynb")
    assert json.loads(pending.read_text())["pending"] == {"02_y.ipynb": "why"}


def test_strip_progress_drops_bars_and_keeps_warnings(tmp_path):
    def err(text):
        return {"output_type": "stream", "name": "stderr", "text": [text]}

    bars = [err("\rLoading weights:   0%|          | 0/103 [00:00<?, ?it/s]"),
            err("\rre-embed docs-v1:  46%|████▌     | 34304/74714 [02:50<06:57, 96.80doc/s] "),
            err("\r                                                                     "), err("\n"),
            err("\rbatches: 12/? [00:03, 4.1it/s]")]  # fmt: skip
    table = "<div><progress value='188' max='188'></progress> [188/188 11:05, Epoch 1/1]</div><table></table>"
    bars.append({"output_type": "display_data", "metadata": {},
                 "data": {"text/html": [table], "text/plain": ["<IPython.core.display.HTML object>"]}})  # fmt: skip
    warning = err("UserWarning: 3 queries have no relevant document\n")
    result = {"output_type": "stream", "name": "stdout", "text": ["13,089 rows\n"]}
    frame = {"output_type": "display_data", "metadata": {}, "data": {"text/html": ["<table><tr><td>1</td></tr>"]}}
    nb = {"cells": [{"cell_type": "code", "source": ["x"], "metadata": {}, "execution_count": 1,
                     "outputs": [*bars[:2], result, warning, frame, *bars[2:]]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    path = tmp_path / "01_x.ipynb"
    path.write_text(json.dumps(nb))
    assert nbrun.strip_progress(path) == len(bars)
    assert json.loads(path.read_text())["cells"][0]["outputs"] == [result, warning, frame]
    assert nbrun.strip_progress(path) == 0
