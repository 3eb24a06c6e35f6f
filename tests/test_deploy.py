"""Tests of workbook.deploy with real models and a real local Qdrant store in tmp_path.

The corpus is a slice of the fast case study (type 2 diabetes, ischaemic heart disease and heart failure: 190 codes).
Version v1 is the base all-MiniLM-L6-v2; v2 is MiniLM after two real MNRL training steps on the slice's training
queries.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbook import deploy as dp
from workbook.cards import read_card
from workbook.config import get_config
from workbook.data import save_dataset, subset
from workbook.icd10cm import load_icd10cm
from workbook.models import MINILM, MPNET, load_model

CATEGORIES = {"E11", "I20", "I21", "I22", "I25", "I50"}  # 190 codes
BATCH = 8
SMALL = 64  # docs for the job tests that need no more than a few batches


def _train_v2(cfg, ds):
    """MiniLM after 2 real MNRL steps on (query, relevant code) pairs: a different model of the same shape."""
    import datasets
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    model = load_model(MINILM, cfg)
    pairs = [(ds.queries[q], ds.doc_text(sorted(docs)[0])) for q, docs in sorted(ds.qrels["train"].items())]
    train = datasets.Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(Path(os.environ.get("TMPDIR", "/tmp")) / "workbook-test-deploy-train"),
        max_steps=2,
        per_device_train_batch_size=16,
        learning_rate=5e-5,
        seed=cfg.seed,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    SentenceTransformerTrainer(model=model, args=args, train_dataset=train,
                               loss=MultipleNegativesRankingLoss(model)).train()  # fmt: skip
    return model


@pytest.fixture(scope="module")
def cfg():
    return get_config(fast=True)


@pytest.fixture(scope="module")
def ds(cfg):
    full = load_icd10cm(cfg)
    return subset(full, doc_ids=[d for d in full.corpus if d[:3] in CATEGORIES], name="icd-slice")


@pytest.fixture(scope="module")
def models(cfg, ds):
    v1 = load_model(MINILM, cfg)
    v2 = _train_v2(cfg, ds)
    return {"v1": v1, "v2": v2}


@pytest.fixture(scope="module")
def built(tmp_path_factory, cfg, ds, models):
    """A deployment with v1 and v2 registered and both collections built uninterrupted (nothing promoted)."""
    root = tmp_path_factory.mktemp("deploy-built")
    with dp.Deployment(root) as dep:
        dep.registry.register("v1", models["v1"], base_model=MINILM, metrics={"recall@10": 0.5})
        dep.registry.register("v2", models["v2"], base_model=MINILM, train_data_hash="abc123", recipe={"steps": 2})
        for version in ("v1", "v2"):
            report = dep.reembed(version, ds.doc_ids(), ds.doc_texts(), model=models[version], batch_size=BATCH,
                                 show_progress=False)  # fmt: skip
            assert report.complete
        reference = dep.vectors("v2", ds.doc_ids())
    return root, reference


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link model files (never written after registration); copy JSON files (tests edit them in place)."""
    (shutil.copy2 if src.endswith(".json") else os.link)(src, dst)


def _clone(src: Path, dst: Path, store: bool = True) -> Path:
    """A private copy of a deployment: model weights hard-linked, cards, registry and store copied."""
    shutil.copytree(src / "models", dst / "models", copy_function=_link_or_copy)
    if store:
        shutil.copytree(src / "qdrant", dst / "qdrant")
    return dst


@pytest.fixture
def dep(built, tmp_path):
    with dp.Deployment(_clone(built[0], tmp_path / "dep")) as d:
        yield d


@pytest.fixture
def bare(built, tmp_path):
    """Versions registered, no collection yet."""
    with dp.Deployment(_clone(built[0], tmp_path / "bare", store=False)) as d:
        yield d


def _permissive(cfg):
    return cfg.replace(gate_min_metric_delta=-1.0, gate_min_win_rate=0.0, gate_max_p95_latency_ms=1e9,
                       gate_max_latency_ratio=1e9, gate_min_overlap=0.0)  # fmt: skip


