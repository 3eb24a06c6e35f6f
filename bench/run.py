"""Run every benchmark, check the targets, and write ``bench/results/summary.json`` and ``bench/README.md``'s tables.

Usage (``make bench`` runs this)::

    .venv/bin/python bench/run.py                 # mining, speed, quality, then the test suite's wall time
    .venv/bin/python bench/run.py --skip-tests    # everything but timing the test suite
    .venv/bin/python bench/run.py --report-only   # rebuild summary + README tables from the JSON already there

Targets are reported as met / not met; a missed target never fails the command (CI does not run benchmarks).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "bench" / "README.md"
TUNED_KEY = "tuned MiniLM"  # the row of notebook 06's headline table whose name starts with this


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _target(name: str, value, goal: str, met: bool | str | None) -> dict:
    """A target's row; ``met`` is True, False, None (not measured) or a status of its own (e.g. "partly measured")."""
    status = met if isinstance(met, str) else "not measured" if met is None else "met" if met else "NOT met"
    return {"target": name, "measured": value, "goal": goal, "status": status}


def memory_targets(memory: dict | None) -> list[dict]:
    """Peak RSS <= 4 GiB: the largest step of each recorded `workbook run`, and the largest full-mode notebook."""
    out = []
    for key, run in (memory or {}).get("runs", {}).items():
        if key.endswith("-before-fix"):  # kept for the before/after table, not a target of today's code
            continue
        peaks = [(s["peak_rss_mb"], s["step"]) for s in run["steps"] or [] if s["peak_rss_mb"] is not None]
        worst = max(peaks) if peaks else None
        out.append(_target(f"workbook run on {run['corpus']}, largest step's peak RSS",
                           f"{worst[0] / 1024:.2f} GiB ({worst[1]})" if worst else None, "<= 4 GiB",
                           None if worst is None else worst[0] <= 4096))  # fmt: skip
    nbs = ((memory or {}).get("notebooks") or {}).get("notebooks") or []
    peaks = [(r["peak_rss_mb"], r["notebook"]) for r in nbs if r["peak_rss_mb"] is not None]
    full = ((memory or {}).get("notebooks") or {}).get("mode") == "full"
    worst = max(peaks) if peaks and full else None
    course = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    missing = [n for n in course if n not in {r["notebook"] for r in nbs}]
    partial = f"; {len(course) - len(missing)} of {len(course)} notebooks in the record" if missing else ""
    # a record that misses notebooks cannot say the target is met: only that the recorded ones stay under it
    met = None if worst is None else "partly measured" if missing and worst[0] <= 4096 else worst[0] <= 4096
    out.append(_target("notebooks in full mode, largest peak RSS",
                       f"{worst[0] / 1024:.2f} GiB ({worst[1]}{partial})" if worst else None, "<= 4 GiB",
                       met))  # fmt: skip
    return out


