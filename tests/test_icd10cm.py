from __future__ import annotations

import pytest

from workbook import icd10cm
from workbook.config import ROOT, get_config
from workbook.data import find_leakage, load_dataset


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("icd")
    icd10cm.write_case_study(out)
    return out


def test_build_is_deterministic_and_matches_committed_manifest(built, tmp_path):
    again = icd10cm.write_case_study(tmp_path / "again")
    assert (built / "MANIFEST.sha256").read_text() == (again / "MANIFEST.sha256").read_text()
    assert (built / "MANIFEST.sha256").read_text() == (ROOT / "data/icd10cm/MANIFEST.sha256").read_text()
    assert (built / "DATASHEET.md").read_text() == (ROOT / "data/icd10cm/DATASHEET.md").read_text()


@pytest.fixture(scope="module")
def full(built):
    return load_dataset(built / "full")


@pytest.fixture(scope="module")
def fast(built):
    return load_dataset(built / "fast")


def test_corpus_is_every_billable_code(full):
    assert len(full.corpus) == 74714
    doc = full.corpus["E11.65"]
    assert doc["text"] == "Type 2 diabetes mellitus with hyperglycemia"
    assert doc["title"] == "E11.65 Type 2 diabetes mellitus"
    assert "E11" not in full.corpus and "E11.6" not in full.corpus  # categories are not billable


def test_inclusion_terms_are_queries_with_their_codes(full):
    by_text = {t: q for q, t in full.queries.items()}
    qid = by_text["Acute subendocardial myocardial infarction"]
    split = full.query_meta[qid]["split"]
    assert full.qrels[split][qid] == {"I21.4": 1}
    assert full.query_meta[qid]["source"] == "inclusion-term"


def test_exact_code_queries_are_labelled(full):
    codes = [q for q, m in full.query_meta.items() if m["source"] == "generated-code"]
    assert len(codes) == round(icd10cm.CODE_QUERY_FRACTION * len(full.corpus))
    for qid in codes[:50]:
        assert full.queries[qid] == qid.removeprefix("code-")
        assert full.query_meta[qid]["slices"] == ["exact-code"]


def test_splits_have_no_leakage_and_unseen_codes(full):
    assert find_leakage(full) == []
    assert set(full.splits) == {"train", "dev", "test"}
    trained = {c for q in full.qrels["train"] for c in full.qrels["train"][q]}
    kinds = {full.query_meta[q]["codes"] for q in full.qrels["test"]}
    assert kinds == {"seen-code", "unseen-code"}
    for qid in full.qrels["test"]:
        unseen = full.query_meta[qid]["codes"] == "unseen-code"
        assert unseen == (not trained.intersection(full.qrels["test"][qid]))


def test_split_rule_is_the_one_the_datasheet_states():
    """Held-out codes: every inclusion-term query touching one is in test; their exact-code queries are not held out."""
    ds, counts = icd10cm.build()
    held = set(ds.extras["heldout_codes"])
    assert len(held) == counts["held-out codes"] > 0
    exact_split = {}
    for qid, meta in ds.query_meta.items():
        codes = set(ds.qrels[meta["split"]][qid])
        if meta["source"] == "inclusion-term" and held & codes:
            assert meta["split"] == "test", qid
        if meta["source"] == "generated-code" and held & codes:
            exact_split[qid] = meta["split"]
    assert "train" in exact_split.values()  # why the datasheet does not say "held out entirely"
    rules = (ROOT / "data/icd10cm/DATASHEET.md").read_text()
    assert "every inclusion-term query touching one goes to test" in rules
    assert "a held-out code can still have its bare code string in train" in rules


def test_slices(full):
    assert icd10cm.is_abbreviation_query("STEMI of anterior wall")
    assert icd10cm.is_abbreviation_query("HER2 positive")
    assert not icd10cm.is_abbreviation_query("Diabetes NOS")
    assert not icd10cm.is_abbreviation_query("Type II diabetes")
    counts = {s: 0 for s in icd10cm.SLICES}
    for m in full.query_meta.values():
        for s in m["slices"]:
            counts[s] += 1
    assert all(v > 0 for v in counts.values()), counts


def test_lookalike_groups(built):
    groups = icd10cm.load_lookalikes(built / "full")
    excl = [set(g["codes"]) for g in groups if g["kind"] == "excludes1"]
    assert any({"E10.65", "E11.65"} <= g for g in excl)  # type 1 vs type 2 diabetes
    cats = {g["anchor"]: set(g["codes"]) for g in groups if g["kind"] == "category"}
    assert {"I21.01", "I21.4"} <= cats["I21"]  # STEMI vs NSTEMI


def test_fast_subset(fast, full, built):
    assert {d["metadata"]["chapter"] for d in fast.corpus.values()} == {"4", "9"}
    assert len(fast.corpus) == 909
    for split in fast.splits:
        for qid, rel in fast.qrels[split].items():
            assert full.qrels[split][qid] == rel
    groups = icd10cm.load_lookalikes(built / "fast")
    assert groups and all(set(g["codes"]) <= set(fast.corpus) for g in groups)


def test_load_builds_on_first_use(tmp_path):
    cfg = get_config(fast=True, data_dir=tmp_path)
    ds = icd10cm.load_icd10cm(cfg)
    assert ds.name == "icd10cm-fast" and (tmp_path / "icd10cm" / "fast" / ".complete").exists()
    assert ds.extras["lookalikes"]
    slices = icd10cm.slice_queries(ds, "test")
    assert set(slices) >= {"lookalike", "seen-code", "unseen-code"}


def test_the_maps_picks_are_lookalike_groups_in_both_modes(built):
    from workbook.diagnose import find_group, picked_groups

    for mode in ("fast", "full"):
        groups = icd10cm.load_lookalikes(built / mode)
        for code, kind in icd10cm.UMAP_PICKS:
            assert code in find_group(groups, code, kind)["codes"]
    ds = icd10cm.load_icd10cm(get_config(fast=True))
    assert ds.extras["umap_picks"] == list(icd10cm.UMAP_PICKS)  # generic code reads the picks from the dataset
    assert [g["group_id"] for g in picked_groups(ds)] == [find_group(ds.extras["lookalikes"], c, k)["group_id"]
                                                          for c, k in icd10cm.UMAP_PICKS]  # fmt: skip
