"""Benchmark: ``workbook run`` on a corpus with documents and no training queries (issue 23's docs-only target).

Usage (from the repository root, after ``make setup``; full mode)::

    WORKBOOK_FAST=0 .venv/bin/python bench/docs_only.py --machine "2 cores, quiet"
    # writes bench/results/docs_only.json

The corpus is SciFact's (5,183 abstracts) with its test claims and judgements only: no train split, so the pipeline
takes the path a team with documents and no query logs takes (synthetic queries from the local generator, filtered,
fine-tuning on them; nothing to choose on, so fixed defaults). A team usually has a handful of example questions:
``--examples N`` writes N claims drawn with a seed from SciFact's *train* split (never a test wording) to the
folder's ``examples.jsonl``, which sets the prompt's style. The forgetting check is off (SciFact is its general set).
The question is issue 23's target: does the tuned model beat BM25 and the base model on test nDCG@10?
Everything lives under ``artifacts/bench/docs_only``; the run folder resumes, so a second call reuses finished steps.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "docs_only.json"
WORK = ROOT / "artifacts" / "bench" / "docs_only"


def docs_only_copy(source: Path, dest: Path, examples: int, seed: int) -> Path:
    """SciFact's corpus, test claims and test judgements in BEIR layout, plus ``examples`` train claims as the
    team's example questions (none: no ``examples.jsonl``)."""
    from workbook.data import load_dataset

    ds = load_dataset(source)
    (dest / "qrels").mkdir(parents=True, exist_ok=True)
    (dest / "corpus.jsonl").write_text((source / "corpus.jsonl").read_text())
    test = sorted(ds.qrels["test"])
    with open(dest / "queries.jsonl", "w") as f:
        for qid in test:
            f.write(json.dumps({"_id": qid, "text": ds.queries[qid]}) + "\n")
    (dest / "qrels" / "test.tsv").write_text((source / "qrels" / "test.tsv").read_text())
    shots = dest / "examples.jsonl"
    shots.unlink(missing_ok=True)
    if examples:
        drawn = random.Random(seed).sample(sorted(ds.qrels["train"]), examples)
        shots.write_text("".join(json.dumps({"text": ds.queries[q]}) + "\n" for q in drawn))
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=5, help="train claims given as the team's example questions")
    parser.add_argument("--docs", type=int, default=500, help="documents to generate queries for")
    parser.add_argument("--machine", default="", help="what the machine is and whether it was quiet")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from workbook.config import get_config
    from workbook.files import read_json
    from workbook.pipeline.store import frame_from_json

    cfg = get_config()
    name = f"scifact-docs-{args.examples}-examples"
    data = docs_only_copy(ROOT / "data" / "scifact", WORK / name, args.examples, cfg.seed)
    settings = WORK / f"{name}.json"
    settings.write_text(json.dumps({"forgetting": False, "comparator": False, "synthetic_docs": args.docs}) + "\n")
    run = WORK / f"run-{name}"
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "workbook.cli", "run", str(data), "--out", str(run), "--config", str(settings)]
    subprocess.run(cmd, cwd=ROOT, check=True, env=os.environ | {"WORKBOOK_FAST": "1" if cfg.fast else "0"})
    ev, syn = read_json(run / "06_evaluate" / "result.json"), read_json(run / "03_synthetic" / "result.json")
    decision = read_json(run / "08_decision" / "result.json")
    frame = frame_from_json(ev["metrics"])
    metrics = frame[["ndcg@10", "recall@10", "mrr@10"]].round(4)  # every method the run evaluated
    result = {"machine": {"description": args.machine, "cpus": os.cpu_count()}, "mode": cfg.mode,
              "dataset": f"SciFact corpus ({len((data / 'corpus.jsonl').read_text().splitlines()):,} abstracts), "
                         f"{ev['queries']} test claims, no train split",
              "examples": args.examples, "docs": args.docs, "seconds": round(time.perf_counter() - start, 1),
              "synthetic": {k: syn.get(k) for k in ("generator", "template", "examples", "docs", "candidates", "pairs",
                                                    "docs_with_pairs", "seconds_per_query", "filter_report")},
              "test": metrics.to_dict(orient="index"), "paired": ev["paired"], "ci": ev.get("ci"),
              "verdict": decision.get("verdict")}  # fmt: skip
    OUT.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(table(result))


def table(result: dict) -> str:
    """The bench README block."""
    m = result["machine"]
    lines = [f"{m['description'] or 'machine not described'}; {result['mode']} mode; {result['dataset']}; "
             f"queries generated for {result['docs']} documents, {result['examples']} train claims as example "
             f"questions; the synthetic step kept {result['synthetic'].get('pairs')} pairs.", "",
             "| method | test nDCG@10 | test Recall@10 | test MRR@10 |", "|---|---:|---:|---:|"]  # fmt: skip
    for name, row in result["test"].items():
        lines.append(f"| {name} | {row['ndcg@10']:.4f} | {row['recall@10']:.4f} | {row['mrr@10']:.4f} |")
    lines += ["", f"The run's verdict: {result['verdict']}"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
