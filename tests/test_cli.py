from __future__ import annotations

import subprocess
import sys

from tests.test_data import tiny
from workbook.cli import main
from workbook.data import save_dataset


def test_validate_good_dataset(tmp_path, capsys):
    folder = save_dataset(tiny(), tmp_path / "ok")
    assert main(["validate", str(folder)]) == 0
    assert "OK: 3 docs, 3 queries, 0 eval queries also in train" in capsys.readouterr().out


def test_validate_points_at_bad_rows(tmp_path, capsys):
    folder = save_dataset(tiny(), tmp_path / "bad")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td2\thigh\n")
    assert main(["validate", str(folder)]) == 1
    assert "qrels/test.tsv:2: field 'score': relevance must be an integer, got 'high'" in capsys.readouterr().err


def test_validate_reports_leakage(tmp_path, capsys):
    ds = tiny()
    ds.queries["q3"] = ds.queries["q1"].upper()
    assert main(["validate", str(save_dataset(ds, tmp_path / "leak"))]) == 1
    assert "leak: test query q3 = train query q1" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "workbook.cli", "--help"], capture_output=True, text=True, check=True)
    assert "validate" in out.stdout and "prepare" in out.stdout


def test_run_and_casestudy_commands_are_listed():
    out = subprocess.run([sys.executable, "-m", "workbook.cli", "--help"], capture_output=True, text=True, check=True)
    assert "run" in out.stdout and "casestudy" in out.stdout
    cmd = [sys.executable, "-m", "workbook.cli", "run", "--help"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "--out" in out.stdout and "--config" in out.stdout and "--fast" in out.stdout
