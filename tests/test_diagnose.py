from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbook import diagnose as dg
from workbook.data import Dataset


def _unit(*rows) -> np.ndarray:
    x = np.array(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


GROUPS = [
    {"group_id": "g0", "kind": "excludes1", "anchor": "E08", "codes": ["A", "B"]},
    {"group_id": "g1", "kind": "siblings", "anchor": "E11", "codes": ["B", "C"]},
]


def test_sibling_map_unions_every_group_holding_a_code():
    assert dg.sibling_map(GROUPS) == {"A": {"B"}, "B": {"A", "C"}, "C": {"B"}}


def test_sibling_pair_cosines_exact_values_and_skips_missing_codes():
    emb = _unit([1, 0], [1, 1], [0, 1])
    pairs = dg.sibling_pair_cosines(emb, ["A", "B", "C"], [*GROUPS, {"codes": ["A", "Z"]}])
    assert list(zip(pairs.a, pairs.b, strict=True)) == [("A", "B"), ("B", "C")]
    np.testing.assert_allclose(pairs.cosine, [np.sqrt(0.5), np.sqrt(0.5)], rtol=1e-6)
    assert list(pairs.kind) == ["excludes1", "siblings"]


def test_random_pairs_never_pair_a_row_with_itself_and_respect_strata():
    basis = np.eye(6, dtype=np.float32)  # distinct rows are orthogonal: every cosine of a != b is exactly 0
    assert np.all(dg.random_pair_cosines(basis, 500, seed=1) == 0.0)
    # two strata of identical vectors, orthogonal to each other: within-stratum pairs all have cosine 1
    emb = np.repeat(np.eye(2, dtype=np.float32), 3, axis=0)
    within = dg.random_pair_cosines(emb, 500, seed=1, strata=[0, 0, 0, 1, 1, 1])
    assert np.all(within == 1.0)
    mixed = dg.random_pair_cosines(emb, 2000, seed=1)
    assert 0.3 < mixed.mean() < 0.5  # 2 of the 5 other rows share the stratum
    np.testing.assert_array_equal(mixed, dg.random_pair_cosines(emb, 2000, seed=1))


def test_sibling_confusion_by_hand():
    qrels = {"q1": {"A": 1}, "q2": {"A": 1}, "q3": {"A": 1}, "q4": {"C": 1}, "q5": {"X": 1}}
    ranked = {
        "q1": ["B", "A", "X"],  # sibling above gold: confused
        "q2": ["A", "B", "X"],  # gold first: fine
        "q3": ["X", "Y", "B"],  # sibling only at rank 3 > k: fine
        "q4": ["X", "B", "Y"],  # gold missing from the top k, sibling inside: confused
        "q5": ["A", "B", "C"],  # X has no siblings: left out
    }
    conf = dg.sibling_confusion(ranked, qrels, dg.sibling_map(GROUPS), k=2)
    assert list(conf.index) == ["q1", "q2", "q3", "q4"]
    assert list(conf.confused) == [True, False, False, True]
    assert conf.confused.mean() == 0.5
    assert conf.loc["q1", "gold_rank"] == 2 and conf.loc["q1", "sibling_rank"] == 1
    assert np.isnan(conf.loc["q3", "sibling_rank"]) and np.isnan(conf.loc["q4", "gold_rank"])


def test_telling_words_finds_the_word_that_tells_gold_from_the_sibling_above_it():
    texts = {"A": "Type 1 diabetes with kidney disease", "B": "Type 2 diabetes with kidney disease",
             "C": "Left eye cataract", "X": "Fracture of rib", "Y": "Fracture of skull"}  # fmt: skip
    queries = {"q1": "type 1 diabetic nephropathy", "q2": "diabetic kidney", "q4": "cataract", "q5": "rib"}
    qrels = {"q1": {"A": 1}, "q2": {"A": 1}, "q4": {"C": 1}, "q5": {"X": 1}}
    ranked = {"q1": ["B", "A"], "q2": ["B", "A"], "q4": ["X", "B"], "q5": ["X", "A"]}
    left = dg.telling_words(ranked, qrels, queries, texts.get, dg.sibling_map(GROUPS), k=2)
    assert list(left.index) == ["q1", "q2", "q4"]  # the confused queries of sibling_confusion, no others
    assert left.loc["q1", "telling"] == "1" and left.loc["q2", "telling"] == ""  # "1": in A's text, not in B's
    assert left.loc["q1", "sibling"] == "B" and left.loc["q4", "gold"] == "C" and left.loc["q4", "sibling"] == "B"
    assert left.loc["q4", "telling"] == "cataract"


def test_sibling_margins_sign_and_value():
    docs = _unit([1, 0], [0.8, 0.6], [0, 1])  # A, B, C
    queries = _unit([0.6, 0.8], [1, 0])
    qrels = {"near-B": {"A": 1}, "on-A": {"A": 1}}
    m = dg.sibling_margins(queries, ["near-B", "on-A"], docs, ["A", "B", "C"], qrels, dg.sibling_map(GROUPS))
    # near-B: gold A scores 0.6, sibling B scores 0.8*0.6+0.6*0.8=0.96 -> margin -0.36 (collapse)
    assert m.loc["near-B", "sibling"] == "B"
    assert m.loc["near-B", "margin"] == pytest.approx(-0.36, abs=1e-6)
    assert m.loc["on-A", "margin"] == pytest.approx(0.2, abs=1e-6)


def test_collapse_summary_collects_headlines():
    pairs = pd.DataFrame({"cosine": [0.9, 0.7]})
    conf = pd.DataFrame({"confused": [True, False, False, False]})
    margins = pd.DataFrame({"margin": [-0.1, 0.2, 0.3]})
    s = dg.collapse_summary(pairs, np.array([0.1, 0.3]), conf, margins, k=10)
    assert s["sibling pair cosine (mean)"] == pytest.approx(0.8)
    assert s["random pair cosine (mean)"] == pytest.approx(0.2)
    assert s["sibling confusion rate@10"] == 0.25
    assert s["margin gold - best sibling (median)"] == pytest.approx(0.2)
    assert s["queries with negative margin"] == pytest.approx(1 / 3)


def test_score_table_marks_gold_winner_and_margin():
    docs = _unit([1, 0], [0.8, 0.6])
    table = dg.score_table(["type 1", "type 2"], _unit([0.6, 0.8], [1, 0]), ["E10", "E11"], docs, ["E10", "E11"])
    assert list(table["closest"]) == ["E11", "E10"]
    assert list(table["margin"]) == [pytest.approx(-0.36), pytest.approx(-0.2)]


def _tiny_dataset() -> Dataset:
    corpus = {c: {"title": c, "text": f"doc {c}", "metadata": {}} for c in ["A", "B", "C", "D"]}
    queries = {"q1": "a", "q2": "b", "q3": "ab", "q4": "d", "q5": "E11.65"}
    qrels = {"train": {"q1": {"A": 1}, "q3": {"A": 1, "B": 1}}, "dev": {"q2": {"B": 1}, "q4": {"D": 1}}}
    meta = {
        "q1": {"slices": ["lookalike"]},
        "q2": {"slices": ["lookalike", "abbreviation"]},
        "q3": {"slices": ["other"]},
        "q4": {"slices": ["other"]},
        "q5": {"slices": ["exact-code"]},
    }
    return Dataset(corpus, queries, qrels, meta)


def test_group_points_docs_and_queries_of_the_group():
    pts = dg.group_points(_tiny_dataset(), [{"anchor": "A", "kind": "category", "codes": ["A", "B", "Q"]}])
    assert list(pts.id) == ["A", "B", "q1", "q3", "q2"]
    assert list(pts.kind) == ["doc", "doc", "query", "query", "query"]
    assert list(pts.label) == ["A", "B", "A", "x", "B"]  # q3 is judged on A and B: no shared prefix
    assert set(pts.group) == {"A (category)"}


def test_metric_by_slice_means_and_counts():
    ds = _tiny_dataset()
    idx = pd.Index(["q1", "q2", "q3", "q4"], name="query")
    runs = {
        "dense": pd.DataFrame({"recall@10": [1.0, 0.0, 1.0, 1.0]}, index=idx),
        "bm25": pd.DataFrame({"recall@10": [0.0, 0.0, 1.0, 0.5]}, index=idx),
    }
    table = dg.metric_by_slice(runs, ds)
    assert list(table.index) == ["abbreviation", "lookalike", "other", "all"]
    assert table.loc["lookalike", "dense"] == 0.5 and table.loc["lookalike", "queries"] == 2
    assert table.loc["other", "bm25"] == 0.75 and table.loc["all", "dense"] == 0.75


def test_centroid_distance_and_probe():
    assert dg.centroid_distance(_unit([1, 0], [1, 0.0]), _unit([0, 1])) == pytest.approx(1.0)
    assert dg.centroid_distance(_unit([1, 1]), _unit([2, 2])) == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.1, (60, 8)) + 1.0
    b = rng.normal(0, 0.1, (80, 8)) - 1.0
    assert dg.probe_accuracy(a, b, seed=0) == 1.0
    same = rng.normal(0, 1, (200, 8))
    assert dg.probe_accuracy(same[:100], same[100:], seed=0) < 0.65  # one distribution split in two: chance
    with pytest.raises(ValueError, match="at least 5"):
        dg.probe_accuracy(a[:3], b, folds=5)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from workbook.models import minilm_path

    return AutoTokenizer.from_pretrained(str(minilm_path()))


