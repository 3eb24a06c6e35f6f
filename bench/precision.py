"""Benchmark: inference precision (issue 21): fp32, bf16 and int8 on the same queries, speed and metric change.

Usage (from the repository root, after ``make setup``)::

    .venv/bin/python bench/precision.py --machine "..."   # writes bench/results/precision.json, prints a table

Per model and precision (:mod:`workbook.precision`), on the same texts and the same queries:

- **dense** (all-MiniLM-L6-v2, all-mpnet-base-v2): docs/s of one encode of the corpus, then nDCG@10 and Recall@10
  of exact search, and the share of queries whose top 10 is the same list as fp32's. Two corpora, both labelled
  subsets (fewer distractors than the whole corpus, so the metrics read high; every precision gets the same one):
  the fast-mode case study (909 ICD-10-CM codes, short; all its queries, every split) and SciFact's test claims over
  their judged abstracts plus a seeded sample of others (long texts).
- **reranker** (the cross-encoder ``load_reranker`` trains on the fast-mode train split): pairs/s and the same
  metrics, reranking the base model's top ``cfg.rerank_depth`` for the case study's dev and test queries.

Nothing is chosen on these queries but the switch itself, by the rule fixed before the runs (issue 21): a
precision may be a default for a model only if, on every corpus, its nDCG@10 is within 0.5 points of fp32's and it
is faster; where several may, the pick is the one whose top 10 most often equals fp32's (the closest arithmetic).
``tests/test_precision.py`` checks the config's defaults against this file. Where the CPU has no native
bf16, bf16 runs as fp32 (``workbook.precision.resolve``) and its rows say so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "precision.json"
#: The switch rule: the largest nDCG@10 change (points) a precision may make on any corpus and still be a default.
MAX_NDCG_POINTS = 0.5
SCIFACT_EXTRA_DOCS = 400


def _metrics(ranking: dict, judged: dict) -> dict:
    from workbook.evaluate import evaluate_ranking

    summary = evaluate_ranking(ranking, judged, name="x").summary()
    return {"ndcg@10": round(float(summary["ndcg@10"]), 4), "recall@10": round(float(summary["recall@10"]), 4)}


def _same_top10(a: dict, b: dict) -> float:
    return round(sum(a[q][:10] == b[q][:10] for q in a) / len(a), 4)


def _all_queries(ds) -> tuple[dict, dict]:
    queries, judged = {}, {}
    for split in ds.splits:
        queries.update(ds.split_queries(split))
        judged.update(ds.qrels[split])
    return queries, judged


def bench_dense(name: str, corpora: dict, precisions: tuple[str, ...]) -> list[dict]:
    """Each precision of ``name`` on each corpus: encode rate and metrics against fp32 on the same queries."""
    from workbook.models import load_model
    from workbook.precision import precision_of
    from workbook.retrieval import DenseIndex, encode

    rows, reference = [], {}
    for precision in precisions:
        model = load_model(name, precision=precision)
        encode(model, ["warm up"] * 8, show_progress=False)
        for corpus, ds in corpora.items():
            queries, judged = _all_queries(ds)
            t = time.perf_counter()
            doc_emb = encode(model, ds.doc_texts(), show_progress=False)
            seconds = time.perf_counter() - t
            ranking = DenseIndex(doc_emb, ds.doc_ids()).ranked(
                list(queries), encode(model, list(queries.values()), show_progress=False), 10
            )
            reference.setdefault(corpus, ranking)
            rate = round(len(ds.corpus) / seconds, 1)
            rows.append({"model": name, "corpus": corpus, "precision": precision, "ran as": precision_of(model),
                         "docs": len(ds.corpus), "queries": len(queries), "docs/s": rate, **_metrics(ranking, judged),
                         "same top 10 as fp32": _same_top10(ranking, reference[corpus])})  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def bench_reranker(cfg, ds, precisions: tuple[str, ...]) -> list[dict]:
    """The fast-mode reranker at each precision, over the base model's top ``cfg.rerank_depth``."""
    from workbook.models import load_model
    from workbook.precision import precision_of
    from workbook.retrieval import dense_ranking, load_reranker, rerank

    base = load_model(cfg.base_model, cfg)
    emb = cfg.cache_dir / "embeddings"
    train_candidates = dense_ranking(base, ds, "train", k=20, cache_dir=emb, show_progress=False)
    rows, reference = [], None
    for precision in precisions:
        reranker = load_reranker(replace(cfg, reranker_precision=precision), ds, train_candidates, split="train")
        ranking, judged, seconds, pairs = {}, {}, 0.0, 0
        for split in ("dev", "test"):
            first = dense_ranking(base, ds, split, k=cfg.rerank_depth, cache_dir=emb, show_progress=False)
            t = time.perf_counter()
            ranking.update(rerank(reranker, ds, split, first, depth=cfg.rerank_depth, show_progress=False))
            seconds += time.perf_counter() - t
            pairs += sum(len(v[: cfg.rerank_depth]) for v in first.values())
            judged.update(ds.qrels[split])
        reference = reference or ranking
        rows.append({"model": "reranker (MiniLM cross-encoder)", "corpus": "ICD-10-CM fast (dev + test)",
                     "precision": precision, "ran as": precision_of(reranker), "pairs": pairs, "queries": len(ranking),
                     "pairs/s": round(pairs / seconds, 1), **_metrics(ranking, judged),
                     "same top 10 as fp32": _same_top10(ranking, reference)})  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def decide(rows: list[dict]) -> dict:
    """Per model and precision: the largest nDCG@10 change from fp32 (points), the slowest speed-up, and whether
    the switch rule lets it be a default."""
    out: dict = {}
    for row in rows:
        if row["precision"] == "fp32":
            continue
        ref = next(r for r in rows if r["model"] == row["model"] and r["corpus"] == row["corpus"]
                   and r["precision"] == "fp32")  # fmt: skip
        rate = "docs/s" if "docs/s" in row else "pairs/s"
        fresh = {"max ndcg change (points)": 0.0, "min speed-up": None, "min same top 10": 1.0, "ran as": row["ran as"]}
        d = out.setdefault(row["model"], {}).setdefault(row["precision"], fresh)
        change = round(abs(row["ndcg@10"] - ref["ndcg@10"]) * 100, 2)
        d["max ndcg change (points)"] = max(d["max ndcg change (points)"], change)
        speedup = round(row[rate] / ref[rate], 2)
        d["min speed-up"] = speedup if d["min speed-up"] is None else min(d["min speed-up"], speedup)
        d["min same top 10"] = min(d["min same top 10"], row["same top 10 as fp32"])
    picks = {}
    for model, per_model in out.items():
        for d in per_model.values():
            d["default"] = bool(d["ran as"] != "fp32" and d["max ndcg change (points)"] <= MAX_NDCG_POINTS
                                and d["min speed-up"] > 1.0)  # fmt: skip
        passed = [p for p, d in per_model.items() if d["default"]]
        picks[model] = max(passed, key=lambda p: per_model[p]["min same top 10"], default="fp32")
    return {"per_precision": out, "picks": picks}