def targets(mining: dict | None, quality: dict | None, e2e: dict | None) -> list[dict]:
    """Each target of issue 10 with its measured value and status."""
    out = []
    case = (e2e or {}).get("casestudy")
    minutes = round(case["casestudy_seconds"] / 60, 1) if case else None
    warm = bool(case and case.get("warm_cache"))
    measured = (f"{minutes} min" + (" (warm caches)" if warm else "")) if case else None
    out.append(_target("full case study (make casestudy)", measured, "<= 60 min",
                       None if case is None else minutes <= 60))  # fmt: skip
    if warm and minutes <= 60:  # a warm run says nothing about a cold clone
        out[-1]["status"] = "met with warm caches (cold run not measured)"
    suite = (e2e or {}).get("test_suite")
    s_min = round(suite["seconds"] / 60, 1) if suite else None
    out.append(_target("test suite (pytest, fast mode)", f"{s_min} min" if suite else None, "<= 20 min",
                       None if suite is None else s_min <= 20))  # fmt: skip
    miner = next((m for m in (mining or {}).get("methods", []) if m["method"] == "miner"), None)
    rss = miner["peak_rss_mb"] if miner else None
    out.append(_target("mining the full corpus, peak RSS", f"{rss / 1024:.2f} GiB" if miner else None, "<= 4 GiB",
                       None if miner is None else rss <= 4096))  # fmt: skip
    case_q = (quality or {}).get("case_study")
    if case_q:
        test = case_q["test"]
        tuned = next(k for k in test if k.startswith(TUNED_KEY))
        r10 = {k: v["recall@10"] for k, v in test.items()}
        base = r10["dense MiniLM (base)"]
        gain = round(100 * (r10[tuned] - base), 1)
        out.append(_target("tuned MiniLM Recall@10 vs base MiniLM", f"+{gain} pts", ">= +20 pts", gain >= 20))
        names = ("dense mpnet (base)", "BM25", "hybrid MiniLM+BM25", "reranker (hybrid top-k)")
        rivals = {k: r10[k] for k in names if k in r10}
        beat = all(r10[tuned] > v for v in rivals.values())
        out.append(_target("tuned MiniLM Recall@10 above mpnet, BM25, hybrid, reranker",
                           f"{r10[tuned]:.3f} vs " + ", ".join(f"{k} {v:.3f}" for k, v in rivals.items()),
                           "above all", beat if len(rivals) == len(names) else None))  # fmt: skip
        forget = case_q["forgetting"]
        drop = round(100 * (forget["base"] - forget["tuned"]), 2)
        out.append(_target("SciFact nDCG@10 drop, tuned vs base", f"{drop} pts", "<= 1 pt", drop <= 1))
        if "merged_general_loss_test" in forget:  # SciFact test, read once for the alpha chosen on SciFact dev
            mdrop = round(100 * forget["merged_general_loss_test"], 2)
            out.append(_target(f"SciFact test drop, merged model (alpha={forget['chosen_alpha']:g}, chosen on dev)",
                               f"{mdrop} pts", "<= 1 pt", mdrop <= 1))  # fmt: skip
        elif "chosen_alpha" in forget:  # results written before issue 19 (alpha chosen on the SciFact test curve)
            mdrop = round(100 * forget["chosen_general_loss"], 2)
            out.append(_target(f"SciFact drop, merged model (alpha={forget['chosen_alpha']:g})", f"{mdrop} pts",
                               "<= 1 pt", mdrop <= 1))  # fmt: skip
    else:
        for name, goal in (("tuned MiniLM Recall@10 vs base MiniLM", ">= +20 pts"),
                           ("tuned MiniLM Recall@10 above mpnet, BM25, hybrid, reranker", "above all"),
                           ("SciFact nDCG@10 drop, tuned vs base", "<= 1 pt")):  # fmt: skip
            out.append(_target(name, None, goal, None))
    return out


def lookalike_targets(quality: dict | None) -> list[dict]:
    """Issue 20's targets: on the test split, over the whole corpus, for the shipped model (``bench/lookalike.py
    --test``, with 95% CIs; before it ran, notebook 06's collapse table); the dev comparison of ``bench/lookalike.py``
    picks the way and is not a test measurement."""
    test = ((quality or {}).get("lookalike") or {}).get("test")
    if test:
        rows = []
        for metric, t in test["targets"].items():
            lo, hi = t["ci"]
            name = f"{metric}, shipped model, test, whole corpus"
            rows.append(_target(name, f"{t['measured']:.3f} [{lo:.3f}, {hi:.3f}]", t["goal"], t["met"]))
        return rows
    case = (quality or {}).get("case_study") or {}
    six = case.get("lookalike_test")  # written by notebook 06 in full mode
    rows = []
    for name, key, goal, ok in (
        ("sibling confusion@10, tuned, test", "sibling confusion rate@10", "<= 0.15", 0.15),
        ("test queries with gold below a sibling, tuned", "queries with negative margin", "<= 20%", 0.20),
    ):
        value = (six or {}).get(key)
        met = None if value is None else value <= ok
        rows.append(_target(name, None if value is None else f"{value:.3f}", goal, met))
    return rows


def _missing_runs(look: dict) -> str:
    from workbook.train.lookalike import LOOKALIKE_VARIANTS

    missing = [v.name for v in LOOKALIKE_VARIANTS if v.name not in look["runs"]]
    return f" (runs still to measure: {', '.join(missing)})" if missing and not look.get("picked") else ""


