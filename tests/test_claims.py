"""Numbers in the READMEs that come from a results file are rendered from it: edit one by hand and this fails."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def _block(text: str, name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)\n?<!-- {name}:end -->", text, re.S)
    assert match, f"no <!-- {name}:start --> ... <!-- {name}:end --> block"
    return match.group(1).strip()


def test_readme_llm_build_cost_comes_from_the_bench_result():
    """The README's sentence is the rendering of bench/results/llm_build.json; with no result, there is no sentence."""
    import llm_build

    path = ROOT / "bench" / "results" / "llm_build.json"
    block = _block((ROOT / "README.md").read_text(), "llm-build")
    assert block == (llm_build.readme_block(json.loads(path.read_text())) if path.is_file() else "")


def test_readme_test_time_comes_from_the_bench_result():
    import e2e

    result = json.loads((ROOT / "bench" / "results" / "e2e.json").read_text())
    assert _block((ROOT / "README.md").read_text(), "test-time") == e2e.readme_block(result)


def test_a_cold_case_study_is_recorded_from_its_log_finished_or_stopped(tmp_path):
    """bench/cold_casestudy.sh's log, read by e2e.cold_log: a run stopped midway (or still running) is recorded as
    not finished, with the notebooks it finished, and the end-to-end table says so instead of passing its partial
    time off as the whole."""
    import e2e
    import run

    log = tmp_path / "log"
    lines = ["CPU: a CPU", "COMMIT abc1234 START 2026-12-06T20:52:30Z", "pip noise", "SETUP_SECONDS 540 at now",
             "[1/9] 00_setup_check.ipynb: running (full mode)",
             "[1/9] 00_setup_check.ipynb: done in 4.7 min, peak RSS 1.15 GiB",
             "[2/9] 01_diagnose_mismatch.ipynb: running (full mode, ETA 300 min from the last run's times)",
             "[2/9] 01_diagnose_mismatch.ipynb: done in 11.1 min, peak RSS not measured"]  # fmt: skip
    log.write_text("\n".join(lines) + "\n")
    stopped = e2e.cold_log(log, "2 cores, quiet")
    assert stopped["mode"] == "full" and not stopped["complete"] and stopped["seconds"] is None
    assert stopped["setup_seconds"] == 540 and stopped["commit"] == "abc1234" and stopped["notebooks_total"] == 9
    assert stopped["notebooks"] == {
        "00_setup_check.ipynb": {"seconds": 282.0, "minutes": 4.7, "exit_code": 0, "peak_rss_mb": 1177.6},
        "01_diagnose_mismatch.ipynb": {"seconds": 666.0, "minutes": 11.1, "exit_code": 0, "peak_rss_mb": None},
    }
    assert stopped["notebooks_seconds"] == 948.0 and stopped["pipeline"] is None and stopped["computed"] is None
    table = run.md_e2e({"casestudy_runs": {"full, cold, fresh clone": stopped}})
    assert "**not finished** when recorded: 2 of its 9 notebooks done" in table and "15.8 min for those" in table
    assert "| `01_diagnose_mismatch.ipynb` | 11.1 min, peak not measured |" in table
    with log.open("a") as f:
        f.write("\tMaximum resident set size (kbytes): 3145728\nCASESTUDY_SECONDS 15000 rc 0 at then\n")
    done = e2e.cold_log(log, "2 cores, quiet")
    assert done["complete"] and done["seconds"] == 15000 and done["peak_rss_mb_one_process"] == 3072.0
    assert "| 250.0 min |" in run.md_e2e({"casestudy_runs": {"full, cold, fresh clone": done}})
    runs = tmp_path / "project" / "runs" / "casestudy-full"  # the clone beside its log (fresh-clone-test.sh)
    runs.mkdir(parents=True)
    books = [{"notebook": "00_setup_check.ipynb", "seconds": 283.4, "peak_rss_mb": 1180.2},
             {"notebook": "02_baseline.ipynb", "seconds": 9.0, "peak_rss_mb": 1.0}]  # not done per the log: ignored
    (runs / "notebooks.json").write_text(json.dumps({"notebooks": books, "jobs": 1, "seconds": 292.4}))
    exact = e2e.cold_log(log, "2 cores, quiet")["notebooks"]
    assert exact["00_setup_check.ipynb"] == {"seconds": 283.4, "minutes": 4.7, "exit_code": 0, "peak_rss_mb": 1180.2}
    assert set(exact) == {"00_setup_check.ipynb", "01_diagnose_mismatch.ipynb"}
    (runs / "make_casestudy.json").write_text(json.dumps({"casestudy_seconds": 400, "warm_cache": False}))
    finished = e2e.casestudy_run(tmp_path / "project", "full", "2 cores, quiet")
    assert finished["notebooks"] == {b["notebook"]: {"seconds": b["seconds"], "peak_rss_mb": b["peak_rss_mb"]}
                                     for b in books}  # fmt: skip
    assert finished["notebooks_seconds"] == 292.4 and finished["seconds"] == 400 and finished["jobs"] == 1
    log.write_text("pip noise\n")  # stopped in its set-up: nothing to record
    with pytest.raises(SystemExit, match="not the log of bench/cold_casestudy.sh past its set-up"):
        e2e.cold_log(log, "x")


