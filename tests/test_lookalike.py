"""Lookalike-aware training data (workbook.negatives.lookalike) and the before/after picture (issue 20)."""

from __future__ import annotations

import datasets
import matplotlib
import numpy as np
import pytest

from workbook.data import Dataset
from workbook.models import load_model
from workbook.negatives import lookalike_negatives, mix_negatives, sibling_coverage
from workbook.retrieval import encode

matplotlib.use("Agg")

DOCS = {
    "A1": "Type 1 diabetes mellitus with diabetic nephropathy",
    "A2": "Type 2 diabetes mellitus with diabetic nephropathy",
    "A3": "Other specified diabetes mellitus with diabetic nephropathy",
    "A4": "Type 2 diabetes mellitus with diabetic nephropathy NOS",  # A2's description twin: never a negative
    "B1": "Acute bronchitis due to Mycoplasma pneumoniae",
    "B2": "Acute bronchitis due to Haemophilus influenzae",
    "C1": "Fracture of shaft of left femur",
}
QUERIES = {
    "q1": "type 2 diabetic nephropathy",  # -> A2
    "q2": "mycoplasma bronchitis",  # -> B1
    "q3": "left femur shaft fracture",  # -> C1, which is in no group
    "q4": "type 2 diabetic nephropathy",  # the same wording as q1, judged A3 in dev only
}
GROUPS = [
    {"group_id": "g0", "kind": "category", "anchor": "A", "codes": ["A1", "A2", "A3", "A4"]},
    {"group_id": "g1", "kind": "siblings", "anchor": "B", "codes": ["B1", "B2"]},
]


def tiny() -> Dataset:
    return Dataset(
        corpus={d: {"title": d, "text": t, "metadata": {}} for d, t in DOCS.items()},
        queries=dict(QUERIES),
        qrels={"train": {"q1": {"A2": 1}, "q2": {"B1": 1}, "q3": {"C1": 1}}, "dev": {"q4": {"A3": 1}}},
        name="tiny",
        extras={"lookalikes": GROUPS},
    )


@pytest.fixture(scope="module")
def minilm():
    return load_model("minilm")


def test_siblings_become_negatives_hardest_first_never_an_equivalent(minilm, tmp_path):
    ds = tiny()
    pairs = [("q1", "A2"), ("q2", "B1"), ("q3", "C1")]
    look = lookalike_negatives(ds, pairs, minilm, cache_dir=tmp_path)
    assert set(look[("q1", "A2")]) == {"A1", "A3"}  # A4 is A2's description twin (label-free rule): dropped
    assert look[("q2", "B1")] == ["B2"] and look[("q3", "C1")] == []
    q = encode(minilm, [QUERIES["q1"]])[0]
    d = encode(minilm, [f"{c} {DOCS[c]}" for c in look[("q1", "A2")]])
    assert list(d @ q) == sorted(d @ q, reverse=True)  # hardest (closest to the query) first
    assert sibling_coverage(look) == pytest.approx(2 / 3)


def test_only_training_labels_shape_lookalike_negatives(minilm, tmp_path):
    """q4's dev judgement says A3 answers q1's wording too; training must not read it (the audit may)."""
    ds = tiny()
    train_only = lookalike_negatives(ds, [("q1", "A2")], minilm, cache_dir=tmp_path)
    every_split = lookalike_negatives(ds, [("q1", "A2")], minilm, cache_dir=tmp_path, label_splits=None)
    assert "A3" in train_only[("q1", "A2")] and "A3" not in every_split[("q1", "A2")]
    changed = tiny()
    changed.qrels = {"train": ds.qrels["train"], "dev": {"q4": {"A1": 1}}, "test": {"q2": {"B2": 1}}}
    assert lookalike_negatives(changed, [("q1", "A2"), ("q2", "B1")], minilm, cache_dir=tmp_path) == \
        lookalike_negatives(ds, [("q1", "A2"), ("q2", "B1")], minilm, cache_dir=tmp_path)  # fmt: skip


def _rows():
    return datasets.Dataset.from_dict({
        "query_id": ["q1", "q2", "q3"],
        "positive_id": ["A2", "B1", "C1"],
        "negative_ids": [["C1", "B1", "A1"], ["C1", "A1", "A2"], ["A1", "B2", "A2"]],
    })  # fmt: skip


