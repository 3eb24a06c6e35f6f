"""The run report, ``report.md`` and a self-contained ``report.html``: every number read from the steps' JSON files."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import pandas as pd

from workbook.evaluate import PairedComparison
from workbook.files import atomic_write, read_json
from workbook.pipeline.devsplit import dev_note
from workbook.pipeline.render import Block, fmt, render_html, render_markdown
from workbook.pipeline.settings import UNHASHED, PipelineSettings
from workbook.pipeline.store import MANIFEST, RESULT, RUN_FILE, frame_from_json

FIGURES = "figures"
#: The steps whose outputs the report reads, in order.
STEP_NAMES = ("01_validate", "02_baselines", "03_synthetic", "04_negatives", "05_finetune", "06_evaluate",
              "07_forgetting", "08_decision")  # fmt: skip


def _result(run_dir: Path, step: str) -> dict:
    return read_json(run_dir / step / RESULT)


def _p_text(row: dict) -> str:
    """A saved paired comparison's p-value as prose writes it (``p ≤ 0.001`` at the test's floor)."""
    names = {f.name for f in fields(PairedComparison)}
    return PairedComparison(**{k: v for k, v in row.items() if k in names}).p_text


def _paired_table(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(
        [{"comparison": f"{r['metric']}: {r['b']} − {r['a']}", "queries": r["queries"], "A": r["mean_a"],
          "B": r["mean_b"], "delta": r["delta"], "CI low": r["ci_low"], "CI high": r["ci_high"],
          "p-value": _p_text(r), "B better": r["b_better"], "A better": r["a_better"],
          "CI excludes 0": r["significant"]} for r in rows]
    ).set_index("comparison")  # fmt: skip
    return frame


def _count(value) -> str:
    """A count as a whole number (a dash when missing)."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{int(value):,}"


_MARKS = {"pass": "x", "fail": " ", "too small to decide": "?", "not measured": "-"}


def _gate_blocks(gate: dict) -> list[Block]:
    """The should-you-fine-tune gate: its verdict, each check with its outcome and 95% CI, the domain slices."""
    verdict = gate.get("verdict") or ("GO" if gate["go"] else "NO-GO")
    status = gate.get("status") or {n: "pass" if ok else "fail" for n, ok in gate["checks"].items()}
    out = [Block("h3", f"Should you fine-tune? {verdict} (the gate, from the baselines)")]
    if gate.get("split"):
        where = f"Measured on the {gate['split']} split"
        if (gate.get("dev") or {}).get("source") == "carved from train":
            where += " (held out of train)"
        out.append(Block("p", f"{where}: best cheap method {gate['best_cheap']} reaches Recall@10 "
                              f"{fmt(gate['best_cheap_metric'])} against a target of {fmt(gate['target'])}; "
                              f"{gate['pairs']:,} training pairs ({gate.get('source', '')} source)."))  # fmt: skip
    else:
        out.append(Block("p", "No dev split to measure the cheap methods on (and too few train queries to hold one "
                              "out): the gap and cluster checks are not measured, since the gate never reads test; "
                              f"{gate['pairs']:,} training pairs ({gate.get('source', '')} source)."))  # fmt: skip
    out.append(Block("list", [f"[{_MARKS.get(status[n], ' ')}] {n}: {status[n]}" for n in gate["checks"]]
                     + [str(r) for r in gate["reasons"]]))  # fmt: skip
    out.append(Block("p", "Rule: GO when every measured check passes; a check the data cannot measure is not "
                          "measured, not failed; a check whose 95% bootstrap CI straddles its threshold is too small "
                          "to decide, and a GO that rests on one reads GO (uncertain)."))  # fmt: skip
    if gate.get("numbers"):
        rows = {n: {"outcome": status[n], **{k: _count(v) if k == "queries" or isinstance(v, int) else fmt(v)
                                            for k, v in nums.items()}}
                for n, nums in gate["numbers"].items()}  # fmt: skip
        frame = pd.DataFrame.from_dict(rows, orient="index")
        frame.index.name = "check"
        out.append(Block("table", frame, caption="the gate's checks: value, threshold, 95% bootstrap CI, queries"))
    if gate.get("slices"):
        frame = pd.DataFrame(gate["slices"]).set_index("slice")
        out.append(Block("table", frame, caption="domain slices: excess error over the overall error, 95% CI"))
    return out