@pytest.fixture(scope="module")
def shadow(built, ds, models, tmp_path_factory):
    """The shadow test of v2 against v1 (labelled: test split; unlabelled: dev split without its labels)."""
    root = _clone(built[0], tmp_path_factory.mktemp("shadow") / "dep")
    with dp.Deployment(root) as d:
        old = d.retriever(d.collection_name("v1"), models["v1"])
        new = d.retriever(d.collection_name("v2"), models["v2"])
        return dp.shadow_test(old, new, ds.split_queries("test"), ds.qrels["test"], ds.split_queries("dev"),
                              latency_queries=10)  # fmt: skip


# ------------------------------------------------------------------------------------------------ model versions


def test_registry_cards_and_reload(built, models):
    reg = dp.ModelRegistry(built[0] / "models")
    assert reg.versions() == ["v1", "v2"]
    card = reg.card("v2")
    assert card.base_model == MINILM and card.train_data_hash == "abc123" and card.recipe == {"steps": 2}
    assert card.dimension == 384 and card.created
    assert reg.card("v1").metrics == {"recall@10": 0.5}
    assert card.fingerprint != reg.card("v1").fingerprint  # training really changed the weights
    on_disk = json.loads((reg.path("v2") / dp.CARD_FILE).read_text())
    assert on_disk == card.to_dict()
    assert dp.model_fingerprint(reg.load("v2")) == card.fingerprint
    table = reg.table()
    assert list(table.index) == ["v1", "v2"] and not table["promoted"].any()


