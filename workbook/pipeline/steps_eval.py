"""Steps 06-08: test metrics with CIs, the forgetting check, and the gate (prior) beside the measurement (posterior)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from workbook.data import Dataset, load_scifact, slice_queries
from workbook.diagnose import (
    CLUSTER_CHECK,
    GAP_CHECK,
    before_after_maps,
    collapse_distributions,
    gate_inputs,
    measure_collapse,
    picked_groups,
    should_fine_tune,
)
from workbook.evaluate import (
    by_slice,
    evaluate_ranking,
    paired_comparison,
    results_table,
    results_with_ci,
    truncate,
)
from workbook.files import read_json, write_json
from workbook.pipeline.context import RunContext
from workbook.pipeline.devsplit import dev_note, selection_note
from workbook.pipeline.steps_check import CI_METRICS, GATE_METRIC, METRICS, eval_splits, model_label
from workbook.pipeline.store import dataset_files, frame_to_json
from workbook.retrieval import DenseIndex, dense_ranking, encode, encode_cached, rrf

# -- 06 evaluate ----------------------------------------------------------------------------------------------


def _load_runs(ctx: RunContext, split: str) -> dict[str, dict[str, list[str]]]:
    return read_json(ctx.step_dir("02_baselines") / f"rankings_{split}.json")


def tuned_runs(ctx: RunContext, split: str, bm25_run: Mapping[str, Sequence[str]]) -> dict[str, dict[str, list[str]]]:
    """The fine-tuned model's ranking of ``split`` and its hybrid with BM25."""
    cfg = ctx.cfg
    tuned = dense_ranking(ctx.tuned(), ctx.ds, split, k=cfg.top_k, batch_size=cfg.batch_size, cache_dir=ctx.emb_cache)
    return {"fine-tuned": tuned, "hybrid fine-tuned+BM25": rrf([tuned, bm25_run], k=cfg.top_k)}


def truncation_curve(ctx: RunContext, models: Mapping[str, object], split: str, dims: Sequence[int]) -> pd.DataFrame:
    """Recall@10 and nDCG@10 on ``split`` with embeddings cut to each size (first dims, renormalised).

    Returns:
        Index ``dim``; columns ``<model> recall@10`` and ``<model> ndcg@10``.
    """
    ds, cfg = ctx.ds, ctx.cfg
    queries = ds.split_queries(split)
    rows: dict[int, dict[str, float]] = {}
    for label, model in models.items():
        doc_emb = encode_cached(model, ds.doc_texts(), ctx.emb_cache, batch_size=cfg.batch_size, show_progress=False)
        q_emb = encode(model, list(queries.values()), batch_size=cfg.batch_size, show_progress=False)
        for dim in sorted({d for d in dims if 1 <= d <= doc_emb.shape[1]} | {doc_emb.shape[1]}, reverse=True):
            index = DenseIndex(truncate(doc_emb, dim), ds.doc_ids())
            res = evaluate_ranking(index.ranked(list(queries), truncate(q_emb, dim), cfg.top_k), ds.qrels[split],
                                   ("recall@10", "ndcg@10"))  # fmt: skip
            rows.setdefault(dim, {}).update(
                {f"{label} recall@10": res["recall@10"], f"{label} ndcg@10": res["ndcg@10"]}
            )
    frame = pd.DataFrame.from_dict(rows, orient="index").sort_index(ascending=False)
    frame.index.name = "dim"
    return frame


