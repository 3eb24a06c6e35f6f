"""Benchmark: end-to-end minutes of the test suite and of the full case study.

Usage (from the repository root, after ``make setup``)::

    .venv/bin/python bench/e2e.py              # runs the test suite (what `make test` runs after set-up and lint)
    .venv/bin/python bench/e2e.py --skip-tests # only reads the case study's time
    .venv/bin/python bench/e2e.py --skip-tests --profile-junit run.xml --machine "2 cores, quiet, cold caches"
        # records where a test run's time went (pytest --junitxml=run.xml): per test file and notebook, slowest
        # items; one profile is kept per CPU (the newest), since the same suite takes 3x longer on some CPUs

The case study takes hours on 2 CPU cores, so it is not re-run here: ``make casestudy`` records its own wall time in
``runs/casestudy-full/make_casestudy.json`` and ``workbook casestudy`` its steps in ``runs/casestudy-full/run.json``,
which this script reads. Cold, from a fresh clone, as a stranger meets it::

    ../shared/tools/fresh-clone-test.sh "bash bench/cold_casestudy.sh"   # prints the clone's log path at the end
    .venv/bin/python bench/e2e.py --skip-tests --cold-log /tmp/fresh-clone.XXXX/log --machine "2 cores, quiet"
        # records it, finished or stopped midway (then as stopped, with the notebooks it finished)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def workbook_casestudy(run_json: Path) -> dict | None:
    """The last ``workbook casestudy`` run's wall time and, per step, whether it ran or was cached (from its run.json).

    ``steps_seconds`` adds up each step's time when it last ran, so it is the pipeline's cost with every step run
    once, even when the last invocation found some steps cached.
    """
    if not run_json.is_file():
        return None
    run = json.loads(run_json.read_text())
    steps = run.get("steps", [])
    return {"seconds": run.get("seconds"), "finished": run.get("finished"),
            "steps_ran": sum(s["status"] == "ran" for s in steps),
            "steps_cached": sum(s["status"] == "cached" for s in steps),
            "steps_seconds": round(sum(s["last_run_seconds"] for s in steps), 1),
            "finetune_seconds": next((round(s["last_run_seconds"], 1) for s in steps if s["name"] == "05_finetune"),
                                     None),
            "source": str(run_json.relative_to(ROOT) if run_json.is_relative_to(ROOT) else run_json)}  # fmt: skip


def fresh_clone(log: Path, machine: str) -> dict:
    """The record of a ``../shared/tools/fresh-clone-test.sh`` run (``make test`` in a fresh clone, empty pip cache),
    read from its output: wall time including set-up, exit code, and pytest's closing line."""
    text = log.read_text()
    done = re.search(r"fresh clone: '(.+?)' exited (\d+) after (\d+) s", text)
    summary = re.findall(r"^=+ ((?:\d+ failed, )?\d+ passed.*?) =+$", text, re.MULTILINE)
    if not done or not summary:
        raise SystemExit(f"{log}: not the output of a finished fresh-clone run")
    # A command that ends in `make test` after its set-up targets (and pytest options) is recorded as `make test`,
    # which runs those targets itself.
    command = "make test" if "make test" in done.group(1) else done.group(1)
    return {"command": command, "exit_code": int(done.group(2)), "seconds": int(done.group(3)),
            "pytest": summary[-1], "pip_cache": "empty (PIP_NO_CACHE_DIR=1)", "machine": machine}  # fmt: skip


def notebook_records(runs: Path) -> dict[str, dict]:
    """Each notebook of the ``workbook notebooks`` run in ``runs`` (``runs/casestudy-<mode>/``, whose ``notebooks.json``
    it rewrites after each notebook, so a run stopped midway has its finished ones): time and peak RSS; ``{}`` when
    the run wrote none."""
    books = runs / "notebooks.json"
    if not books.is_file():
        return {}
    return {n["notebook"]: {"seconds": n["seconds"], "peak_rss_mb": n["peak_rss_mb"]}
            for n in json.loads(books.read_text())["notebooks"]}  # fmt: skip


