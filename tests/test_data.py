from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbook.data import (
    Dataset,
    DatasetError,
    dataset_stats,
    find_leakage,
    load_dataset,
    load_scifact,
    normalize_query,
    save_dataset,
    subset,
)


def tiny() -> Dataset:
    corpus = {
        "d1": {"title": "E11.65", "text": "Type 2 diabetes mellitus with hyperglycemia", "metadata": {}},
        "d2": {"title": "E10.65", "text": "Type 1 diabetes mellitus with hyperglycemia", "metadata": {}},
        "d3": {"title": "I21.4", "text": "Non-ST elevation (NSTEMI) myocardial infarction", "metadata": {}},
    }
    queries = {"q1": "adult-onset diabetes, high sugar", "q2": "NSTEMI", "q3": "Juvenile diabetes  with high sugar"}
    qrels = {"train": {"q1": {"d1": 1}}, "dev": {"q2": {"d3": 1}}, "test": {"q3": {"d2": 1}}}
    return Dataset(corpus, queries, qrels, {"q2": {"slices": ["abbreviation"]}}, name="tiny")


@pytest.fixture
def folder(tmp_path) -> Path:
    return save_dataset(tiny(), tmp_path / "tiny")


def test_round_trip(folder):
    ds = load_dataset(folder)
    assert ds.corpus == tiny().corpus and ds.queries == tiny().queries and ds.qrels == tiny().qrels
    assert ds.query_meta == {"q2": {"slices": ["abbreviation"]}}
    assert ds.splits == ["train", "dev", "test"]
    assert ds.doc_text("d1") == "E11.65 Type 2 diabetes mellitus with hyperglycemia"
    assert ds.relevant("test") == {"q3": {"d2"}}


def test_save_is_byte_deterministic(tmp_path):
    a, b = save_dataset(tiny(), tmp_path / "a"), save_dataset(tiny(), tmp_path / "b")
    for f in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/dev.tsv", "qrels/test.tsv"):
        assert (a / f).read_bytes() == (b / f).read_bytes()


def test_qrels_without_header_and_selected_splits(folder):
    (folder / "qrels" / "test.tsv").write_text("q3\td2\t1\n")
    ds = load_dataset(folder, splits=["test"])
    assert ds.qrels == {"test": {"q3": {"d2": 1}}}


def _rewrite_jsonl(path: Path, line_no: int, row: dict | str) -> None:
    lines = path.read_text().splitlines()
    lines[line_no - 1] = row if isinstance(row, str) else json.dumps(row)
    path.write_text("\n".join(lines) + "\n")


def _problems(folder: Path) -> list[str]:
    with pytest.raises(DatasetError) as info:
        load_dataset(folder)
    return [str(p) for p in info.value.problems]


def test_duplicate_doc_id(folder):
    _rewrite_jsonl(folder / "corpus.jsonl", 2, {"_id": "d1", "text": "again"})
    assert _problems(folder) == [
        "corpus.jsonl:2: field '_id': duplicate id 'd1' (first on line 1)",
        "qrels/test.tsv:2: field 'corpus-id': unknown doc 'd2' (not in corpus.jsonl)",
    ]


def test_duplicate_query_id(folder):
    _rewrite_jsonl(folder / "queries.jsonl", 3, {"_id": "q1", "text": "again"})
    assert "queries.jsonl:3: field '_id': duplicate id 'q1' (first on line 1)" in _problems(folder)


def test_missing_doc_text(folder):
    _rewrite_jsonl(folder / "corpus.jsonl", 3, {"_id": "d3", "title": "I21.4"})
    assert _problems(folder) == ["corpus.jsonl:3: field 'text': missing text"]


def test_empty_query_text(folder):
    _rewrite_jsonl(folder / "queries.jsonl", 2, {"_id": "q2", "text": "   "})
    assert _problems(folder) == ["queries.jsonl:2: field 'text': empty text"]


def test_missing_id(folder):
    _rewrite_jsonl(folder / "corpus.jsonl", 1, {"text": "no id"})
    assert "corpus.jsonl:1: field '_id': missing or empty id" in _problems(folder)


def test_bad_json(folder):
    _rewrite_jsonl(folder / "corpus.jsonl", 2, '{"_id": "d2", "text": ')
    assert _problems(folder)[0].startswith("corpus.jsonl:2: not valid JSON")


def test_qrels_unknown_query_and_doc(folder):
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td3\t1\nq9\td3\t1\nq2\td9\t1\n")
    assert _problems(folder) == [
        "qrels/dev.tsv:3: field 'query-id': unknown query 'q9' (not in queries.jsonl)",
        "qrels/dev.tsv:4: field 'corpus-id': unknown doc 'd9' (not in corpus.jsonl)",
    ]


def test_qrels_non_integer_relevance(folder):
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td2\t0.5\n")
    assert "qrels/test.tsv:2: field 'score': relevance must be an integer, got '0.5'" in _problems(folder)


def test_qrels_wrong_column_count_and_duplicate_pair(folder):
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td2\t1\nq3 d2 1\nq3\td2\t1\n")
    assert _problems(folder) == [
        "qrels/test.tsv:3: expected 3 tab-separated columns, got 1",
        "qrels/test.tsv:4: duplicate pair (q3, d2) (first on line 2)",
    ]