def pick_umap_groups(ds: Dataset, n: int) -> list[dict]:
    """Lookalike groups to draw: the ones the dataset names (:func:`workbook.diagnose.picked_groups`; the case
    study's), else the ``n`` groups with the most single-group test queries (the map shows held-out queries only; no
    two groups sharing a doc; ties by group id)."""
    if named := picked_groups(ds):
        return named[:n]
    groups = ds.extras.get("lookalikes", [])
    codes_of = {g["group_id"]: set(g["codes"]) & ds.corpus.keys() for g in groups}
    by_code: dict[str, list[str]] = {}
    for gid, codes in codes_of.items():
        for c in codes:
            by_code.setdefault(c, []).append(gid)
    counts = dict.fromkeys(codes_of, 0)
    for judged in ds.qrels.get("test", {}).values():
        gold = {d for d, s in judged.items() if s > 0}
        if gold:
            for gid in by_code.get(min(gold), []):
                counts[gid] += gold <= codes_of[gid]
    ranked = sorted((g for g in groups if len(codes_of[g["group_id"]]) >= 2 and counts[g["group_id"]]),
                    key=lambda g: (-counts[g["group_id"]], -len(codes_of[g["group_id"]]), g["group_id"]))  # fmt: skip
    picked, used = [], set()
    for g in ranked:
        if len(picked) == n:
            break
        if not codes_of[g["group_id"]] & used:
            picked.append(g)
            used |= codes_of[g["group_id"]]
    return picked


def lookalikes_before_after(ctx: RunContext) -> dict | None:
    """Some lookalike groups before and after tuning on one shared map per group (:func:`before_after_maps`, the
    test queries), with each group's measured separation, and the sibling-pair cosines and gold-vs-sibling margins
    of both models (for the report's histograms)."""
    groups = pick_umap_groups(ctx.ds, ctx.settings.umap_groups)
    models = {"base": ctx.base, "fine-tuned": ctx.tuned()}
    out: dict = {}
    if groups:
        maps = before_after_maps(ctx.ds, models, groups, splits=("test",))
        if maps.queries.sum() > 0:
            out = {
                "groups": [g["group_id"] for g in groups],
                "points": maps.points.drop(columns=["text"]).round(6).to_dict(orient="records"),
                "separation": {m: maps.separation[m].round(6).to_dict() for m in maps.separation.columns},
                "queries": maps.queries.to_dict(),
                "method": maps.method,
            }
    test = ctx.ds.qrels["test"]
    dists = {m: collapse_distributions(model, ctx.ds, test, ctx.emb_cache) for m, model in models.items()}
    out["pair_cosines"] = {m: [round(float(x), 4) for x in d["pairs"]["cosine"]] for m, d in dists.items()}
    out["margins"] = {m: [round(float(x), 4) for x in d["margins"]["margin"]] for m, d in dists.items()}
    return out


