"""Benchmark: two glibc allocator settings (MALLOC_* environment variables) against its defaults, same work.

Usage (from the repository root, after ``make setup``)::

    .venv/bin/python bench/allocator.py --machine "..."   # writes bench/results/allocator.json, prints a table

glibc serves every allocation over 32 MB (its largest dynamic threshold) with a fresh ``mmap`` and returns it on
free, so each batch of long texts faults its attention buffers in again, page by page (mpnet's batch of 64
SciFact abstracts allocates hundreds of MB per layer). ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``
keep those pages in the process's heap for the next batch (``workbook.memory.release_heap`` still hands them back
between steps), at a price in peak memory, which the bench records too. Each setting runs in its own child process,
one after the other, on the same texts: encoding SciFact
abstracts (long) and ICD-10-CM codes (short) with all-MiniLM-L6-v2, SciFact abstracts with all-mpnet-base-v2, and
training steps of the default recipe's shape (MNRL, 32 short rows with 2 negatives); and each child's peak RSS,
since a heap that keeps freed buffers can hold more memory than one that returns them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "allocator.json"
#: The settings measured. The Makefile does not set them: they cost peak memory (bench/README.md, Inference precision).
TUNED = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "17179869184"}


def _measure() -> dict:
    """The child's work: rates and minor page faults per workload."""
    sys.path.insert(0, str(ROOT))
    from dataclasses import replace

    import torch

    from workbook.config import get_config
    from workbook.data import load_scifact
    from workbook.icd10cm import load_icd10cm
    from workbook.models import MINILM, MPNET, load_model

    torch.manual_seed(0)
    cfg = get_config(fast=True)
    sci = load_scifact(replace(cfg, scifact_fast_queries=10_000, scifact_fast_extra_docs=400)).doc_texts()
    icd = load_icd10cm(cfg).doc_texts()
    out = {}

    def timed(name: str, n: int, unit: str, fn) -> None:
        before, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        fn()
        seconds, after = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
        out[name] = {"rate": round(n / seconds, 2), "unit": unit, "seconds": round(seconds, 1),
                     "minor page faults": after.ru_minflt - before.ru_minflt,
                     "system seconds": round(after.ru_stime - before.ru_stime, 1)}  # fmt: skip

    minilm = load_model(MINILM)
    minilm.encode(sci[:64], batch_size=64)  # warm-up
    timed("MiniLM encode, 320 SciFact abstracts", 320, "docs/s", lambda: minilm.encode(sci[:320], batch_size=64))
    timed(f"MiniLM encode, {len(icd)} ICD-10-CM codes", len(icd), "docs/s", lambda: minilm.encode(icd, batch_size=64))
    mpnet = load_model(MPNET)
    mpnet.encode(sci[:8], batch_size=8)
    timed("mpnet encode, 128 SciFact abstracts", 128, "docs/s", lambda: mpnet.encode(sci[128:256], batch_size=64))

    from sentence_transformers.losses import MultipleNegativesRankingLoss

    model = load_model(MINILM)
    loss = MultipleNegativesRankingLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)

    def steps(n: int = 8) -> None:
        for i in range(n):
            cols = [icd[(96 * i + 32 * j) % 800 :][:32] for j in range(3)]
            value = loss([model.preprocess(c) for c in cols], None)
            value.backward()
            optimizer.step()
            optimizer.zero_grad()

    steps(1)
    timed("MNRL training steps (32 rows + 2 negatives, ICD-10-CM)", 8, "steps/s", steps)
    out["peak RSS MB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # the whole child's
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machine", default="2 CPU cores", help="a note on the machine and whether it was quiet")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure()))
        return
    base = {k: v for k, v in os.environ.items() if k not in TUNED} | {"HF_HUB_OFFLINE": "1"}
    runs = {}
    for name, env in (("glibc defaults", base), ("MALLOC_* exports", base | TUNED)):
        cmd = [sys.executable, __file__, "--child"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        runs[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(name, runs[name], flush=True)
    peaks = {name: run.pop("peak RSS MB") for name, run in runs.items()}
    ratios = {w: round(runs["MALLOC_* exports"][w]["rate"] / runs["glibc defaults"][w]["rate"], 2)
              for w in runs["glibc defaults"]}  # fmt: skip
    result = {"machine": args.machine, "settings": TUNED, "runs": runs, "ratio (exports / defaults)": ratios,
              "peak RSS MB": peaks}  # fmt: skip
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))


def table(result: dict) -> str:
    """The bench as a markdown table (bench/README.md)."""
    runs = result["runs"]
    lines = ["| workload | glibc defaults | MALLOC_* exports | ratio | page faults (defaults → exports) |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for work, ratio in result["ratio (exports / defaults)"].items():
        a, b = runs["glibc defaults"][work], runs["MALLOC_* exports"][work]
        lines.append(f"| {work} | {a['rate']} {a['unit']} | {b['rate']} {b['unit']} | {ratio:.2f}x | "
                     f"{a['minor page faults']:,} → {b['minor page faults']:,} |")  # fmt: skip
    peaks = result.get("peak RSS MB")
    if peaks:
        default, tuned = peaks["glibc defaults"], peaks["MALLOC_* exports"]
        lines += ["", f"Peak RSS of the whole child process: {default:,} MB with glibc's defaults, {tuned:,} MB with "
                  "the exports (freed buffers stay in the heap for reuse)."]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
