"""Tests of workbook.exercises: for every check, a right answer passes and a wrong answer fails with a hint.

Inputs are tiny and hand-made (seven ICD-10-CM codes, a few queries, hand-written rankings, cards and shadow
reports), so the expected answers can be worked out by hand; the checks that need a model use the real
all-MiniLM-L6-v2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbook import exercises as ex
from workbook.config import get_config
from workbook.data import Dataset
from workbook.deploy import JobReport, ShadowReport
from workbook.evaluate import evaluate_ranking
from workbook.models import MINILM, load_model
from workbook.negatives import MinedNegatives, MiningSettings
from workbook.retrieval import encode, rrf
from workbook.train import TrainedModel

DOCS = {
    "E10.65": ("E10.65 Type 1 diabetes mellitus", "Type 1 diabetes mellitus with hyperglycemia"),
    "E11.65": ("E11.65 Type 2 diabetes mellitus", "Type 2 diabetes mellitus with hyperglycemia"),
    "E11.69": ("E11.69 Type 2 diabetes mellitus", "Type 2 diabetes mellitus with other specified complication"),
    "I21.01": ("I21.01 Acute myocardial infarction", "ST elevation (STEMI) myocardial infarction of left main"),
    "I21.4": ("I21.4 Acute myocardial infarction", "Non-ST elevation (NSTEMI) myocardial infarction"),
    "I50.21": ("I50.21 Heart failure", "Acute systolic (congestive) heart failure"),
    "I50.22": ("I50.22 Heart failure", "Chronic systolic (congestive) heart failure"),
}
# query id -> (text, split, relevant codes, slices)
QUERIES = {
    "t1": ("type 2 diabetes with high blood sugar", "train", ["E11.65"], ["lookalike"]),
    "t2": ("NSTEMI", "train", ["I21.4"], ["abbreviation"]),
    "t3": ("E11.69", "train", ["E11.69"], ["exact-code"]),
    "d1": ("sugar sickness kind one", "dev", ["E10.65"], ["colloquial"]),  # no word shared with any document
    "d2": ("heart attack without ST elevation", "dev", ["I21.4"], ["colloquial"]),
    "d3": ("E11.65", "dev", ["E11.65"], ["exact-code"]),
    "s1": ("acute systolic heart failure", "test", ["I50.21"], ["lookalike"]),
    "s2": ("type 2 diabetes hyperglycaemia", "test", ["E11.65"], ["lookalike"]),
    "s3": ("diabetes type 1 or 2", "test", ["E10.65", "E11.65"], ["other"]),
}
GROUPS = [
    {"group_id": "g0", "kind": "excludes1", "anchor": "E10", "codes": ["E10.65", "E11.65"]},
    {"group_id": "g1", "kind": "siblings", "anchor": "E11.6", "codes": ["E11.65", "E11.69"]},
    {"group_id": "g2", "kind": "category", "anchor": "I21", "codes": ["I21.01", "I21.4"]},
    {"group_id": "g3", "kind": "siblings", "anchor": "I50.2", "codes": ["I50.21", "I50.22"]},
]


def tiny_ds() -> Dataset:
    corpus = {d: {"title": t, "text": x, "metadata": {}} for d, (t, x) in DOCS.items()}
    qrels: dict = {"train": {}, "dev": {}, "test": {}}
    meta = {}
    trained = {c for _, split, codes, _ in QUERIES.values() if split == "train" for c in codes}
    for qid, (_, split, codes, slices) in QUERIES.items():
        qrels[split][qid] = dict.fromkeys(codes, 1)
        meta[qid] = {"split": split, "slices": slices}
        if split != "train":
            meta[qid]["codes"] = "seen-code" if trained & set(codes) else "unseen-code"
    queries = {q: v[0] for q, v in QUERIES.items()}
    return Dataset(corpus, queries, qrels, meta, name="tiny", extras={"lookalikes": GROUPS})


@pytest.fixture(scope="module")
def ds():
    return tiny_ds()


@pytest.fixture(scope="module")
def minilm():
    return load_model(MINILM, get_config(fast=True))


def _fails_with_hint(result: ex.CheckResult) -> None:
    assert not result.passed and not result
    assert result.hint and "NOT YET" in str(result) and "Hint:" in str(result)


def _passes(result: ex.CheckResult) -> None:
    assert result.passed and result, str(result)
    assert "RIGHT" in str(result) and result.message


def test_result_prints_a_verdict_never_just_false():
    wrong = ex.CheckResult("01.2", False, "the rate is off", "use sibling_map per kind", expected=0.3)
    assert str(wrong) == "Exercise 01.2: NOT YET\n  the rate is off\n  Hint: use sibling_map per kind"
    assert repr(wrong) == str(wrong) and "0.3" not in str(wrong)  # the reference value is not given away
    assert str(ex.CheckResult("01.2", True, "fine")).startswith("Exercise 01.2: RIGHT")


def test_every_exercise_has_a_check_and_notebook_lookup():
    assert len(ex.EXERCISES) == 31 and all(k[:2] in {f"0{i}" for i in range(9)} for k in ex.EXERCISES)
    assert list(ex.exercises_of("03_hard_negatives")) == ["03.1", "03.2", "03.3"]
    assert ex.EXERCISES["03.1"] is ex.check_random_window and ex.EXERCISES["04.4"] is ex.check_contradicting_labels
    assert ex.EXERCISES["07.2"] is ex.check_third_version and ex.EXERCISES["07.3"] is ex.check_reembed_cost


# ------------------------------------------------------------------------------------------------ 00


def test_lookalike_groups(ds):
    _passes(ex.check_lookalike_groups([("siblings", ["E11.69", "E11.65"]), GROUPS[0]], ds, code="E11.65"))
    _fails_with_hint(ex.check_lookalike_groups([GROUPS[0]], ds, code="E11.65"))  # the siblings group is missing
    _fails_with_hint(ex.check_lookalike_groups([], ds, code="J45.909"))  # not in this corpus


def test_colloquial_recall(ds, minilm):
    # Seven documents: the dense top 10 holds all of them (recall 1); BM25 shares no word with d1 (recall 0 there).
    right = {"BM25": 0.5, "dense": 1.0}
    _passes(ex.check_colloquial_recall(right, ds, minilm, split="dev", winner="dense"))
    _fails_with_hint(ex.check_colloquial_recall({"BM25": 1.0, "dense": 1.0}, ds, minilm, split="dev"))
    _fails_with_hint(ex.check_colloquial_recall(right, ds, minilm, split="dev", winner="BM25"))
    _fails_with_hint(ex.check_colloquial_recall({"bm25": 0.5}, ds, minilm, split="dev"))


def test_unseen_codes(ds):
    # test: s1 (I50.21, never trained) is unseen; s2 and s3 share E11.65 with train query t1.
    _passes(ex.check_unseen_codes(1, ds, "test"))
    _fails_with_hint(ex.check_unseen_codes(2, ds, "test"))


# ------------------------------------------------------------------------------------------------ 01


def test_score_table(ds, minilm):
    from workbook.diagnose import score_table

    codes = ["I50.21", "I50.22"]
    asks = {"sudden systolic heart failure": "I50.21", "long-standing systolic heart failure": "I50.22"}
    d_emb = encode(minilm, [ds.doc_text(c) for c in codes], show_progress=False)
    table = score_table(list(asks), encode(minilm, list(asks), show_progress=False), codes, d_emb, list(asks.values()))
    picks = bool((table["closest"] == table["gold"]).all())
    _passes(ex.check_score_table(table, minilm, ds, codes=codes, picks_right=picks))
    _fails_with_hint(ex.check_score_table(table, minilm, ds, codes=codes, picks_right=not picks))
    shifted = table.copy()
    shifted["I50.21"] = shifted["I50.21"] + 0.05  # a cosine the model does not give
    _fails_with_hint(ex.check_score_table(shifted, minilm, ds, codes=codes))
    _fails_with_hint(ex.check_score_table(table.iloc[:1], minilm, ds, codes=codes))  # one side only


def test_confusion_by_kind():
    qrels = {"q1": {"E11.65": 1}, "q2": {"E11.65": 1}, "q3": {"I21.4": 1}}
    ranked = {"q1": ["E10.65", "E11.65"], "q2": ["E11.69", "E11.65"], "q3": ["I21.4", "I21.01"]}
    # excludes1: E10.65 above gold in q1 only -> 1/2; siblings: E11.69 above gold in q2 -> 1/2; category: q3 fine.
    right = {"excludes1": 0.5, "siblings": 0.5, "category": 0.0}
    _passes(ex.check_confusion_by_kind(right, ranked, qrels, GROUPS, k=10))
    _fails_with_hint(ex.check_confusion_by_kind({**right, "siblings": 2 / 3}, ranked, qrels, GROUPS, k=10))
    _fails_with_hint(ex.check_confusion_by_kind(right, ranked, qrels, GROUPS, k=10, most="category"))


def test_code_fragmentation(minilm):
    tok = {"MiniLM": minilm.tokenizer}
    # "E11.65" -> e ##11 . 65 (4 pieces); "I21.4" -> i ##21 . 4 (4 pieces)
    _passes(ex.check_code_fragmentation({"MiniLM": 4.0}, tok, ["E11.65", "I21.4"], fewer="MiniLM"))
    _fails_with_hint(ex.check_code_fragmentation({"MiniLM": 1.0}, tok, ["E11.65", "I21.4"]))


GATE = {"best_cheap": 0.6, "target": 0.9, "n_pairs": 2000, "slice_metrics": {"lookalike": 0.5}, "overall": 0.6}


def test_gate_margin():
    # lookalike error 0.5 vs overall 0.4: +0.1, which clusters at margin 0.05 but not at 0.15
    right = ["gap remains after the cheap wins", "at least 1000 training pairs"]
    _passes(ex.check_gate_margin(right, GATE, margin=0.15))
    _fails_with_hint(ex.check_gate_margin([*right, "errors cluster in domain slices"], GATE, margin=0.15))


# ------------------------------------------------------------------------------------------------ 02


def test_rrf_constant():
    dense = {"q1": ["x", "g1"], "q2": ["g2", "y"]}
    bm25 = {"q1": ["g1", "z"], "q2": ["w", "g2"]}
    qrels = {"q1": {"g1": 1}, "q2": {"g2": 1}}
    right = {}
    for c in (10, 200):
        res = evaluate_ranking(rrf([dense, bm25], k=100, c=c), qrels, ["recall@1", "recall@100"])
        right[c] = {"recall@1": res["recall@1"], "recall@100": res["recall@100"]}
    assert right[10]["recall@100"] == 1.0  # every gold doc is in one of the lists
    _passes(ex.check_rrf_constant(right, [dense, bm25], qrels))
    _fails_with_hint(ex.check_rrf_constant({10: right[10], 200: {"recall@1": 0.0, "recall@100": 0.5}},
                                           [dense, bm25], qrels))  # fmt: skip
    _fails_with_hint(ex.check_rrf_constant({10: right[10]}, [dense, bm25], qrels))  # c=200 missing


def test_bm25_params(ds):
    # dev: d1 shares no word with any doc (0); d2 finds I21.4 via "st"/"elevation"; d3 "E11.65" matches its title.
    _passes(ex.check_bm25_params({"exact-code": 1.0, "all": 2 / 3}, ds, "dev", k1=0.9, b=0.4))
    _fails_with_hint(ex.check_bm25_params({"exact-code": 1.0, "all": 1.0}, ds, "dev", k1=0.9, b=0.4))


def test_rerank_depth():
    candidates = {"q1": ["a", "b", "c"], "q2": ["d", "e", "f"]}
    qrels = {"q1": {"b": 1}, "q2": {"z": 1}}
    reranked = {"q1": ["b", "a", "c"], "q2": ["e", "d", "f"]}
    _passes(ex.check_rerank_depth(0.5, candidates, qrels, reranked, depth=10))
    _fails_with_hint(ex.check_rerank_depth(1.0, candidates, qrels, reranked, depth=10))
    _fails_with_hint(ex.check_rerank_depth(0.5, candidates, qrels, {"q1": ["z", "a"], "q2": ["d"]}, depth=10))


def test_gate_flip():
    _passes(ex.check_gate_flip("gap remains after the cheap wins", GATE, target=0.59))
    _fails_with_hint(ex.check_gate_flip("at least 1000 training pairs", GATE, target=0.59))


# ------------------------------------------------------------------------------------------------ 03


def _mined(settings: MiningSettings) -> MinedNegatives:
    # q1 -> E11.65: E11.69 is a true negative, E10.65 an Excludes1 partner; t1's other wording is judged E11.65 too.
    rows = [
        {"query_id": "t1", "positive": "E11.65", "positive_score": 0.8, "negatives": ["E11.69", "E10.65"],
         "scores": [0.7, 0.6]},
        {"query_id": "t2", "positive": "I21.4", "positive_score": 0.9, "negatives": [], "scores": []},
        {"query_id": "s3", "positive": "E10.65", "positive_score": 0.7, "negatives": ["E11.65"], "scores": [0.65]},
    ]  # fmt: skip
    return MinedNegatives(rows=rows, settings=settings)


def test_reranker_margin(ds):
    settings = MiningSettings(name="rm 0.05", range_max=50, relative_margin=0.05)
    bi = _mined(settings)  # t2 has no negative: 1 query left empty
    ce = _mined(settings)
    ce.rows = [{**r, "positive_score": r["positive_score"] + 2.0} for r in ce.rows]  # the reranker's own scale
    ce.rows[1] = {**ce.rows[1], "negatives": ["I21.01"], "scores": [1.5]}  # the reranker keeps a negative for t2
    right = {"bi-encoder": 1, "cross-encoder": 0}
    _passes(ex.check_reranker_margin(right, ds, bi, ce))
    _fails_with_hint(ex.check_reranker_margin({"bi-encoder": 1, "cross-encoder": 1}, ds, bi, ce))
    _fails_with_hint(ex.check_reranker_margin({"bi-encoder": 1, "cross-encoder": 1}, ds, bi, _mined(settings)))
    _fails_with_hint(ex.check_reranker_margin(right, ds, bi, _mined(MiningSettings(relative_margin=0.1))))


def test_random_window(ds):
    mined = _mined(MiningSettings(name="random", range_min=10, range_max=100, sampling_strategy="random"))
    # Excludes1 partners: E11.65 <-> E10.65. Row t1 finds its partner, and so does row s3: E11.65 is judged relevant to
    # s3 only in the *test* split, which the audit of a training set never reads (no false negative, and a partner
    # to find): FN rate 0/3, partner recall 2/2.
    right = {"FN rate %": 0.0, "partner recall": 1.0}
    _passes(ex.check_random_window(right, ds, mined))
    _fails_with_hint(ex.check_random_window({**right, "partner recall": 0.5}, ds, mined))
    _fails_with_hint(ex.check_random_window(right, ds, _mined(MiningSettings(range_min=10, range_max=100))))


def test_equivalence_rule():
    rows = [{"query_id": "q", "positive": "I50.21", "negatives": ["I50.22", "I50.31", "I50.2", "I50.21"],
             "scores": [0.9, 0.8, 0.7, 0.6]},
            {"query_id": "r", "positive": "S31.552A", "negatives": ["S31.552D", "S31.553A"],
             "scores": [0.9, 0.8]}]  # fmt: skip
    mined = MinedNegatives(rows=rows, settings=MiningSettings())
    assert ex.last_character_twins("S31.552A", "S31.552D") and not ex.last_character_twins("I50.2", "I50.21")
    assert ex.encounter_twins("S31.552A", "S31.552D") and not ex.encounter_twins("I50.21", "I50.22")
    _passes(ex.check_equivalence_rule(2, mined))  # last-character twins: I50.22, S31.552D
    _fails_with_hint(ex.check_equivalence_rule(3, mined))
    _passes(ex.check_equivalence_rule(1, mined, rule=ex.encounter_twins))  # only S31.552D
    _fails_with_hint(ex.check_equivalence_rule(2, mined, rule=ex.encounter_twins))


# ------------------------------------------------------------------------------------------------ 04


def _candidates() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "doc_id": ["I50.21", "I50.21", "I50.21"],
            "query": [
                "Acute systolic (congestive) heart failure",  # a copy of the passage: dropped before the round trip
                "acute systolic heart failure, left ventricle",  # finds I50.21 first
                "type 1 diabetes with hyperglycemia",  # finds E10.65 first: fails a top-1 round trip
            ],
        }
    )


@pytest.fixture(scope="module")
def round_trip(ds, minilm):
    from workbook.synth import RoundTrip

    return RoundTrip(ds, minilm, k=1)


def test_round_trip_retention(ds, round_trip):
    cands = {"colloquial": _candidates()}
    _passes(ex.check_round_trip_retention({"colloquial": 50.0}, cands, ds, round_trip))
    _fails_with_hint(ex.check_round_trip_retention({"colloquial": 66.7}, cands, ds, round_trip))  # copy counted


def test_endpoint_filters(ds):
    from workbook.synth import apply_filters

    local = apply_filters(_candidates(), ds, None)  # the copy is dropped: copy 1 of 3
    endpoint = apply_filters(_candidates().iloc[1:], ds, None)  # nothing to drop
    filtered = {"local": local, "endpoint": endpoint}
    _passes(ex.check_endpoint_filters(["copy"], filtered))
    _fails_with_hint(ex.check_endpoint_filters([], filtered))
    _fails_with_hint(ex.check_endpoint_filters(["copy", "round trip"], filtered))  # not a filter name
    _passes(ex.check_endpoint_filters([], {"endpoint": endpoint, "local": local}))  # the other way round: none


def test_round_trip_k(ds, round_trip):
    # kept: "acute systolic heart failure, left ventricle": 4 shared of 7 content words, not colloquial
    right = {"kept": 1, "mean overlap": 4 / 7, "% colloquial": 0.0}
    _passes(ex.check_round_trip_k(right, _candidates(), ds, round_trip))
    _fails_with_hint(ex.check_round_trip_k({**right, "kept": 2}, _candidates(), ds, round_trip))


def test_contradicting_labels(ds):
    pairs = [("Type 2 diabetes with high blood sugar!", "E11.69"),  # = t1 (judged E11.65): contradicts
             ("nstemi", "I21.4"),  # = t2 on its own code: agrees
             ("something new", "I50.21")]  # fmt: skip
    _passes(ex.check_contradicting_labels(1, pairs, ds))
    _fails_with_hint(ex.check_contradicting_labels(2, pairs, ds))


# ------------------------------------------------------------------------------------------------ 05


def _run(name: str, source: str = "real", recall: float = 0.5, negatives: int = 1, lora_r: int | None = None,
         trainable: int = 100, total: int = 100, scope: str = "corpus") -> TrainedModel:  # fmt: skip
    recipe = {"name": name.split("-real")[0], "num_negatives": negatives, "lora": lora_r is not None,
              "lora_r": lora_r or 16}  # fmt: skip
    card = {"name": name, "recipe": recipe, "data": {"source": source, "rows": 96},
            "dev_metrics": {"recall@10": recall}, "trainable_parameters": trainable, "parameters": total,
            "dev_scope": scope}  # fmt: skip
    return TrainedModel(model=None, path=Path(name) / "model", card=card)


def test_hard_negative_lift():
    hard = _run("mnrl-real-96-0d80cd607a", recall=0.60)
    none = _run("mnrl-no-hard-real-96-1234567890", recall=0.55, negatives=0)
    _passes(ex.check_hard_negative_lift(0.05, hard, none))
    _fails_with_hint(ex.check_hard_negative_lift(-0.05, hard, none))
    _fails_with_hint(ex.check_hard_negative_lift(0.0, hard, hard))  # both with hard negatives
    other_budget = _run("mnrl-no-hard-real-384-1234567890", recall=0.55, negatives=0)
    _fails_with_hint(ex.check_hard_negative_lift(0.05, hard, other_budget))
    candidates = _run("mnrl-no-hard-real-96-1234567890", recall=0.55, negatives=0, scope="candidates")
    _fails_with_hint(ex.check_hard_negative_lift(0.05, hard, candidates))  # other footing


def test_batch_sampler(ds, minilm, tmp_path):
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    from workbook.train import Recipe, training_arguments

    cfg = get_config(fast=True).replace(cache_dir=tmp_path)
    args = training_arguments(cfg, Recipe(), tmp_path / "ckpt", show_progress=False)
    reference = _run("mnrl-real-96-0d80cd607a", recall=1.0)
    args.batch_sampler = BatchSamplers.NO_DUPLICATES
    _fails_with_hint(ex.check_batch_sampler(1.0, args, minilm, reference, cfg, ds))  # still the no-duplicates one
    args.batch_sampler = BatchSamplers.BATCH_SAMPLER
    # dev has 3 queries over 7 documents: every relevant code is in the top 10 -> Recall@10 = 1
    _passes(ex.check_batch_sampler(1.0, args, minilm, reference, cfg, ds))
    _fails_with_hint(ex.check_batch_sampler(0.5, args, minilm, reference, cfg, ds))
    on_candidates = _run("mnrl-real-96-0d80cd607a", recall=1.0, scope="candidates")  # gold codes are candidates
    _passes(ex.check_batch_sampler(1.0, args, minilm, on_candidates, cfg, ds))
    _fails_with_hint(ex.check_batch_sampler(0.5, args, minilm, on_candidates, cfg, ds))


def test_lora_rank():
    lora = _run("lora-64-real-96-abcdef0123", recall=0.55, lora_r=64, trainable=4_000, total=26_000)
    full = _run("mnrl-real-96-0d80cd607a", recall=0.60)
    right = {"trained weights %": 100 * 4_000 / 26_000, "gap": 0.05}
    _passes(ex.check_lora_rank(right, lora, full))
    _fails_with_hint(ex.check_lora_rank({**right, "trained weights %": 100.0}, lora, full))
    rank16 = _run("lora-real-96-abcdef0123", recall=0.55, lora_r=16, trainable=1_000, total=23_000)
    _fails_with_hint(ex.check_lora_rank(right, rank16, full))
    _fails_with_hint(ex.check_lora_rank(right, lora, _run("mnrl-real-96-0d80cd607a", recall=0.6, scope="candidates")))


def test_both_sources():
    both = _run("mnrl-both-96-c45a9e31c1", source="both", recall=0.58)
    real = _run("mnrl-real-96-0d80cd607a", recall=0.60)
    _passes(ex.check_both_sources(-0.02, both, real))
    _fails_with_hint(ex.check_both_sources(0.02, both, real))
    _fails_with_hint(ex.check_both_sources(-0.02, both, _run("mnrl-real-384-4d1c8509bf", recall=0.60)))
    _fails_with_hint(
        ex.check_both_sources(-0.02, both, _run("mnrl-real-96-0d80cd607a", recall=0.6, scope="candidates"))
    )
    _fails_with_hint(ex.check_both_sources(-0.02, both, _run("mnrl-real-96-0d80cd607a", recall=0.6, negatives=2)))
    lookalike = _run("mnrl-real-both-96-0d80cd607a", recall=0.6)
    lookalike.card["data"]["negatives"] = "both"  # the default model's negatives: the both run must use them too
    _fails_with_hint(ex.check_both_sources(-0.02, both, lookalike))


# ------------------------------------------------------------------------------------------------ 06


def test_hybrid_after_tuning():
    misses = [f"x{i}" for i in range(10)]
    qrels = {f"q{i}": {f"g{i}": 1} for i in range(4)}
    tuned = {"q0": [*misses, "g0"], **{f"q{i}": [f"g{i}"] for i in range(1, 4)}}  # q0: gold at rank 11
    bm25 = {"q0": ["g0"], **{f"q{i}": [f"g{i}"] for i in range(1, 4)}}
    slices = {"exact-code": ["q0"], "other": ["q1", "q2", "q3"]}
    # fused q0: g0 scores 1/71 + 1/61 > 1/61 of x0 -> rank 1: +1 on q0, 0 elsewhere -> delta 0.25
    right = {"delta": 0.25, "slice": "exact-code"}
    _passes(ex.check_hybrid_after_tuning(right, tuned, bm25, qrels, slices, min_queries=1))
    _fails_with_hint(ex.check_hybrid_after_tuning({"delta": 0.0}, tuned, bm25, qrels, slices, min_queries=1))
    _fails_with_hint(ex.check_hybrid_after_tuning({**right, "slice": "other"}, tuned, bm25, qrels, slices,
                                                  min_queries=1))  # fmt: skip


def test_ci_width():
    values = pd.Series([0.0, 1.0] * 200, index=[f"q{i:03d}" for i in range(400)])  # first 300: 150 zeros, 150 ones
    sd = np.std(values.iloc[:300], ddof=1)
    right = {"width": 2 * 1.96 * sd / np.sqrt(300), "queries needed": int(np.ceil((1.96 * sd / 0.02) ** 2))}
    assert right["queries needed"] == 2410
    _passes(ex.check_ci_width(right, values, n=300))
    _fails_with_hint(ex.check_ci_width({**right, "width": 0.02}, values, n=300))
    _fails_with_hint(ex.check_ci_width({**right, "queries needed": 300}, values, n=300))


def test_merge_crossing():
    curve = pd.DataFrame({"general loss": [0.0, 0.005, 0.009, 0.013, 0.03]}, index=[0.0, 0.3, 0.35, 0.4, 1.0])
    # crosses 0.01 between 0.35 (0.009) and 0.4 (0.013): 0.35 + 0.001 / 0.004 * 0.05 = 0.3625
    _passes(ex.check_merge_crossing(0.3625, curve))
    _fails_with_hint(ex.check_merge_crossing(0.45, curve))
    flat = pd.DataFrame({"general loss": [0.0, 0.002, 0.004]}, index=[0.0, 0.4, 1.0])
    _passes(ex.check_merge_crossing(None, flat))
    _fails_with_hint(ex.check_merge_crossing(0.4, flat))
    _fails_with_hint(ex.check_merge_crossing(None, flat.drop(index=0.4)))  # none of the new ratios traced


def test_worst_siblings(ds):
    ranked = {"s1": ["I50.22", "I50.21"], "s2": ["E11.69"], "s3": ["E11.65"]}
    # s1: I50.22 is a sibling of I50.21; s2: E11.69 is a sibling of E11.65; s3: its top hit is gold
    _passes(ex.check_worst_siblings(2, ["s1", "s2", "s3"], ranked, ds))
    _fails_with_hint(ex.check_worst_siblings(3, ["s1", "s2", "s3"], ranked, ds))


# ------------------------------------------------------------------------------------------------ 07


def _report(new_name: str = "docs-v2") -> ShadowReport:
    qrels = {f"q{i}": {"g": 1} for i in range(4)}
    old = {"q0": ["x", "g"], "q1": ["x", "g"], "q2": ["x", "g"], "q3": ["g"]}
    new = {"q0": ["g"], "q1": ["g"], "q2": ["g"], "q3": ["x", "g"]}  # 3 wins, 1 loss
    metrics = ["ndcg@10", "recall@10"]
    overlap = pd.DataFrame({"labelled": [True] * 4, "overlap": [0.5] * 4}, index=list(qrels))
    latency = pd.DataFrame({"old": [5.0, 6.0], "new": [5.0, 6.0]})
    return ShadowReport("docs-v1", new_name, 10, "ndcg@10", overlap, evaluate_ranking(old, qrels, metrics),
                        evaluate_ranking(new, qrels, metrics), latency, old, new)  # fmt: skip


def test_gate_limits():
    cfg = get_config(fast=True)
    report = _report()
    delta = 3 * (1 - 1 / np.log2(3)) / 4 - (1 - 1 / np.log2(3)) / 4  # three queries gain, one loses
    _passes(ex.check_gate_limits({"gate_min_win_rate": 0.75, "gate_min_metric_delta": delta}, report, cfg))
    _passes(ex.check_gate_limits({"gate_min_win_rate": 0.745, "gate_min_metric_delta": delta - 0.005}, report, cfg))
    _fails_with_hint(ex.check_gate_limits({"gate_min_win_rate": 0.8, "gate_min_metric_delta": delta}, report, cfg))
    _fails_with_hint(ex.check_gate_limits({"gate_min_win_rate": 0.6, "gate_min_metric_delta": delta}, report, cfg))


def test_reembed_cost():
    job = JobReport("docs-v1", "v1", 1000, 4, 256, 0, 4, 1000, 6.0, 3.0, 10.0)  # 100 docs/s
    # 10 M docs / 100 docs/s = 100,000 s = 27.78 h; at 0.5/h: 13.89
    _passes(ex.check_reembed_cost(13.89, job, 10_000_000, price_per_hour=0.5))
    _fails_with_hint(ex.check_reembed_cost(1389.0, job, 10_000_000, price_per_hour=0.5))


def test_third_version():
    cfg = get_config(fast=True)
    _passes(ex.check_third_version(True, _report("docs-v3"), cfg, "v3"))
    _fails_with_hint(ex.check_third_version(False, _report("docs-v3"), cfg, "v3"))
    _passes(ex.check_third_version(False, _report("docs-v3"), cfg.replace(gate_min_win_rate=0.9), "v3"))
    _fails_with_hint(ex.check_third_version(True, _report("docs-v2"), cfg, "v3"))  # not v3's shadow test


# ------------------------------------------------------------------------------------------------ 08


def _job(docs: int, wall_s: float, batch_size: int = 128):
    from workbook.deploy import JobReport

    return JobReport("docs-v1", "v1", docs, docs // batch_size, batch_size, 0, docs // batch_size, docs,
                     wall_s * 0.9, wall_s * 0.05, wall_s)  # fmt: skip


def test_actor_ratio():
    one, two = _job(1024, 20.0), _job(1024, 25.0)  # 51.2 and 40.96 docs/s
    assert ex.check_actor_ratio(0.8, one, two).passed
    assert not ex.check_actor_ratio(1.25, one, two).passed
    assert not ex.check_actor_ratio(0.8, one, _job(512, 10.0)).passed, "different documents are refused"


def test_capacity_plan():
    job = _job(1024, 20.0)  # 51.2 docs/s: 184,320 docs an hour
    assert ex.check_capacity_plan({"machines": 55, "cost": 5.5}, job).passed  # ceil(10M / 184,320) = 55
    assert not ex.check_capacity_plan({"machines": 54, "cost": 5.4}, job).passed, "a part of a machine is one"
    assert not ex.check_capacity_plan({"machines": 55}, job).passed


# ------------------------------------------------------------------------------------------------ answer cells


def test_check_waits_for_an_answer_then_runs_the_exercise_check():
    def never():
        raise AssertionError("objects are read only once there is an answer")

    waiting = ex.check("06.2", None, never)
    assert not waiting and "no answer yet" in waiting.message and "ex.check_ci_width(answer, per_query)" in waiting.hint
    values = pd.Series([0.0, 1.0] * 200, index=[f"q{i:03d}" for i in range(400)])
    sd = np.std(values.iloc[:300], ddof=1)
    right = {"width": 2 * 1.96 * sd / np.sqrt(300), "queries needed": int(np.ceil((1.96 * sd / 0.02) ** 2))}
    assert ex.check("06.2", right, lambda: (values, 300)).passed
    assert not ex.check("06.2", {**right, "width": 0.02}, lambda: (values, 300)).passed
    with pytest.raises(KeyError):
        ex.check("99.1", None)


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "notebooks").glob("0[0-9]_*.ipynb")),
                         ids=lambda p: p.stem[:2])
def test_every_exercise_has_an_answer_cell_that_runs_its_check(path):
    import json
    import re

    from workbook.nbrun import ANSWER_TAG

    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if ANSWER_TAG in c["metadata"].get("tags", [])]
    found = {}
    for cell in cells:
        src = "".join(cell["source"])
        (eid,) = re.findall(r'ex\.check\("(\d\d\.\d)", answer, lambda: \(', src)
        assert re.search(r"^answer = None\b", src, re.M), src  # a stub that runs before the learner answers
        found[eid] = cell
    assert sorted(found) == sorted(ex.exercises_of(path.name)), path.name
    for eid, cell in found.items():  # a committed output is the check's own "no answer yet" verdict
        for out in cell["outputs"]:
            assert "".join(out["data"]["text/plain"]) == str(ex.check(eid, None)), (path.name, eid)