def step_evaluate(ctx: RunContext, out: Path) -> dict:
    """Test metrics with 95% bootstrap CIs for every method, paired tests, slices, truncation and lookalikes."""
    cfg, ds, st = ctx.cfg, ctx.ds, ctx.settings
    baselines = ctx.result("02_baselines")
    base_name = baselines["base_method"]
    select = "dev" if "dev" in ds.qrels else None  # never test: without dev (none carved either), fixed defaults
    evaluated: dict[str, dict] = {}
    rankings: dict[str, dict] = {}
    for split in eval_splits(ds):
        runs = _load_runs(ctx, split)
        runs.update(tuned_runs(ctx, split, runs["BM25"]))
        rankings[split] = runs
        evaluated[split] = {n: evaluate_ranking(r, ds.qrels[split], METRICS, name=n) for n, r in runs.items()}
    write_json(out / "rankings_test.json", {k: v for k, v in rankings["test"].items() if k not in baselines["methods"]})
    cheap = list(baselines["methods"])
    tuned_names = ["fine-tuned", "hybrid fine-tuned+BM25"]
    if select is not None:  # both picked on dev, by the rule the gate uses (highest mean, ties: the first)
        sel = evaluated[select]
        best_cheap = max(cheap, key=lambda m: (sel[m][GATE_METRIC], -cheap.index(m)))
        best_tuned = max(tuned_names, key=lambda m: (sel[m][GATE_METRIC], -tuned_names.index(m)))
    else:  # nothing to pick on: the base model's hybrid with BM25 (the usual first cheap win) vs the plain tuned model
        hybrid = f"hybrid {model_label(cfg.base_model)}+BM25"
        best_cheap = hybrid if hybrid in cheap else base_name
        best_tuned = "fine-tuned"
    test = evaluated["test"]
    results = list(test.values())
    table = results_table(results, digits=12)
    ci = results_with_ci(results, metrics=CI_METRICS, n_resamples=st.n_resamples, seed=cfg.seed, digits=12)
    comparisons = []
    for a, b in ((base_name, "fine-tuned"), (best_cheap, best_tuned)):
        for metric in ("recall@10", "ndcg@10"):
            if any((c["a"], c["b"], c["metric"]) == (a, b, metric) for c in comparisons):
                continue
            pc = paired_comparison(test[a], test[b], metric=metric, n_resamples=st.n_resamples, seed=cfg.seed)
            comparisons.append({**asdict(pc), "significant": pc.significant})
    result = {
        "selected_on": select,
        "selection": selection_note(ctx.dev) if select else f"not picked ({dev_note(ctx.dev)})",
        "best_cheap": best_cheap,
        "best_tuned": best_tuned,
        "base_method": base_name,
        "metrics": frame_to_json(table),
        "ci": frame_to_json(ci),
        "paired": comparisons,
        "queries": len(ds.qrels["test"]),
    }
    if "dev" in evaluated:
        result["dev_metrics"] = frame_to_json(results_table(evaluated["dev"].values(), digits=12))
    slices = slice_queries(ds, "test")
    if slices:
        result["slices"] = frame_to_json(by_slice(results, slices, metric=GATE_METRIC, digits=12))
        result["slice_order"] = list(ds.extras.get("slices", ()))  # the dataset's own order, for the report's figure
    ctx.log("  truncation curve (base vs fine-tuned)")
    trunc = truncation_curve(ctx, {"base": ctx.base, "fine-tuned": ctx.tuned()}, "test", st.truncate_dims)
    result["truncation"] = frame_to_json(trunc)
    if ds.extras.get("lookalikes"):
        ctx.log("  lookalike collapse, and the lookalike groups before/after")
        collapse = {
            label: measure_collapse(
                model, ds, ds.qrels["test"], rankings["test"][name], k=10, cache_dir=ctx.emb_cache, seed=cfg.seed
            )  # fmt: skip
            for label, model, name in (("base", ctx.base, base_name), ("fine-tuned", ctx.tuned(), "fine-tuned"))
        }
        result["collapse"] = frame_to_json(pd.DataFrame(collapse))
        drawn = lookalikes_before_after(ctx)
        write_json(out / "lookalike_map.json", drawn)
        result["lookalike_map"] = {"groups": drawn.get("groups", []), "points": len(drawn.get("points", [])),
                                   "separation": drawn.get("separation", {})}  # fmt: skip
    return result


# -- 07 forgetting --------------------------------------------------------------------------------------------


def _scifact_inputs(ctx: RunContext) -> dict:
    return {"scifact": dataset_files(ctx.cfg.scifact_dir)} if ctx.settings.forgetting else {}


def step_forgetting(ctx: RunContext, out: Path) -> dict:
    """Base vs fine-tuned on SciFact test (fast mode: its seeded subset): did tuning forget general retrieval?"""
    cfg, st = ctx.cfg, ctx.settings
    if not st.forgetting:
        return {"status": "skipped (forgetting = false)"}
    sf = load_scifact(cfg)
    results = []
    for label, model in (("base", ctx.base), ("fine-tuned", ctx.tuned())):
        ctx.log(f"  SciFact: {label}")
        ranked = dense_ranking(model, sf, "test", k=cfg.top_k, batch_size=cfg.batch_size, cache_dir=ctx.emb_cache)
        results.append(evaluate_ranking(ranked, sf.qrels["test"], METRICS, name=label))
    pc = paired_comparison(results[0], results[1], metric="ndcg@10", n_resamples=st.n_resamples, seed=cfg.seed)
    return {
        "status": "done",
        "dataset": sf.name,
        "docs": len(sf.corpus),
        "queries": len(sf.qrels["test"]),
        "metrics": frame_to_json(results_table(results, digits=12)),
        "ci": frame_to_json(
            results_with_ci(
                results, metrics=("ndcg@10", "recall@10"), n_resamples=st.n_resamples, seed=cfg.seed, digits=12
            )
        ),  # fmt: skip
        "paired": {**asdict(pc), "significant": pc.significant},
    }