def test_mix_fills_every_row_the_same_way_for_every_source():
    ds = tiny()
    look = {("q1", "A2"): ["A3", "A1"], ("q2", "B1"): ["B2"], ("q3", "C1"): []}
    out = {}
    for source in ("mined", "lookalike", "both"):
        data, stats = mix_negatives(_rows(), ds, look, source, num_negatives=2)
        out[source] = data
        assert data["anchor"] == [QUERIES[q] for q in ("q1", "q2", "q3")]  # the same rows in the same order
        assert stats.rows == 3
    text = {f"{d} {t}": d for d, t in DOCS.items()}
    negs = {s: [[text[r[f"negative_{i}"]] for i in (1, 2)] for r in out[s]] for s in out}
    assert negs["mined"] == [["C1", "B1"], ["C1", "A1"], ["A1", "B2"]]
    assert negs["lookalike"] == [["A3", "A1"], ["B2", "C1"], ["A1", "B2"]]  # short rows filled with mined ones
    assert negs["both"] == [["A3", "C1"], ["B2", "C1"], ["A1", "B2"]]  # alternate, sibling first
    _, stats = mix_negatives(_rows(), ds, look, "both", num_negatives=2)
    assert (stats.rows_with_sibling, stats.sibling_negatives, stats.mined_negatives) == (2, 2, 4)
    assert stats.sibling_share == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="negatives must be one of"):
        mix_negatives(_rows(), ds, look, "curated", num_negatives=2)


def test_training_data_needs_lookalike_groups_for_lookalike_negatives(tmp_path):
    from workbook.config import get_config
    from workbook.train import training_data

    ds = tiny()
    ds.extras = {}
    cfg = get_config(fast=True, artifacts_dir=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="needs lookalike groups"):
        training_data(cfg, ds, None, "real", 2, negatives="both")


def test_before_after_maps_measure_separation_in_the_full_space(minilm):
    from workbook.diagnose.beforeafter import before_after_maps
    from workbook.plots import before_after_hist, lookalike_before_after

    ds = tiny()
    ds.qrels["test"] = {"q2": {"B1": 1}}
    ds.qrels["dev"] = {"q4": {"A3": 1}, "q1": {"A2": 1}}
    maps = before_after_maps(ds, {"base": minilm, "tuned": minilm}, GROUPS, splits=("dev", "test"))
    pts = maps.points
    assert set(pts["model"]) == {"base", "tuned"} and len(pts) == 2 * (4 + 2 + 3)
    # identical models: identical maps and separations
    base, tuned = (pts[pts["model"] == m].reset_index(drop=True) for m in ("base", "tuned"))
    assert np.allclose(base[["x", "y"]], tuned[["x", "y"]])
    # separation by hand: q1 (gold A2) and q4 (gold A3) against the four codes of g0, in the full space
    q = encode(minilm, [QUERIES["q4"], QUERIES["q1"]])
    d = encode(minilm, [f"{c} {DOCS[c]}" for c in ["A1", "A2", "A3", "A4"]])
    hits = [["A1", "A2", "A3", "A4"][i] for i in (q @ d.T).argmax(axis=1)]
    expected = np.mean([hits[0] == "A3", hits[1] == "A2"])
    assert maps.separation.loc["A (category)", "base"] == pytest.approx(expected)
    assert maps.queries.to_dict() == {"A (category)": 2, "B (siblings)": 1}
    with pytest.raises(ValueError, match="held-out"):
        before_after_maps(ds, {"base": minilm}, GROUPS, splits=("train",))
    axes = lookalike_before_after(maps)
    assert axes.shape == (2, 2) and f"{expected:.0%} of 2 held-out queries" in axes[0, 0].get_title()
    legend = axes[0, 0].figure.legends[0]
    assert len(legend.get_texts()) == 4  # codes, right queries, wrong queries, the lines
    ax = before_after_hist({"base MiniLM": [0.9, 0.8, 0.85], "tuned MiniLM": [0.5, 0.6, 0.4]}, zero_line=True)
    assert [t.get_text().split(" (")[0] for t in ax.get_legend().get_texts()] == ["base MiniLM", "tuned MiniLM"]


def test_pick_rule_takes_the_least_confused_run_within_the_recall_slack():
    from workbook.train import full_budget_challenger, pick_lookalike_variant

    dev = {"mined": {"recall@10": 0.70, "sibling confusion@10": 0.30},
           "lookalike": {"recall@10": 0.68, "sibling confusion@10": 0.10},  # loses 2 points: out
           "both": {"recall@10": 0.695, "sibling confusion@10": 0.15},
           "both + mnrl-hard": {"recall@10": 0.71, "sibling confusion@10": 0.15}}  # fmt: skip
    assert pick_lookalike_variant(dev) == "both + mnrl-hard"  # tie on confusion: the higher recall
    with pytest.raises(KeyError):
        pick_lookalike_variant({"both": dev["both"]})  # the rule needs the mined run as its yardstick
    # the full-budget confirmation's challenger: the pick, or when the screen keeps mined, the lowest confusion
    assert full_budget_challenger(dev) == "both + mnrl-hard"
    keeps_mined = {"mined": {"recall@10": 0.70, "sibling confusion@10": 0.09}}
    keeps_mined |= {n: dev[n] for n in ("lookalike", "both")}
    assert pick_lookalike_variant(keeps_mined) == "mined" and full_budget_challenger(keeps_mined) == "lookalike"


