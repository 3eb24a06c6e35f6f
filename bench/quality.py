"""Benchmark: retrieval quality — the case study's test table and the SciFact check of the evaluator.

Usage (from the repository root, after ``make setup``; the case-study part after ``make casestudy``)::

    .venv/bin/python bench/quality.py      # writes bench/results/quality.json and prints markdown tables

- **SciFact reproduction** (measured here): all-MiniLM-L6-v2 on the SciFact test split, whole corpus, title + text,
  exact cosine, scored by ``workbook.evaluate``; must equal the published MTEB figures (nDCG@10 0.6451,
  Recall@10 0.7833, Recall@100 0.925).
- **Lookalike training** (read from ``bench/lookalike.py``'s results): sibling confusion, the share of queries whose
  gold code scores below a sibling, and sibling-pair cosines, for the base model and each compared run (dev split).
- **Case study** (read, not recomputed): the test-split table that notebook 06 wrote in full mode
  (``artifacts/results/full/test_metrics.json``: every method from one run) and its forgetting check
  (``artifacts/results/full/forgetting.json``). Recomputing them means re-running notebook 06 (``make casestudy``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MTEB = {"ndcg@10": 0.6451, "recall@10": 0.7833, "recall@100": 0.925}


def scifact_reproduction() -> dict:
    """MiniLM on full SciFact test, against the published MTEB numbers."""
    from workbook.config import get_config
    from workbook.data import load_scifact
    from workbook.evaluate import evaluate_ranking
    from workbook.models import load_model
    from workbook.retrieval import dense_ranking

    cfg = get_config(fast=False)
    sci = load_scifact(cfg)
    t = time.perf_counter()
    ranked = dense_ranking(load_model(cfg.base_model, cfg), sci, "test", k=100, cache_dir=cfg.cache_dir / "embeddings",
                           show_progress=False)  # fmt: skip
    res = evaluate_ranking(ranked, sci.qrels["test"], list(MTEB))
    measured = {m: round(res[m], 4) for m in MTEB}
    return {
        "measured": measured,
        "mteb": MTEB,
        "matches": all(measured[m] == MTEB[m] for m in MTEB),
        "seconds": round(time.perf_counter() - t, 1),
        "docs": len(sci.corpus),
        "queries": len(sci.qrels["test"]),
    }


def case_study(results_dir: Path) -> dict | None:
    """Notebook 06's full-mode outputs, or None when it has not run."""
    table, forget = results_dir / "test_metrics.json", results_dir / "forgetting.json"
    if not table.is_file() or not forget.is_file():
        return None
    out = {"test": json.loads(table.read_text()), "forgetting": json.loads(forget.read_text()),
           "source": str(table.relative_to(ROOT))}  # fmt: skip
    look = results_dir / "lookalike_test.json"  # notebook 06's collapse table: the tuned model on test
    if look.is_file():
        out["lookalike_test"] = json.loads(look.read_text())
    groups = results_dir / "lookalike_groups_test.json"  # per drawn group: separation before and after tuning
    if groups.is_file():
        out["lookalike_groups_test"] = json.loads(groups.read_text())
    return out


def lookalike(path: Path) -> dict | None:
    """The lookalike metrics of ``bench/lookalike.py`` (dev split; read, not recomputed): the base model over the whole
    corpus and over the candidate pool, and each compared run and the pick over the pool, to compare run to run."""
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    keys = ("recall@10", "sibling confusion@10", "sibling confusion@10 CI", "gold below a sibling",
            "margin gold - best sibling (median)", "sibling pair cosine (mean)")  # fmt: skip
    pick = lambda m: {k: m[k] for k in keys if k in m}  # noqa: E731
    base, full = res.get("base", {}), res.get("full_budget", {})
    return {
        "source": str(path.relative_to(ROOT)),
        "split": res.get("split"),
        "rows": res.get("rows"),
        "candidates": res.get("candidates"),
        "base whole corpus": pick(base.get("dev_whole_corpus", {})),
        "base": pick(base.get("dev", {})),
        "runs": {name: pick(run["dev"]) for name, run in res.get("runs", {}).items()},
        "picked": res.get("picked"),
        "full_budget": {name: {"rows": run["rows"], "steps": run["steps"],
                               **{k: run["dev_whole_corpus"][k] for k in ("recall@10", "ndcg@10", "mrr@10")},
                               **pick(run.get("dev_lookalike_whole_corpus", {}))}
                        for name, run in full.items() if isinstance(run, dict) and "rows" in run},  # fmt: skip
        # the confirmation at the full budget: the screen's pick minus mined, per dev query, and the rule's pick
        "full_budget_paired": full.get("paired"),
        "full_budget_picked": full.get("picked"),
        # issue 20's targets, read on test once for the shipped model (``bench/lookalike.py --test``)
        "test": {k: res["test"][k] for k in ("final_model", "negatives", "docs ranked", "targets")}
        | {name: pick(res["test"][name]) for name in ("base", "final")} if "test" in res else None,
        # a short second stage on sibling rows from the final training, against it on dev (``--sibling-stage``)
        "sibling_stage": {k: res["sibling_stage"].get(k) for k in ("what", "model", "rows", "steps", "paired", "picked",
                                                                     "control_model", "control_paired")}
        | {name: {"ndcg@10": res["sibling_stage"][name]["ndcg@10"], **pick(res["sibling_stage"][name])}
           for name in ("final", "sibling stage", "control") if name in res["sibling_stage"]}
        if "sibling_stage" in res else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results-dir", type=Path, default=ROOT / "artifacts" / "results" / "full")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quality.json")
    parser.add_argument("--read-only", action="store_true",
                        help="keep the SciFact measurement (and a case study missing here) in --out; re-read the rest")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    before = json.loads(args.out.read_text()) if args.read_only and args.out.is_file() else {}
    scifact = before["scifact"] if "scifact" in before else scifact_reproduction()
    # A checkout without notebook 06's full-mode results keeps the case study already recorded (read-only mode).
    case = case_study(args.results_dir) or before.get("case_study")
    look = lookalike(ROOT / "bench" / "results" / "lookalike.json")
    out = {"scifact": scifact, "case_study": case, "lookalike": look}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["scifact"], indent=2))
    if out["case_study"] is None:
        print("case study: not measured yet (run `make casestudy`: notebook 06 writes artifacts/results/full/)")


if __name__ == "__main__":
    main()
