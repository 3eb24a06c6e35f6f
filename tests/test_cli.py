from __future__ import annotations

import subprocess
import sys

import pytest

from tests.test_data import tiny
from workbook.cli import main
from workbook.config import get_config
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


def _notebook(path, *cells):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_notebooks_run_in_order_with_peak_rss_and_stop_at_a_failure(tmp_path):
    """Real kernels: the first notebook holds 400 MB, so its recorded peak RSS must show it; the second fails and
    the third is not run."""
    import json

    from workbook.nbrun import run_notebooks

    (tmp_path / "notebooks").mkdir()
    _notebook(tmp_path / "notebooks" / "01_big.ipynb", "block = b\"x\" * (400 * 1024 * 1024)\nlen(block)")
    _notebook(tmp_path / "notebooks" / "02_fails.ipynb", "raise ValueError('broken cell')")
    _notebook(tmp_path / "notebooks" / "03_never.ipynb", "1 + 1")
    cfg = get_config(fast=True, root=tmp_path)
    lines: list[str] = []
    records = run_notebooks(cfg, out=tmp_path / "nb.json", log=lines.append)
    assert [r["notebook"] for r in records] == ["01_big.ipynb", "02_fails.ipynb"]
    assert records[0]["exit_code"] == 0 and records[1]["exit_code"] != 0
    assert 400 < records[0]["peak_rss_mb"] < 4096, records[0]
    assert lines[0] == "[1/3] 01_big.ipynb: running (fast mode)" and "FAILED" in lines[3]
    assert "broken cell" in records[1]["stderr_tail"]
    saved = json.loads((tmp_path / "nb.json").read_text())
    assert [r["notebook"] for r in saved["notebooks"]] == ["01_big.ipynb", "02_fails.ipynb"]
    course = json.loads((tmp_path / "notebooks" / "01_big.ipynb").read_text())
    assert course["cells"][0]["outputs"] == [] and "workbook" not in course["metadata"]  # fast mode: course untouched
    copy = json.loads((tmp_path / "executed-notebooks" / "01_big.ipynb").read_text())
    assert copy["cells"][0]["outputs"] and "workbook" not in copy["metadata"]  # the executed copy, never stamped
    again = run_notebooks(cfg, ["01"], out=tmp_path / "nb.json", log=lines.append)
    assert len(again) == 1 and "ETA" in lines[-2]  # the ETA comes from the last run's times
    assert len(json.loads((tmp_path / "nb.json").read_text())["notebooks"]) == 2  # the other record is kept


def test_a_run_stopped_midway_keeps_the_notebooks_it_finished(tmp_path):
    """Real kernel: the record is written after each notebook, so a run stopped after its first (here by the log
    raising, as a Ctrl-C would) keeps that notebook's time, with ``finished`` unset."""
    import json

    from workbook.nbrun import run_notebooks

    (tmp_path / "notebooks").mkdir()
    for name in ("01_first", "02_second"):
        _notebook(tmp_path / "notebooks" / f"{name}.ipynb", "1 + 1")

    def stop_after_the_first(line: str) -> None:
        if line.startswith("[1/2] 01_first.ipynb: done"):
            raise KeyboardInterrupt("stopped after the first notebook")

    with pytest.raises(KeyboardInterrupt):
        run_notebooks(get_config(fast=True, root=tmp_path), out=tmp_path / "nb.json", log=stop_after_the_first)
    saved = json.loads((tmp_path / "nb.json").read_text())
    assert [r["notebook"] for r in saved["notebooks"]] == ["01_first.ipynb"] and saved["finished"] is None
    assert saved["notebooks"][0]["exit_code"] == 0 and saved["notebooks"][0]["seconds"] > 0


