from __future__ import annotations

import json

import pytest

from workbook.data import Dataset
from workbook.models import load_model
from workbook.negatives import (
    MinedNegatives,
    MiningError,
    MiningSettings,
    audit,
    audit_table,
    description_key,
    excludes1_overlap,
    known_equivalents,
    load_training_set,
    mine_negatives,
    pick_setting,
    save_training_set,
    training_pairs,
)

DOCS = {
    "D1": "Type 1 diabetes with hyperglycemia",
    "D2": "Type 2 diabetes with hyperglycemia",
    "D3": "Type 2 diabetes with hyperglycemia NOS",  # near-identical to D2 (only the NOS qualifier differs)
    "D4": "Viral pericarditis",
    "D5": "Infective pericarditis",
    "D6": "Lymphadenitis, unspecified",
    "D7": "Acute lymphadenitis",
}
QUERIES = {
    "q1": "type 2 diabetes, high sugar",  # -> D2; D3 is a description twin
    "q2": "Viral pericarditis",  # -> D5; the wording is D4's own description
    "q3": "Lymphadenitis",  # -> D7; the same wording with NOS (q4, test split) is judged D6
    "q4": "Lymphadenitis NOS",
    "q5": "diabetes with hyperglycemia",  # -> D1 and D2 (two positives)
}


def tiny(**changes) -> Dataset:
    qrels = {
        "train": {"q1": {"D2": 1}, "q2": {"D5": 1}, "q3": {"D7": 1}, "q5": {"D1": 1, "D2": 1}},
        "test": {"q4": {"D6": 1}},
    }
    ds = Dataset(
        corpus={d: {"title": d, "text": t, "metadata": {}} for d, t in DOCS.items()},
        queries=dict(QUERIES),
        qrels=qrels,
        name="tiny",
        extras={"lookalikes": [{"group_id": "g0", "kind": "excludes1", "anchor": "D1", "codes": ["D1", "D2"]}]},
    )
    for key, value in changes.items():
        setattr(ds, key, value)
    return ds


def everything(**kw) -> MiningSettings:
    """Every candidate of the 7-doc corpus, so the mined sets do not depend on the model's ranking."""
    return MiningSettings(num_negatives=6, range_min=0, range_max=6, **kw)


def by_hand(rows: dict[tuple[str, str], list[str]], n: int = 6) -> MinedNegatives:
    return MinedNegatives(
        rows=[
            {"query_id": q, "positive": p, "positive_score": 0.5, "negatives": negs, "scores": [0.1] * len(negs)}
            for (q, p), negs in rows.items()
        ],
        settings=MiningSettings(num_negatives=n),
    )


def test_description_key_keeps_word_order_and_drops_only_boilerplate():
    assert description_key("Type 2 diabetes, with hyperglycemia NOS") == "type 2 diabetes with hyperglycemia"
    assert description_key("Neoplasm, not elsewhere classified") == description_key("neoplasm NEC") == "neoplasm"
    a = "Laceration with foreign body of finger without damage to nail"
    b = "Laceration without foreign body of finger with damage to nail"
    assert description_key(a) != description_key(b)  # a bag of words would call these equal
    assert description_key("Nosebleed") == "nosebleed"  # whole words only


def test_audit_counts_each_kind_on_hand_made_rows():
    ds = tiny()
    mined = by_hand(
        {
            ("q1", "D2"): ["D3", "D1", "D4"],  # D3: same description
            ("q2", "D5"): ["D4", "D6"],  # D4: the query names it
            ("q3", "D7"): ["D6", "D5"],  # D6: same wording (q4) judged it
            ("q5", "D1"): ["D2", "D3", "D7"],  # D2: judged for q5; D3: twin of the positive D2
            ("q5", "D2"): [],
        }
    )
    a = audit(ds, mined, label_splits=None)  # every split's judgements: a read-only report
    assert a.negatives == 10 and a.label_splits == ("train", "test")
    assert a.by_kind == {"judged": 1, "same wording": 1, "same description": 2, "query names it": 1}
    assert a.false_negatives == 5 and a.fn_rate == pytest.approx(0.5)
    assert a.queries == 4 and a.queries_without_negatives == 0 and a.rows == 5 and a.short_rows == 5
    assert set(a.flagged["negative"]) == {"D2", "D3", "D4", "D6"}
    # The default reads the training split only: D6 is known for "Lymphadenitis" through a *test* judgement.
    train_only = audit(ds, mined)
    assert train_only.label_splits == ("train",) and train_only.summary()["labels from"] == "train"
    assert train_only.by_kind == {**a.by_kind, "same wording": 0}
    assert known_equivalents(ds, "q5") == {"D1", "D2", "D3"}
    assert known_equivalents(ds, "q2") == {"D5", "D4"}
    assert known_equivalents(ds, "q3") == {"D7"} and known_equivalents(ds, "q3", None) == {"D7", "D6"}


