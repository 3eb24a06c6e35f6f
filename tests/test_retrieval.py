from __future__ import annotations

import numpy as np
import pytest

from workbook.config import get_config
from workbook.data import load_scifact
from workbook.evaluate import evaluate_ranking
from workbook.models import load_model
from workbook.retrieval import (
    BM25,
    BM25Index,
    Dense,
    DenseIndex,
    Hybrid,
    Reranked,
    Retriever,
    bm25_ranking,
    dense_ranking,
    encode_cached,
    load_reranker,
    model_fingerprint,
    rerank,
    reranker_pairs,
    rrf,
)


def _unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_faiss_search_is_exact_and_batch_invariant():
    rng = np.random.default_rng(0)
    docs, queries = _unit(rng, 500), _unit(rng, 37)
    index = DenseIndex(docs, [f"d{i}" for i in range(500)])
    s1, r1 = index.search(queries, 10, batch_size=5)
    s2, r2 = index.search(queries, 10, batch_size=1000)
    brute = np.argsort(-(queries @ docs.T), axis=1)[:, :10]
    assert (r1 == r2).all() and (r1 == brute).all()
    np.testing.assert_allclose(s1, np.take_along_axis(queries @ docs.T, brute, axis=1), rtol=1e-5)
    ranked = index.ranked([f"q{i}" for i in range(37)], queries, 3)
    assert ranked["q0"] == [f"d{i}" for i in brute[0, :3]]


def test_index_rejects_mismatched_ids():
    with pytest.raises(ValueError, match="3 ids for 2 vectors"):
        DenseIndex(np.zeros((2, 4), dtype=np.float32), ["a", "b", "c"])


@pytest.fixture(scope="module")
def minilm():
    return load_model("minilm")


def test_encode_cache_reuses_file(minilm, tmp_path):
    texts = ["Type 1 diabetes mellitus", "STEMI of anterior wall"]
    a = encode_cached(minilm, texts, tmp_path, show_progress=False)
    files = list(tmp_path.iterdir())
    b = encode_cached(minilm, texts, tmp_path, show_progress=False)
    assert len(files) == 1 and np.array_equal(a, b)
    encode_cached(minilm, texts[::-1], tmp_path, show_progress=False)
    assert len(list(tmp_path.iterdir())) == 2
    assert model_fingerprint(minilm) == model_fingerprint(minilm)


def test_fingerprint_is_kept_until_the_weights_change(minilm):
    """The hash is reused while the weights are untouched, and follows any in-place change (an optimiser step)."""
    import copy

    import torch

    model = copy.deepcopy(minilm)
    before = model_fingerprint(model)
    assert model_fingerprint(model) == before == model_fingerprint(minilm)
    weight = next(p for p in model.parameters() if p.dim() == 2)
    with torch.no_grad():
        weight[0, 0] += 1.0
    changed = model_fingerprint(model)
    assert changed != before
    with torch.no_grad():
        weight[0, 0] -= 1.0
    assert model_fingerprint(model) == before  # a rehash of the same bytes, not a stale memo


def test_scifact_fast_subset_same_code_path_as_acceptance(minilm):
    """The acceptance run (full SciFact) on the fast subset: same loader, encoder, faiss and metrics.

    The embeddings go to the project's content-keyed cache, as notebook 00 computes the same ones: encoded once per
    test run (the cache key is the model's weights and the texts, so a stale entry cannot be read)."""
    cfg = get_config(fast=True)
    ds = load_scifact(cfg)
    ranked = dense_ranking(minilm, ds, "test", k=100, cache_dir=cfg.cache_dir / "embeddings", show_progress=False)
    res = evaluate_ranking(ranked, ds.qrels["test"], ["ndcg@10", "recall@10", "recall@100"])
    # A subset of ~110 abstracts has fewer distractors than 5,183: scores sit above the full-corpus figures.
    assert res["ndcg@10"] > 0.6451 and res["recall@10"] > 0.7833 and res["recall@100"] >= 0.925


@pytest.mark.slow
def test_scifact_full_reproduces_mteb(minilm):
    """all-MiniLM-L6-v2 on SciFact test (full corpus, title + text, exact cosine): the published MTEB figures."""
    cfg = get_config(fast=False)
    ds = load_scifact(cfg)
    ranked = dense_ranking(minilm, ds, "test", k=100, cache_dir=cfg.cache_dir / "embeddings", show_progress=False)
    res = evaluate_ranking(ranked, ds.qrels["test"], ["ndcg@10", "recall@10", "recall@100"])
    assert round(res["ndcg@10"], 4) == 0.6451
    assert round(res["recall@10"], 4) == 0.7833
    assert round(res["recall@100"], 4) == 0.925