def _confusion(m: dict) -> str:
    """A run's sibling confusion@10 with its 95% CI, as the lookalike tables print it."""
    lo, hi = m["sibling confusion@10 CI"]
    return f"{m['sibling confusion@10']:.3f} [{lo:.3f}, {hi:.3f}]"


def _paired(paired: dict, queries: bool = False) -> str:
    """Each metric of a paired comparison record: delta [95% CI], p-value (and the query count)."""
    return "; ".join(f"{metric} {p['delta']:+.4f} [{p['ci'][0]:+.4f}, {p['ci'][1]:+.4f}], p = {p['p_value']:.3f}"
                     + (f" ({p['queries']:,} queries)" if queries else "")
                     for metric, p in paired.items() if isinstance(p, dict))  # fmt: skip


def md_lookalike(quality: dict | None) -> str:
    look = (quality or {}).get("lookalike")
    if not look:
        return "_not measured yet_ (run `bench/lookalike.py`)"
    cand = look.get("candidates") or {}
    lines = [f"Dev split, {look['rows']:,} training rows per run, ranked over {cand.get('docs', 0):,} candidate docs "
             f"({cand.get('what', '')}); the base model over the whole corpus for scale. The screen's pick by the rule "
             f"fixed before the runs: **{look.get('picked') or 'not yet'}**{_missing_runs(look)}, confirmed or not at "
             "the full budget below. Sibling-pair cosine: every "
             "group on the whole corpus, the groups wholly inside the pool otherwise.", "",
             "| model | Recall@10 | sibling confusion@10 (95% CI) | gold below a sibling | median margin | "
             "sibling-pair cosine |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    rows = {"base MiniLM, whole corpus": look["base whole corpus"], "base MiniLM": look["base"]}
    rows |= {f"tuned: {name}": m for name, m in look["runs"].items()}
    for name, m in rows.items():
        lines.append(f"| {name} | {m['recall@10']:.3f} | {_confusion(m)} | "
                     f"{m['gold below a sibling']:.3f} | {m['margin gold - best sibling (median)']:+.4f} | "
                     f"{m['sibling pair cosine (mean)']:.3f} |")  # fmt: skip
    full = look.get("full_budget") or {}
    if full:
        lines += ["", "Confirmed at the full budget (`bench/lookalike.py --full-budget`; every training row, dev "
                  "over the whole corpus):", "",
                  "| full budget | rows | steps | Recall@10 | nDCG@10 | MRR@10 | sibling confusion@10 (95% CI) | "
                  "gold below a sibling |", "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for name, m in full.items():
            lo, hi = m.get("sibling confusion@10 CI", (float("nan"), float("nan")))
            lines.append(f"| {name} negatives | {m['rows']:,} | {m['steps']} | {m['recall@10']:.4f} | "
                         f"{m['ndcg@10']:.4f} | {m['mrr@10']:.4f} | {m.get('sibling confusion@10', float('nan')):.3f} "
                         f"[{lo:.3f}, {hi:.3f}] | {m.get('gold below a sibling', float('nan')):.3f} |")  # fmt: skip
    paired = look.get("full_budget_paired")
    if paired:
        lines += ["", f"Paired, {paired['what']}: " + _paired(paired, queries=True) + ". The same rule picks "
                  f"**{look.get('full_budget_picked')}**: the final training (`workbook.train.final_training`)."]
    test = look.get("test")
    if test:
        lines += ["", f"On test, once (`bench/lookalike.py --test`; {test['docs ranked']:,} codes, the shipped model "
                  f"`{test['final_model']}`, {test['negatives']} negatives), against issue 20's targets:", "",
                  "| test split | Recall@10 | sibling confusion@10 (95% CI) | gold below a sibling | median margin |",
                  "|---|---:|---:|---:|---:|"]  # fmt: skip
        for name, m in (("base MiniLM", test["base"]), ("shipped model", test["final"])):
            lines.append(f"| {name} | {m['recall@10']:.4f} | {_confusion(m)} | "
                         f"{m['gold below a sibling']:.3f} | {m['margin gold - best sibling (median)']:+.4f} |")
    stage = look.get("sibling_stage")
    if stage:
        lines += ["", "A short second stage (`bench/lookalike.py --sibling-stage`, `workbook.train.stage`): "
                  f"{stage['what']} ({stage['steps']} steps):", "",
                  "| dev split, whole corpus | Recall@10 | nDCG@10 | sibling confusion@10 (95% CI) | "
                  "gold below a sibling | median margin |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for name in ("final", "sibling stage", "control"):
            m = stage.get(name)
            if m:
                lines.append(f"| {name} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f} | {_confusion(m)} | "
                             f"{m['gold below a sibling']:.3f} | {m['margin gold - best sibling (median)']:+.4f} |")
        lines += ["", "Paired, sibling stage minus final, per dev query: " + _paired(stage["paired"]) + "."]
        if stage.get("control_paired"):
            lines += ["", "Paired, control minus final, per dev query: " + _paired(stage["control_paired"]) + "."]
        shipped = ("it is the shipped model's second stage (`workbook.train.final_model`)"
                   if stage["picked"] == "sibling stage" else "the shipped model is the final training alone")
        lines += ["", f"The pick rule prefers **{stage['picked']}**: {shipped}."]
    return "\n".join(lines)


def all_targets(mining: dict | None, quality: dict | None, e2e: dict | None, memory: dict | None) -> list[dict]:
    """Every target row of the table, in order (the README block and its test both build it here)."""
    return targets(mining, quality, e2e) + lookalike_targets(quality) + memory_targets(memory)


def md_targets(rows: list[dict]) -> str:
    lines = ["| target | goal | measured | status |", "|---|---|---|---|"]
    lines += [f"| {r['target']} | {r['goal']} | {r['measured'] or '—'} | **{r['status']}** |" for r in rows]
    return "\n".join(lines)


def md_quality(quality: dict | None) -> str:
    if not quality:
        return "_not measured yet_"
    sci = quality["scifact"]
    lines = ["| SciFact test (MiniLM) | nDCG@10 | Recall@10 | Recall@100 |", "|---|---:|---:|---:|",
             "| measured here | " + " | ".join(f"{sci['measured'][m]:.4f}" for m in sci["mteb"]) + " |",
             "| published (MTEB) | " + " | ".join(f"{sci['mteb'][m]:.4f}" for m in sci["mteb"]) + " |"]  # fmt: skip
    case = quality.get("case_study")
    if case:
        cols = ["recall@1", "recall@10", "recall@100", "precision@10", "mrr@10", "map@100", "ndcg@10"]
        header = "| method | " + " | ".join(cols) + " | Recall@10 95% CI |"
        lines += ["", f"ICD-10-CM test split, full mode (from `{case['source']}`):", "", header,
                  "|---|" + "---:|" * (len(cols) + 1)]  # fmt: skip
        for name, row in case["test"].items():
            ci = f"[{row['recall@10 lo']:.3f}, {row['recall@10 hi']:.3f}]"
            lines.append(f"| {name} | " + " | ".join(f"{row[c]:.4f}" for c in cols) + f" | {ci} |")
    else:
        lines += ["", "ICD-10-CM case study: _not measured yet_ (run `make casestudy`)."]
    return "\n".join(lines)


def md_speed(speed: dict | None, mining: dict | None) -> str:
    parts = []
    if speed:
        sys.path.insert(0, str(ROOT / "bench"))
        from speed import table as speed_table

        parts.append(speed_table(speed))
    if mining:
        from mining import table as mining_table

        parts.append(mining_table(mining))
    return "\n\n".join(parts) or "_not measured yet_"


def notebook_cell(rec: dict | None) -> str:
    """One notebook's wall time and peak RSS in the end-to-end table ("-": not run, or not reached)."""
    if rec is None:
        return "-"
    peak = "peak not measured" if rec.get("peak_rss_mb") is None else f"{rec['peak_rss_mb'] / 1024:.2f} GiB"
    return f"{rec['seconds'] / 60:.1f} min, {peak}"


def md_e2e(e2e: dict | None) -> str:
    if not e2e:
        return "_not measured yet_"
    suite, case, pipe = e2e.get("test_suite"), e2e.get("casestudy"), e2e.get("workbook_casestudy")
    lines = ["| run | wall time |", "|---|---:|"]
    if suite:
        lines.append(f"| test suite (`pytest`, fast mode; {suite['summary']}) | {suite['seconds'] / 60:.1f} min |")
    fresh = e2e.get("fresh_clone")
    if fresh:
        lines.append(f"| `{fresh['command']}` from a fresh clone, empty pip cache, set-up included ({fresh['pytest']}; "
                     f"{fresh['machine']}) | {fresh['seconds'] / 60:.1f} min |")  # fmt: skip
    if case:
        warm = {True: "; caches of earlier runs reused", False: "; from a cold cache"}.get(case.get("warm_cache"), "")
        lines.append(f"| `make casestudy` (notebooks in full mode + `workbook casestudy`{warm}) | "
                     f"{case['casestudy_seconds'] / 60:.1f} min |")  # fmt: skip
    if pipe:
        reused = "; the model notebook 05 trained was reused" if (pipe.get("finetune_seconds") or 0) < 60 else ""
        lines.append(f"| `workbook casestudy` alone, last run ({pipe['steps_ran']} steps ran, {pipe['steps_cached']} "
                     f"cached{reused}) | {pipe['seconds'] / 60:.1f} min |")  # fmt: skip
        lines.append(f"| `workbook casestudy`, each step's time when it last ran, added up | "
                     f"{pipe['steps_seconds'] / 60:.1f} min |")  # fmt: skip
    runs = sorted((e2e.get("casestudy_runs") or {}).items())
    for _, run in runs:
        state = "empty caches (no `.cache/` embeddings, no `artifacts/`)" if not run["warm_cache"] else "warm caches"
        if run.get("source", "").endswith("in a fresh clone"):  # bench/cold_casestudy.sh
            setup = run["setup_seconds"] / 60
            state = f"a fresh clone of {run['commit']} (empty caches), after its set-up ({setup:.0f} min)"
        flag = " FAST=1" if run["mode"] == "fast" else ""
        side = f"; {run['jobs']} notebooks side by side" if (run.get("jobs") or 1) > 1 else ""
        together = run.get("peak_pss_mb_together")
        if together:
            side += f"; all their processes held at most {together / 1024:.2f} GiB (PSS, sampled each second)"
        if run.get("complete", True):
            wall = f"{run['seconds'] / 60:.1f} min"
        else:  # stopped midway, or still running when recorded: what it finished, and the time that took
            side += (f"; **not finished** when recorded: {run['notebooks_finished']} of its {run['notebooks_total']} "
                     f"notebooks done, so not a measurement of the whole")  # fmt: skip
            wall = f"{run['notebooks_seconds'] / 60:.1f} min for those"
        lines.append(f"| `make casestudy{flag}`, {state}; {run['cpu']}, {run['machine']}{side} | {wall} |")
    if runs:
        lines += ["", "Each notebook of those runs (wall time, peak RSS):", "",
                  "| notebook | " + " | ".join(f"`make casestudy`, {name}" for name, _ in runs) + " |",
                  "|---|" + "---:|" * len(runs)]  # fmt: skip
        names = sorted({nb for _, run in runs for nb in run["notebooks"]})
        for nb in names:
            cells = [notebook_cell(r["notebooks"].get(nb)) for _, r in runs]
            lines.append(f"| `{nb}` | " + " | ".join(cells) + " |")
        if any(r.get("jobs", 1) > 1 for _, r in runs):
            lines += ["", "Side by side, a notebook's wall time includes the share of the two cores its neighbour "
                      "took, so the columns add up to more than the run: the run's wall time above is the measure. The "
                      "memory held together is the peak of the PSS of every process the notebooks ran (kernels, "
                      "servers, Ray nodes), sampled each second."]  # fmt: skip
    sys.path.insert(0, str(ROOT / "bench"))
    from e2e import cold_profiles

    profiles = sorted(cold_profiles(e2e).values(), key=lambda p: p["seconds"])
    if profiles:
        slowest = profiles[-1]
        lines += ["", "Where a cold test run's time goes, per test module and notebook (nbval times each cell), on "
                  "each CPU it was profiled on:", ""]  # fmt: skip
        lines += [f"- **{p['cpu']}**: {p['items']} items, {p['seconds'] / 60:.1f} min of pytest; {p['machine']}"
                  for p in profiles]  # fmt: skip
        lines += ["", "| test module or notebook | " + " | ".join(f"min, {p['cpu']}" for p in profiles) + " |",
                  "|---|" + "---:|" * len(profiles)]  # fmt: skip
        shown = list(slowest["per_file"])[:12]
        for name in shown:
            cells = [f"{p['per_file'][name] / 60:.1f}" if name in p["per_file"] else "-" for p in profiles]
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
        rest = [sum(sec for n, sec in p["per_file"].items() if n not in shown) / 60 for p in profiles]
        lines.append(f"| the other {len(slowest['per_file']) - len(shown)} | " + " | ".join(f"{r:.1f}" for r in rest)
                     + " |")  # fmt: skip
        for p in profiles:
            if p.get("computed"):
                lines += ["", f"What the cold run on {p['cpu']} computed, from its work log (`WORKBOOK_WORKLOG=FILE`: "
                          "one line per encode, training, reranking or generation; a cache hit writes none):", ""]
                lines += md_computed(p["computed"])
    for name, run in runs:
        if run.get("computed"):
            upto = "" if run.get("complete", True) else ", up to where it stopped (the unfinished notebook's work too)"
            log = f"`runs/casestudy-{run['mode']}/worklog.jsonl`"
            lines += ["", f"What `make casestudy`, {name}, computed{upto} ({log}):", ""]
            lines += md_computed(run["computed"])
    return "\n".join(lines)


def md_computed(computed: dict) -> list[str]:
    """A work log's summary (``bench/e2e.py``'s ``computed``) as table lines: pieces, minutes and repeats per kind."""
    lines = ["| work | pieces | min | of which redoing a piece done earlier in the run (pieces, min) |",
             "|---|---:|---:|---:|"]
    for kind, k in sorted(computed["kinds"].items(), key=lambda kv: -kv[1]["seconds"]):
        lines.append(f"| {kind} | {k['count']:,} | {k['seconds'] / 60:.1f} | {k['repeated']:,}, "
                     f"{k['repeated_seconds'] / 60:.1f} |")  # fmt: skip
    count = sum(k["count"] for k in computed["kinds"].values())
    share = computed.get("share_of_pytest")
    share = f" ({share:.0%} of pytest's time; the rest is process start-ups and imports, servers and clusters, and " \
        "work too small to log)" if share else ""  # fmt: skip
    again = sum(k["repeated"] for k in computed["kinds"].values())
    lines.append(f"| all logged work{share} | {count:,} | {computed['seconds'] / 60:.1f} | {again:,}, "
                 f"{computed['repeated_seconds'] / 60:.1f} |")  # fmt: skip
    return lines


def md_precision(precision: dict | None) -> str:
    if not precision:
        return "_not measured yet_ (run `bench/precision.py`)"
    sys.path.insert(0, str(ROOT / "bench"))
    from precision import table as precision_table

    flags = ", ".join(precision["cpu_flags"]) or "no flags read"
    return (
        f"{precision['machine']} ({flags}; native bf16: {'yes' if precision['native_bf16'] else 'no'}; "
        f"{precision['threads']} threads):\n\n" + precision_table(precision)
    )


def md_script_table(script: str, result: dict | None, command: str) -> str:
    """A bench script's README block, rendered by its own ``table`` from its result (or how to measure it)."""
    if not result:
        return f"_not measured yet_ (run `{command}`)"
    sys.path.insert(0, str(ROOT / "bench"))
    return importlib.import_module(script).table(result)


def md_synth_speed(synth_speed: dict | None) -> str:
    return md_script_table("synth_speed", synth_speed, "bench/synth_speed.py")


def md_synth_gpl(synth_gpl: dict | None) -> str:
    return md_script_table("synth_gpl", synth_gpl, "WORKBOOK_FAST=0 bench/synth_gpl.py")


def md_synth_style(synth_style: dict | None) -> str:
    return md_script_table("synth_style", synth_style, "WORKBOOK_FAST=0 bench/synth_style.py")


def md_docs_only(docs_only: dict | None) -> str:
    return md_script_table("docs_only", docs_only, "WORKBOOK_FAST=0 bench/docs_only.py")


def md_synth_generators(synth_generators: dict | None) -> str:
    return md_script_table("synth_generators", synth_generators, "WORKBOOK_FAST=0 bench/synth_generators.py")


def md_train_step(train_step: dict | None) -> str:
    return md_script_table("train_step", train_step, "bench/train_step.py")


def md_bm25_ties(bm25_ties: dict | None) -> str:
    return md_script_table("bm25_ties", bm25_ties, "bench/bm25_ties.py")


def md_allocator(allocator: dict | None) -> str:
    if not allocator:
        return "_not measured yet_ (run `bench/allocator.py`)"
    sys.path.insert(0, str(ROOT / "bench"))
    from allocator import table as allocator_table

    return f"{allocator['machine']}:\n\n" + allocator_table(allocator)


def md_memory(memory: dict | None) -> str:
    if not memory:
        return "_not measured yet_"
    sys.path.insert(0, str(ROOT / "bench"))
    from memory import table as memory_table

    return memory_table(memory)


def replace_block(text: str, name: str, body: str, where: Path = README) -> str:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` (each on its own line)."""
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(\n?<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{where}: no <!-- {name}:start --> ... <!-- {name}:end --> block")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2).lstrip("\n"), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-tests", action="store_true", help="do not time the test suite (keep the last time)")
    parser.add_argument("--report-only", action="store_true", help="only rebuild summary.json and the README tables")
    args = parser.parse_args()
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if not args.report_only:
        scripts = ("mining.py", "speed.py", "quality.py", "memory.py", "precision.py", "allocator.py",
                   "train_step.py", "synth_speed.py", "synth_gpl.py", "synth_style.py", "synth_generators.py",
                   "docs_only.py", "bm25_ties.py")
        for script, extra in (*((s, []) for s in scripts), ("e2e.py", ["--skip-tests"] if args.skip_tests else [])):
            print(f"== bench/{script}", flush=True)
            subprocess.run([sys.executable, str(ROOT / "bench" / script), *extra], cwd=ROOT, env=env, check=True)
    (mining, speed, quality, e2e, memory, precision, allocator, train_step, synth_speed, synth_gpl, synth_style,
     synth_generators, docs_only, bm25_ties) = (
        _load(n) for n in ("mining", "speed", "quality", "e2e", "memory", "precision", "allocator", "train_step",
                           "synth_speed", "synth_gpl", "synth_style", "synth_generators", "docs_only", "bm25_ties")
    )  # fmt: skip
    rows = all_targets(mining, quality, e2e, memory)
    import torch

    summary = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "torch": torch.__version__, "cuda": torch.cuda.is_available()},
               "targets": rows}  # fmt: skip
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = README.read_text()
    for name, body in (("targets", md_targets(rows)), ("quality", md_quality(quality)),
                       ("lookalike", md_lookalike(quality)),
                       ("speed", md_speed(speed, mining)), ("precision", md_precision(precision)),
                       ("allocator", md_allocator(allocator)), ("train-step", md_train_step(train_step)),
                       ("synth-speed", md_synth_speed(synth_speed)), ("synth-gpl", md_synth_gpl(synth_gpl)),
                       ("synth-style", md_synth_style(synth_style)),
                       ("docs-only", md_docs_only(docs_only)), ("bm25-ties", md_bm25_ties(bm25_ties)),
                       ("synth-generators", md_synth_generators(synth_generators)),
                       ("e2e", md_e2e(e2e)),
                       ("memory", md_memory(memory))):  # fmt: skip
        text = replace_block(text, name, body)
    README.write_text(text)
    print(md_targets(rows))


if __name__ == "__main__":
    main()