@pytest.mark.parametrize("name", ["targets", "quality", "lookalike", "speed", "e2e", "memory", "precision",
                                  "allocator", "train-step", "synth-speed", "synth-gpl", "synth-style",
                                  "synth-generators", "docs-only", "bm25-ties"])
def test_bench_readme_tables_come_from_the_results(name):
    import run

    results = {n: run._load(n) for n in ("mining", "speed", "quality", "e2e", "memory", "precision", "allocator",
                                         "train_step", "synth_speed", "synth_gpl", "synth_style", "synth_generators",
                                         "docs_only", "bm25_ties")}
    rows = run.all_targets(results["mining"], results["quality"], results["e2e"], results["memory"])
    render = {"targets": lambda: run.md_targets(rows), "quality": lambda: run.md_quality(results["quality"]),
              "lookalike": lambda: run.md_lookalike(results["quality"]),
              "speed": lambda: run.md_speed(results["speed"], results["mining"]),
              "e2e": lambda: run.md_e2e(results["e2e"]), "memory": lambda: run.md_memory(results["memory"]),
              "precision": lambda: run.md_precision(results["precision"]),
              "allocator": lambda: run.md_allocator(results["allocator"]),
              "train-step": lambda: run.md_train_step(results["train_step"]),
              "synth-speed": lambda: run.md_synth_speed(results["synth_speed"]),
              "synth-gpl": lambda: run.md_synth_gpl(results["synth_gpl"]),
              "synth-style": lambda: run.md_synth_style(results["synth_style"]),
              "synth-generators": lambda: run.md_synth_generators(results["synth_generators"]),
              "docs-only": lambda: run.md_docs_only(results["docs_only"]),
              "bm25-ties": lambda: run.md_bm25_ties(results["bm25_ties"])}
    assert _block((ROOT / "bench" / "README.md").read_text(), name) == render[name]().strip()


def test_bm25_ties_expected_metrics_are_the_average_over_random_tie_orders():
    """bench/bm25_ties.py's exact expectation under a random order of tied scores equals the mean over many shuffles,
    each scored as ranked by the project's evaluator (a tie across the 10th position moves Recall@10 of a fixed order,
    not the expectation)."""
    import bm25_ties

    from workbook.evaluate import evaluate_ranking

    def scored(order):  # the evaluator the bench scores every fixed order with
        res = evaluate_ranking({"q": [f"d{i}" for i in order if scores[i] > 0]}, qrels, bm25_ties.METRICS)
        return {m: float(v) for m, v in res.summary().items()}

    rng = np.random.default_rng(0)
    scores = np.array([5.0] * 8 + [3.0] * 4 + [1.0] * 6 + [0.0] * 2, dtype=np.float32)  # 4 docs tie at ranks 9-12
    relevant = {9: 1.0, 14: 1.0}  # one inside the tie, one lower down; doc 19 scores 0 and is never retrieved
    qrels = {"q": {f"d{i}": 1 for i in relevant}}
    got = bm25_ties.expected_metrics(scores, relevant)
    fixed = scored(np.lexsort((np.arange(20), -scores)))
    assert fixed["recall@10"] == 0.5 and fixed["recall@100"] == 1.0  # doc 9 is 10th by position
    shuffled = {"recall@10": [], "ndcg@10": []}
    for _ in range(4000):
        one = scored(np.lexsort((rng.random(20), -scores)))
        for m in shuffled:
            shuffled[m].append(one[m])
    assert got["recall@10"] == pytest.approx(0.25)  # 2 of 4 tied places are in the top 10
    for m, values in shuffled.items():
        assert got[m] == pytest.approx(np.mean(values), abs=0.01), m


def test_bm25_ties_prose_holds_for_the_recorded_result():
    """bench/README.md says bm25s' own order reproduces the committed test table's BM25 row, and that ties broken by
    corpus position lower Recall@10 below the random-order expectation on every split: both read from the files."""
    ties = json.loads((ROOT / "bench" / "results" / "bm25_ties.json").read_text())
    committed = json.loads((ROOT / "bench" / "results" / "quality.json").read_text())["case_study"]["test"]["BM25"]
    own = ties["splits"]["test"]["metrics"]["bm25s (this CPU)"]
    assert "avx2" in ties["cpu"] and "avx512f" not in ties["cpu"]  # the committed table's CPU kind
    assert {m: committed[m] for m in own} == own
    for split in ties["splits"].values():
        m = split["metrics"]
        assert m["ties by corpus position"]["recall@10"] < m["random tie order (expected)"]["recall@10"]
        assert abs(m["ties by a seeded hash"]["recall@10"] - m["random tie order (expected)"]["recall@10"]) < 0.0025