def casestudy_run(checkout: Path, mode: str, machine: str) -> dict:
    """A finished ``make casestudy`` (``FAST=1`` for ``mode="fast"``) in ``checkout`` (e.g. a fresh clone whose
    ``.cache/`` and ``artifacts/`` were empty): its wall time, whether caches existed, and each notebook's time and
    peak RSS, how many ran side by side and the memory they held together at most (from
    ``runs/casestudy-<mode>/make_casestudy.json`` and ``notebooks.json``)."""
    runs = checkout / "runs" / f"casestudy-{mode}"
    made, books = runs / "make_casestudy.json", runs / "notebooks.json"
    if not made.is_file() or not books.is_file():
        raise SystemExit(f"{runs}: no make_casestudy.json and notebooks.json (run `make casestudy` there first)")
    record = json.loads(made.read_text())
    run = json.loads(books.read_text())
    notebooks = notebook_records(runs)
    return {"mode": mode, "seconds": record["casestudy_seconds"], "warm_cache": record["warm_cache"],
            "notebooks_seconds": round(sum(n["seconds"] for n in notebooks.values()), 1),
            "notebooks_wall_seconds": run.get("seconds"), "jobs": run.get("jobs", 1),
            "peak_pss_mb_together": run.get("peak_pss_mb_together"),
            "peak_rss_mb_together": run.get("peak_rss_mb_together"),
            "notebooks": notebooks, "cpu": cpu_name(), "machine": machine,
            "computed": computed(runs / "worklog.jsonl") if (runs / "worklog.jsonl").is_file() else None}  # fmt: skip


NOTEBOOK_LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S+\.ipynb): (done|FAILED) in ([\d.]+) min, peak RSS "
                           r"(?:([\d.]+) GiB|not measured)$", re.MULTILINE)  # fmt: skip


def cold_log(log: Path, machine: str) -> dict:
    """A ``bench/cold_casestudy.sh`` run in a fresh clone (``log``: the clone's log from ``fresh-clone-test.sh``),
    finished or stopped midway: set-up and case-study wall time, each notebook it finished (time and peak RSS: exact
    from the clone's ``notebooks.json`` where it has them, else as the log prints them) and, from the clone beside
    the log, what it computed (its work log) and the pipeline's steps. A run stopped midway (killed, the machine
    taken back) or still running is recorded with what it has finished: ``complete`` is False and ``seconds`` None."""
    text = log.read_text(errors="replace")
    start = re.search(r"^COMMIT (\w+) START (\S+)$", text, re.MULTILINE)
    setup = re.search(r"^SETUP_SECONDS (\d+)", text, re.MULTILINE)
    if not start or not setup:
        raise SystemExit(f"{log}: not the log of bench/cold_casestudy.sh past its set-up")
    end = re.search(r"^CASESTUDY_SECONDS (\d+) rc (\d+)", text, re.MULTILINE)
    books = {m.group(3): {"seconds": round(float(m.group(5)) * 60, 1), "minutes": float(m.group(5)),
                          "exit_code": 0 if m.group(4) == "done" else 1,
                          "peak_rss_mb": round(float(m.group(6)) * 1024, 1) if m.group(6) else None}
             for m in NOTEBOOK_LINE.finditer(text)}  # fmt: skip
    total = next((int(m.group(2)) for m in NOTEBOOK_LINE.finditer(text)), None)
    mode = "fast" if "running (fast mode" in text else "full"
    runs = log.parent / "project" / "runs" / f"casestudy-{mode}"
    for name, rec in notebook_records(runs).items():  # exact seconds for the notebooks the log shows done
        if name in books:
            books[name] |= rec | {"minutes": round(rec["seconds"] / 60, 1)}
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"mode": mode, "warm_cache": False, "complete": bool(end) and end.group(2) == "0",
            "exit_code": int(end.group(2)) if end else None, "seconds": int(end.group(1)) if end else None,
            "setup_seconds": int(setup.group(1)), "commit": start.group(1), "started": start.group(2),
            "notebooks_total": total, "notebooks_finished": len(books), "jobs": 1 if mode == "full" else None,
            "notebooks_seconds": round(sum(b["seconds"] for b in books.values()), 1), "notebooks": books,
            "peak_rss_mb_one_process": round(int(peak.group(1)) / 1024, 1) if peak else None,
            "pipeline": workbook_casestudy(runs / "run.json") if (runs / "run.json").is_file() else None,
            "computed": computed(runs / "worklog.jsonl") if (runs / "worklog.jsonl").is_file() else None,
            "cpu": cpu_name(), "machine": machine, "source": "bench/cold_casestudy.sh in a fresh clone"}  # fmt: skip


