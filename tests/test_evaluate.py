from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest
import pytrec_eval

from workbook.evaluate import evaluate_ranking, query_metrics, results_table


def test_hand_computed_example():
    ranked = ["a", "x", "b", "y"]
    judged = {"a": 1, "b": 1, "c": 1}
    m = query_metrics(ranked, judged, ["recall@1", "recall@3", "precision@2", "mrr@10", "map@10", "ndcg@3"])
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@3"] == pytest.approx(2 / 3)
    assert m["precision@2"] == pytest.approx(1 / 2)
    assert m["mrr@10"] == pytest.approx(1.0)
    assert m["map@10"] == pytest.approx((1 / 1 + 2 / 3) / 3)
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@3"] == pytest.approx(dcg / idcg)


def test_no_hit_and_missing_query_score_zero():
    res = evaluate_ranking({"q1": ["z"]}, {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}, ["mrr@10", "ndcg@10"])
    assert list(res.per_query.index) == ["q1", "q2"]  # q3 has no relevant doc: left out
    assert res["mrr@10"] == 0.0 and res["ndcg@10"] == 0.0


def test_a_doc_ranked_twice_is_refused_with_query_and_rank():
    """A hand-made ranking that repeats a doc would count its hit twice (Recall@10 = 2.0 here): refused."""
    with pytest.raises(ValueError, match=r"mine: query 'q1' ranks doc 'a' twice \(again at rank 3\)"):
        evaluate_ranking({"q1": ["a", "x", "a"]}, {"q1": {"a": 1}}, ["recall@10", "ndcg@10"], name="mine")
    ok = evaluate_ranking({"q1": list(dict.fromkeys(["a", "x", "a"]))}, {"q1": {"a": 1}}, ["recall@10", "ndcg@10"])
    assert ok["recall@10"] == 1.0 and ok["ndcg@10"] == 1.0


def test_bad_metric_name():
    with pytest.raises(ValueError, match="ndcg@10"):
        query_metrics(["a"], {"a": 1}, ["ndcg"])
    with pytest.raises(ValueError):
        query_metrics(["a"], {"a": 1}, ["hits@10"])


def _random_run(seed: int, graded: bool):
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(60)]
    qrels, ranked = {}, {}
    for q in range(40):
        rel = rng.sample(docs, rng.randint(1, 6))
        qrels[f"q{q}"] = {d: (rng.randint(1, 3) if graded else 1) for d in rel}
        ranked[f"q{q}"] = rng.sample(docs, 50)
    return qrels, ranked


@pytest.mark.parametrize("graded", [False, True])
def test_matches_pytrec_eval(graded):
    qrels, ranked = _random_run(3 if graded else 4, graded)
    run = {q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q, docs in ranked.items()}
    trec = pytrec_eval.RelevanceEvaluator(
        qrels, {"ndcg_cut.10", "recall.1,10,50", "P.10", "map_cut.50", "recip_rank"}
    ).evaluate(run)
    ours = evaluate_ranking(
        ranked, qrels, ["ndcg@10", "recall@1", "recall@10", "recall@50", "precision@10", "map@50", "mrr@50"]
    ).per_query
    for q in qrels:
        assert ours.loc[q, "ndcg@10"] == pytest.approx(trec[q]["ndcg_cut_10"])
        assert ours.loc[q, "recall@1"] == pytest.approx(trec[q]["recall_1"])
        assert ours.loc[q, "recall@10"] == pytest.approx(trec[q]["recall_10"])
        assert ours.loc[q, "recall@50"] == pytest.approx(trec[q]["recall_50"])
        assert ours.loc[q, "precision@10"] == pytest.approx(trec[q]["P_10"])
        assert ours.loc[q, "map@50"] == pytest.approx(trec[q]["map_cut_50"])
        assert ours.loc[q, "mrr@50"] == pytest.approx(trec[q]["recip_rank"])


def test_results_table():
    a = evaluate_ranking({"q": ["a"]}, {"q": {"a": 1}}, ["recall@1"], name="A")
    b = evaluate_ranking({"q": ["b"]}, {"q": {"a": 1}}, ["recall@1"], name="B")
    table = results_table([a, b])
    assert table.loc["A", "recall@1"] == 1.0 and table.loc["B", "recall@1"] == 0.0