def test_final_training_uses_the_variant_confirmed_at_the_full_budget():
    """The model notebooks 05-07 ship trains with the negatives the two-stage dev comparison picked
    (bench/lookalike.py: the 3,000-row screen, then its pick against mined negatives with every row)."""
    import json
    from pathlib import Path

    from workbook.train import DEFAULT_RECIPE, final_training, full_budget_candidate, full_budget_challenger, get_recipe

    res = json.loads((Path(__file__).parents[1] / "bench" / "results" / "lookalike.json").read_text())
    full = res["full_budget"]
    challenger = full_budget_challenger({name: run["dev"] for name, run in res["runs"].items()})
    assert full["screen_pick"] == challenger == res["picked"] and set(full) >= {"mined", challenger, "paired", "picked"}
    picked = full["picked"]
    expected = (get_recipe(DEFAULT_RECIPE), "mined") if picked == "mined" else full_budget_candidate(picked)
    assert final_training(has_lookalikes=True) == expected
    assert final_training(has_lookalikes=False) == (get_recipe(DEFAULT_RECIPE), "mined")  # no groups: as before
    # the candidate trains the screen's pick with the default recipe: "both" is the earlier final training's recipe
    recipe, negatives = full_budget_candidate("both")
    assert negatives == "both" and recipe.num_negatives == 2 and recipe.name == DEFAULT_RECIPE


def test_lookalike_dev_metrics_on_a_pool_match_the_collapse_measures(minilm, tmp_path):
    from workbook.config import get_config
    from workbook.diagnose import sibling_confusion, sibling_map
    from workbook.retrieval import DenseIndex
    from workbook.train import lookalike_dev_metrics

    ds = tiny()
    ds.qrels["dev"] = {"q1": {"A2": 1}, "q2": {"B1": 1}}
    cfg = get_config(fast=True, cache_dir=tmp_path)
    whole = lookalike_dev_metrics(cfg, ds, minilm)
    pool = ["A1", "A2", "A3", "B1", "B2"]
    part = lookalike_dev_metrics(cfg, ds, minilm, docs=pool)
    assert whole["docs ranked"] == 7 and part["docs ranked"] == 5 and whole["queries with a sibling"] == 2
    emb = encode(minilm, [f"{d} {DOCS[d]}" for d in pool])
    ranked = DenseIndex(emb, pool).ranked(["q1", "q2"], encode(minilm, [QUERIES["q1"], QUERIES["q2"]]), 100)
    expected = sibling_confusion(ranked, ds.qrels["dev"], sibling_map(GROUPS), k=10)["confused"].mean()
    assert part["sibling confusion@10"] == pytest.approx(expected, abs=1e-4)
    assert part["sibling pairs"] == 1  # only g1 lies wholly inside the pool (A4 is missing from g0)


def test_the_full_budget_confirmation_and_the_readme_state():
    """The README says the screen's pick, confirmed at the full budget, lowers the sibling confusion but costs more
    Recall@10 than the pick rule allows, so the final training uses mined negatives: the record must keep saying so
    (paired, per dev query, over the whole corpus), and the README must carry its numbers."""
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    full = json.loads((root / "bench" / "results" / "lookalike.json").read_text())["full_budget"]
    pick, mined = full[full["screen_pick"]], full["mined"]
    assert pick["rows"] == mined["rows"] and mined["negatives"] == "mined" and full["picked"] == "mined"
    r10, sib = full["paired"]["recall@10"], full["paired"]["sibling confusion@10"]
    assert r10["delta"] < -0.01 and r10["ci"][1] < 0 and sib["ci"][1] < 0, full["paired"]
    readme = (root / "README.md").read_text(encoding="utf-8")
    for value in (r10["delta"], sib["delta"], mined["dev_whole_corpus"]["recall@10"]):
        assert re.search(rf"(?<![\d.]){re.escape(f'{abs(value):.4f}')}", readme), value