# -- 08 decision ----------------------------------------------------------------------------------------------


def _gate_setting(check: str) -> str:
    """The setting behind a gate check: what to revisit when the measurement contradicts the gate."""
    return {GAP_CHECK: "target_recall_at_10", CLUSTER_CHECK: "cluster_margin / domain_slices"}.get(check, "min_pairs")


def gate_vs_measurement(gate: Mapping, payoff: Mapping, best_cheap: str, best_tuned: str) -> dict:
    """The gate (the prior, on dev) beside the measured result (the posterior, on test), and what a disagreement means.

    Args:
        gate: the gate's record (``FineTuneDecision.to_dict()`` plus ``split``).
        payoff: the paired comparison ``best_tuned - best_cheap`` on test (``GATE_METRIC``).

    Returns:
        ``agree`` (bool), ``measured`` (``"better"``, ``"worse"`` or ``"no difference"``) and ``text``.
    """
    ci = f"{payoff['delta']:+.4f} (95% CI [{payoff['ci_low']:+.4f}, {payoff['ci_high']:+.4f}])"
    if payoff["significant"] and payoff["delta"] > 0:
        measured = "better"
    elif payoff["significant"] and payoff["delta"] < 0:
        measured = "worse"
    else:
        measured = "no difference"
    verdict, where = gate["verdict"], f"on {gate['split']}" if gate.get("split") else "without a dev split"
    undecided = [n for n, st in gate["status"].items() if st == "too small to decide"]
    unmeasured = [n for n, ok in gate["checks"].items() if ok is None]
    show = f"{best_tuned} vs {best_cheap} on test {GATE_METRIC}: {ci}"
    if gate["go"] == (measured == "better"):
        text = f"The gate ({verdict}, {where}) and the measurement agree: {show}."
        if verdict.endswith("(uncertain)"):
            text += f" The gate could not decide {', '.join(undecided)} on dev; the measurement on test settles it."
        return {"agree": True, "measured": measured, "text": text}
    if measured == "better":
        failed = [n for n, ok in gate["checks"].items() if ok is False]
        why = "; ".join(gate["texts"][n] for n in failed)
        revisit = ", ".join(dict.fromkeys(_gate_setting(n) for n in failed))
        text = (f"They disagree. The gate said {verdict} ({where}) because {why}. The measured result shows "
                f"fine-tuning paid off: {show}. Trust the measurement; revisit the gate's threshold "
                f"({revisit}).")  # fmt: skip
    else:
        extra = f"; not measured: {', '.join(unmeasured)}" if unmeasured else ""
        extra += f"; too small to decide: {', '.join(undecided)}" if undecided else ""
        text = (f"They disagree. The gate said {verdict} ({where}: every measured check passed{extra}), but the "
                f"measured result shows no gain: {show}. Trust the measurement: the gate's checks are necessary, not "
                "sufficient; look at the training data and the recipe (or tighten the gate's thresholds) before "
                "tuning again.")  # fmt: skip
    return {"agree": False, "measured": measured, "text": text}