def test_bm25_keeps_single_character_tokens_and_codes():
    texts = ["E10.65 Type 1 diabetes mellitus with hyperglycemia", "E11.65 Type 2 diabetes mellitus with hyperglycemia"]
    index = BM25Index(texts, ["E10.65", "E11.65"])
    assert index.ranked(["q"], ["type 2 diabetes"], 2)["q"][0] == "E11.65"
    assert index.ranked(["q"], ["E10.65"], 2)["q"][0] == "E10.65"
    assert index.search(["unrelated words only"], 2) == [[]]  # no shared term: nothing returned


def test_rrf_fuses_by_reciprocal_rank():
    a = {"q": ["x", "y", "z"]}
    b = {"q": ["y", "w"]}
    fused = rrf([a, b], k=10, c=60)["q"]
    assert fused[0] == "y"  # 1/62 + 1/61 beats 1/61
    assert set(fused) == {"x", "y", "z", "w"}
    assert rrf([{"q": ["b", "a"]}, {"q": ["a", "b"]}])["q"] == ["a", "b"]  # ties break by id


def test_reranker_trains_caches_and_reranks(tmp_path, capsys):
    from workbook.data import Dataset

    corpus = {
        "E10.65": {"title": "E10.65", "text": "Type 1 diabetes mellitus with hyperglycemia", "metadata": {}},
        "E11.65": {"title": "E11.65", "text": "Type 2 diabetes mellitus with hyperglycemia", "metadata": {}},
        "I21.4": {"title": "I21.4", "text": "Non-ST elevation (NSTEMI) myocardial infarction", "metadata": {}},
    }
    queries = {"q1": "juvenile diabetes high sugar", "q2": "adult onset diabetes high sugar", "q3": "NSTEMI"}
    qrels = {"train": {"q1": {"E10.65": 1}, "q2": {"E11.65": 1}}, "dev": {"q3": {"I21.4": 1}}}
    ds = Dataset(corpus, queries, qrels)
    cfg = get_config(cache_dir=tmp_path, reranker_negatives=1)
    cands = {"q1": ["E11.65", "E10.65", "I21.4"], "q2": ["E10.65", "E11.65", "I21.4"]}
    pairs = reranker_pairs(ds, "train", cands, 10, 1, seed=0)
    assert pairs.column_names == ["query", "positive", "negative_1"] and len(pairs) == 2
    assert pairs["positive"][0] == ds.doc_text("E10.65") and pairs["negative_1"][0] != pairs["positive"][0]
    capsys.readouterr()
    ce = load_reranker(cfg, ds, cands)
    shown = capsys.readouterr()
    assert "loss" not in shown.out + shown.err, shown  # training prints no bar and no log dicts (a notebook's output)
    folders = list((tmp_path / "rerankers").iterdir())
    assert len(folders) == 1 and (folders[0] / "config.json").exists()
    again = load_reranker(cfg, ds, cands)  # cached: same weights, no second folder
    assert list((tmp_path / "rerankers").iterdir()) == folders
    assert again.predict([("NSTEMI", "I21.4")])[0] == pytest.approx(ce.predict([("NSTEMI", "I21.4")])[0], abs=1e-5)
    ranked = rerank(ce, ds, "dev", {"q3": ["E10.65", "E11.65", "I21.4"]}, depth=2, show_progress=False)
    assert sorted(ranked["q3"][:2]) == ["E10.65", "E11.65"] and ranked["q3"][2] == "I21.4"
    cached = rerank(ce, ds, "dev", {"q3": ["E10.65", "E11.65", "I21.4"]}, depth=2, show_progress=False,
                    cache_dir=tmp_path / "scores")
    assert cached == ranked and len(list((tmp_path / "scores").glob("rerank-*.npy"))) == 1
    (score_file,) = (tmp_path / "scores").glob("rerank-*.npy")
    flipped = [1.0, -1.0] if ranked["q3"][0] == "E11.65" else [-1.0, 1.0]  # scores that reverse the real order
    np.save(score_file, np.array(flipped))  # a second call reads the file instead of scoring again
    assert rerank(ce, ds, "dev", {"q3": ["E10.65", "E11.65", "I21.4"]}, depth=2, show_progress=False,
                  cache_dir=tmp_path / "scores")["q3"] == ranked["q3"][1::-1] + ["I21.4"]
    external = load_reranker(get_config(reranker=str(folders[0])))
    assert external.predict([("NSTEMI", "I21.4")])[0] == pytest.approx(ce.predict([("NSTEMI", "I21.4")])[0], abs=1e-5)