def test_registering_a_trained_model_keeps_its_training_card_in_the_one_card_file(dep, models):
    training = {"base_model": MINILM, "data": {"sha256": "feed42", "rows": 8}, "dev_metrics": {"recall@10": 0.61},
                "recipe": {"name": "mnrl", "loss": "mnrl"}, "created": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    card = dep.registry.register("v3", models["v2"], card=training, notes="from a training card")
    assert (card.base_model, card.train_data_hash, card.metrics) == (MINILM, "feed42", {"recall@10": 0.61})
    assert card.recipe == training["recipe"]
    on_disk = read_card(dep.registry.path("v3"))  # the same reader training uses: one card format
    assert dp.CARD_FILE == "workbook_card.json" and on_disk["training"] == training
    assert {k: on_disk[k] for k in card.to_dict()} == card.to_dict()
    explicit = dep.registry.register("v4", models["v2"], card=training, metrics={"recall@10": 0.7})
    assert explicit.metrics == {"recall@10": 0.7}  # an argument given wins over the card
    with pytest.raises(dp.DeployError, match="pass base_model"):
        dep.registry.register("v5", models["v2"])


def test_registry_refuses_bad_writes_and_reports_bad_files(dep, models):
    with pytest.raises(dp.DeployError, match="already registered"):
        dep.registry.register("v1", models["v1"], base_model=MINILM)
    with pytest.raises(dp.DeployError, match="not a valid name"):
        dep.registry.register("v 3/x", models["v1"], base_model=MINILM)
    dep.registry.file.write_text('{"versions": {},\n "production": [,]}')
    with pytest.raises(dp.DeployError, match=r"registry\.json:2: not valid JSON"):
        dep.registry.versions()


# ------------------------------------------------------------------------------------------------ re-embedding job


def test_job_resumes_after_sigkill_with_nothing_lost_or_duplicated(bare, built, ds, tmp_path):
    data_dir = save_dataset(ds, tmp_path / "corpus")
    n_batches = -(-len(ds.corpus) // BATCH)
    ckpt = bare.checkpoint_path("v2")
    cmd = dp.reembed_command(bare.root, "v2", data_dir, batch_size=BATCH)
    bare.close()  # local mode: one process at a time
    killed_at = dp.kill_job_after(cmd, ckpt, batches=3)
    assert 3 <= killed_at < n_batches, "the job must be killed mid-run"
    state = json.loads(ckpt.read_text())
    assert state["done"] == killed_at and state["corpus_hash"] == dp.corpus_hash(ds.doc_ids(), ds.doc_texts())

    meta = bare.metadata(bare.collection_name("v2"))
    assert meta["status"] == "building"
    # the batches recorded are stored (at most one more, upserted before its checkpoint write)
    assert killed_at * BATCH <= meta["points"] <= (killed_at + 1) * BATCH
    with pytest.raises(dp.IncompleteCollectionError):
        bare.promote("v2")

    report = bare.reembed("v2", ds.doc_ids(), ds.doc_texts(), batch_size=BATCH, show_progress=False)
    assert report.started_at_batch == killed_at and report.complete
    assert report.docs_this_run == len(ds.corpus) - killed_at * BATCH
    audit = bare.audit("v2", ds.doc_ids())
    assert audit.to_dict() == {"points": len(ds.corpus), "distinct doc ids": len(ds.corpus), "missing": 0,
                               "unexpected": 0, "duplicated": 0}  # fmt: skip
    resumed = bare.vectors("v2", ds.doc_ids())
    np.testing.assert_allclose(resumed, built[1], rtol=0, atol=1e-6)  # = the uninterrupted run's vectors
    assert bare.metadata(bare.collection_name("v2"))["status"] == "complete"


def test_batch_upserted_twice_is_not_duplicated(bare, ds, models):
    ids, texts = ds.doc_ids()[:SMALL], ds.doc_texts()[:SMALL]
    first = bare.reembed("v2", ids, texts, model=models["v2"], batch_size=BATCH, max_batches=3, show_progress=False)
    assert not first.complete and first.batches_done == 3
    # a crash after the upserts of batches 2 and 3 but before their checkpoint writes: the checkpoint says 1
    ckpt = bare.checkpoint_path("v2")
    state = json.loads(ckpt.read_text())
    ckpt.write_text(json.dumps({**state, "done": 1}))
    report = bare.reembed("v2", ids, texts, model=models["v2"], batch_size=BATCH, show_progress=False)
    assert report.started_at_batch == 1 and report.complete
    assert bare.audit("v2", ids)["duplicated"] == 0 and bare.audit("v2", ids)["points"] == len(ids)


def test_points_lost_after_checkpoint_are_redone(bare, ds, models):
    ids, texts = ds.doc_ids()[:SMALL], ds.doc_texts()[:SMALL]
    bare.reembed("v2", ids, texts, model=models["v2"], batch_size=BATCH, max_batches=4, show_progress=False)
    # the store lost part of batch 1 (e.g. a power cut) although the checkpoint recorded 4 batches
    bare.client.delete(bare.collection_name("v2"), points_selector=[dp.point_id(d) for d in ids[BATCH : BATCH + 5]])
    report = bare.reembed("v2", ids, texts, model=models["v2"], batch_size=BATCH, show_progress=False)
    assert report.started_at_batch == 1
    assert bare.audit("v2", ids)[["points", "missing", "duplicated"]].tolist() == [len(ids), 0, 0]


def test_checkpoint_of_another_job_is_refused(bare, ds, models):
    ids, texts = ds.doc_ids()[:SMALL], ds.doc_texts()[:SMALL]
    bare.reembed("v2", ids, texts, model=models["v2"], batch_size=BATCH, max_batches=1, show_progress=False)
    with pytest.raises(dp.CheckpointError, match="field 'batch_size'"):
        bare.reembed("v2", ids, texts, model=models["v2"], batch_size=BATCH * 2, show_progress=False)
    with pytest.raises(dp.DeployError, match="corpus hash .* refusing to mix"):  # the corpus changed meanwhile
        bare.reembed("v2", ids[:-1], texts[:-1], model=models["v2"], batch_size=BATCH, show_progress=False)
    bare.checkpoint_path("v2").write_text("{not json")
    with pytest.raises(dp.CheckpointError, match=r"docs-v2\.json:1: not valid JSON"):
        bare.reembed("v2", ids, texts, model=models["v2"], batch_size=BATCH, show_progress=False)


def test_job_report_projects_throughput(bare, ds, models):
    ids, texts = ds.doc_ids()[:SMALL], ds.doc_texts()[:SMALL]
    report = bare.reembed("v1", ids, texts, model=models["v1"], batch_size=32, show_progress=False)
    proj = report.projection(1_000_000, price_per_hour=2.0)
    assert report.docs_this_run == SMALL and report.batches == 2 and proj["docs/s"] > 0
    hours = proj["hours for 1,000,000 docs"]
    assert hours == pytest.approx(1_000_000 / report.docs_per_s / 3600, rel=0.01)
    assert proj["cost for 1,000,000 docs at 2.0/h"] == pytest.approx(2 * hours, rel=0.01)
    again = bare.reembed("v1", ids, texts, model=models["v1"], batch_size=32, show_progress=False)
    assert again.docs_this_run == 0 and again.complete  # a finished job is not redone


@pytest.mark.slow  # spawning the workers (each imports torch and loads the model) takes most of a minute on 2 cores
def test_multiprocess_pool_gives_the_same_vectors(bare, ds, models):
    ids, texts = ds.doc_ids()[:96], ds.doc_texts()[:96]
    report = bare.reembed("v1", ids, texts, model=models["v1"], batch_size=48, processes=2, show_progress=False)
    assert report.complete and report.processes == 2
    single = dp.encode(models["v1"], texts, show_progress=False)
    np.testing.assert_allclose(bare.vectors("v1", ids), single, atol=1e-5)


# ------------------------------------------------------------------------------------------------ shadow test + gate


def test_shadow_report(shadow, ds):
    s = shadow.summary()
    assert set(shadow.overlap.index) == set(ds.split_queries("test")) | set(ds.split_queries("dev"))
    assert shadow.overlap["labelled"].sum() == len(ds.qrels["test"])
    assert 0 <= s["overlap@10 labelled"] <= 1 and 0 <= s["overlap@10 unlabelled"] <= 1
    assert s["wins"] + s["losses"] + s["ties"] == len(ds.qrels["test"])
    assert s["ndcg@10 delta"] == pytest.approx(s["ndcg@10 new"] - s["ndcg@10 old"])
    assert len(shadow.latency_ms) == 10 and (shadow.latency_ms > 0).all().all()
    assert s["latency p95 old (ms)"] >= s["latency p50 old (ms)"]
    assert set(shadow.metric_table().columns) == {"old", "new", "delta"}
    wins = shadow.examples(ds.queries, ds.qrels["test"], "win", n=3)
    losses = shadow.examples(ds.queries, ds.qrels["test"], "loss", n=3)
    assert len(wins) == min(3, s["wins"]) and len(losses) == min(3, s["losses"])
    assert (wins["ndcg@10 new"] > wins["ndcg@10 old"]).all() and (losses["ndcg@10 new"] < losses["ndcg@10 old"]).all()


def test_sample_queries_and_refusal(ds):
    test = ds.split_queries("test")
    picked = dp.sample_queries(test, 10, seed=1)
    assert len(picked) == 10 and list(picked) == sorted(picked) and picked == dp.sample_queries(test, 10, seed=1)
    assert dp.sample_queries(test, 10_000, seed=1) == test
    assert dp.refusal(lambda: dp.ModelRegistry("nowhere").card("v1")).startswith("UnknownVersionError: no model")
    with pytest.raises(AssertionError):
        dp.refusal(lambda: None)


def test_shadow_of_a_model_against_itself(dep, ds, models, cfg):
    r = dep.retriever(dep.collection_name("v1"), models["v1"])
    report = dp.shadow_test(r, r, ds.split_queries("test"), ds.qrels["test"], latency_queries=5)
    s = report.summary()
    assert s["overlap@10 labelled"] == 1.0 and s["wins"] == s["losses"] == 0 and s["ndcg@10 delta"] == 0
    # the promotion gate asks for an improvement: the same model is no candidate, whatever the latency noise
    same = dp.promotion_gate(report, cfg.replace(gate_max_latency_ratio=1e9), "v1")
    assert not same.passed and same.checks["passed"].tolist() == [False, False, True, True]


def _equal_or_better_report(better: bool) -> dp.ShadowReport:
    """A shadow test on 4 labelled queries: the candidate ranks like production, or better on 3 of them."""
    from workbook.evaluate import evaluate_ranking

    qrels = {f"q{i}": {"g": 1} for i in range(4)}
    old = {"q0": ["x", "g"], "q1": ["x", "g"], "q2": ["x", "g"], "q3": ["g"]}
    new = {"q0": ["g"], "q1": ["g"], "q2": ["g"], "q3": ["x", "g"]} if better else dict(old)  # 3 wins, 1 loss
    overlap = pd.DataFrame({"labelled": [True] * 4, "overlap": [1.0] * 4}, index=list(qrels))
    latency = pd.DataFrame({"old": [5.0, 6.0], "new": [5.0, 6.0]})
    return dp.ShadowReport("docs-v1", "docs-v2", 10, "ndcg@10", overlap, evaluate_ranking(old, qrels),
                           evaluate_ranking(new, qrels), latency, old, new)  # fmt: skip


def test_promotion_gate_is_an_improvement_gate():
    cfg = get_config(fast=True)
    same = dp.promotion_gate(_equal_or_better_report(better=False), cfg, "v2")
    assert not same.passed  # ties only: win rate undefined (no decided query), delta 0 is not > 0
    assert same.checks["passed"].tolist() == [False, False, True, True]
    assert list(same.checks.index[:2]) == ["ndcg@10 delta > 0", "win rate > 0.5 (ties excluded)"]
    assert np.isnan(same.checks.loc["win rate > 0.5 (ties excluded)", "value"])
    assert np.isnan(_equal_or_better_report(better=False).summary()["win rate"])  # the report agrees: no rate, not 0.5
    better = dp.promotion_gate(_equal_or_better_report(better=True), cfg, "v2")
    assert better.passed and better.checks.loc["win rate > 0.5 (ties excluded)", "value"] == 0.75
    # a threshold equal to the measured value is not exceeded
    assert not dp.promotion_gate(_equal_or_better_report(better=True), cfg.replace(gate_min_win_rate=0.75), "v2")


def _latency_report(old_ms, new_ms) -> dp.ShadowReport:
    """:func:`_equal_or_better_report` (a better candidate) with these per-query timings."""
    r = _equal_or_better_report(better=True)
    return dataclasses.replace(r, latency_ms=pd.DataFrame({"old": old_ms, "new": new_ms}))


def test_the_latency_check_reads_the_paired_ci_not_one_spike():
    cfg = get_config(fast=True)
    row = "p95 latency ratio <= 1.5 (95% CI low end)"
    rng = np.random.default_rng(0)
    base = rng.uniform(9.0, 11.0, 200)
    # a candidate twice as slow on every query: measurably slower, refused
    slow = _latency_report(base, 2 * base)
    lo, hi = slow.latency_ratio_ci(seed=cfg.seed)
    assert 1.8 < lo <= hi < 2.2
    decision = dp.promotion_gate(slow, cfg, "v2")
    assert not decision.passed and not decision.checks.loc[row, "passed"] and decision.checks.loc[row, "value"] > 1.5
    # the same speed, but load hit the candidate's side on a few queries: its p95 ratio alone reads > 1.5
    spiky = base.copy()
    spiky[rng.choice(200, 12, replace=False)] *= 4
    noisy = _latency_report(base, spiky)
    assert noisy.summary()["latency p95 ratio"] > 1.5  # the point estimate alone would refuse it
    assert noisy.latency_ratio_ci(seed=cfg.seed)[0] <= 1.5
    assert dp.promotion_gate(noisy, cfg, "v2").passed  # the CI reaches the limit: not shown to be slower
    assert noisy.latency_ratio_ci(seed=cfg.seed) == noisy.latency_ratio_ci(seed=cfg.seed)  # seeded


def test_gate_passes_and_fails_on_config_thresholds(shadow, cfg):
    default = dp.promotion_gate(shadow, cfg, "v2")
    assert len(default.checks) == 4 and not any("ms" in c for c in default.checks.index)  # no absolute budget set
    ok = dp.promotion_gate(shadow, _permissive(cfg), "v2")
    assert ok.passed and bool(ok) and ok.checks["passed"].all()
    strict = dp.promotion_gate(shadow, _permissive(cfg).replace(gate_min_metric_delta=1.0), "v2")
    assert not strict.passed
    assert strict.checks["passed"].tolist() == [False, True, True, True, True]
    slow = dp.promotion_gate(shadow, _permissive(cfg).replace(gate_max_p95_latency_ms=1e-3), "v2")
    assert not slow.passed and not slow.checks.loc["p95 latency <= 0.001 ms", "passed"]


# ------------------------------------------------------------------------------------------------ switch + rollback


def test_promote_switch_and_rollback(dep, shadow, cfg, ds):
    first = dep.promote("v1")  # nothing in production yet: no gate to pass
    assert first == {"production": "v1", "previous": None, "switched": True}
    assert dep.aliases() == {"production": "docs-v1"} and dep.production() == "v1"
    with pytest.raises(dp.PromotionRefused, match="needs a gate decision"):
        dep.promote("v2")
    with pytest.raises(dp.PromotionRefused, match="failed the promotion gate: ndcg@10 delta"):
        dep.promote("v2", dp.promotion_gate(shadow, _permissive(cfg).replace(gate_min_metric_delta=1.0), "v2"))
    with pytest.raises(dp.PromotionRefused, match="for version 'v1'"):
        dep.promote("v2", dp.promotion_gate(shadow, _permissive(cfg), "v1"))
    assert dep.production() == "v1"  # refusals changed nothing

    switched = dep.promote("v2", dp.promotion_gate(shadow, _permissive(cfg), "v2"))
    assert switched == {"production": "v2", "previous": "v1", "switched": True}
    assert dep.aliases() == {"production": "docs-v2"} and dep.registry.promoted == "v2"
    served = dep.retriever()  # loads v2 from the registry, as the collection says
    assert served.collection == "docs-v2"
    qid, text = next(iter(ds.split_queries("test").items()))
    assert len(served.search([text], k=5)[0]) == 5

    back = dep.rollback()
    assert back == {"production": "v1", "previous": "v2", "switched": True}
    assert dep.aliases() == {"production": "docs-v1"} and dep.registry.production_history == ["v1"]
    assert dep.registry.events()["action"].tolist() == ["promote", "promote", "rollback"]
    with pytest.raises(dp.DeployError, match="nothing to roll back to"):
        dep.rollback()


def test_rollback_refuses_when_alias_was_switched_by_hand(dep):
    from qdrant_client import models as qm

    dep.promote("v1")
    dep.client.update_collection_aliases(change_aliases_operations=[
        qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name="production")),
        qm.CreateAliasOperation(create_alias=qm.CreateAlias(collection_name="docs-v2", alias_name="production")),
    ])  # fmt: skip
    with pytest.raises(dp.DeployError, match="switched the alias by hand"):
        dep.rollback()