def step_decision(ctx: RunContext, out: Path) -> dict:
    """The gate on dev (the prior) beside the measured result on test (the posterior), and what they mean together.

    The gate is :func:`workbook.diagnose.should_fine_tune` on :func:`workbook.diagnose.gate_inputs` of every
    baseline's per-query Recall@10 on dev, the rule notebook 02 uses, with bootstrap CIs. Without a dev split (none
    carved either) its gap and cluster checks are not measured: the gate never reads test.
    """
    cfg, st = ctx.cfg, ctx.settings
    valid, syn = ctx.result("01_validate"), ctx.result("03_synthetic")
    ev, forget = ctx.result("06_evaluate"), ctx.result("07_forgetting")
    source = ctx.result("04_negatives")["source"]
    n_pairs = (valid["train_pairs"] if source in ("real", "both") else 0) + (
        syn["pairs"] if source in ("synthetic", "both") else 0
    )
    thresholds = {"target": cfg.target_recall_at_10, "n_pairs": n_pairs, "min_pairs": st.min_pairs,
                  "margin": st.cluster_margin, "domain_slices": st.domain_slices, "metric": "Recall@10",
                  "n_resamples": st.n_resamples, "seed": cfg.seed}  # fmt: skip
    gate_file = ctx.step_dir("02_baselines") / "gate_dev.json"
    if gate_file.is_file():
        measured = read_json(gate_file)
        inputs = gate_inputs(measured["per_query"], measured["slices"], metric=measured["metric"])
        decision = should_fine_tune(**inputs, **thresholds)
        split, best, best_metric = "dev", inputs["best_name"], inputs["best_cheap"]
    else:
        decision = should_fine_tune(None, slice_metrics=None, overall=None, **thresholds)
        split = best = best_metric = None
    gate = {"split": split, "dev": valid.get("dev"), "best_cheap": best, "best_cheap_metric": best_metric,
            "target": cfg.target_recall_at_10, "pairs": n_pairs, "source": source, **decision.to_dict()}  # fmt: skip
    payoff = next(
        c for c in ev["paired"] if (c["a"], c["b"], c["metric"]) == (ev["best_cheap"], ev["best_tuned"], GATE_METRIC)
    )
    beat = payoff["significant"] and payoff["delta"] > 0
    worse = payoff["significant"] and payoff["delta"] < 0
    forgetting = forget.get("paired")
    forgot = bool(forgetting and forgetting["significant"] and forgetting["delta"] < 0)
    if beat:
        verdict = (f"Fine-tuning paid off: {ev['best_tuned']} beats {ev['best_cheap']} on test {GATE_METRIC} by "
                   f"{payoff['delta']:+.4f} (95% CI [{payoff['ci_low']:+.4f}, {payoff['ci_high']:+.4f}]).")  # fmt: skip
        if forgot:
            verdict += (f" It lost general-domain quality on {forget['dataset']} (nDCG@10 {forgetting['delta']:+.4f}): "
                        "weigh that, or merge weights with the base model (notebook 06).")  # fmt: skip
    elif worse:
        verdict = (
            f"Keep {ev['best_cheap']}: the fine-tuned {ev['best_tuned']} is worse on test {GATE_METRIC} "
            f"({payoff['delta']:+.4f}, 95% CI [{payoff['ci_low']:+.4f}, {payoff['ci_high']:+.4f}])."
        )
    else:
        verdict = (
            f"Keep {ev['best_cheap']}: {ev['best_tuned']} did not beat it with a CI excluding zero "
            f"(test {GATE_METRIC} {payoff['delta']:+.4f}, "
            f"95% CI [{payoff['ci_low']:+.4f}, {payoff['ci_high']:+.4f}])."
        )
    gap = decision.numbers[GAP_CHECK]
    side_by_side = [
        {"": "the gate (prior)", "split": split or "none (no dev split)",
         "what": f"{best} {GATE_METRIC} vs target {cfg.target_recall_at_10:g}" if best else "not measured",
         "value": best_metric, "CI low": gap["ci_low"], "CI high": gap["ci_high"], "says": decision.verdict},
        {"": "the measurement (posterior)", "split": "test",
         "what": f"{ev['best_tuned']} − {ev['best_cheap']} {GATE_METRIC}, paired", "value": payoff["delta"],
         "CI low": payoff["ci_low"], "CI high": payoff["ci_high"],
         "says": "tuned better" if beat else "tuned worse" if worse else "no difference (CI includes 0)"},
    ]  # fmt: skip
    return {
        "gate": gate,
        "payoff": payoff,
        "tuned_beats_best_cheap": bool(beat),
        "forgetting": forgetting,
        "forgot": forgot,
        "verdict": verdict,
        "side_by_side": side_by_side,
        "agreement": gate_vs_measurement(gate, payoff, ev["best_cheap"], ev["best_tuned"]),
    }
