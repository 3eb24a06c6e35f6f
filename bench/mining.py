"""Benchmark: hard-negative mining over the full ICD-10-CM corpus, bounded memory vs a dense score matrix.

Usage (from the repository root, after ``make setup``)::

    .venv/bin/python bench/mining.py            # writes bench/results/mining.json and prints a markdown table

Each method runs in its own subprocess so that its peak RSS (``resource.getrusage``) is its own:

- ``faiss``: exact ``IndexFlatIP`` search of every train query, ``--faiss-batch`` queries at a time (what
  ``workbook.negatives.mine_negatives`` does through sentence-transformers); memory O(batch x docs) at most.
- ``miner``: ``workbook.negatives.mine_negatives`` end to end with the default settings (faiss search, margins,
  output rows), corpus and query embeddings read from the shared cache.
- ``dense``: the naive alternative, one ``queries @ docs.T`` float32 matrix then a top-k per row. It is measured on a
  subset of ``--dense-queries`` queries, sized so it cannot exhaust memory, and *extrapolated* (clearly labelled)
  to all train queries and to mining with every document as a query.

Embeddings are computed once and cached (``.cache/embeddings``), so the timings are search + bookkeeping only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
K = 62  # range_max 50 + the most positives of a train query (12): what mine_hard_negatives asks faiss for


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _load():
    from workbook.config import get_config
    from workbook.icd10cm import load_icd10cm
    from workbook.models import load_model
    from workbook.retrieval import encode_cached

    cfg = get_config(fast=False)
    ds = load_icd10cm(cfg)
    model = load_model(cfg.base_model, cfg)
    cache = cfg.cache_dir / "embeddings"
    docs = encode_cached(model, ds.doc_texts(), cache, show_progress=False)
    queries = ds.split_queries("train")
    q = encode_cached(model, list(queries.values()), cache, show_progress=False)
    return cfg, ds, model, docs, q


def run_method(method: str, faiss_batch: int, dense_queries: int) -> dict:
    import numpy as np

    cfg, ds, model, docs, q = _load()
    base = _rss_mb()
    out = {"method": method, "docs": int(docs.shape[0]), "dim": int(docs.shape[1]), "baseline_rss_mb": round(base)}
    if method == "faiss":
        from workbook.retrieval import DenseIndex

        t = time.perf_counter()
        index = DenseIndex(docs, ds.doc_ids())
        scores, rows = index.search(q, K, batch_size=faiss_batch)
        secs = time.perf_counter() - t
        out |= {"queries": int(q.shape[0]), "seconds": round(secs, 2), "faiss_batch": faiss_batch}
    elif method == "miner":
        from workbook.negatives import DEFAULT_SETTINGS, mine_negatives

        t = time.perf_counter()
        mined = mine_negatives(ds, model, DEFAULT_SETTINGS, cache_dir=cfg.cache_dir / "embeddings")
        secs = time.perf_counter() - t
        queries = len({r["query_id"] for r in mined.rows})
        out |= {
            "queries": queries,
            "rows": len(mined.rows),
            "seconds": round(secs, 2),
            "settings": DEFAULT_SETTINGS.name,
        }
    elif method == "dense":
        sub = q[:dense_queries]
        t = time.perf_counter()
        matrix = sub @ docs.T  # the full (queries x docs) score matrix: what faiss batching avoids
        top = np.argpartition(-matrix, K, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(matrix, top, axis=1), axis=1)
        np.take_along_axis(top, order, axis=1)
        secs = time.perf_counter() - t
        out |= {"queries": int(sub.shape[0]), "seconds": round(secs, 2), "matrix_mb": round(matrix.nbytes / 2**20)}
        n_train, n_docs = q.shape[0], docs.shape[0]
        out["extrapolated"] = {
            "note": "EXTRAPOLATED from the measured subset, not measured: matrix bytes = queries x docs x 4",
            "all_train_queries": {
                "queries": int(n_train),
                "matrix_gb": round(n_train * n_docs * 4 / 2**30, 2),
                "seconds": round(secs * n_train / sub.shape[0], 1),
            },  # fmt: skip
            "every_doc_as_query": {
                "queries": int(n_docs),
                "matrix_gb": round(n_docs * n_docs * 4 / 2**30, 1),
                "seconds": round(secs * n_docs / sub.shape[0], 1),
            },  # fmt: skip
        }
    else:
        raise SystemExit(f"unknown method {method!r}")
    peak = _rss_mb()
    out |= {"queries_per_s": round(out["queries"] / secs, 1), "peak_rss_mb": round(peak),
            "peak_rss_over_baseline_mb": round(peak - base)}  # fmt: skip
    return out


def table(results: dict) -> str:
    lines = [
        "| method | queries | seconds | queries/s | peak RSS (MB) | over baseline (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results["methods"]:
        lines.append(
            f"| {r['method']} | {r['queries']:,} | {r['seconds']} | {r['queries_per_s']:,} | "
            f"{r['peak_rss_mb']:,} | {r['peak_rss_over_baseline_mb']:,} |"
        )
    dense = next(r for r in results["methods"] if r["method"] == "dense")
    for label, e in dense["extrapolated"].items():
        if not isinstance(e, dict):  # the "note" entry
            continue
        lines.append(
            f"| dense, **extrapolated** to {label.replace('_', ' ')} | {e['queries']:,} | ~{e['seconds']} | "
            f"{dense['queries_per_s']:,} | ≥ {e['matrix_gb'] * 1024:,.0f} (matrix alone) | |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", help="run one method in this process (used internally)")
    parser.add_argument("--faiss-batch", type=int, default=1024)
    parser.add_argument("--dense-queries", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mining.json")
    args = parser.parse_args()
    if args.method:
        print(json.dumps(run_method(args.method, args.faiss_batch, args.dense_queries)))
        return
    methods = []
    for method in ("faiss", "miner", "dense"):
        cmd = [sys.executable, __file__, "--method", method, "--faiss-batch", str(args.faiss_batch),
               "--dense-queries", str(args.dense_queries)]  # fmt: skip
        done = subprocess.run(
            cmd, capture_output=True, text=True, check=True, cwd=ROOT, env=os.environ | {"WORKBOOK_FAST": "0"}
        )
        methods.append(json.loads(done.stdout.strip().splitlines()[-1]))
    import torch

    results = {
        "benchmark": "hard-negative mining, ICD-10-CM full corpus, all-MiniLM-L6-v2 embeddings (cached), train queries",
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "methods": methods,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