# ------------------------------------------------------------------------------------------------ guard


def test_guard_refuses_another_model(dep, models, cfg):
    dep.promote("v1")
    with pytest.raises(dp.ModelMismatchError, match=r"behind alias 'production'.*version 'v1'"):
        dp.GuardedSearch(dep, "production", models["v2"])
    mpnet = load_model(MPNET, cfg)
    with pytest.raises(dp.ModelMismatchError, match=r"384-d\); the query model .* \(768-d\)"):
        dp.GuardedSearch(dep, "production", mpnet)
    with pytest.raises(dp.ModelMismatchError, match="registered with"):
        dep.reembed("v1", ["a"], ["text"], model=models["v2"])


def test_guard_catches_a_cutover_under_a_bound_retriever(dep, models):
    dep.promote("v1")
    serving = dp.GuardedSearch(dep, "production", models["v1"])
    assert serving.search(["type 2 diabetes"], k=3)
    dep.promote("v2", force=True)
    with pytest.raises(dp.ModelMismatchError, match="docs-v2"):
        serving.search(["type 2 diabetes"], k=3)


# ------------------------------------------------------------------------------------------------ faults


def test_missing_model_version(dep, ds):
    with pytest.raises(dp.UnknownVersionError, match=r"no model version 'v9'.*registered: v1, v2"):
        dep.registry.card("v9")
    with pytest.raises(dp.UnknownVersionError, match="'v9'"):
        dep.reembed("v9", ds.doc_ids(), ds.doc_texts())
    with pytest.raises(dp.UnknownVersionError, match="'v9'"):
        dep.promote("v9")
    shutil.rmtree(dep.registry.root / "v2")
    with pytest.raises(dp.UnknownVersionError, match="registered but its folder .* is missing"):
        dep.registry.load("v2")