def test_reranker_path_must_be_local():
    from workbook.models import ModelNotAvailableError

    with pytest.raises(ModelNotAvailableError, match="not a local folder"):
        load_reranker(get_config(reranker="cross-encoder/ms-marco-MiniLM-L6-v2"))


def test_encode_cached_resumes_from_finished_chunks(minilm, tmp_path, monkeypatch):
    """An encoding killed after its first chunk resumes there: the finished chunk is loaded, not encoded again."""
    import workbook.retrieval as retrieval

    texts = [f"type {i} diabetes mellitus with complication number {i}" for i in range(10)]
    calls = []
    real_encode = retrieval.encode

    def crash_on_second_chunk(model, chunk, **kwargs):
        calls.append(len(chunk))
        if len(calls) == 2:
            raise KeyboardInterrupt("killed mid-encoding")
        return real_encode(model, chunk, **kwargs)

    monkeypatch.setattr(retrieval, "encode", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        encode_cached(minilm, texts, tmp_path, show_progress=False, chunk_size=4)
    assert len(list(tmp_path.glob("emb-*.parts/*.npy"))) == 1 and not list(tmp_path.glob("emb-*[0-9a-f].npy"))
    calls.clear()

    def counting(model, chunk, **kwargs):
        calls.append(len(chunk))
        return real_encode(model, chunk, **kwargs)

    monkeypatch.setattr(retrieval, "encode", counting)
    resumed = encode_cached(minilm, texts, tmp_path, show_progress=False, chunk_size=4)
    assert calls == [4, 2]  # chunks 2 and 3 only
    assert resumed.shape == (10, 384) and not list(tmp_path.glob("emb-*.parts"))  # parts folded into one file
    np.testing.assert_allclose(resumed, real_encode(minilm, texts, show_progress=False), atol=1e-5)


def test_every_retriever_has_one_interface_and_matches_the_split_functions(minilm, tmp_path):
    """Dense, BM25, hybrid and reranked retrievers rank a query mapping; the per-split functions give the same lists."""
    from workbook.data import Dataset

    texts = [("E10.65", "Type 1 diabetes mellitus with hyperglycemia"),
             ("E11.65", "Type 2 diabetes mellitus with hyperglycemia"),
             ("I21.4", "Non-ST elevation (NSTEMI) myocardial infarction"), ("I10", "Essential (primary) hypertension")]
    corpus = {c: {"title": c, "text": t, "metadata": {}} for c, t in texts}
    queries = {"q1": "juvenile diabetes high sugar", "q2": "NSTEMI heart attack", "q3": "high blood pressure"}
    ds = Dataset(corpus, queries, {"test": {q: {"I10": 1} for q in queries}})

    class Fixed:  # a retriever of one's own: two members are the whole contract
        name = "fixed"

        def rank(self, queries, k):
            return {q: ["I10", "E10.65"][:k] for q in queries}

    dense, bm25 = Dense(minilm, ds, cache_dir=tmp_path), BM25(ds)
    hybrid = Hybrid([dense, bm25, Fixed()])
    ce = load_reranker(get_config(cache_dir=tmp_path, reranker_negatives=1), ds,
                       {"q1": ["E11.65", "E10.65"]}, split="test")  # fmt: skip
    reranked = Reranked(ce, hybrid, ds, depth=2)
    for r in (dense, bm25, hybrid, reranked, Fixed()):
        assert isinstance(r, Retriever) and set(r.rank(queries, 3)) == set(queries)
    assert dense.rank(queries, 3) == dense_ranking(minilm, ds, "test", k=3, cache_dir=tmp_path, show_progress=False)
    assert bm25.rank(queries, 3) == bm25_ranking(ds, "test", k=3)
    parts = [dense.rank(queries, 3), bm25.rank(queries, 3), Fixed().rank(queries, 3)]
    assert hybrid.rank(queries, 3) == rrf(parts, k=3)
    assert reranked.rank(queries, 3) == rerank(ce, ds, "test", hybrid.rank(queries, 3), depth=2, show_progress=False)
