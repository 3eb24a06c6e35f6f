"""Benchmark: GPL-style pseudo-labels against plain MNRL on the same synthetic queries (issue 23, item 3).

Usage (from the repository root, after ``make setup``; full mode is the case study)::

    WORKBOOK_FAST=0 .venv/bin/python bench/synth_gpl.py --machine "2 cores, quiet"
    # writes bench/results/synth_gpl.json

The committed synthetic set's rows (one mined negative each, the equal budget notebook 05 compares sources at) train:

- ``mnrl``: plain MNRL, every pair taken as right (notebook 05's synthetic budget run, loaded when saved);
- ``gpl, synthetic teacher``: MarginMSE on the margins of a cross-encoder trained on the synthetic pairs themselves
  (what a team with documents only can do: no human label anywhere);
- ``gpl, case-study reranker``: MarginMSE on the margins of notebook 02/06's reranker, which was trained on the real
  training split (so this row uses human labels through its teacher, and is labelled so).

Each is scored on the dev split over the dev candidates (``dev_scope="candidates"``, as notebook 05 compares runs),
beside the base model and notebook 05's real-query run at the same budget: the synthetic lift as a share of the real
lift is issue 23's target (>= 75%). Choices are made on dev; nothing here reads test.
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
OUT = ROOT / "bench" / "results" / "synth_gpl.json"
METRICS = ("recall@10", "ndcg@10", "mrr@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--machine", default="", help="what the machine is and whether it was quiet")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np

    from workbook.config import get_config
    from workbook.icd10cm import load_icd10cm
    from workbook.models import load_model
    from workbook.retrieval import dense_ranking, load_reranker
    from workbook.synth import load_synthetic_pairs
    from workbook.train import (
        GPL_RECIPE,
        candidate_dev_metrics,
        load_or_train,
        pseudo_labels,
        sample_rows,
        synthetic_dataset,
    )
    from workbook.train import training_data as rows_of

    cfg = get_config()
    ds = load_icd10cm(cfg)
    base = load_model(cfg.base_model, cfg)
    budget = cfg.compare_max_rows
    emb = cfg.cache_dir / "embeddings"
    pairs = load_synthetic_pairs(cfg, ds)
    syn = synthetic_dataset(ds, pairs)
    t0 = time.perf_counter()
    teachers = {
        "synthetic teacher": load_reranker(cfg, syn, dense_ranking(base, syn, "train", k=20, cache_dir=emb,
                                                                   show_progress=False)),  # fmt: skip
        "case-study reranker": load_reranker(cfg, ds, dense_ranking(base, ds, "train", k=20, cache_dir=emb,
                                                                    show_progress=False)),  # fmt: skip
    }
    teacher_seconds = round(time.perf_counter() - t0, 1)
    runs = {"base": {"dev": candidate_dev_metrics(cfg, ds, base, base=base), "seconds": 0.0}}

    def train(name: str, **kw) -> None:
        start = time.perf_counter()
        run = load_or_train(cfg, ds=ds, base=base, max_rows=budget, dev_scope="candidates", show_progress=False, **kw)
        runs[name] = {"dev": run.card["dev_metrics"], "seconds": round(time.perf_counter() - start, 1),
                      "train_seconds": run.card.get("train_seconds"), "run": run.path.parent.name}  # fmt: skip

    train("real, mnrl", recipe="mnrl", source="real")
    train("synthetic, mnrl", recipe="mnrl", source="synthetic")
    labels = {}
    rows = sample_rows(rows_of(cfg, ds, base, "synthetic"), budget, cfg.seed)  # the rows load_or_train labels
    for name, teacher in teachers.items():
        train(f"synthetic, gpl ({name})", recipe=GPL_RECIPE, source="synthetic", labeller=teacher)
        margins = np.asarray(pseudo_labels(teacher, rows)["label"])
        labels[name] = {"mean margin": round(float(margins.mean()), 4),
                        "share with the negative scored above the positive": round(float((margins < 0).mean()), 4)}
    b, r = runs["base"]["dev"], runs["real, mnrl"]["dev"]
    for run in runs.values():
        d = run["dev"]
        run["share_of_real_lift"] = {m: round((d[m] - b[m]) / (r[m] - b[m]), 3) for m in METRICS}
    result = {
        "machine": {"description": args.machine, "cpus": os.cpu_count(), "python": platform.python_version()},
        "mode": cfg.mode,
        "rows": budget,
        "synthetic_pairs": len(pairs),
        "dev": f"{ds.name} dev split over the dev candidates (gold + base model's and BM25's top "
               f"{cfg.dev_eval_candidates}), as notebook 05 compares runs",
        "teacher_seconds": teacher_seconds,
        "teacher_labels": labels,
        "runs": runs,
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))


def table(result: dict) -> str:
    """The bench README block."""
    m = result["machine"]
    lines = [f"{m['description'] or 'machine not described'}; {result['mode']} mode, {result['rows']:,} training rows "
             f"per run; {result['dev']}.", "",
             "| run | dev Recall@10 | dev nDCG@10 | dev MRR@10 | share of the real-query lift (Recall@10) |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, run in result["runs"].items():
        d = run["dev"]
        share = "" if name == "base" else f"{run['share_of_real_lift']['recall@10']:.0%}"
        lines.append(f"| {name} | {d['recall@10']:.4f} | {d['ndcg@10']:.4f} | {d['mrr@10']:.4f} | {share} |")
    lines += ["", "Teachers' margins on the synthetic rows (cross-encoder score of the positive minus the mined "
              "negative):", ""]  # fmt: skip
    for name, lab in result["teacher_labels"].items():
        lines.append(f"- {name}: mean {lab['mean margin']}, negative scored above the positive in "
                     f"{lab['share with the negative scored above the positive']:.1%} of rows")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