def test_by_slice_means_and_counts():
    from workbook.evaluate import by_slice

    res = evaluate_ranking({"q1": ["a"], "q2": ["x"]}, {"q1": {"a": 1}, "q2": {"b": 1}}, ["recall@1"], name="A")
    table = by_slice([res], {"s1": ["q1"], "s2": ["q2", "q9"]}, "recall@1")
    assert table.loc["A"].to_dict() == {"all": 0.5, "s1": 1.0, "s2": 0.0}
    assert table.loc["queries"].to_dict() == {"all": 2, "s1": 1, "s2": 1}


def _result(values, name, metric="recall@10"):
    from workbook.evaluate import RetrievalResult

    frame = pd.DataFrame({metric: values}, index=[f"q{i:03d}" for i in range(len(values))])
    return RetrievalResult(name=name, per_query=frame)


def test_bootstrap_ci_brackets_the_mean_and_is_seeded():
    from workbook.evaluate import bootstrap_ci

    values = np.random.default_rng(0).random(200)
    lo, hi = bootstrap_ci(values, seed=1)
    assert lo < values.mean() < hi and hi - lo < 0.2
    assert bootstrap_ci(values, seed=1) == (lo, hi)
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)


def test_paired_comparison_detects_a_real_difference_and_not_a_null_one():
    from workbook.evaluate import paired_comparison, results_with_ci

    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 300).astype(float)
    better = np.where(rng.random(300) < 0.3, 1.0, a)  # B fixes about 30% of A's misses, breaks nothing
    cmp = paired_comparison(_result(a, "A"), _result(better, "B"))
    assert cmp.delta > 0.1 and cmp.ci_low > 0 and cmp.p_value < 0.01 and cmp.significant
    assert cmp.a_better == 0 and cmp.b_better == int((better > a).sum())
    shuffled = rng.permutation(a)  # same distribution, unrelated per query: no systematic difference
    null = paired_comparison(_result(a, "A"), _result(a.copy(), "A2"))
    assert null.delta == 0 and null.p_value == 1.0 and not null.significant
    noise = paired_comparison(_result(a, "A"), _result(shuffled, "S"))
    assert noise.ci_low < 0 < noise.ci_high and noise.p_value > 0.05
    table = results_with_ci([_result(a, "A"), _result(better, "B")], metrics=["recall@10"])
    assert table.loc["B", "recall@10 lo"] <= table.loc["B", "recall@10"] <= table.loc["B", "recall@10 hi"]
    assert "95% CI" in cmp.as_series().index
    stacked = pd.DataFrame([cmp.as_series(), noise.as_series()])  # two different pairs: one block, no NaN
    assert not stacked.isna().any().any() and list(stacked.index) == [f"recall@10: {cmp.b} - A", "recall@10: S - A"]


def test_worst_queries_lists_lowest_first():
    from workbook.data import Dataset
    from workbook.evaluate import worst_queries

    corpus = {d: {"title": d, "text": f"text {d}", "metadata": {}} for d in ("a", "b", "c")}
    ds = Dataset(corpus, {"q1": "one", "q2": "two"}, {"test": {"q1": {"a": 1}, "q2": {"b": 1}}})
    ranked = {"q1": ["a", "c"], "q2": ["c", "a"]}
    res = evaluate_ranking(ranked, ds.qrels["test"], ["mrr@10"])
    worst = worst_queries(res, ranked, ds, "test", n=1)
    assert list(worst.index) == ["q2"] and worst.loc["q2", "gold"] == "b text b"
    assert worst.loc["q2", "top results"].startswith("c text c")


def test_worst_queries_break_ties_by_a_seeded_shuffle_not_by_id():
    from workbook.data import Dataset
    from workbook.evaluate import worst_queries

    corpus = {d: {"title": d, "text": f"text {d}", "metadata": {}} for d in ("a", "b")}
    qids = [f"code-{i:02d}" for i in range(10)] + [f"q{i:02d}" for i in range(10)]  # ids sort by kind
    ds = Dataset(corpus, {q: q for q in qids}, {"test": {q: {"a": 1} for q in qids}})
    ranked = {q: ["b"] for q in qids}  # every query misses: all tie at MRR 0
    res = evaluate_ranking(ranked, ds.qrels["test"], ["mrr@10"])
    worst = worst_queries(res, ranked, ds, "test", n=6, seed=0)
    assert {q[:2] for q in worst.index} == {"co", "q0"}  # both kinds, not the six first ids
    assert list(worst.index) == list(worst_queries(res, ranked, ds, "test", n=6, seed=0).index)  # seeded