def test_fragmentation_with_the_minilm_tokenizer(tokenizer):
    table = dg.fragmentation_table(tokenizer, ["diabetes", "hyperglycemia", "E11.65"])
    assert table.loc["diabetes", "pieces"] == "diabetes"
    assert table.loc["hyperglycemia", "pieces"] == "hyper ##gly ##ce ##mia"
    assert table.loc["E11.65", "pieces"] == "e ##11 . 65"
    assert list(table.n_pieces) == [1, 4, 4]
    words = dg.words_of(["Diabetes, diabetes", "hyperglycemia!"])
    assert words == ["diabetes", "diabetes", "hyperglycemia"]
    summary = dg.fragmentation_summary(tokenizer, {"domain": words, "english": ["water", "house"]})
    assert summary.loc["domain", "pieces per word"] == 2.0  # (1 + 1 + 4) / 3, every occurrence counted
    assert summary.loc["domain", "split"] == pytest.approx(1 / 3)
    assert summary.loc["english", "pieces per word"] == 1.0 and summary.loc["english", "words"] == 2
    assert len(dg.COMMON_ENGLISH) >= 200


def test_projection_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(60, 8)).astype(np.float32)
    ids = [f"d{i}" for i in range(60)]
    path = tmp_path / "umap" / "proj.pkl"
    proj = dg.fit_projection(emb, ids, path, seed=7, meta={"note": "base"}, n_neighbors=5)
    assert proj.coords.shape == (60, 2) and path.exists()
    loaded = dg.load_projection(path)
    assert loaded.ids == ids and loaded.meta == {"note": "base"}
    np.testing.assert_array_equal(loaded.coords, proj.coords)
    new = rng.normal(size=(10, 8)).astype(np.float32)
    np.testing.assert_array_equal(loaded.transform(new), proj.transform(new))
    with pytest.raises(FileNotFoundError, match="run notebook 01"):
        dg.load_projection(tmp_path / "missing.pkl")
    with pytest.raises(ValueError, match="3 ids for 60 vectors"):
        dg.fit_projection(emb, ids[:3])