def computed(worklog: Path, pytest_seconds: float | None = None) -> dict:
    """What a run computed, from its work log (``WORKBOOK_WORKLOG``, :mod:`workbook.worklog`): per kind of work
    (encode, train, rerank, ...) how many pieces, their seconds, and the seconds of pieces done more than once; with
    ``pytest_seconds``, the share of the run's time the logged work took (the rest is process start-ups, imports,
    servers and clusters, and work too small to log)."""
    from workbook.worklog import read, summary

    lines = read(worklog)
    if not lines:
        raise SystemExit(f"{worklog}: an empty work log (was WORKBOOK_WORKLOG set for the run?)")
    kinds = summary(lines)
    out = {"kinds": kinds, "seconds": round(sum(k["seconds"] for k in kinds.values()), 1),
           "repeated_seconds": round(sum(k["repeated_seconds"] for k in kinds.values()), 1)}
    if pytest_seconds:
        out["share_of_pytest"] = round(out["seconds"] / pytest_seconds, 3)
    return out


def speed_probe(seconds: float = 3.0) -> dict:
    """How fast this machine multiplies fp32 matrices right now (GFLOP/s, 2048 x 2048, torch's threads), stored with
    each record: a shared or throttled VM drifts by a third within an hour (a fast-mode training step took 2.28 to
    3.20 s in one session, nothing else running), so records are compared only beside their probes."""
    sys.path.insert(0, str(ROOT / "bench"))
    from train_step import matmul_gflops

    return {"fp32 matmul GFLOP/s": matmul_gflops(2048, 2048, 2048, seconds), "when": "when the record was written"}


def cpu_name() -> str:
    """The CPU's model name and the vector extensions that set its speed here (AVX-512, AMX), from /proc/cpuinfo."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    name = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    flags = set((re.search(r"^flags\s*:\s*(.+)$", info, re.MULTILINE) or [None, ""])[1].split())
    ext = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name.group(1).strip() if name else 'unknown CPU'} ({', '.join(ext) or 'no AVX2'})"


def junit_profile(xml: Path, machine: str, top: int = 12) -> dict:
    """Where a test run's time went, from pytest's ``--junitxml`` file: seconds per test module and per notebook
    (nbval reports each cell as an item), and the slowest items."""
    import xml.etree.ElementTree as ET

    per_file: dict[str, float] = {}
    items = []
    for case in ET.parse(xml).iter("testcase"):
        where, seconds = case.get("classname", "?"), float(case.get("time", 0))
        per_file[where] = per_file.get(where, 0.0) + seconds
        items.append((seconds, f"{where}::{case.get('name')}"))
    total = sum(per_file.values())
    return {"machine": machine, "cpu": cpu_name(), "items": len(items), "seconds": round(total, 1),
            "per_file": {k: round(v, 1) for k, v in sorted(per_file.items(), key=lambda kv: -kv[1])},
            "slowest": [{"item": name, "seconds": round(sec, 1)} for sec, name in sorted(items, reverse=True)[:top]],
            "source": xml.name}  # fmt: skip


def cold_profiles(e2e: dict) -> dict[str, dict]:
    """The junit profiles of cold test runs, one per CPU (the newest run on each), from ``e2e.json``; an older file's
    single ``test_profile`` counts as its CPU's."""
    profiles = dict(e2e.get("test_profiles") or {})
    old = e2e.get("test_profile")
    if old and old["cpu"] not in profiles:
        profiles[old["cpu"]] = old
    return profiles