def test_audit_reports_queries_left_without_negatives():
    a = audit(tiny(), by_hand({("q1", "D2"): [], ("q2", "D5"): ["D1"]}))
    assert (a.queries_without_negatives, a.negatives, a.false_negatives) == (1, 1, 0)
    assert audit_table([a]).loc["default", "queries with no negative"] == 1


@pytest.fixture(scope="module")
def minilm():
    return load_model("minilm")


def test_mining_all_pairs_excludes_every_positive_and_audit_finds_the_rest(minilm):
    ds = tiny()
    a = audit(ds, mine_negatives(ds, minilm, everything(name="all")), label_splits=None)
    # q1, q2, q3: 6 candidates each; q5: 5 per row, two rows. D2 is never mined for q5 (both pairs passed).
    assert a.negatives == 6 * 3 + 5 * 2
    assert a.by_kind == {"judged": 0, "same wording": 1, "same description": 3, "query names it": 1}


def test_one_positive_per_query_mines_the_other_positive(minilm):
    ds = tiny()
    a = audit(ds, mine_negatives(ds, minilm, everything(one_positive_per_query=True)), label_splits=None)
    assert a.rows == 4 and a.negatives == 24
    assert a.by_kind == {"judged": 1, "same wording": 1, "same description": 2, "query names it": 1}
    assert a.flagged.query("kind == 'judged'")[["query_id", "negative"]].values.tolist() == [["q5", "D2"]]


def test_exclude_known_drops_every_flagged_negative(minilm, tmp_path):
    ds = tiny()
    mined = mine_negatives(ds, minilm, everything(exclude_known=True), cache_dir=tmp_path)
    a = audit(ds, mined)
    # q3 keeps D6: only a test judgement says it answers "Lymphadenitis", and training never reads test labels.
    assert a.false_negatives == 0 and a.negatives == 5 + 5 + 6 + 4 + 4
    assert mined.label_splits == ("train",)
    assert (tmp_path / next(p.name for p in tmp_path.iterdir() if p.name.startswith("miner-"))).is_dir()
    held_out = audit(ds, mined, label_splits=None)  # the read-only audit still reports what the test labels flag
    assert held_out.flagged[["query_id", "negative", "kind"]].values.tolist() == [["q3", "D6", "same wording"]]


def test_training_rows_do_not_depend_on_held_out_judgements(minilm, tmp_path):
    ds = tiny()
    settings = everything(exclude_known=True)
    with_test = mine_negatives(ds, minilm, settings, cache_dir=tmp_path)
    other = {"test": {"q4": {"D7": 1}, "q1": {"D1": 1}}, "dev": {"q3": {"D6": 1}}}  # held-out labels changed/added
    without = mine_negatives(tiny(qrels={"train": ds.qrels["train"], **other}), minilm, settings, cache_dir=tmp_path)
    assert with_test.rows == without.rows


def test_rank_window_and_margin_filters(minilm):
    ds = tiny()
    windowed = mine_negatives(ds, minilm, MiningSettings(num_negatives=2, range_min=2, range_max=6))
    plain = mine_negatives(ds, minilm, MiningSettings(num_negatives=4, range_min=0, range_max=6))
    for w, p in zip(windowed.rows, plain.rows, strict=True):
        assert w["negatives"] == p["negatives"][2:4]  # the window skips exactly the two top-ranked candidates
        assert w["scores"] == sorted(w["scores"], reverse=True)
    margin = mine_negatives(ds, minilm, MiningSettings(num_negatives=2, range_max=6, absolute_margin=2.0))
    a = audit(ds, margin)  # cosine scores lie in [-1, 1]: a margin of 2 removes every candidate
    assert a.negatives == 0 and a.queries_without_negatives == 4 and a.short_rows == 5
    rel = mine_negatives(ds, minilm, MiningSettings(num_negatives=6, range_max=6, relative_margin=0.05))
    for row in rel.rows:
        assert all(s <= row["positive_score"] * 0.95 + 1e-6 for s in row["scores"])