def test_alias_that_points_nowhere(dep):
    with pytest.raises(dp.AliasError, match="nothing has been promoted yet"):
        dep.retriever()
    with pytest.raises(dp.AliasError, match="points nowhere"):
        dep.rollback()
    with pytest.raises(dp.AliasError, match="'staging' points nowhere"):
        dep.resolve("staging")


def test_alias_to_a_collection_that_is_gone(dep):
    dep.promote("v1")
    dep.close()
    meta_file = dep.store_path / "meta.json"  # a dangling alias, as a race on a server or a hand-edited store leaves
    meta = json.loads(meta_file.read_text())
    meta["aliases"]["staging"] = "docs-v0"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(dp.AliasError, match="'staging' points to collection 'docs-v0', which does not exist"):
        dep.retriever("staging")
    assert dep.production() == "v1"


def test_alias_to_a_collection_without_deploy_metadata(dep, models):
    from qdrant_client import models as qm

    dep.client.create_collection("handmade", vectors_config=qm.VectorParams(size=384, distance=qm.Distance.DOT))
    dep.client.update_collection_aliases(change_aliases_operations=[
        qm.CreateAliasOperation(create_alias=qm.CreateAlias(collection_name="handmade", alias_name="production"))
    ])  # fmt: skip
    with pytest.raises(dp.DeployError, match="'handmade' has no deployment metadata"):
        dp.GuardedSearch(dep, "production", models["v1"])


