from __future__ import annotations

import math
import random

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