def test_p_value_at_the_tests_floor_is_written_as_a_bound():
    from workbook.evaluate import paired_comparison

    qrels = {f"q{i}": {"a": 1} for i in range(40)}
    hit = evaluate_ranking({q: ["a"] for q in qrels}, qrels, ["recall@10"], name="hit")
    miss = evaluate_ranking({q: ["b"] for q in qrels}, qrels, ["recall@10"], name="miss")
    pc = paired_comparison(miss, hit, "recall@10", n_resamples=2000)
    assert pc.p_value == pytest.approx(pc.p_floor) and pc.p_text == "p ≤ 0.001"
    assert pc.as_series()["p-value"] == "p ≤ 0.001"


def test_truncate_renormalises():
    from workbook.evaluate import truncate

    emb = np.array([[0.6, 0.8, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    cut = truncate(emb, 1)
    assert cut.shape == (2, 1) and np.allclose(cut, 1.0)
    with pytest.raises(ValueError, match="dim must be in 1..3"):
        truncate(emb, 4)


def test_interpolate_weights_is_linear_per_tensor():
    import torch

    from workbook.evaluate import interpolate_weights

    torch.manual_seed(0)
    base, tuned = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    half = interpolate_weights(base, tuned, 0.5)
    assert torch.allclose(half.weight, (base.weight + tuned.weight) / 2)
    assert torch.allclose(interpolate_weights(base, tuned, 0.0).weight, base.weight)
    assert torch.allclose(interpolate_weights(base, tuned, 1.0).bias, tuned.bias)
    from workbook.retrieval import model_fingerprint

    with torch.no_grad():  # a signed zero: lerp gives +0.0 for it, equal in value but not in the bytes caches hash
        base.weight[0, 0], tuned.weight[0, 0] = -0.0, -0.0
    assert model_fingerprint(interpolate_weights(base, tuned, 0.0)) == model_fingerprint(base)
    assert model_fingerprint(interpolate_weights(base, tuned, 1.0)) == model_fingerprint(tuned)  # the same caches
    with pytest.raises(ValueError, match="alpha must be in"):
        interpolate_weights(base, tuned, 1.5)
    with pytest.raises(ValueError, match="same architecture"):
        interpolate_weights(base, torch.nn.Linear(4, 2), 0.5)


def test_pick_merge_ratio_respects_the_forgetting_budget():
    from workbook.evaluate import pick_merge_ratio

    curve = pd.DataFrame({"domain gain": [0.0, 0.15, 0.22, 0.25], "general loss": [0.0, 0.004, 0.012, 0.03]},
                         index=[0.0, 0.5, 0.75, 1.0])  # fmt: skip
    assert pick_merge_ratio(curve, 0.01) == 0.5
    assert pick_merge_ratio(curve, 0.05) == 1.0
    with pytest.raises(ValueError, match="no ratio"):
        pick_merge_ratio(curve, 0.01, min_gain_share=0.8)


def test_interpolation_curve_scores_each_ratio(monkeypatch):
    import torch

    from workbook import precision
    from workbook.evaluate import interpolation_curve

    base, tuned = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        base.weight.fill_(0.0)
        tuned.weight.fill_(1.0)
    weight = lambda m: float(m.weight)  # noqa: E731
    curve = interpolation_curve(base, tuned, [0.0, 0.5, 1.0], weight, lambda m: 1 - weight(m) / 10)
    assert curve["domain gain"].tolist() == [0.0, 0.5, 1.0]
    assert curve["general loss"].round(6).tolist() == [0.0, 0.05, 0.1]
    with pytest.raises(ValueError, match="must include 0"):
        interpolation_curve(base, tuned, [0.5], weight, weight)
    # Where bf16 falls back to fp32, the ends are scored as they are (not copies): a scorer may reuse what it has
    # cached for those very models (workbook.train.pool_scorer's ``encoded``).
    monkeypatch.setattr(precision, "native_bf16", lambda device="cpu": False)
    seen = []
    interpolation_curve(base, tuned, [0.0, 0.5, 1.0], lambda m: seen.append(m) or 0.0, weight, precision="bf16")
    assert seen[0] is base and seen[2] is tuned and seen[1] not in (base, tuned)


def test_save_results_writes_tables_and_dicts(tmp_path):
    import json

    from workbook.evaluate import save_results

    save_results(pd.DataFrame({"recall@10": [0.5]}, index=["BM25"]), tmp_path / "t.json")
    save_results({"alpha": 0.5, "curve": [{"alpha": 0.0}]}, tmp_path / "d.json")
    assert json.loads((tmp_path / "t.json").read_text()) == {"BM25": {"recall@10": 0.5}}
    assert json.loads((tmp_path / "d.json").read_text())["alpha"] == 0.5
