"""Steps 03-05: synthetic queries, hard negatives mined and audited, and the fine-tuned model."""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path

from workbook import synth
from workbook.data import Dataset
from workbook.files import clean_json, file_sha256, read_json, write_json, write_jsonl
from workbook.negatives import (
    TRAINING_SETTINGS,
    MinedNegatives,
    audit,
    audit_table,
    load_training_set,
    training_set_path,
)
from workbook.pipeline.context import PipelineError, RunContext
from workbook.pipeline.store import external_files, frame_to_json
from workbook.synth import (
    ENV_BASE_URL,
    ENV_MODEL,
    QUERIES_PER_DOC,
    LocalGenerator,
    OpenAIGenerator,
    PromptTemplate,
    Shot,
    synthetic_set_path,
)
from workbook.train import (
    CARD_FILE,
    DEFAULT_NEGATIVES,
    DEFAULT_RECIPE,
    final_training,
    get_recipe,
    load_or_train,
    sibling_stage,
    synthetic_dataset,
    synthetic_training_set_path,
    training_data_with_stats,
)
from workbook.train.stage import NoSiblingRows

# -- 03 synthetic ---------------------------------------------------------------------------------------------

GENERIC_INSTRUCTION = "Each passage is followed by {n} short search queries that people type to find it."


