"""Benchmark: peak resident memory (RSS) of `workbook run` per pipeline step, and of each notebook in full mode.

Usage (from the repository root, after ``make setup``)::

    .venv/bin/python bench/memory.py                      # workbook run, full mode, on SciFact (5,183 abstracts)
    .venv/bin/python bench/memory.py --corpus scifact-x2  # ... on 10,366 docs: every abstract twice (see below)
    .venv/bin/python bench/memory.py --read-only          # only re-read the notebooks' record and the last runs

``workbook run`` records each step's own peak RSS in its ``run.json`` (the peak is reset before each step); the whole
process's peak is the largest step's (the per-step reset also resets what ``getrusage`` reports). Notebooks:
``make casestudy`` records each notebook's peak (its kernel's) in ``runs/casestudy-full/notebooks.json``; this
script reads it. The target: at most
4 GiB everywhere, so a learner's 8-16 GB laptop runs the course without swapping.

``scifact-x2`` reaches the 10k-document size of the target by listing every SciFact abstract twice (the copy's id ends
in ``-b``; qrels unchanged, so copies are unjudged distractors). It measures memory, not quality.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "memory.json"
TARGET_MB = 4096


def scifact_x2(dest: Path) -> Path:
    """SciFact with every abstract listed twice (10,366 docs), built once into ``dest``."""
    src = ROOT / "data" / "scifact"
    if (dest / "corpus.jsonl").is_file():
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("corpus.jsonl", "*.md", "*.json"))
    lines = (src / "corpus.jsonl").read_text().splitlines()
    copies = []
    for line in lines:
        doc = json.loads(line)
        copies.append(json.dumps({**doc, "_id": f"{doc['_id']}-b"}))
    (tmp / "corpus.jsonl").write_text("\n".join(lines + copies) + "\n")
    os.replace(tmp, dest)
    return dest


def run_pipeline(dataset: Path, out: Path) -> dict:
    """``workbook run`` in full mode in a child process: its wall time, exit code, whole-process peak RSS."""
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = out.parent / f"{out.name}.toml"
    settings.write_text("allow_leakage = true\n")  # SciFact repeats two train claims in test (known, not our split)
    env = {**os.environ, "WORKBOOK_FAST": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    start = time.perf_counter()
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "workbook"), "run", str(dataset), "--out", str(out),
                           "--config", str(settings)], env=env, cwd=ROOT)  # fmt: skip
    return {"exit_code": done.returncode, "seconds": round(time.perf_counter() - start, 1)}


def steps_of(run_dir: Path) -> list[dict] | None:
    """Each step's peak RSS (MiB) and seconds from a run folder's ``run.json``."""
    path = run_dir / "run.json"
    if not path.is_file():
        return None
    return [{"step": s["name"], "peak_rss_mb": s.get("peak_rss_mb"), "seconds": round(s["last_run_seconds"], 1)}
            for s in json.loads(path.read_text())["steps"]]  # fmt: skip


def notebooks_of(path: Path) -> dict | None:
    """The notebooks' peak RSS as ``workbook notebooks`` (``make casestudy``) recorded it."""
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    return {"mode": rec["mode"], "finished": rec["finished"], "source": str(path.relative_to(ROOT)),
            "notebooks": [{k: r[k] for k in ("notebook", "peak_rss_mb", "seconds", "exit_code")}
                          for r in rec["notebooks"]]}  # fmt: skip


def table(result: dict) -> str:
    """Markdown tables of the recorded peaks against the target."""
    lines = []
    for run in result.get("runs", {}).values():
        lines += [f"`workbook run` on {run['corpus']} (full mode; whole process {run['process_peak_rss_mb'] / 1024:.2f}"
                  f" GiB, {run['seconds'] / 60:.1f} min, {run['machine']}):", "",
                  "| step | peak RSS (GiB) | seconds | <= 4 GiB |", "|---|---:|---:|---|"]  # fmt: skip
        for s in run["steps"] or []:
            peak = s["peak_rss_mb"]
            ok = "—" if peak is None else ("yes" if peak <= TARGET_MB else "**no**")
            lines.append(f"| {s['step']} | {'—' if peak is None else f'{peak / 1024:.2f}'} | {s['seconds']} | {ok} |")
        lines.append("")
    nbs = result.get("notebooks")
    if nbs:
        machine = f"; {nbs['machine']}" if nbs.get("machine") else ""
        lines += [f"Notebooks, {nbs['mode']} mode (from `{nbs['source']}`, {nbs['finished']}{machine}):", "",
                  "| notebook | peak RSS (GiB) | minutes |", "|---|---:|---:|"]  # fmt: skip
        lines += [f"| {r['notebook']} | {r['peak_rss_mb'] / 1024:.2f} | {r['seconds'] / 60:.1f} |"
                  for r in nbs["notebooks"] if r["peak_rss_mb"] is not None]  # fmt: skip
    else:
        lines.append("Notebooks in full mode: _not measured yet_ (`make casestudy` records them).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", choices=("scifact", "scifact-x2"), default="scifact")
    parser.add_argument("--read-only", action="store_true")
    parser.add_argument("--machine", default="2 shared CPU cores", help="how busy the machine was (for the record)")
    args = parser.parse_args()
    result = json.loads(OUT.read_text()) if OUT.is_file() else {}
    runs = result.setdefault("runs", {})
    if not args.read_only:
        work = ROOT / "runs" / "bench-memory"
        dataset = ROOT / "data" / "scifact" if args.corpus == "scifact" else scifact_x2(work / "scifact-x2")
        out = work / f"run-{args.corpus}"
        proc = run_pipeline(dataset, out)
        docs = len((dataset / "corpus.jsonl").read_text().splitlines())
        steps = steps_of(out)
        # The whole process's peak is the largest step's: each step resets the kernel's high-water mark, which is
        # also what getrusage and /usr/bin/time would report, so they would show the last step's peak only.
        peak = max((s["peak_rss_mb"] for s in steps or [] if s["peak_rss_mb"] is not None), default=None)
        runs[args.corpus] = {"corpus": f"{args.corpus} ({docs:,} docs)", "machine": args.machine, **proc,
                             "process_peak_rss_mb": peak, "steps": steps}  # fmt: skip
    nbs = notebooks_of(ROOT / "runs" / "casestudy-full" / "notebooks.json")
    result["notebooks"] = nbs and {**nbs, "machine": args.machine}
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    sys.exit(main())
