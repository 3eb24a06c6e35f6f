"""A team's example questions (``examples.jsonl``): read and checked (file, line, field), never an evaluation
query, and the style of the synthetic prompt of ``workbook run`` when a corpus has no query logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_data import tiny
from workbook import synth
from workbook.config import get_config
from workbook.data import Dataset, DatasetError, save_dataset, subset
from workbook.pipeline.context import RunContext
from workbook.pipeline.settings import PipelineSettings
from workbook.pipeline.steps_train import generic_template
from workbook.pipeline.store import dataset_files


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_examples_are_read_in_order_with_their_documents(tmp_path):
    path = _write(tmp_path / synth.EXAMPLES_FILE, [{"text": " sugar too high, type 2 "}, "",
                                                   {"text": "heart attack, not STEMI", "doc_id": "d3"}])  # fmt: skip
    got = synth.load_examples(path, tiny())
    assert got == [synth.Example("sugar too high, type 2", None, 1), synth.Example("heart attack, not STEMI", "d3", 3)]
    assert synth.examples_summary(got) == {"examples": 2, "with_doc": 1}


def test_every_bad_line_is_named_with_its_field(tmp_path):
    path = _write(tmp_path / synth.EXAMPLES_FILE, [
        "{not json",
        '["a list"]',
        {"doc_id": "d1"},
        {"text": "   "},
        {"text": "fine wording", "doc_id": "d9"},
        {"text": "a good one"},
    ])  # fmt: skip
    with pytest.raises(DatasetError) as err:
        synth.load_examples(path, tiny())
    assert [str(p) for p in err.value.problems] == [
        "examples.jsonl:1: not valid JSON (Expecting property name enclosed in double quotes)",
        'examples.jsonl:2: each line must be a JSON object like {"text": "..."}',
        "examples.jsonl:3: field 'text': a non-empty string is required",
        "examples.jsonl:4: field 'text': a non-empty string is required",
        "examples.jsonl:5: field 'doc_id': 'd9' is not a document of the corpus",
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="examples.jsonl: no example"):
        synth.load_examples(_write(empty / synth.EXAMPLES_FILE, [""]), tiny())


def test_an_evaluation_query_is_never_an_example(tmp_path):
    # test query q3 is "Juvenile diabetes  with high sugar": the same wording under the one equivalence key (case,
    # punctuation, spacing, "NOS") is refused, naming the split and the query; a train query's wording is allowed
    path = _write(tmp_path / synth.EXAMPLES_FILE, [{"text": "juvenile diabetes, with high sugar NOS"},
                                                   {"text": "NSTEMI."}, {"text": "adult-onset diabetes, high sugar"}])
    with pytest.raises(DatasetError) as err:
        synth.load_examples(path, tiny())
    assert [str(p) for p in err.value.problems] == [
        "examples.jsonl:1: field 'text': the wording of test query 'q3': evaluation queries never go into a prompt "
        "(write another example)",
        "examples.jsonl:2: field 'text': the wording of dev query 'q2': evaluation queries never go into a prompt "
        "(write another example)",
    ]


def test_the_prompt_takes_its_style_from_the_examples():
    ds = tiny()
    assert generic_template(ds, 3, 0, 50).name == "generic-few-shot"  # the train split's real queries
    no_logs = subset(ds, splits=["dev", "test"])
    zero = generic_template(no_logs, 3, 0, 50)
    assert zero.name == "generic-zero-shot" and zero.shots == () and zero.style == ()
    assert "style" not in zero.to_dict(), "a template without examples keeps the hash it had before examples existed"

    no_logs.extras["examples"] = [
        synth.Example("sugar too high", None, 1),
        synth.Example("type 1, high sugar", "d2", 2),
        synth.Example("juvenile diabetes flare", "d2", 3),
    ]
    t = generic_template(no_logs, 3, 0, 50)
    assert t.name == "generic-examples" and t.style == ("sugar too high",)
    assert [(s.doc_id, s.queries) for s in t.shots] == [("d2", ("juvenile diabetes flare", "type 1, high sugar"))]
    prompt = t.render("Some passage")
    assert "Questions people have asked (about other passages):\n- sugar too high\n" in prompt
    assert "- juvenile diabetes flare\n- type 1, high sugar\n" in prompt and prompt.endswith("Search queries:\n-")
    assert "sugar too high" in t.messages("Some passage")[0]["content"]
    assert synth.PromptTemplate.from_dict(json.loads(json.dumps(t.to_dict()))) == t


def _logs_only_in_train(n: int = 40) -> Dataset:
    corpus = {f"d{i:02d}": {"title": "", "text": f"passage {i} about topic {i}", "metadata": {}} for i in range(n)}
    queries = {f"q{i:02d}": f"question {i} on topic {i}" for i in range(n)} | {"t0": "the one test question"}
    qrels = {"train": {f"q{i:02d}": {f"d{i:02d}": 1} for i in range(n)}, "test": {"t0": {"d00": 1}}}
    return Dataset(corpus, queries, qrels, name="no-dev")


def test_workbook_run_reads_a_folders_examples_after_carving_its_dev_split(tmp_path):
    folder = save_dataset(_logs_only_in_train(), tmp_path / "data")
    _write(folder / synth.EXAMPLES_FILE, [{"text": "question 1 on topic 1, in my words"}])
    assert synth.EXAMPLES_FILE in dataset_files(folder), "a changed examples file reruns the steps that read the data"
    ctx = RunContext(get_config(fast=True), PipelineSettings(), folder, tmp_path / "run")
    assert ctx.ds.extras["examples"] == [synth.Example("question 1 on topic 1, in my words", None, 1)]
    carved = ctx.dev["query_ids"]
    assert ctx.dev["source"] == "carved from train" and carved

    # a train query carved out as dev is an evaluation query now: as an example it is refused, by its dev id
    qid = carved[0]
    _write(folder / synth.EXAMPLES_FILE, [{"text": ctx.ds.queries[qid].upper() + "."}])
    ctx = RunContext(get_config(fast=True), PipelineSettings(), folder, tmp_path / "run2")
    with pytest.raises(DatasetError, match=f"examples.jsonl:1: field 'text': the wording of dev query '{qid}'"):
        ctx.ds  # noqa: B018 - loading the dataset reads the examples