def test_empty_split(folder):
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n")
    assert _problems(folder) == ["qrels/dev.tsv: the split is empty (no judged query)"]


def test_missing_files(tmp_path):
    (tmp_path / "x").mkdir()
    assert _problems(tmp_path / "x") == [
        f"corpus.jsonl: missing file (expected {tmp_path / 'x' / 'corpus.jsonl'})",
        f"queries.jsonl: missing file (expected {tmp_path / 'x' / 'queries.jsonl'})",
        "qrels/: no qrels/<split>.tsv file found",
    ]
    assert _problems(tmp_path / "nope") == [f"{tmp_path / 'nope'}: no such dataset folder"]


def test_all_problems_reported_at_once(folder):
    _rewrite_jsonl(folder / "corpus.jsonl", 2, {"_id": "d1", "text": "again"})
    _rewrite_jsonl(folder / "queries.jsonl", 2, {"_id": "q2"})
    probs = _problems(folder)
    assert len(probs) >= 2 and any("corpus.jsonl:2" in p for p in probs) and any("queries.jsonl:2" in p for p in probs)


def test_failed_save_keeps_existing_file(folder, monkeypatch):
    before = (folder / "corpus.jsonl").read_bytes()
    bad = tiny()
    bad.corpus["d4"] = {"title": "", "text": object()}  # not JSON-serialisable: fails mid-write
    with pytest.raises(TypeError):
        save_dataset(bad, folder)
    assert (folder / "corpus.jsonl").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["corpus.jsonl", "qrels", "queries.jsonl"]


def test_normalize_query():
    assert normalize_query("  Diabetes,  NOS ") == "diabetes nos" == normalize_query("diabetes (NOS)")


def test_leakage_found_and_absent():
    ds = tiny()
    assert find_leakage(ds) == []
    ds.queries["q3"] = "Adult-onset diabetes; high SUGAR"
    leaks = find_leakage(ds)
    assert [(lk.eval_split, lk.eval_query, lk.train_query) for lk in leaks] == [("test", "q3", "q1")]


def test_leakage_uses_the_one_equivalence_key():
    """"X" in train and "X NOS" in test are one wording (the key the miner's audit uses too): a leak."""
    from workbook.data import equivalence_key
    from workbook.negatives import description_key

    ds = tiny()
    ds.queries["q3"] = ds.queries["q1"] + ", NOS"
    assert [(lk.eval_query, lk.train_query) for lk in find_leakage(ds)] == [("q3", "q1")]
    assert description_key is equivalence_key  # one key: leakage, merging, mining filters, synthetic guards
    key = equivalence_key("Lymphadenitis NOS")
    assert key == equivalence_key("lymphadenitis") != normalize_query("Lymphadenitis NOS")
    assert equivalence_key("with X, without Y") != equivalence_key("without X, with Y")


def test_stats_and_subset():
    ds = tiny()
    stats = dataset_stats(ds)
    assert stats.loc["test", "queries"] == 1 and stats.loc["train", "docs"] == 3
    small = subset(ds, doc_ids=["d1", "d3"])
    assert list(small.corpus) == ["d1", "d3"] and small.qrels["test"] == {} and "q3" not in small.queries


def test_scifact_fast_subset_is_seeded(monkeypatch):
    from workbook.config import get_config

    cfg = get_config(fast=True)
    a, b = load_scifact(cfg), load_scifact(cfg)
    assert a.splits == ["test"] and len(a.qrels["test"]) == cfg.scifact_fast_queries
    assert list(a.corpus) == list(b.corpus) and a.qrels == b.qrels
    judged = {d for docs in a.qrels["test"].values() for d in docs}
    assert judged <= set(a.corpus)


@pytest.mark.parametrize("fast", [True, False])
def test_scifact_dev_split_is_held_out_train_claims(fast):
    from workbook.config import get_config
    from workbook.data import SCIFACT_DEV_CLAIMS

    cfg = get_config(fast=fast)
    plain, ds = load_scifact(cfg), load_scifact(cfg, with_dev=True)
    source = load_scifact(get_config(fast=False))
    assert len(ds.qrels["dev"]) == SCIFACT_DEV_CLAIMS[1 if fast else 0]
    assert set(ds.qrels["dev"]) <= set(source.qrels["train"])  # claims from train, never from test
    assert not set(ds.qrels["dev"]) & set(ds.qrels.get("train", {}))  # and out of what stays in train
    assert set(ds.qrels["test"]) == set(plain.qrels["test"])  # test is the same claims with or without dev
    assert {d for docs in ds.qrels["dev"].values() for d in docs} <= set(ds.corpus)
    assert ds.qrels == load_scifact(cfg, with_dev=True).qrels  # seeded


def test_scifact_full_matches_source():
    from workbook.config import get_config

    ds = load_scifact(get_config(fast=False))
    assert (len(ds.corpus), len(ds.qrels["test"]), len(ds.qrels["train"])) == (5183, 300, 809)