def test_find_group_and_nearest_doc_agreement():
    assert dg.find_group(GROUPS, "B")["group_id"] == "g0"
    assert dg.find_group(GROUPS, "B", kind="siblings")["group_id"] == "g1"
    with pytest.raises(KeyError, match="no siblings lookalike group holds A"):
        dg.find_group(GROUPS, "A", kind="siblings")
    points = pd.DataFrame(
        {
            "kind": ["doc", "doc", "query", "query", "query", "query"],
            "group": ["g"] * 6,
            "label": ["A", "B", "A", "B", "B", "A1x"],  # the multi-code query (A1x) is not counted
        }
    )
    coords = np.array([[0, 0], [10, 0], [1, 0], [9, 0], [2, 0], [10, 0]], dtype=float)
    assert dg.nearest_doc_agreement(points, coords) == pytest.approx(2 / 3)


GO_SLICES = {"lookalike": 0.55, "abbreviation": 0.7, "exact-code": 0.7, "other": 0.9}
GAP, PAIRS, CLUSTER = dg.GAP_CHECK, dg.pairs_check(1000), dg.CLUSTER_CHECK


def test_gate_go_when_gap_pairs_and_clustered_errors():
    d = dg.should_fine_tune(0.70, 0.90, 5000, GO_SLICES, overall=0.70)
    assert d.go and all(d.checks.values()) and len(d.reasons) == 3 and d.verdict == "GO"
    assert "lookalike (error +0.150)" in d.reasons[2]
    assert str(d).startswith("GO: fine-tune")
    assert d.status == dict.fromkeys([GAP, PAIRS, CLUSTER], "pass")  # no per-query values: the point estimates decide