def test_a_kernel_that_dies_before_its_first_reply_is_started_once_more(tmp_path, monkeypatch):
    """A real kernel whose first start dies at once (as when another kernel took one of its ports): no cell ran, so
    the notebook is executed once more and succeeds; a kernel that always dies still fails, naming the cause."""
    import json

    from workbook.nbrun import KERNEL_DIED_AT_START, execute

    marker, launcher = tmp_path / "started-once", tmp_path / "flaky_kernel.py"
    launcher.write_text(
        "import pathlib, runpy, sys\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists() or 'always' in sys.argv:\n"
        "    marker.touch()\n"
        "    sys.exit(1)\n"
        "sys.argv = [sys.argv[0], *sys.argv[2:]]\n"
        "runpy.run_module('ipykernel_launcher', run_name='__main__')\n"
    )
    for name, extra in (("flaky", []), ("dead", ["always"])):
        spec = tmp_path / "jupyter" / "kernels" / name
        spec.mkdir(parents=True)
        argv = [sys.executable, str(launcher), *(extra or ["once"]), "-f", "{connection_file}"]
        (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    for name in ("flaky", "dead"):
        _notebook(tmp_path / f"{name}.ipynb", "1 + 1")
        nb = json.loads((tmp_path / f"{name}.ipynb").read_text())
        nb["metadata"]["kernelspec"] = {"name": name, "display_name": name, "language": "python"}
        (tmp_path / f"{name}.ipynb").write_text(json.dumps(nb))
    rec = execute(tmp_path / "flaky.ipynb", fast=True, out_dir=tmp_path / "out")
    assert marker.exists() and rec["exit_code"] == 0, rec["stderr_tail"]
    assert json.loads((tmp_path / "out" / "flaky.ipynb").read_text())["cells"][0]["outputs"]
    dead = execute(tmp_path / "dead.ipynb", fast=True, out_dir=tmp_path / "out")
    assert dead["exit_code"] != 0 and KERNEL_DIED_AT_START in dead["stderr_tail"]


def test_a_first_run_takes_its_eta_from_the_committed_cold_run(tmp_path):
    """A fresh clone has no times of its own: the ETA comes from bench/results/e2e.json's cold run of the same mode
    and as many notebooks at a time; the last run's times win where there are some; no ETA where a notebook has
    neither."""
    import json

    from workbook.nbrun import COLD_REFERENCE, cold_times, eta_text

    cfg = get_config(fast=True, root=tmp_path)
    assert cold_times(cfg) == {}
    one = {"mode": "fast", "warm_cache": False, "jobs": 1, "notebooks": {"01_a.ipynb": {"seconds": 60},
                                                                          "02_b.ipynb": {"seconds": 120}}}
    other = {"notebooks": {"03_c.ipynb": {"seconds": 9}}}  # in runs that do not count: side by side, warm, full
    runs = {"fast, cold": one, "fast, cold, 2 side by side": one | other | {"jobs": 2},
            "fast, warm": one | other | {"warm_cache": True}, "full, cold": one | other | {"mode": "full"}}
    (tmp_path / COLD_REFERENCE).parent.mkdir(parents=True)
    (tmp_path / COLD_REFERENCE).write_text(json.dumps({"casestudy_runs": runs}))
    cold = cold_times(cfg)
    assert cold == {"01_a.ipynb": 60.0, "02_b.ipynb": 120.0}
    assert cold_times(cfg, jobs=2) == {"03_c.ipynb": 9.0}  # the run with as many side by side
    both = ["01_a.ipynb", "02_b.ipynb"]
    assert eta_text(both, {}, cold, 1) == f", ETA 3 min from a cold run's ({COLD_REFERENCE})"
    assert eta_text(both, {"01_a.ipynb": 240.0}, cold, 1) == (
        f", ETA 6 min from the last run's times and a cold run's ({COLD_REFERENCE})")
    assert eta_text(both, {"01_a.ipynb": 60.0, "02_b.ipynb": 60.0}, cold, 1) == ", ETA 2 min from the last run's times"
    assert eta_text([*both, "03_c.ipynb"], {}, cold, 1) == ""
    (tmp_path / COLD_REFERENCE).write_text("{not json")
    assert cold_times(cfg) == {}  # a broken reference costs the ETA, not the run


def test_notebooks_run_side_by_side_only_where_their_inputs_allow(tmp_path, monkeypatch):
    """Real kernels, two at a time: 02 and 03 need only 01 (absent here), so they overlap; 05 waits for 03's
    negatives, and a notebook NEEDS does not list waits for every one before it. Each kernel's OpenMP threads wait
    passively (two spinning kernels on two cores run far below half speed)."""
    import json

    from workbook.nbrun import run_notebooks

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    (tmp_path / "notebooks").mkdir()
    wait, policy = "import os, time\ntime.sleep(2)\nos.nice(0)", "import os\nos.environ.get('OMP_WAIT_POLICY')"
    for name, cell in [("02_baseline", wait), ("03_hard_negatives", wait), ("05_fine_tune", policy), ("09_extra", "1")]:
        _notebook(tmp_path / "notebooks" / f"{name}.ipynb", cell)
    lines: list[str] = []
    records = run_notebooks(get_config(fast=True, root=tmp_path), out=tmp_path / "nb.json", log=lines.append, jobs=2)
    rec = {r["notebook"].split("_")[0]: r for r in records}
    assert all(r["exit_code"] == 0 for r in records) and len(records) == 4

    def end(r):
        return r["started_s"] + r["seconds"]

    assert rec["03"]["started_s"] < end(rec["02"]) and rec["02"]["started_s"] < end(rec["03"]), "02 and 03 overlap"
    assert rec["05"]["started_s"] >= end(rec["03"]) - 0.2  # started after 03 finished (times rounded to 0.1 s)
    assert rec["09"]["started_s"] >= max(end(rec[n]) for n in ("02", "03", "05")) - 0.2
    assert any("beside" in line for line in lines if "running" in line)
    saved = json.loads((tmp_path / "nb.json").read_text())
    assert saved["jobs"] == 2 and saved["peak_rss_mb_together"] >= rec["02"]["peak_rss_mb"] + rec["03"]["peak_rss_mb"]

    def shown(name):
        copy = json.loads((tmp_path / "executed-notebooks" / f"{name}.ipynb").read_text())
        return "".join(copy["cells"][0]["outputs"][0]["data"]["text/plain"])

    assert shown("05_fine_tune") == "'PASSIVE'"
    # 03 opens the longer chain (05, then 09): 02, started beside it, runs at a lower CPU priority
    assert (rec["03"]["nice"], rec["02"]["nice"]) == (0, 10) and int(shown("02_baseline")) >= 10
    assert saved["peak_pss_mb_together"] > 0


def test_the_schedule_starts_the_longest_chain_first_and_plans_the_eta():
    from workbook.nbrun import NEEDS, critical_path, default_jobs, needs, plan_seconds

    course = list(NEEDS)
    # fast mode, cold, one at a time (bench/results/e2e.json, commit a3efa4d)
    times = dict(zip(course, [24.1, 43.1, 60.5, 14.6, 42.7, 204.1, 100.8, 70.6, 101.5], strict=True))
    assert plan_seconds(course, times, jobs=1) == sum(times.values())
    side = plan_seconds(course, times, jobs=2)
    # 00, 01, then 03 before 02 (03 opens 05-06, the longest chain), and 05 then 06 back to back: the critical path
    chain = times["00_setup_check.ipynb"] + times["01_diagnose_mismatch.ipynb"] + times["03_hard_negatives.ipynb"]
    assert side == chain + times["05_fine_tune.ipynb"] + times["06_evaluate.ipynb"]
    rank = critical_path(course, times)
    assert rank["03_hard_negatives.ipynb"] > rank["02_baseline.ipynb"] > rank["04_synthetic_data.ipynb"]
    assert needs(["01_x.ipynb", "02_y.ipynb", "03_z.ipynb"])["03_z.ipynb"] == ["01_x.ipynb", "02_y.ipynb"]
    assert needs(["02_baseline.ipynb", "06_evaluate.ipynb"])["06_evaluate.ipynb"] == ["02_baseline.ipynb"]
    assert default_jobs(fast=False) == 1  # full mode: committed outputs hold timings, a neighbour would slow them


def test_one_at_a_time_runs_in_file_order_at_full_priority(tmp_path):
    """jobs=1 (full mode's default) keeps the course's order even where NEEDS would let a longer chain go first."""
    from workbook.nbrun import run_notebooks

    (tmp_path / "notebooks").mkdir()
    for name in ("02_baseline", "03_hard_negatives", "05_fine_tune"):
        _notebook(tmp_path / "notebooks" / f"{name}.ipynb", "1")
    lines: list[str] = []
    records = run_notebooks(get_config(fast=True, root=tmp_path), out=tmp_path / "nb.json", log=lines.append, jobs=1)
    assert [r["notebook"] for r in records] == ["02_baseline.ipynb", "03_hard_negatives.ipynb", "05_fine_tune.ipynb"]
    assert all(r["nice"] == 0 for r in records) and not any("beside" in line or "priority" in line for line in lines)


def test_a_full_run_executes_in_place_strips_bars_and_stamps(tmp_path):
    import json

    from workbook.nbrun import freshness, run_notebooks

    (tmp_path / "notebooks").mkdir()
    path = tmp_path / "notebooks" / "01_bar.ipynb"
    _notebook(path, "from tqdm import tqdm\nsum(tqdm(range(3), desc='work'))")
    records = run_notebooks(get_config(fast=False, root=tmp_path), out=tmp_path / "nb.json", log=lambda _: None)
    assert records[0]["exit_code"] == 0
    outputs = json.loads(path.read_text())["cells"][0]["outputs"]
    assert [o["output_type"] for o in outputs] == ["execute_result"]  # the bar's stderr chunks are gone
    assert freshness(path) == "fresh"
