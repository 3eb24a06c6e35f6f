"""Benchmark: synthetic-query generation throughput with the local model (issue 23, item 4).

Usage (from the repository root, after ``make setup``)::

    .venv/bin/python bench/synth_speed.py --machine "2 cores, quiet"   # writes bench/results/synth_speed.json

gemma-3-270m (Q4_K_M, llama.cpp on the CPU) writes queries for the same case-study documents (the fast-mode plan's
first ``--docs``, the committed few-shot prompt) in each setting:

- one at a time through llama-cpp-python's ``create_completion`` (``LocalGenerator(parallel=1)``, the committed
  set's decoder), at 1 and 2 threads;
- batched: ``parallel`` prompts decoded side by side in one llama.cpp context, sharing the prompt head
  (``LocalGenerator(parallel=P)``, :mod:`workbook.synth.batched`), at 1 and 2 threads.

Per setting: documents/s, parsed queries/s and generated tokens/s, after a warm-up document that evaluates the shared
prompt head (once per run in real use). The batched settings must give the same text for every document whatever
``parallel`` is (recorded as ``same_text_as``): that is what lets an interrupted run resume in other batches.

Nothing here is a timed assert: the numbers are ratios measured in one run, with the machine's state recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "synth_speed.json"
#: (label, parallel, threads); parallel 1 is create_completion, one document at a time.
SETTINGS = [("one at a time", 1, 1), ("one at a time", 1, 2), ("batched x2", 2, 1), ("batched x4", 4, 1),
            ("batched x2", 2, 2), ("batched x4", 4, 2)]  # fmt: skip


def measure(cfg, template, passages: dict[str, str], warm: str, parallel: int, threads: int) -> dict:
    """Generate for every passage with one generator; time it after a warm-up document."""
    from workbook.synth import LocalGenerator, parse_queries
    from workbook.synth.generation import doc_seed, prompt_for

    gen = LocalGenerator(cfg=cfg, n_threads=threads, parallel=parallel)
    gen.complete([prompt_for(gen, template, warm)], [0], template.stop)  # evaluates (and keeps) the shared head
    ids = list(passages)
    prompts = [prompt_for(gen, template, passages[d]) for d in ids]
    seeds = [doc_seed(cfg.seed, d) for d in ids]
    start = time.perf_counter()
    out = []
    for i in range(0, len(prompts), gen.batch_size):
        out += gen.complete(prompts[i : i + gen.batch_size], seeds[i : i + gen.batch_size], template.stop)
    seconds = time.perf_counter() - start
    tokens = sum(len(gen.llm.tokenize(c.text.encode("utf-8"), add_bos=False)) + (c.finish_reason == "stop")
                 for c in out)  # fmt: skip
    queries = sum(len([q for q in parse_queries(c.text) if q]) for c in out)
    gen.close()
    return {"seconds": round(seconds, 2), "docs_per_s": round(len(ids) / seconds, 3),
            "queries_per_s": round(queries / seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
            "queries": queries, "tokens": tokens,
            "texts": {d: c.text for d, c in zip(ids, out, strict=True)}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=24, help="documents per setting")
    parser.add_argument("--machine", default="", help="what the machine is and whether it was quiet")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from workbook.config import get_config
    from workbook.precision import cpu_flags
    from workbook.synth import case_study_plan

    cfg = get_config(fast=True)
    ds, template, docs = case_study_plan(cfg)
    docs = sorted(docs)
    passages = {d: ds.doc_text(d) for d in docs[1 : args.docs + 1]}
    runs = []
    for label, parallel, threads in SETTINGS:
        print(f"{label}, {threads} thread(s)", flush=True)
        r = measure(cfg, template, passages, ds.doc_text(docs[0]), parallel, threads)
        runs.append({"setting": label, "parallel": parallel, "threads": threads, **r})
    ref = next(r for r in runs if r["parallel"] > 1)
    for r in runs:
        r["same_text_as_batched_reference"] = r["texts"] == ref["texts"]
    base = runs[0]["docs_per_s"]
    for r in runs:
        r["speedup"] = round(r["docs_per_s"] / base, 2)
    result = {
        "machine": {"description": args.machine, "cpus": os.cpu_count(), "python": platform.python_version(),
                    "avx512": "avx512f" in cpu_flags()},  # fmt: skip
        "docs": len(passages),
        "reference": f"{ref['setting']}, {ref['threads']} thread(s)",
        "runs": runs,
    }
    OUT.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(table(result))


def table(result: dict) -> str:
    """The bench README block."""
    m = result["machine"]
    lines = [f"{m['description'] or 'machine not described'} ({m['cpus']} CPUs); gemma-3-270m Q4_K_M, "
             f"{result['docs']} case-study documents per setting, the committed few-shot prompt.", "",
             "| decoding | threads | docs/s | queries/s | tokens/s | vs one at a time, 1 thread | same text as "
             f"{result['reference']} |", "|---|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in result["runs"]:
        same = "yes" if r["same_text_as_batched_reference"] else "no"
        lines.append(f"| {r['setting']} | {r['threads']} | {r['docs_per_s']} | {r['queries_per_s']} | "
                     f"{r['tokens_per_s']} | {r['speedup']}x | {same} |")  # fmt: skip
    lines += ["", "One at a time is another decoder (llama-cpp-python's own sampling loop), so its text differs "
              "from the batched decoder's; every batched row must give the same text for every document."]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