def table(result: dict) -> str:
    """The bench as a markdown table (bench/README.md)."""
    lines = ["| model | corpus | precision | speed | nDCG@10 | Recall@10 | same top 10 as fp32 |",
             "|---|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in result["runs"]:
        rate = f"{r['docs/s']} docs/s" if "docs/s" in r else f"{r['pairs/s']} pairs/s"
        ran = "" if r["ran as"] == r["precision"] else f" (ran as {r['ran as']})"
        lines.append(f"| {r['model']} | {r['corpus']} | {r['precision']}{ran} | {rate} | {r['ndcg@10']:.4f} | "
                     f"{r['recall@10']:.4f} | {r['same top 10 as fp32']:.0%} |")  # fmt: skip
    lines += ["", f"Switch rule: a default only if nDCG@10 moves by at most {MAX_NDCG_POINTS} points on every corpus "
              "and it is faster.", "", "| model | precision | largest nDCG@10 change (points) | slowest speed-up | "
              "may be a default |", "|---|---|---:|---:|---|"]  # fmt: skip
    for model, per in result["decision"]["per_precision"].items():
        for precision, d in per.items():
            lines.append(f"| {model} | {precision} | {d['max ndcg change (points)']:.2f} | {d['min speed-up']:.2f}x | "
                         f"{'yes' if d['default'] else 'no'} |")  # fmt: skip
    picks = ", ".join(f"{model}: **{p}**" for model, p in result["decision"]["picks"].items())
    lines += ["", f"Where several pass, the default is the one whose top 10 most often equals fp32's: {picks}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machine", default="2 CPU cores", help="a note on the machine and whether it was quiet")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--redecide", action="store_true", help="recompute the decision of the saved runs only")
    args = parser.parse_args()
    if args.redecide:
        from workbook.files import atomic_write

        result = json.loads(args.out.read_text())
        result["decision"] = decide(result["runs"])
        atomic_write(args.out, json.dumps(result, indent=1) + "\n")
        print(table(result))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from workbook.config import get_config
    from workbook.data import load_scifact
    from workbook.icd10cm import load_icd10cm
    from workbook.models import MINILM, MPNET
    from workbook.precision import PRECISIONS, cpu_flags, native_bf16

    torch.manual_seed(0)
    cfg = get_config(fast=True)
    icd = load_icd10cm(cfg)
    sci = load_scifact(replace(cfg, scifact_fast_queries=10_000, scifact_fast_extra_docs=SCIFACT_EXTRA_DOCS))
    corpora = {f"ICD-10-CM fast ({len(icd.corpus)} codes)": icd,
               f"SciFact test claims ({len(sci.corpus)} abstracts)": sci}  # fmt: skip
    started = time.time()
    runs = [*bench_dense(MINILM, corpora, PRECISIONS), *bench_dense(MPNET, corpora, PRECISIONS),
            *bench_reranker(cfg, icd, PRECISIONS)]  # fmt: skip
    result = {
        "machine": args.machine,
        "cpu_flags": sorted(f for f in cpu_flags() if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")),
        "native_bf16": native_bf16(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "rule": f"default only if nDCG@10 moves <= {MAX_NDCG_POINTS} points on every corpus and it is faster",
        "seconds": round(time.time() - started, 1),
        "runs": runs,
        "decision": decide(runs),
    }
    from workbook.files import atomic_write

    atomic_write(args.out, json.dumps(result, indent=1) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