def _cut(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def generic_template(ds: Dataset, n_shots: int, seed: int, passage_words: int):
    """A prompt for any corpus: passage -> search queries, in the style of the team's examples or real queries.

    With the dataset's ``examples.jsonl`` (``ds.extras["examples"]``), the examples set the style: those naming their
    document become shots (a seeded sample of ``n_shots`` documents, up to 3 questions each), the others a list of
    questions people ask. Without it, shots are a seeded sample of docs judged relevant to train queries; a dataset
    with neither gets the instruction alone (zero-shot).
    """
    examples = ds.extras.get("examples") or []
    per_doc: dict[str, list[str]] = {}
    if examples:
        for ex in examples:
            if ex.doc_id is not None:
                per_doc.setdefault(ex.doc_id, []).append(ex.text)
    else:
        for qid in sorted(ds.qrels.get("train", {})):
            for doc, score in sorted(ds.qrels["train"][qid].items()):
                if score > 0 and ds.queries[qid].strip():
                    per_doc.setdefault(doc, []).append(ds.queries[qid].strip())
    docs = sorted(per_doc)
    picked = sorted(random.Random(seed).sample(docs, min(n_shots, len(docs))))
    shots = tuple(
        Shot(d, _cut(ds.doc_text(d), passage_words), tuple(sorted(per_doc[d])[:QUERIES_PER_DOC])) for d in picked
    )
    style = tuple(ex.text for ex in examples if ex.doc_id is None)
    name = "generic-examples" if examples else "generic-few-shot" if shots else "generic-zero-shot"
    return PromptTemplate(
        name,
        GENERIC_INSTRUCTION.format(n=QUERIES_PER_DOC),
        shots,
        item_label="Passage",
        list_label="Search queries",
        style=style,
    )


def _needs_generation(ctx: RunContext, has_train: bool) -> bool:
    mode = ctx.settings.synthetic
    return mode == "always" or (mode == "auto" and not has_train)


def _generator_kind(ctx: RunContext) -> str:
    if ctx.settings.generator != "auto":
        return ctx.settings.generator
    return "openai" if (ctx.cfg.llm_base_url or os.environ.get(ENV_BASE_URL)) else "local"


def _synthetic_inputs(ctx: RunContext) -> dict:
    if ctx.settings.synthetic == "cached":
        path = synthetic_set_path(ctx.cfg)
        return {"cached_set": file_sha256(path) if path.is_file() else None}
    kind = _generator_kind(ctx)
    if kind == "openai":
        return {"generator": kind, "endpoint": [ctx.cfg.llm_base_url or os.environ.get(ENV_BASE_URL),
                                                ctx.cfg.llm_model or os.environ.get(ENV_MODEL)]}  # fmt: skip
    return {"generator": kind}


def _make_generator(ctx: RunContext):
    st = ctx.settings
    if _generator_kind(ctx) == "openai":
        return OpenAIGenerator.from_config(ctx.cfg, api=st.generator_api, max_tokens=st.generator_max_tokens)
    return LocalGenerator(cfg=ctx.cfg, max_tokens=st.generator_max_tokens, n_threads=st.generator_threads,
                          parallel=st.generator_parallel)


def step_synthetic(ctx: RunContext, out: Path) -> dict:
    """Synthetic (query, doc id) pairs: generated and filtered, read from the case study's set, or none."""
    cfg, st = ctx.cfg, ctx.settings
    splits = ctx.result("01_validate")["splits"]
    if st.synthetic == "cached":
        try:
            pairs = synth.load_synthetic_pairs(cfg, ctx.ds)
        except FileNotFoundError as exc:
            ctx.log(f"  the case study's synthetic set is not built: {exc}")
            write_json(out / "pairs.json", [])
            return {"status": "unavailable", "why": str(exc), "pairs": 0, "docs": 0}
        write_json(out / "pairs.json", pairs)
        prov = synth.load_provenance(cfg) if (synth.synthetic_dir(cfg) / "provenance.json").is_file() else {}
        return {"status": "cached set", "pairs": len(pairs), "docs": len({d for _, d in pairs}),
                "set": str(synth.synthetic_set_path(cfg)), "filter_report": prov.get("filter_report", []),
                "generator": prov.get("generator")}  # fmt: skip
    if not _needs_generation(ctx, "train" in splits):
        write_json(out / "pairs.json", [])
        return {"status": "not asked", "pairs": 0, "docs": 0}
    ds = ctx.ds
    examples = ds.extras.get("examples") or [] if st.synthetic_prompt == "generic" else []  # the prompt's style
    if st.synthetic_prompt == "icd10cm":
        template = synth.few_shot_template(ds, n_shots=st.synthetic_shots, seed=cfg.seed)

        def passage(d: str) -> str:
            return ds.corpus[d]["text"]
    else:
        template = generic_template(ds, st.synthetic_shots, cfg.seed, st.passage_words)

        def passage(d: str) -> str:
            return _cut(ds.doc_text(d), st.passage_words)

    n_docs = min(st.n_synthetic_docs(cfg), len(ds.corpus) - len(template.shots))
    docs = synth.sample_codes(
        ds, 0, n_docs, focus_chapters=(), seed=cfg.seed, exclude=[s.doc_id for s in template.shots]
    )
    generator = _make_generator(ctx)
    try:
        cache = synth.GenerationCache(ctx.run_dir / "cache" / "generations")
        run = synth.generate_queries(generator, template, {d: passage(d) for d in docs}, cache, seed=cfg.seed,
                                     desc="synthetic queries")  # fmt: skip
    finally:
        if hasattr(generator, "close"):
            generator.close()
    round_trip = synth.RoundTrip(ds, ctx.base, k=synth.FilterSettings().round_trip_k, cache_dir=ctx.emb_cache)
    lookalikes = synth.LookalikeCheck(ds) if ds.extras.get("lookalikes") else None  # the dataset's lookalikes.jsonl
    filtered = synth.apply_filters(run.candidates(), ds, round_trip, lookalikes=lookalikes)
    pairs = synth.kept_pairs(filtered)
    write_json(out / "pairs.json", pairs)
    cols = ["doc_id", "source_doc", "position", "query", "kept", "dropped_by", "why", "overlap", "dense_rank",
            "bm25_rank"]  # fmt: skip
    write_jsonl(out / "candidates.jsonl", [clean_json(r) for r in filtered[cols].to_dict(orient="records")])
    write_json(out / "template.json", template.to_dict())
    report = synth.filter_report(filtered).reset_index()
    return {
        "status": "generated",
        "generator": generator.name,
        "template": template.name,
        "examples": synth.examples_summary(examples),
        "docs": len(docs),
        "candidates": len(filtered),
        "pairs": len(pairs),
        "docs_with_pairs": len({d for _, d in pairs}),
        "generated_now": run.new,
        "reused": run.reused,
        "seconds_per_query": run.seconds_per_query,
        "filter_report": report.to_dict(orient="records"),
    }


# -- 04 negatives ---------------------------------------------------------------------------------------------


def resolve_source(setting: str, has_train: bool, n_synthetic: int) -> str:
    """The training data source: the setting, or for ``"auto"`` real / synthetic / both from what exists."""
    if setting != "auto":
        return setting
    if has_train:
        return "both" if n_synthetic else "real"
    if n_synthetic:
        return "synthetic"
    raise PipelineError("no training data: the dataset has no train split and no synthetic pair was kept")


def resolve_negatives(setting: str, has_lookalikes: bool) -> str:
    """The source of negatives: the setting, or for ``"auto"`` the default pick when the dataset has lookalike
    groups and mined negatives otherwise; a lookalike source without groups is an error naming the file."""
    if setting == "auto":
        return DEFAULT_NEGATIVES if has_lookalikes else "mined"
    if setting != "mined" and not has_lookalikes:
        raise PipelineError(f"negatives = {setting!r} needs lookalike groups: add lookalikes.jsonl to the dataset "
                            "(one {\"codes\": [doc ids]} group per line) or set negatives = \"mined\"")
    return setting


def _recipe(ctx: RunContext):
    st = ctx.settings
    if st.recipe == DEFAULT_RECIPE and st.negatives == "auto":  # the final training of notebook 05
        recipe = final_training(bool(ctx.ds.extras.get("lookalikes")))[0]
    else:
        recipe = get_recipe(st.recipe)
    changes = {"batch_size": st.train_batch_size, "epochs": st.train_epochs, "learning_rate": st.learning_rate}
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes.get("batch_size") and recipe.loss != "cached-mnrl":
        changes["mini_batch_size"] = changes["batch_size"]
    return dataclasses.replace(recipe, **changes) if changes else recipe


def _synthetic_pairs(ctx: RunContext) -> list[tuple[str, str]]:
    return [tuple(p) for p in read_json(ctx.step_dir("03_synthetic") / "pairs.json")]


def step_negatives(ctx: RunContext, out: Path) -> dict:
    """Mine (and cache) hard negatives for the training source's pairs, then audit the known false negatives."""
    cfg = ctx.cfg
    pairs = _synthetic_pairs(ctx)
    source = resolve_source(ctx.settings.source, "train" in ctx.result("01_validate")["splits"], len(pairs))
    if source in ("synthetic", "both") and not pairs:
        raise PipelineError(f"source {source!r} needs synthetic pairs, and step 03_synthetic has none "
                            f"({ctx.result('03_synthetic')['status']})")  # fmt: skip
    if source in ("real", "both") and "train" not in ctx.ds.qrels:
        raise PipelineError(f"source {source!r} needs a train split (qrels/train.tsv)")
    recipe = _recipe(ctx)
    negatives = resolve_negatives(ctx.settings.negatives, bool(ctx.ds.extras.get("lookalikes")))
    rows, mix = training_data_with_stats(cfg, ctx.ds, ctx.base, source, recipe.num_negatives, pairs or None, negatives)
    if len(rows) == 0:
        raise PipelineError("mining left no training row with enough hard negatives; the corpus may be too small")
    parts = {
        "real": training_set_path(cfg),
        "synthetic": synthetic_training_set_path(cfg),
    }
    audits, files = [], []
    for name, path in parts.items():
        if source not in (name, "both"):
            continue
        ds = ctx.ds if name == "real" else synthetic_dataset(ctx.ds, pairs)
        saved = load_training_set(path, with_ids=True)
        mined = MinedNegatives(
            rows=[{"query_id": r["query_id"], "positive": r["positive_id"], "positive_score": float("nan"),
                   "negatives": r["negative_ids"], "scores": [float("nan")] * len(r["negative_ids"])} for r in saved],
            settings=TRAINING_SETTINGS,
        )  # fmt: skip
        audits.append(audit(ds, mined, name=name))
        files += [path, path.with_suffix(".meta.json")]
    table = audit_table(audits)
    return {"source": source, "negatives": negatives, "negative_mix": [dataclasses.asdict(m) for m in mix],
            "rows": len(rows), "audit": frame_to_json(table), "external": external_files(files)}


# -- 05 fine-tune ---------------------------------------------------------------------------------------------


def step_finetune(ctx: RunContext, out: Path) -> dict:
    """Fine-tune the base model with the recipe on the mined rows (a saved run with the same key is reused)."""
    negatives = ctx.result("04_negatives")
    source = negatives["source"]
    pairs = _synthetic_pairs(ctx)
    trained = load_or_train(
        ctx.cfg, _recipe(ctx), source, ctx.settings.rows(ctx.cfg), ds=ctx.ds, base=ctx.base, show_progress=True,
        synthetic_pairs=pairs or None, dev_split="dev", negatives=negatives.get("negatives", "mined"),
    )  # fmt: skip
    write_json(out / "log_history.json", trained.history)
    stage, first = _sibling_stage_skip(ctx), trained
    if stage is None:  # the same second stage as the case study's final model (workbook.train.final_model)
        try:
            trained = sibling_stage(ctx.cfg, ctx.ds, first, ctx.base, show_progress=True)
        except NoSiblingRows as err:  # groups, but no training row whose positive has a sibling
            stage = f"skipped: {err}"
        else:
            write_json(out / "log_history_sibling_stage.json", trained.history)
            stage = f"trained on {trained.card['data']['rows']:,} sibling rows from {first.path.parent.name}"
    ctx._cache["tuned"] = trained.model
    return {"model_path": str(Path(trained.path).resolve()), "card": trained.card, "first_card": first.card,
            "sibling_stage": stage,
            "external": external_files([Path(trained.path) / CARD_FILE])}  # fmt: skip


def _sibling_stage_skip(ctx: RunContext) -> str | None:
    """Why the sibling stage does not run here, or ``None`` when it does."""
    if not ctx.settings.sibling_stage:
        return "skipped: sibling_stage = false"
    if ctx.settings.recipe != DEFAULT_RECIPE:
        return f"skipped: recipe {ctx.settings.recipe!r} (the stage was measured after {DEFAULT_RECIPE!r} only)"
    if not ctx.ds.extras.get("lookalikes"):
        return "skipped: the dataset has no lookalikes.jsonl"
    if "train" not in ctx.ds.qrels:
        return "skipped: the dataset has no train split (the stage's rows are training queries)"
    return None
