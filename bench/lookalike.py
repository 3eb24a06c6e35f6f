"""Benchmark: lookalike-aware fine-tuning (issue 20), compared on dev at one row budget.

Usage (from the repository root, after ``make setup``)::

    .venv/bin/python bench/lookalike.py [--rows N]   # writes bench/results/lookalike.json as each run finishes
    .venv/bin/python bench/lookalike.py --full-budget   # the screen's pick against mined negatives, every row (dev)
    .venv/bin/python bench/lookalike.py --test          # issue 20's targets: the shipped model on test, once
    .venv/bin/python bench/lookalike.py --sibling-stage # a short second stage on sibling rows, against it (dev)

Every run starts from all-MiniLM-L6-v2 and trains on the same seeded sample of training-split (query, positive)
rows with two negative columns; only where the negatives come from and the loss change:

- ``mined``: notebook 03's mined negatives (window 10-60, known equivalents dropped), MNRL.
- ``lookalike``: the positive's curated lookalikes (``workbook.negatives.lookalike``), hardest by the base model first.
- ``both``: one of each per row; with MNRL, and with MNRL's hardness weighting (``mnrl-hard``).
- ``sibling + gist``: GISTEmbed guided by the base model. ``GISTEmbedLoss`` takes one negative per row in this
  sentence-transformers version, so its rows hold one: the hardest sibling (a mined negative where there is none).

The runs, the dev metrics and the pick rule live in ``workbook.train.lookalike`` (notebook 05 runs the same ones):
each model is scored on the dev split over a candidate pool (``workbook.train.dev_candidates``: every dev gold code
and its lookalike siblings, plus the base model's and BM25's top 10 per query), because the whole corpus costs 20-26
minutes of encoding per model on this machine. Recall@10 reads high on a pool (fewer distractors): it compares runs
on one footing, it is not the whole-corpus figure (the base model gets both, to show the gap). Also: nDCG@10, 95%
bootstrap CIs, the sibling confusion rate@10 and the share of queries whose gold code scores below its best sibling.
3,000 rows are 94 steps of 32: under the 100-step evaluation interval, so every run keeps its last step.
The pick rule was fixed before the runs: the lowest dev sibling confusion among runs whose dev Recall@10 is at least
the ``mined`` run's minus 0.01. Nothing here reads the test split.
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
OUT = ROOT / "bench" / "results" / "lookalike.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help="training rows per run (default: cfg.lookalike_compare_rows)")
    parser.add_argument("--only", nargs="*", help="run names to (re)run; default all")
    parser.add_argument("--machine", default="2 CPU cores", help="a note on the machine and whether it was quiet")
    parser.add_argument("--fast", action="store_true", help="a smoke run on the fast-mode case study (--out needed)")
    parser.add_argument("--out", type=Path, default=OUT, help="the results file")
    parser.add_argument("--full-budget", action="store_true",
                        help="confirm the screen's pick at the full budget: train (or load) it and DEFAULT_RECIPE with "
                        "mined negatives only on every row, and compare them on dev over the whole corpus, query by "
                        "query")  # fmt: skip
    parser.add_argument("--sibling-stage", action="store_true",
                        help="a short second stage on sibling rows from the final training (workbook.train.stage), "
                        "and a control on random rows, each compared with the final training on dev over the whole "
                        "corpus, query by query")  # fmt: skip
    parser.add_argument("--test", action="store_true",
                        help="issue 20's targets on the test split, whole corpus, with 95%% CIs: the base model and "
                        "the final model (workbook.train.final_model), which notebook 06 reports; nothing is "
                        "chosen here")  # fmt: skip
    args = parser.parse_args()
    if args.fast and args.out == OUT:
        parser.error("--fast writes elsewhere: give --out")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["WORKBOOK_FAST"] = "1" if args.fast else "0"

    from workbook.config import get_config
    from workbook.files import atomic_write
    from workbook.icd10cm import load_icd10cm
    from workbook.models import load_model
    from workbook.train import dev_candidates, load_or_train
    from workbook.train.lookalike import LOOKALIKE_VARIANTS, PICK_RULE, lookalike_dev_metrics, pick_lookalike_variant

    cfg = get_config(fast=args.fast)
    if args.full_budget:
        return full_budget(cfg, args)
    if args.test:
        return test_targets(cfg, args)
    if args.sibling_stage:
        return sibling_stage(cfg, args)
    args.rows = args.rows or cfg.lookalike_compare_rows
    ds = load_icd10cm(cfg)
    base = load_model(cfg.base_model, cfg)
    out = args.out
    result = json.loads(out.read_text()) if out.is_file() else {}
    if result.get("rows") != args.rows:
        result = {}
    result.update(
        rows=args.rows,
        mode=cfg.mode,
        split="dev",
        corpus_docs=len(ds.corpus),
        machine=args.machine,
        cpu=platform.processor() or platform.machine(),
        pick_rule=PICK_RULE,
    )
    runs = result.setdefault("runs", {})

    def save() -> None:
        if "mined" in runs and len(runs) == len(LOOKALIKE_VARIANTS):
            result["picked"] = pick_lookalike_variant({n: r["dev"] for n, r in runs.items()})
        atomic_write(out, json.dumps(result, indent=2) + "\n")

    docs = dev_candidates(cfg, ds, base)
    result["candidates"] = {"docs": len(docs), "what": "every dev gold code and its lookalike siblings, plus the base "
                            f"model's and BM25's top {cfg.dev_eval_candidates} per dev query"}
    if "base" not in result:
        t = time.perf_counter()
        result["base"] = {"dev": lookalike_dev_metrics(cfg, ds, base, docs=docs),
                          "dev_whole_corpus": lookalike_dev_metrics(cfg, ds, base),
                          "seconds": round(time.perf_counter() - t, 1)}  # fmt: skip
        save()
        print("base", result["base"], flush=True)
    for variant in LOOKALIKE_VARIANTS:
        name, recipe = variant.name, variant.recipe
        if args.only is not None and name not in args.only:
            continue
        if name in runs and not args.only:
            continue
        t = time.perf_counter()
        # No in-training evaluator: at this budget it would only score the last step (the same weights) on the
        # pool, an encoding the dev metrics below repeat; notebook 05 loads the same runs the same way.
        run = load_or_train(cfg, recipe, "real", max_rows=args.rows, ds=ds, base=base, show_progress=False,
                            negatives=variant.negatives, dev_split=None)
        card = run.card
        runs[name] = {
            "negatives": variant.negatives,
            "loss": recipe.loss,
            "negative_columns": recipe.num_negatives,
            "model": card["name"],
            "train_seconds": card["train_seconds"],
            "steps": card["steps"],
            "negative_mix_all_rows": card["data"].get("negative_mix_all_rows"),
            "dev": lookalike_dev_metrics(cfg, ds, run.model, docs=docs),
            "seconds": round(time.perf_counter() - t, 1),
        }
        save()
        print(name, runs[name], flush=True)
    save()
    print("picked:", result.get("picked"))


def full_budget(cfg, args) -> None:
    """The screen's pick confirmed at the full budget, on dev over the whole corpus (the final training's choice).

    ``full_budget.mined``: DEFAULT_RECIPE on every training row with mined negatives only; ``full_budget.<pick>``:
    the 3,000-row screen's pick (``picked``) on every row (:func:`workbook.train.full_budget_candidate`). Each gets
    its card's metrics and the collapse numbers; ``full_budget.paired`` compares them query by query, and
    ``full_budget.picked`` applies the same pick rule to the two (:func:`workbook.train.full_budget_comparison`, as
    notebook 05 section 7). ``workbook.train.final_training`` must name that pick (``tests/test_lookalike.py``)."""
    from workbook.files import atomic_write
    from workbook.icd10cm import load_icd10cm
    from workbook.train import (
        DEFAULT_RECIPE,
        full_budget_candidate,
        full_budget_challenger,
        full_budget_comparison,
        load_or_train,
    )

    out = args.out
    result = json.loads(out.read_text()) if out.is_file() else {}
    if not result.get("runs") or "mined" not in result["runs"]:
        raise SystemExit(f"{out}: no screen runs; run the 3,000-row comparison first")
    screen = full_budget_challenger({name: run["dev"] for name, run in result["runs"].items()})
    ds = load_icd10cm(cfg)
    recipe, negatives = full_budget_candidate(screen)
    runs = {"mined": load_or_train(cfg, DEFAULT_RECIPE, "real", ds=ds, negatives="mined", show_progress=False),
            screen: load_or_train(cfg, recipe, "real", ds=ds, negatives=negatives, show_progress=False)}  # fmt: skip
    t = time.perf_counter()
    compared = full_budget_comparison(cfg, ds, runs)
    budget = {}
    for name, run in runs.items():
        card = run.card
        budget[name] = {
            "negatives": card["data"].get("negatives", name),
            "model": card["name"],
            "rows": card["data"]["rows"],
            "steps": card["steps"],
            "negative_columns": card["recipe"]["num_negatives"],
            "train_seconds": card["train_seconds"],
            "dev_whole_corpus": card["dev_metrics"],
            # the collapse numbers over the whole corpus, as the base model's "dev_whole_corpus" above
            "dev_lookalike_whole_corpus": compared[name],
        }
    budget |= {k: compared[k] for k in ("paired", "pick_rule", "picked")}
    budget |= {"screen_pick": screen, "machine": args.machine, "seconds": round(time.perf_counter() - t, 1)}
    result["full_budget"] = budget
    atomic_write(out, json.dumps(result, indent=2) + "\n")
    print("full budget:", json.dumps({k: budget[k] for k in ("paired", "picked")}), flush=True)


def sibling_stage(cfg, args) -> None:
    """The final training tuned again for a few steps on sibling rows (``workbook.train.stage``), and a control (the
    same steps on random training rows with mined negatives only), each against the final training itself, on dev
    over the whole corpus, query by query, with the same pick rule (:func:`workbook.train.full_budget_comparison`).
    Writes ``sibling_stage``; nothing reads test."""
    from workbook.files import atomic_write
    from workbook.icd10cm import load_icd10cm
    from workbook.models import load_model
    from workbook.train import full_budget_comparison, load_or_train
    from workbook.train.stage import SIBLING_STAGE
    from workbook.train.stage import sibling_stage as train_stage

    out = args.out
    result = json.loads(out.read_text()) if out.is_file() else {}
    ds = load_icd10cm(cfg)
    base = load_model(cfg.base_model, cfg)
    final = load_or_train(cfg, ds=ds, base=base, show_progress=False)
    stage = train_stage(cfg, ds, final, base, show_progress=False)
    control = train_stage(cfg, ds, final, base, show_progress=False, control=True)
    t = time.perf_counter()
    compared = full_budget_comparison(cfg, ds, {"mined": final, "sibling stage": stage})
    against = full_budget_comparison(cfg, ds, {"mined": final, "control": control})
    card = stage.card
    result["sibling_stage"] = {
        "what": f"the final training ({final.card['name']}) tuned again on {cfg.sibling_stage_rows:,} training rows "
        "whose positive has a sibling: (query, positive, hardest sibling by the final model, mined negative), MNRL, "
        f"one pass at learning rate {SIBLING_STAGE.learning_rate:g} (chosen on dev among 1e-5, 3e-5 and 5e-5); the "
        "control spends the same steps on as many random training rows with two mined negatives; all scored on dev "
        "over the whole corpus",
        "model": card["name"],
        "rows": card["data"]["rows"],
        "steps": card["steps"],
        "train_seconds": card["train_seconds"],
        "final": compared["mined"],
        "sibling stage": compared["sibling stage"],
        "control": against["control"],
        "paired": compared["paired"],
        "control_paired": against["paired"],
        "control_model": control.card["name"],
        "pick_rule": compared["pick_rule"],
        "picked": "sibling stage" if compared["picked"] == "sibling stage" else "final",
        "machine": args.machine,
        "seconds": round(time.perf_counter() - t, 1),
    }
    atomic_write(out, json.dumps(result, indent=2) + "\n")
    print("sibling stage:", json.dumps({k: result["sibling_stage"][k] for k in ("paired", "control_paired", "picked")}),
          flush=True)


#: Issue 20's targets on the test split (whole corpus): metric -> (comparison, value).
TEST_TARGETS = {"sibling confusion@10": ("<=", 0.15), "gold below a sibling": ("<=", 0.20), "recall@10": (">=", 0.78)}


def test_targets(cfg, args) -> None:
    """The shipped model against issue 20's targets, on the test split over the whole corpus, with 95% bootstrap CIs.

    Reads the test split for two models only, the base model and the final model (``workbook.train.final_model``,
    the model notebook 06 reports and 07 ships); every choice was made on dev before. ``test.met`` compares each
    point value with its target, and ``test.decided`` says whether the CI lies wholly on one side of it. Notebook
    06's collapse table measures the same model on the same queries (``tests/test_lookalike.py`` checks that the
    two agree)."""
    from workbook.files import atomic_write
    from workbook.icd10cm import load_icd10cm
    from workbook.models import load_model
    from workbook.train import final_model
    from workbook.train.lookalike import lookalike_dev_metrics

    out = args.out
    result = json.loads(out.read_text()) if out.is_file() else {}
    ds = load_icd10cm(cfg)
    final = final_model(cfg, ds=ds, show_progress=False)  # the final training, then the sibling stage
    t = time.perf_counter()
    models = {"base": load_model(cfg.base_model, cfg), "final": final.model}
    measured = {name: lookalike_dev_metrics(cfg, ds, model, split="test") for name, model in models.items()}
    targets = {}
    for metric, (op, goal) in TEST_TARGETS.items():
        value, (lo, hi) = measured["final"][metric], measured["final"][f"{metric} CI"]
        met = value <= goal if op == "<=" else value >= goal
        decided = (hi <= goal or lo > goal) if op == "<=" else (lo >= goal or hi < goal)
        targets[metric] = {"goal": f"{op} {goal}", "measured": value, "ci": [lo, hi], "met": met, "decided": decided}
    result["test"] = {"split": "test", "docs ranked": len(ds.corpus), "final_model": final.card["name"],
                      "negatives": final.card["data"]["negatives"], **measured, "targets": targets,
                      "machine": args.machine, "seconds": round(time.perf_counter() - t, 1)}  # fmt: skip
    atomic_write(out, json.dumps(result, indent=2) + "\n")
    print("test targets:", json.dumps(targets), flush=True)


if __name__ == "__main__":
    main()
