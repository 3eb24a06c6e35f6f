"""Benchmark: encoding, training and re-embedding speed on this machine, each against the obvious alternative.

Usage (from the repository root, after ``make setup``)::

    .venv/bin/python bench/speed.py        # writes bench/results/speed.json and prints a markdown table

- **encoding**: all-MiniLM-L6-v2 over SciFact abstracts (lengths vary a lot) and ICD-10-CM codes (short), one
  ``encode`` call over the whole list (sentence-transformers sorts by length, so batches hold texts of similar
  length and pad little) vs the naive loop that encodes batches in corpus order (each batch padded to its longest).
- **training**: rows/s of the default recipe (MNRL, a batch of 32 rows, 1 hard negative each, every weight
  trained) vs LoRA (the adapter only), same rows, 20 optimiser steps each, no evaluation.
- **re-embedding**: docs/s of the checkpointed re-embedding job into a local Qdrant collection
  (``workbook.deploy.Deployment.reembed``) vs a plain ``encode`` of the same docs (the job's overhead), and one
  process vs sentence-transformers' multi-process pool of 2 workers (``workbook.deploy.compare_encoding``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1)


def bench_encoding(model, n_sci: int, n_icd: int, seed: int) -> list[dict]:
    """Length-sorted single call vs naive in-order batches, on two corpora."""
    from workbook.config import get_config
    from workbook.data import load_scifact
    from workbook.icd10cm import load_icd10cm

    cfg = get_config(fast=False)
    rng = random.Random(seed)
    sci = load_scifact(cfg)
    icd = load_icd10cm(cfg)
    corpora = {
        "SciFact abstracts": rng.sample(sci.doc_texts(), min(n_sci, len(sci.corpus))),
        "ICD-10-CM codes": rng.sample(icd.doc_texts(), min(n_icd, len(icd.corpus))),
    }
    rows = []
    model.encode(corpora["ICD-10-CM codes"][:64], batch_size=64)  # warm-up
    for name, texts in corpora.items():
        t = time.perf_counter()
        model.encode(texts, batch_size=64, show_progress_bar=False)
        sorted_s = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(0, len(texts), 64):
            model.encode(texts[i : i + 64], batch_size=64, show_progress_bar=False)
        naive_s = time.perf_counter() - t
        rows.append({"what": f"encode {name} ({len(texts):,})", "method": "length-sorted batches",
                     "rate": _rate(len(texts), sorted_s), "unit": "docs/s", "alternative": "in-order batches",
                     "alternative_rate": _rate(len(texts), naive_s)})  # fmt: skip
    return rows


def bench_training(base, steps: int, seed: int) -> list[dict]:
    """Rows/s of full fine-tuning vs LoRA on the same rows (fast case study, mined hard negatives)."""
    from workbook.config import get_config
    from workbook.icd10cm import load_icd10cm
    from workbook.train import RECIPES, fine_tune, sample_rows, training_data

    cfg = get_config(fast=True, seed=seed)
    ds = load_icd10cm(cfg)
    rows = sample_rows(training_data(cfg, ds, base, "real", 1), steps * 32, seed)
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("mnrl", "lora"):
            run = fine_tune(cfg, base, rows, Path(tmp) / name, RECIPES[name], max_steps=steps, eval_steps=10_000,
                            show_progress=False)  # fmt: skip
            rates[name] = run.card["rows_per_second"]
    return [{"what": f"train MiniLM, batch 32 + 1 hard negative ({steps} steps)", "method": "full fine-tune (mnrl)",
             "rate": rates["mnrl"], "unit": "rows/s", "alternative": "LoRA adapter only",
             "alternative_rate": rates["lora"]}]  # fmt: skip


def bench_reembedding(model, n_docs: int, seed: int) -> list[dict]:
    """The checkpointed re-embedding job vs a plain encode; one process vs a pool of 2."""
    from workbook.config import get_config
    from workbook.deploy import Deployment, compare_encoding
    from workbook.icd10cm import load_icd10cm
    from workbook.models import MINILM

    cfg = get_config(fast=False)
    ds = load_icd10cm(cfg)
    ids = random.Random(seed).sample(ds.doc_ids(), n_docs)
    texts = [ds.doc_text(d) for d in ids]
    t = time.perf_counter()
    model.encode(texts, batch_size=64, show_progress_bar=False, normalize_embeddings=True)
    plain_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp, Deployment(tmp) as dep:
        dep.registry.register("v1", model, base_model=MINILM)
        report = dep.reembed("v1", ids, texts, model=model, show_progress=False)
    pool = compare_encoding(model, texts, processes=2)
    return [
        {"what": f"re-embed {n_docs:,} ICD-10-CM codes into Qdrant", "method": "checkpointed job",
         "rate": round(report.docs_per_s, 1), "unit": "docs/s", "alternative": "plain encode (no store, no checkpoint)",
         "alternative_rate": _rate(n_docs, plain_s)},
        {"what": f"encode {n_docs:,} ICD-10-CM codes", "method": "1 process",
         "rate": float(pool.iloc[0]["docs/s"]), "unit": "docs/s", "alternative": pool.index[1] + " (start-up excluded)",
         "alternative_rate": float(pool.iloc[1]["docs/s"])},
    ]  # fmt: skip


def table(results: dict) -> str:
    """The markdown table of a results dict."""
    lines = ["| measurement | method | rate | alternative | rate | ratio |", "|---|---|---:|---|---:|---:|"]
    for r in results["rows"]:
        ratio = r["rate"] / r["alternative_rate"] if r["alternative_rate"] else float("nan")
        lines.append(f"| {r['what']} | {r['method']} | {r['rate']:,} {r['unit']} | {r['alternative']} | "
                     f"{r['alternative_rate']:,} {r['unit']} | {ratio:.2f}x |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sci-docs", type=int, default=1000)
    parser.add_argument("--icd-docs", type=int, default=5000)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--reembed-docs", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "speed.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from workbook.models import load_model

    model = load_model("all-MiniLM-L6-v2")
    rows = bench_encoding(model, args.sci_docs, args.icd_docs, args.seed)
    rows += bench_training(model, args.train_steps, args.seed)
    rows += bench_reembedding(model, args.reembed_docs, args.seed)
    results = {
        "benchmark": "speed on this machine: encoding, training, re-embedding (all-MiniLM-L6-v2)",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "cuda": torch.cuda.is_available()},  # fmt: skip
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