def test_gate_no_go_when_cheap_method_reaches_target():
    d = dg.should_fine_tune(0.92, 0.90, 5000, GO_SLICES, overall=0.70)
    assert not d.go and d.checks == {GAP: False, PAIRS: True, CLUSTER: True}
    assert len(d.reasons) == 1 and "already reaches" in d.reasons[0]
    assert str(d).startswith("NO-GO") and d.verdict == "NO-GO"


def test_gate_no_go_with_too_few_pairs():
    d = dg.should_fine_tune(0.70, 0.90, 999, GO_SLICES, overall=0.70)
    assert not d.go and d.failed == [PAIRS]
    assert d.reasons == ["only 999 training pairs < 1000: label or generate more first (notebook 04)"]


def test_gate_no_go_when_errors_are_spread_evenly():
    # every domain slice within 0.05 of the overall error; a non-domain slice ("other") far worse does not count
    even = {"lookalike": 0.66, "abbreviation": 0.70, "exact-code": 0.72, "other": 0.2}
    d = dg.should_fine_tune(0.70, 0.90, 5000, even, overall=0.70)
    assert not d.go and d.failed == [CLUSTER]
    assert d.reasons[0].startswith("errors do not cluster in domain slices")
    assert "lookalike +0.040, abbreviation +0.000, exact-code -0.020" in d.reasons[0]
    # exactly the margin counts as clustered
    assert dg.should_fine_tune(0.70, 0.90, 5000, {"exact-code": 0.5}, overall=0.75, margin=0.25).go


def test_gate_without_slices_does_not_measure_the_cluster_check():
    """No query slices: the third check is not measured (None), not failed, and GO rests on the other two."""
    for slices in ({}, None):
        d = dg.should_fine_tune(0.70, 0.90, 5000, slices, overall=0.70)
        assert d.checks == {GAP: True, PAIRS: True, CLUSTER: None} and d.go and d.verdict == "GO"
        assert d.status[CLUSTER] == "not measured" and d.not_measured == [CLUSTER]
        assert d.checks[GAP]  # notebooks index the checks by name as before
        assert "not measured: no query slices in this dataset" in d.reasons
        assert "(not measured: errors cluster in domain slices)" in str(d).splitlines()[0]
        assert "[-] errors cluster in domain slices" in str(d)
    # a failing measured check still says NO-GO, and the unmeasured one is listed beside it
    d = dg.should_fine_tune(0.70, 0.90, 10, {}, overall=0.70)
    assert not d.go and d.failed == [PAIRS] and d.reasons[-1] == "not measured: no query slices in this dataset"
    # slices that are none of the domain slices: not measured either, and the text names them
    d = dg.should_fine_tune(0.70, 0.90, 5000, {"colloquial": 0.2}, overall=0.70)
    assert d.checks[CLUSTER] is None and d.go and "none of the domain slices" in d.texts[CLUSTER]
    # no metric for the best cheap method (no dev split): the gap is not measured, never read from elsewhere
    d = dg.should_fine_tune(None, 0.90, 5000)
    assert d.checks == {GAP: None, PAIRS: True, CLUSTER: None} and d.go


def _per_query(n: int, mean: float, seed: int, prefix: str) -> pd.Series:
    """``n`` 0/1 values with exactly ``round(n * mean)`` ones, in a seeded order."""
    ones = round(n * mean)
    values = np.r_[np.ones(ones), np.zeros(n - ones)]
    np.random.default_rng(seed).shuffle(values)
    return pd.Series(values, index=[f"{prefix}{i:04d}" for i in range(n)])


