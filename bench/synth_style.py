"""Benchmark: what a team's example questions buy when it has documents and no query logs (issue 23, item 5).

Usage (from the repository root, after ``make setup``; full mode is the case study)::

    WORKBOOK_FAST=0 .venv/bin/python bench/synth_style.py --machine "2 cores, quiet"
    # writes bench/results/synth_style.json

Without logs there are no (document, query) pairs to put in a few-shot prompt, so the prompt is the instruction alone
(notebook 04's zero-shot template); a team usually has a handful of example questions, which the prompt can list as
the style to copy (``PromptTemplate.style``, what ``examples.jsonl`` feeds). Here: 0, 5 and 20 examples, drawn with a
seed from the case study's *training* queries (never a dev or test wording), for the same seeded sample of documents
of the committed set's plan. Each set is generated with the batched local generator (``parallel=4``), filtered as
the committed set is (round trip, lookalike filter, leakage guard), and trains MNRL at one equal row budget (the
smallest set's size); each run is scored on dev over the dev candidates, beside the base model and the committed
few-shot set (which *does* use real training queries as shots) at the same budget. Its training runs and mined rows
live under ``artifacts/bench/synth_style`` so they never touch the notebooks' caches.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "synth_style.json"
EXAMPLES = (0, 5, 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=600, help="documents generated for per setting")
    parser.add_argument("--machine", default="", help="what the machine is and whether it was quiet")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from workbook.config import get_config
    from workbook.data import equivalence_key
    from workbook.models import load_model
    from workbook.synth import (
        CASE_STUDY_ATTRIBUTES,
        FilterSettings,
        GenerationCache,
        LocalGenerator,
        LookalikeCheck,
        RoundTrip,
        apply_filters,
        case_study_plan,
        eval_query_keys,
        generate_queries,
        kept_pairs,
        load_synthetic_pairs,
        zero_shot_template,
    )
    from workbook.train import candidate_dev_metrics, load_or_train

    base_cfg = get_config()
    cfg = get_config(artifacts_dir=base_cfg.artifacts_dir / "bench" / "synth_style")
    ds, _, codes = case_study_plan(cfg)
    docs = sorted(random.Random(cfg.seed).sample(codes, min(args.docs, len(codes))))
    leaks = eval_query_keys(ds, ("dev", "test"))
    train_texts = sorted({ds.queries[q] for q in ds.qrels["train"]} - {""})
    pool = [t for t in train_texts if equivalence_key(t) not in leaks]
    examples = random.Random(cfg.seed + 5).sample(pool, max(EXAMPLES))
    base = load_model(cfg.base_model, cfg)
    round_trip = RoundTrip(ds, base, k=FilterSettings().round_trip_k, cache_dir=cfg.cache_dir / "embeddings")
    lookalikes = LookalikeCheck(ds, attributes=CASE_STUDY_ATTRIBUTES)
    generator = LocalGenerator(cfg=cfg, parallel=4, n_threads=2)
    cache = GenerationCache(cfg.artifacts_dir / "generations")
    passages = {d: ds.corpus[d]["text"] for d in docs}
    sets, runs = {}, {}
    for n in EXAMPLES:
        name = f"{n} examples"
        template = dataclasses.replace(zero_shot_template(), name=f"zero-shot, {n} examples",
                                       style=tuple(examples[:n]))  # fmt: skip
        start = time.perf_counter()
        run = generate_queries(generator, template, passages, cache, seed=cfg.seed, show_progress=False)
        seconds = time.perf_counter() - start
        filtered = apply_filters(run.candidates(), ds, round_trip, lookalikes=lookalikes)
        sets[name] = kept_pairs(filtered)  # the filters' leakage guard has dropped every dev and test wording
        runs[name] = {"examples": n, "candidates": len(filtered), "kept": len(sets[name]),
                      "kept_share": round(len(sets[name]) / max(len(filtered), 1), 4),
                      "generation_seconds": round(seconds, 1), "new_docs": run.new,
                      "sample": [q for q, _ in sets[name][:: max(1, len(sets[name]) // 8)]][:8]}  # fmt: skip
    committed = load_synthetic_pairs(base_cfg, ds)
    budget = min(len(p) for p in sets.values())
    result_runs = {"base": {"dev": candidate_dev_metrics(cfg, ds, base, base=base)}}
    for name, pairs in [*sets.items(), ("committed few-shot set (real training queries as shots)", committed)]:
        trained = load_or_train(cfg, "mnrl", "synthetic", max_rows=budget, ds=ds, base=base, synthetic_pairs=pairs,
                                dev_scope="candidates", show_progress=False)  # fmt: skip
        result_runs[name] = {**runs.get(name, {"kept": len(pairs)}), "dev": trained.card["dev_metrics"],
                             "rows": trained.card["data"]["rows"]}  # fmt: skip
    result = {
        "machine": {"description": args.machine, "cpus": os.cpu_count(), "python": platform.python_version()},
        "mode": cfg.mode,
        "docs": len(docs),
        "rows": budget,
        "examples": examples,
        "dev": f"{ds.name} dev split over the dev candidates (gold + base model's and BM25's top "
               f"{cfg.dev_eval_candidates}), as notebook 05 compares runs",
        "runs": result_runs,
    }
    OUT.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(table(result))


def table(result: dict) -> str:
    """The bench README block."""
    m = result["machine"]
    lines = [f"{m['description'] or 'machine not described'}; {result['mode']} mode, {result['docs']} documents per "
             f"setting, MNRL on {result['rows']:,} rows per run; {result['dev']}.", "",
             "| prompt | candidates | kept | dev Recall@10 | dev nDCG@10 | dev MRR@10 |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, run in result["runs"].items():
        d = run["dev"]
        cands = f"{run['candidates']:,}" if "candidates" in run else ""
        kept = f"{run['kept']:,}" if "kept" in run else ""
        lines.append(f"| {name} | {cands} | {kept} | {d['recall@10']:.4f} | {d['ndcg@10']:.4f} | {d['mrr@10']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