def readme_block(e2e: dict) -> str:
    """The README's sentence on how long `make test` takes, from ``bench/results/e2e.json``."""
    fresh, suite = e2e.get("fresh_clone"), e2e.get("test_suite")
    parts = []
    if fresh:
        parts.append(f"From a fresh clone with an empty pip cache, `{fresh['command']}` took "
                     f"{fresh['seconds'] / 60:.0f} min including set-up ({fresh['pytest']}; "
                     f"{fresh['machine']})")  # fmt: skip
    if suite:
        parts.append(f"the last `make bench` timed the tests alone, with warm caches, at {suite['seconds'] / 60:.0f} "
                     f"min ({suite['summary']})")  # fmt: skip
    profiles = sorted(cold_profiles(e2e).values(), key=lambda p: p["seconds"])
    if profiles:
        each = [f"{p['seconds'] / 60:.0f} min on {p['cpu']} ({p['machine']})" for p in profiles]
        parts.append(f"cold, the tests alone took {' and '.join(each)} (where the time goes, per CPU: "
                     f"`bench/README.md`)")  # fmt: skip
    runs = e2e.get("casestudy_runs") or {}
    fast = next((r for key, r in sorted(runs.items()) if key.startswith("fast, cold") and r.get("jobs", 1) > 1),
                runs.get("fast, cold"))  # the default path: side by side where it ran so  # fmt: skip
    if fast:
        side = f", {fast['jobs']} notebooks side by side" if fast.get("jobs", 1) > 1 else ""
        one = runs.get("fast, cold") if fast is not runs.get("fast, cold") else None
        alone = f"; one at a time {one['seconds'] / 60:.1f} min on {one['cpu']}" if one else ""
        parts.append(f"the quick path, `make casestudy FAST=1`, took {fast['seconds'] / 60:.1f} min from empty caches "
                     f"on {fast['cpu']} ({fast['machine']}{side}{alone})")  # fmt: skip
    return ("; ".join(parts) + ".") if parts else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "e2e.json")
    parser.add_argument("--fresh-clone-log", type=Path, help="record this fresh-clone-test.sh output (its log file)")
    parser.add_argument("--machine", default="2 CPU cores", help="with --fresh-clone-log: how busy the machine was")
    parser.add_argument("--profile-junit", type=Path, help="record where this pytest --junitxml run's time went")
    parser.add_argument("--casestudy-run", type=Path, metavar="CHECKOUT",
                        help="record the finished `make casestudy [FAST=1]` in CHECKOUT (e.g. a fresh clone)")
    parser.add_argument("--mode", choices=("fast", "full"), default="fast", help="with --casestudy-run: which one")
    parser.add_argument("--worklog", type=Path, help="with --profile-junit: that run's work log (WORKBOOK_WORKLOG)")
    parser.add_argument("--cold-log", type=Path, metavar="LOG",
                        help="record the bench/cold_casestudy.sh run whose fresh-clone log is LOG (finished or not)")
    args = parser.parse_args()
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    # Records this machine does not have (runs/ is not in git) keep their last committed values.
    keys = ("test_suite", "casestudy", "workbook_casestudy", "fresh_clone")
    out = {key: previous.get(key) for key in keys} | {"test_profiles": cold_profiles(previous)}
    out["casestudy_runs"] = dict(previous.get("casestudy_runs") or {})  # one per mode and cache state: the newest
    if args.casestudy_run:
        run = casestudy_run(args.casestudy_run, args.mode, args.machine) | {"probe": speed_probe()}
        side = f", {run['jobs']} side by side" if run.get("jobs", 1) > 1 else ""
        out["casestudy_runs"][f"{args.mode}, {'warm' if run['warm_cache'] else 'cold'}{side}"] = run
    if args.cold_log:
        run = cold_log(args.cold_log, args.machine) | {"probe": speed_probe()}
        out["casestudy_runs"][f"{run['mode']}, cold, fresh clone"] = run
    if args.profile_junit:
        prof = junit_profile(args.profile_junit, args.machine)
        if args.worklog:
            prof["computed"] = computed(args.worklog, prof["seconds"])
        out["test_profiles"][prof["cpu"]] = prof
    if args.fresh_clone_log:
        out["fresh_clone"] = fresh_clone(args.fresh_clone_log, args.machine) | {"probe": speed_probe()}
    if not args.skip_tests:
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly"], cwd=ROOT,
                              capture_output=True, text=True)  # fmt: skip
        tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        out["test_suite"] = {"seconds": round(time.perf_counter() - t, 1), "exit_code": done.returncode,
                             "summary": tail}  # fmt: skip
    record = ROOT / "runs" / "casestudy-full" / "make_casestudy.json"
    if record.is_file():
        out["casestudy"] = json.loads(record.read_text()) | {"source": str(record.relative_to(ROOT))}
    out["workbook_casestudy"] = workbook_casestudy(ROOT / "runs" / "casestudy-full" / "run.json") \
        or out["workbook_casestudy"]  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    sys.path.insert(0, str(ROOT / "bench"))
    from run import replace_block

    readme = ROOT / "README.md"
    readme.write_text(replace_block(readme.read_text(), "test-time", readme_block(out), readme))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