def test_gate_ci_says_too_small_to_decide_on_a_small_slice():
    """Notebook 02's case: the GO rests on a 45-query slice whose excess error (+0.06) barely tops the 0.05 margin."""
    rest = _per_query(900, 0.70, 0, "r")
    abbr = _per_query(45, 0.64, 1, "a")  # point estimate: excess error about +0.06 over the overall
    per_query = pd.concat([rest, abbr])
    slices = {"abbreviation": list(abbr.index), "lookalike": list(rest.index[:600])}
    d = dg.should_fine_tune(**dg.gate_inputs({"best": per_query}, slices), target=0.9, n_pairs=5000, seed=3)
    assert d.checks == {GAP: True, PAIRS: True, CLUSTER: True}  # every point estimate passes ...
    assert d.status == {GAP: "pass", PAIRS: "pass", CLUSTER: "too small to decide"}  # ... one check is not decided
    assert d.go and d.verdict == "GO (uncertain)" and d.undecided == [CLUSTER]
    assert str(d).startswith("GO (uncertain)") and "[?] errors cluster in domain slices" in str(d)
    row = d.slices.loc["abbreviation"]
    assert row["queries"] == 45 and row["ci_low"] < 0.05 <= row["excess error"] < row["ci_high"]
    assert "45 queries" in d.texts[CLUSTER] and d.texts[CLUSTER].startswith("too small to decide")
    gap = d.numbers[GAP]
    assert gap["queries"] == 945 and gap["ci_low"] < gap["value"] < gap["ci_high"] < 0.9
    again = dg.should_fine_tune(**dg.gate_inputs({"best": per_query}, slices), target=0.9, n_pairs=5000, seed=3)
    assert again.numbers == d.numbers  # seeded


def test_gate_ci_decides_a_large_slice_and_a_gap_near_the_target():
    rest = _per_query(2000, 0.80, 0, "r")
    look = _per_query(2000, 0.60, 1, "l")  # excess error +0.10 over 4,000 queries: clearly above 0.05
    per_query = pd.concat([rest, look])
    inputs = dg.gate_inputs({"best": per_query}, {"lookalike": list(look.index)})
    d = dg.should_fine_tune(**inputs, target=0.9, n_pairs=5000)
    assert d.verdict == "GO" and d.status[CLUSTER] == "pass" and d.slices.loc["lookalike", "ci_low"] > 0.05
    # a target inside the best method's CI: the gap cannot be told from noise either way
    near = dg.should_fine_tune(**inputs, target=0.705, n_pairs=5000)
    assert near.status[GAP] == "too small to decide" and near.checks[GAP] and near.verdict == "GO (uncertain)"
    above = dg.should_fine_tune(**inputs, target=0.695, n_pairs=5000)
    assert not above.go and above.failed == [GAP] and above.verdict == "NO-GO (uncertain)"
    # a decided failure next to an undecided one: the NO-GO is certain
    assert dg.should_fine_tune(**inputs, target=0.695, n_pairs=10).verdict == "NO-GO"


def test_gate_inputs_picks_the_best_cheap_method_like_the_pipeline():
    a = pd.Series({"q1": 1.0, "q2": 0.0, "q3": 1.0})
    b = pd.Series({"q1": 0.0, "q2": 1.0, "q3": 1.0})  # the same mean: the first one wins the tie
    c = pd.Series({"q1": 0.0, "q2": 0.0, "q3": 1.0})
    inputs = dg.gate_inputs({"A": a, "B": b.to_dict(), "C": c}, {"lookalike": ["q1", "q2", "zz"], "empty": ["zz"]})
    assert inputs["best_name"] == "A" and inputs["best_cheap"] == inputs["overall"] == pytest.approx(2 / 3)
    assert inputs["slice_queries"] == {"lookalike": ["q1", "q2"]} and inputs["slice_metrics"] == {"lookalike": 0.5}
    assert dg.gate_inputs({"B": b, "A": a})["best_name"] == "B" and dg.gate_inputs({"A": a})["slice_queries"] == {}


def test_gate_to_dict_is_json_ready():
    import json

    rest, look = _per_query(300, 0.7, 0, "r"), _per_query(100, 0.5, 1, "l")
    inputs = dg.gate_inputs({"best": pd.concat([rest, look])}, {"lookalike": list(look.index)})
    record = json.loads(json.dumps(dg.should_fine_tune(**inputs, target=0.9, n_pairs=50).to_dict()))
    assert record["verdict"] == "NO-GO" and record["checks"][PAIRS] is False and record["slices"][0]["queries"] == 100
    assert set(record["numbers"][GAP]) == {"value", "threshold", "ci_low", "ci_high", "queries"}


def test_gate_checks_are_python_bools_even_from_numpy_inputs():
    """Notebooks pass numpy scalars; `decision.checks[...] is True` must still hold (exercise 01.4 relies on it)."""
    import numpy as np

    from workbook.diagnose import should_fine_tune

    d = should_fine_tune(best_cheap=np.float64(0.6), target=0.9, n_pairs=np.int64(5000),
                         slice_metrics={"lookalike": np.float64(0.4)}, overall=np.float64(0.6))  # fmt: skip
    assert all(v is True for v in d.checks.values()), d.checks