def test_query_without_positive_is_named_or_skipped(minilm):
    ds = tiny(qrels={"train": {"q1": {"D2": 1}, "q2": {"D5": 0}}})
    with pytest.raises(MiningError, match=r"'q2' has no positive"):
        training_pairs(ds, "train")
    pairs, skipped = training_pairs(ds, "train", on_bad="skip")
    assert pairs == [("q1", "D2")] and [s.query_id for s in skipped] == ["q2"]
    mined = mine_negatives(ds, minilm, everything(), on_bad="skip")
    assert [r["query_id"] for r in mined.rows] == ["q1"] and mined.skipped[0].query_id == "q2"


def test_positive_missing_from_corpus_is_named():
    ds = tiny(qrels={"train": {"q1": {"D2": 1, "D99": 1}}})
    with pytest.raises(MiningError, match=r"'q1'.*\['D99'\] not in the corpus"):
        training_pairs(ds, "train")
    with pytest.raises(MiningError, match="nothing to mine"):
        training_pairs(ds, "train", on_bad="skip")
    with pytest.raises(MiningError, match="no split 'dev'"):
        training_pairs(tiny(), "dev")


def test_training_set_round_trip(minilm, tmp_path):
    ds = tiny()
    mined = mine_negatives(ds, minilm, MiningSettings(num_negatives=2, range_max=6))
    path = save_training_set(ds, mined, tmp_path / "neg" / "fast-train.jsonl", model_id="m")
    data = load_training_set(path)
    assert data.column_names == ["anchor", "positive", "negative_1", "negative_2"] and len(data) == 5
    assert data.to_list() == mined.to_dataset(ds).to_list()
    ids = load_training_set(path, with_ids=True)
    assert ids[0]["query_id"] == "q1" and len(ids[0]["negative_ids"]) == 2
    assert json.loads(path.with_suffix(".meta.json").read_text())["settings"]["num_negatives"] == 2
    with pytest.raises(FileNotFoundError, match="notebook 03"):
        load_training_set(tmp_path / "missing.jsonl")


def test_excludes1_overlap_and_pick_setting():
    ds = tiny()
    over = excludes1_overlap(ds, by_hand({("q1", "D2"): ["D1", "D3"], ("q2", "D5"): ["D4"]}))
    assert over["rows with Excludes1 partners"] == 1 and over["partner recall"] == 1.0
    assert over["share of negatives that are partners"] == pytest.approx(1 / 3, abs=1e-4)
    clean = audit(ds, by_hand({("q1", "D2"): ["D1"], ("q2", "D5"): ["D6"]}), name="clean")
    dirty = audit(ds, by_hand({("q1", "D2"): ["D3"], ("q2", "D5"): ["D6"]}), name="dirty")
    empty = audit(ds, by_hand({("q1", "D2"): [], ("q2", "D5"): []}), name="empty")
    assert pick_setting([dirty, clean, empty], max_lost=0.25) == "clean"
    assert pick_setting([dirty, empty], max_lost=0.25) == "dirty"
    # Equally clean: the larger rank-window start wins (known false negatives are a lower bound; unknown ones sit on
    # top).
    shallow = audit(ds, MinedNegatives(clean_rows := by_hand({("q1", "D2"): ["D1"], ("q2", "D5"): ["D6"]}).rows,
                                       MiningSettings(name="window 3-50", range_min=3)))  # fmt: skip
    deep = audit(ds, MinedNegatives(clean_rows, MiningSettings(name="window 10-60", range_min=10)))
    assert pick_setting([shallow, deep]) == "window 10-60" == pick_setting([deep, shallow])


def test_library_internals_the_miner_relies_on_are_still_there(minilm, tmp_path):
    """Two sentence-transformers internals, each touched in one function of workbook.negatives: the miner's corpus
    cache file name (``_seed_miner_cache`` writes it so the corpus is not encoded twice) and the ``trange`` progress
    bar of its faiss search (``_quiet_search`` silences it). If either moves, this test says so."""
    from sentence_transformers.util import hard_negatives

    assert callable(getattr(hard_negatives, "trange", None)), "sentence-transformers moved the miner's trange"
    mine_negatives(tiny(), minilm, MiningSettings(num_negatives=2, range_max=6), cache_dir=tmp_path)
    (folder,) = tmp_path.glob("miner-*")
    cached = sorted(p.name for p in folder.glob("corpus_embeddings_*.npy"))
    assert len(cached) == 1, f"the miner wrote its own corpus cache beside ours (its key changed): {cached}"