def test_the_test_targets_measure_the_shipped_model_as_notebook_06_does():
    """``bench/lookalike.py --test`` reads test once for the shipped model: it must be the final training's model and
    agree with notebook 06's collapse table (the same model, queries and corpus), and each target's verdict must
    follow from its measured value."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    record = json.loads((root / "bench" / "results" / "lookalike.json").read_text())
    test, stage = record["test"], record["sibling_stage"]
    six = json.loads((root / "bench" / "results" / "quality.json").read_text())["case_study"]["lookalike_test"]
    # the shipped model (workbook.train.final_model): the final training, then the sibling stage the rule picked on dev
    assert stage["picked"] == "sibling stage" and test["final_model"] == stage["model"]
    assert test["negatives"] == "sibling + mined"
    final = test["final"]
    assert final["sibling confusion@10"] == pytest.approx(six["sibling confusion rate@10"], abs=6e-4)
    assert final["gold below a sibling"] == pytest.approx(six["queries with negative margin"], abs=6e-4)
    assert final["queries with a sibling"] == six["queries measured"]
    for metric, t in test["targets"].items():
        op, goal = t["goal"].split()
        assert t["measured"] == final[metric] and t["ci"][0] <= t["measured"] <= t["ci"][1]
        assert t["met"] == (t["measured"] <= float(goal) if op == "<=" else t["measured"] >= float(goal))


def test_the_sibling_stage_trains_on_sibling_rows_from_the_model_it_is_given(minilm, tmp_path):
    """The second stage's rows all carry a sibling of their positive first (then a mined negative), it starts from the
    model it is given, saves beside it, and a second call loads the saved stage instead of training again."""
    import dataclasses

    from workbook.config import get_config
    from workbook.diagnose import sibling_map
    from workbook.icd10cm import load_icd10cm
    from workbook.retrieval import model_fingerprint
    from workbook.train.run import TrainedModel
    from workbook.train.stage import SIBLING_STAGE, sibling_rows, sibling_stage

    cfg = get_config(fast=True)
    ds = load_icd10cm(cfg)
    data, stats = sibling_rows(cfg, ds, minilm, minilm, max_rows=32)
    assert len(data) == 32 and stats.rows == stats.rows_with_sibling > 32
    control, all_rows = sibling_rows(cfg, ds, minilm, minilm, max_rows=32, control=True)  # any row, mined only
    assert len(control) == 32 and all_rows.rows > stats.rows and all_rows.rows_with_sibling == 0
    code_of = {ds.doc_text(d): d for d in ds.corpus}
    siblings = sibling_map(ds.extras["lookalikes"])
    assert all(code_of[n] in siblings[code_of[p]] for p, n in zip(data["positive"], data["negative_1"], strict=True))
    assert data.column_names == ["anchor", "positive", "negative_1", "negative_2"]  # then the first mined negative

    start = TrainedModel(model=minilm, path=tmp_path / "start" / "model")
    recipe = dataclasses.replace(SIBLING_STAGE, batch_size=16)
    first = sibling_stage(cfg, ds, start, minilm, recipe, max_rows=32, show_progress=False)
    assert first.card["steps"] == 2 and first.card["started_from"] == "start" and first.path.parent.parent == tmp_path
    assert first.card["model_fingerprint"] != model_fingerprint(minilm) == first.card["start_model_fingerprint"]
    again = sibling_stage(cfg, ds, start, minilm, recipe, max_rows=32, show_progress=False)
    assert again.path == first.path and model_fingerprint(again.model) == first.card["model_fingerprint"]


def test_the_sibling_stage_record_starts_from_the_final_training_and_follows_the_pick_rule():
    import json
    from pathlib import Path

    from workbook.config import get_config
    from workbook.train.lookalike import pick_lookalike_variant
    from workbook.train.stage import SIBLING_STAGE

    res = json.loads((Path(__file__).parents[1] / "bench" / "results" / "lookalike.json").read_text())
    stage, final = res["sibling_stage"], res["full_budget"]["mined"]
    rows = get_config(fast=False).sibling_stage_rows
    assert stage["model"].startswith(f"{final['model']}-{SIBLING_STAGE.name}-") and stage["rows"] == rows
    assert stage["control_model"].startswith(f"{final['model']}-{SIBLING_STAGE.name}-")
    assert stage["control_model"].endswith("-control")
    assert stage["control"]["queries"] == stage["sibling stage"]["queries"] == stage["final"]["queries"]
    # the control (the same steps on random rows, mined negatives only) does not move the confusion; the stage does
    control, paired = stage["control_paired"]["sibling confusion@10"], stage["paired"]["sibling confusion@10"]
    assert control["ci"][0] < 0 < control["ci"][1] and paired["ci"][1] < 0 and control["delta"] > paired["delta"]
    assert stage["final"] == final["dev_lookalike_whole_corpus"]  # the same model, queries and corpus as its record
    picked = pick_lookalike_variant({"mined": stage["final"], "sibling stage": stage["sibling stage"]})
    assert stage["picked"] == ("final" if picked == "mined" else picked)
    assert f"learning rate {SIBLING_STAGE.learning_rate:g}" in stage["what"]
