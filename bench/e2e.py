"""Benchmark: end-to-end minutes of the test suite and of the full case study.

Usage (from the repository root, after ``make setup``)::

    .venv/bin/python bench/e2e.py              # runs the test suite (what `make test` runs after set-up and lint)
    .venv/bin/python bench/e2e.py --skip-tests # only reads the case study's time

The case study takes hours on 2 CPU cores, so it is not re-run here: ``make casestudy`` records its own wall time in
``runs/casestudy-full/make_casestudy.json`` and ``workbook casestudy`` its steps in ``runs/casestudy-full/run.json``,
which this script reads.
"""

from __future__ import annotations

import argparse
import json
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
            "source": str(run_json.relative_to(ROOT))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "e2e.json")
    args = parser.parse_args()
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    out = {"test_suite": previous.get("test_suite"), "casestudy": None, "workbook_casestudy": None}
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
    out["workbook_casestudy"] = workbook_casestudy(ROOT / "runs" / "casestudy-full" / "run.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