def _settings_table(run: dict, run_dir: Path) -> pd.DataFrame:
    """Every setting some step's result depends on (the keys its manifest hashed), its value, and whether it was
    changed from the default."""
    hashed = {k for step in STEP_NAMES for k in read_json(run_dir / step / MANIFEST)["inputs"]["settings"]}
    used = sorted(hashed - UNHASHED)
    defaults = PipelineSettings()
    rows = []
    for key in used:
        value = run["settings"].get(key)
        default = getattr(defaults, key, None)
        changed = hasattr(defaults, key) and list(default) != value if isinstance(default, tuple) else \
            hasattr(defaults, key) and default != value  # fmt: skip
        rows.append({"setting": key, "value": str(value), "changed from default": "yes" if changed else ""})
    return pd.DataFrame(rows).set_index("setting")


def _shown_path(path: str) -> str:
    """``path`` relative to the working directory when it lies under it (reports get shared; home paths do not)."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path


def build_report(run_dir: str | Path) -> tuple[list[Block], str]:
    """The report's blocks and title, read from the run folder's step outputs (figures drawn into ``figures/``)."""
    from workbook.pipeline import figures  # lazy: matplotlib takes seconds to import, and only drawing needs it

    run_dir = Path(run_dir)
    figs = run_dir / FIGURES
    run = read_json(run_dir / RUN_FILE)
    valid = _result(run_dir, "01_validate")
    base = _result(run_dir, "02_baselines")
    syn = _result(run_dir, "03_synthetic")
    neg = _result(run_dir, "04_negatives")
    tune = _result(run_dir, "05_finetune")
    ev = _result(run_dir, "06_evaluate")
    forget = _result(run_dir, "07_forgetting")
    dec = _result(run_dir, "08_decision")
    title = f"Fine-tuning report: {valid['dataset']} ({run['mode']} mode)"
    b: list[Block] = [Block("h1", title)]
    dev = valid.get("dev") or {}
    b.append(Block("p", f"Dataset `{_shown_path(run['dataset_dir'])}`: {valid['docs']:,} docs, "
                        f"{valid['queries']:,} queries, "
                        f"splits {', '.join(valid['splits'])}. Run started {run['started']}, "
                        f"{run.get('seconds', 0):.0f} s in this invocation."))  # fmt: skip
    note = dev_note(dev)
    if dev.get("source") == "carved from train":
        b.append(Block("p", f"**Dev split.** {note[0].upper() + note[1:]}. Every choice (the gate, the best cheap "
                            "method and tuned variant, the in-training evaluator) is made on dev; test is only "
                            "measured."))  # fmt: skip
    elif dev.get("source") == "none":
        b.append(Block("p", f"**Dev split.** {note[0].upper() + note[1:]}. The best cheap method is the base model's "
                            "hybrid with BM25 and the tuned variant the plain fine-tuned model, and the gate's gap and "
                            "cluster checks are not measured. Test is only measured."))  # fmt: skip

    # -- verdict
    gate = dec["gate"]
    b.append(Block("h2", "Verdict"))
    b.append(Block("p", f"**{dec['verdict']}**"))
    b.extend(_gate_blocks(gate))
    b.append(Block("h3", "Did fine-tuning beat the best cheap method? "
                         f"{'yes' if dec['tuned_beats_best_cheap'] else 'no'}"))  # fmt: skip
    b.append(Block("table", _paired_table([dec["payoff"]]),
                   caption=f"Test split, paired per query; {ev['best_tuned']} and {ev['best_cheap']}: "
                           f"{ev.get('selection', ev['selected_on'])}."))  # fmt: skip
    if "side_by_side" in dec:
        b.append(Block("h3", "The gate and the measurement, side by side"))
        b.append(Block("table", pd.DataFrame(dec["side_by_side"]).set_index(""),
                       caption="the gate is the prior (dev, before training); the measurement is the posterior "
                               "(test, after training)"))  # fmt: skip
        b.append(Block("p", dec["agreement"]["text"]))

    # -- dataset
    b.append(Block("h2", "Dataset"))
    b.append(Block("table", frame_from_json(valid["stats"])))

    # -- baselines
    b.append(Block("h2", "Baselines"))
    for split, metrics in base["metrics"].items():
        b.append(Block("table", frame_from_json(metrics), caption=f"{split} split, mean over queries"))
    if "dev" in base.get("slices", {}):
        b.append(Block("table", frame_from_json(base["slices"]["dev"]),
                       caption="dev Recall@10 by query slice (last row: queries per slice)"))  # fmt: skip

    # -- test results
    b.append(Block("h2", f"Test results ({ev['queries']:,} queries)"))
    table = frame_from_json(ev["metrics"])
    b.append(Block("table", table, caption="test split, mean over queries"))
    ci = frame_from_json(ev["ci"])
    b.append(Block("table", ci, caption="test split, mean and 95% bootstrap CI"))
    b.append(
        Block(
            "figure",
            figures.figure_methods(ci, ev["best_tuned"], figs, f"Test: every method with 95% CIs ({valid['dataset']})"),
            caption="methods on test with 95% CIs",
        )
    )
    b.append(Block("h3", "Paired comparisons (test)"))
    b.append(
        Block(
            "table",
            _paired_table(ev["paired"]),
            caption="B − A per query: mean difference, 95% bootstrap CI, paired randomisation p-value",
        )
    )
    if "slices" in ev:
        slices = frame_from_json(ev["slices"])
        b.append(Block("h3", "By slice (test Recall@10)"))
        b.append(Block("table", slices, caption="last row: queries per slice"))
        shown = list(dict.fromkeys([ev["base_method"], "BM25", ev["best_cheap"], "fine-tuned", ev["best_tuned"]]))
        b.append(Block("figure", figures.figure_slices(slices, shown, figs, "Test Recall@10 by slice",
                                                     ev.get("slice_order", ())),
                       caption="Recall@10 by slice"))  # fmt: skip

    # -- training data
    b.append(Block("h2", "Training data"))
    syn_text = {"generated": f"Generated by `{syn.get('generator')}` ({syn.get('template')} prompt) for "
                             f"{syn.get('docs')} docs: {syn.get('candidates')} candidate queries, {syn['pairs']} kept "
                             f"after filtering ({syn.get('generated_now')} docs generated now, "
                             f"{syn.get('reused')} reused from the cache).",
                "cached set": f"The case study's committed synthetic set: {syn['pairs']:,} pairs over "
                              f"{syn['docs']:,} docs.",
                "not asked": "No synthetic queries (the dataset has a train split; set synthetic = \"always\" to "
                             "add them).",
                "unavailable": f"The case study's synthetic set is not built: {syn.get('why', '')}"}  # fmt: skip
    style = syn.get("examples") or {}
    if syn["status"] == "generated" and style.get("examples"):
        syn_text["generated"] += (f" The prompt's style came from the team's {style['examples']} example questions "
                                  f"(`examples.jsonl`, {style['with_doc']} of them with their document).")
    b.append(Block("p", "**Synthetic queries.** " + syn_text.get(syn["status"], syn["status"])))
    if syn.get("filter_report"):
        report = pd.DataFrame(syn["filter_report"]).set_index("filter")
        b.append(Block("table", report, caption="synthetic queries: each filter in order"))
    kinds = {
        "mined": "mined from the base model's neighbours",
        "lookalike": "the positive's lookalike siblings (lookalikes.jsonl), mined ones filling rows with fewer",
        "both": "one lookalike sibling (lookalikes.jsonl) and one mined negative per row",
    }
    negs = neg.get("negatives", "mined")
    mixes = neg.get("negative_mix", [])
    mix = "".join(f" {m['rows_with_sibling']:,} of {m['rows']:,} rows got a sibling." for m in mixes)
    b.append(Block("p", f"**Hard negatives.** Source `{neg['source']}`: {neg['rows']:,} training rows; negatives: "
                        f"{kinds.get(negs, negs)}.{mix} Known false negatives among the mined ones:"))  # fmt: skip
    b.append(Block("table", frame_from_json(neg["audit"])))

    # -- fine-tuning
    card, first = tune["card"], tune.get("first_card", tune["card"])  # with the sibling stage: the final model's card
    b.append(Block("h2", "Fine-tuning"))
    rec = first.get("recipe", {})
    b.append(Block("p", f"Model `{_shown_path(tune['model_path'])}`: recipe {rec.get('name')} "
                        f"(loss {rec.get('loss')}, batch "
                        f"{rec.get('batch_size')}, lr {rec.get('learning_rate')}), {first.get('data', {}).get('rows')} "
                        f"rows, {first.get('steps')} steps, {first.get('train_seconds')} s of training."))  # fmt: skip
    if tune.get("sibling_stage"):
        b.append(Block("p", f"**Sibling stage** (a short second stage on lookalike siblings): {tune['sibling_stage']}"
                            "; the dev metrics below are the final model's."))  # fmt: skip
    if card.get("dev_metrics"):
        b.append(Block("table", pd.DataFrame({"fine-tuned": card["dev_metrics"]}).T,
                       caption=card.get("dev_metrics_scope", "dev")))  # fmt: skip

    # -- truncation
    trunc = frame_from_json(ev["truncation"])
    trunc.index.name = "dim"
    b.append(Block("h2", "Embedding truncation"))
    b.append(Block("p", "Recall@10 and nDCG@10 on test when only the first k dimensions are kept (renormalised); "
                        "a Matryoshka recipe is trained to keep quality at small k."))  # fmt: skip
    b.append(Block("table", trunc))
    b.append(Block("figure", figures.figure_truncation(trunc, figs, "Test Recall@10 by embedding size"),
                   caption="truncation curve"))  # fmt: skip

    # -- lookalikes
    if "collapse" in ev:
        b.append(Block("h2", "Lookalikes"))
        b.append(Block("table", frame_from_json(ev["collapse"]), caption="lookalike collapse on the test queries"))
        drawn_path = run_dir / "06_evaluate" / "lookalike_map.json"
        drawn = read_json(drawn_path) if drawn_path.is_file() else {}
        if drawn.get("points"):
            sep = pd.DataFrame(drawn["separation"])
            b.append(Block("p", f"{len(drawn['groups'])} lookalike groups, each on one shared map of both models "
                                f"({drawn['method']}), with its test queries linked to their gold code. Separation "
                                "(measured in the full embedding space): the share of a group's test queries whose "
                                f"most similar code in the group is their own; mean {fmt(sep['base'].mean())} base, "
                                f"{fmt(sep['fine-tuned'].mean())} fine-tuned."))  # fmt: skip
            b.append(Block("figure", figures.figure_lookalikes(drawn, figs, "Lookalike groups before and after "
                                                               "fine-tuning"), caption="lookalike groups"))  # fmt: skip
        if drawn.get("margins"):
            b.append(Block("figure", figures.figure_lookalike_distributions(drawn, figs),
                           caption="sibling-pair cosines and gold-vs-sibling margins, base vs fine-tuned"))  # fmt: skip

    # -- forgetting
    b.append(Block("h2", "Forgetting check"))
    if forget.get("status") == "done":
        pc = forget["paired"]
        b.append(Block("p", f"{forget['dataset']} test ({forget['docs']:,} docs, {forget['queries']} queries): "
                            f"nDCG@10 {fmt(pc['mean_a'])} base → {fmt(pc['mean_b'])} fine-tuned, delta "
                            f"{pc['delta']:+.4f} (95% CI [{pc['ci_low']:+.4f}, {pc['ci_high']:+.4f}], "
                            f"{_p_text(pc)})."))  # fmt: skip
        b.append(Block("table", frame_from_json(forget["metrics"])))
    else:
        b.append(Block("p", forget.get("status", "skipped")))

    # -- timings and settings
    b.append(Block("h2", "Timings and memory"))
    rows = []
    for rec_ in run.get("steps", []):
        manifest = read_json(run_dir / rec_["name"] / MANIFEST)
        peak = manifest.get("peak_rss_mb")
        rows.append({"step": rec_["name"], "this invocation": rec_["status"],
                     "seconds now": f"{rec_['seconds']:.1f}", "seconds when it ran": f"{manifest['seconds']:.1f}",
                     "peak RSS (GiB)": "not measured" if peak is None else f"{peak / 1024:.2f}",
                     "finished": manifest["finished"]})  # fmt: skip
    if rows:
        per_step = all(r.get("peak_rss_per_step", True) for r in run.get("steps", []))
        scope = "the step's own (reset before it started)" if per_step else "the process's so far (no reset on this OS)"
        b.append(Block("table", pd.DataFrame(rows).set_index("step"),
                       caption="a cached step was skipped: its inputs had not changed; peak RSS is "
                               f"{scope}, from the run in which it ran"))  # fmt: skip
    b.append(Block("h2", "Settings"))
    b.append(Block("table", _settings_table(run, run_dir)))
    shown = _shown_path(str(run_dir))
    b.append(Block("p", f"Log: `{shown}/run.log`. Each step's outputs: `{shown}/<NN_step>/result.json`."))
    return b, title


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``run_dir`` (atomically) from its steps' outputs.

    Returns:
        The two paths.
    """
    run_dir = Path(run_dir)
    blocks, title = build_report(run_dir)
    md, page = run_dir / "report.md", run_dir / "report.html"
    atomic_write(md, render_markdown(blocks, run_dir))
    atomic_write(page, render_html(blocks, title))
    return md, page