def test_half_built_collection_is_never_promoted_or_served(bare, ds, models):
    bare.reembed("v2", ds.doc_ids()[:SMALL], ds.doc_texts()[:SMALL], model=models["v2"], batch_size=BATCH,
                 max_batches=2, show_progress=False)  # fmt: skip
    status = bare.status()
    assert status.loc["docs-v2", "status"] == "building" and status.loc["docs-v2", "points"] == 2 * BATCH
    with pytest.raises(dp.IncompleteCollectionError, match=r"half-built.*16 of 64"):
        bare.promote("v2")
    with pytest.raises(dp.IncompleteCollectionError):
        dp.GuardedSearch(bare, "docs-v2", models["v2"])
    assert "production" not in bare.aliases()
    with pytest.raises(dp.DeployError, match="has no collection"):
        bare.promote("v1")


def test_local_store_is_one_process_at_a_time(dep):
    dep.collections()
    other = dp.Deployment(dep.root)
    with pytest.raises(dp.DeployError, match="open in another process"):
        other.collections()


def test_command_line_status(dep, capsys):
    dep.close()
    assert dp.main(["status", str(dep.root)]) == 0
    out = capsys.readouterr().out
    assert "docs-v1" in out and "docs-v2" in out and "complete" in out


# ---------------------------------------------------------------------------------------- qdrant-client internals


def test_qdrant_local_internal_for_fast_writes_still_exists(tmp_path):
    """store.tune_local_sqlite reaches into qdrant-client's local mode (``_client.collections[name].storage.storage``):
    if an upgrade moves it, this fails here instead of the job silently going back to an fsync per point."""
    import sqlite3
    import warnings

    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    client = QdrantClient(path=str(tmp_path / "qdrant"))
    try:
        client.create_collection("c", vectors_config=qm.VectorParams(size=2, distance=qm.Distance.DOT))
        assert hasattr(client, "_client") and hasattr(client._client, "collections")
        storage = client._client.collections["c"].storage
        assert isinstance(storage.storage, sqlite3.Connection)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "internals have moved" warning on the pinned qdrant-client
            assert dp.store.tune_local_sqlite(client, "c")
        assert storage.storage.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert storage.storage.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        with pytest.warns(RuntimeWarning, match="internals have moved"):  # where the path is gone: a warning, no-op
            assert not dp.store.tune_local_sqlite(client, "no-such-collection")
    finally:
        client.close()
