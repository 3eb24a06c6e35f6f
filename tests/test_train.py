from __future__ import annotations

import numpy as np
import pytest

from workbook.config import get_config
from workbook.data import Dataset
from workbook.models import load_model
from workbook.train import (
    CARD_FILE,
    LOSSES,
    RECIPES,
    Loss,
    Recipe,
    build_loss,
    candidate_dev_metrics,
    data_hash,
    fine_tune,
    get_recipe,
    load_or_train,
    planned_steps,
    read_card,
    sample_rows,
    synthetic_dataset,
    write_card,
)

CODES = {
    "E10.65": "Type 1 diabetes mellitus with hyperglycemia",
    "E11.65": "Type 2 diabetes mellitus with hyperglycemia",
    "E10.9": "Type 1 diabetes mellitus without complications",
    "E11.9": "Type 2 diabetes mellitus without complications",
    "I21.4": "Non-ST elevation (NSTEMI) myocardial infarction",
    "I21.09": "ST elevation (STEMI) myocardial infarction involving other coronary artery of anterior wall",
    "I50.21": "Acute systolic (congestive) heart failure",
    "I50.31": "Acute diastolic (congestive) heart failure",
}
ROWS = [
    ("juvenile diabetes with high blood sugar", "E10.65", "E11.65"),
    ("adult-onset diabetes with high blood sugar", "E11.65", "E10.65"),
    ("type 1 diabetic, no complications", "E10.9", "E11.9"),
    ("type 2 diabetic, no complications", "E11.9", "E10.9"),
    ("NSTEMI", "I21.4", "I21.09"),
    ("anterior wall STEMI", "I21.09", "I21.4"),
    ("acute systolic heart failure", "I50.21", "I50.31"),
    ("acute diastolic heart failure", "I50.31", "I50.21"),
]


@pytest.fixture(scope="module")
def minilm():
    return load_model("all-MiniLM-L6-v2")


def rows(n_repeat: int = 2):
    import datasets

    out = {"anchor": [], "positive": [], "negative_1": []}
    for i in range(n_repeat):
        for q, pos, neg in ROWS:
            out["anchor"].append(q if i == 0 else f"{q} ({i})")
            out["positive"].append(f"{pos} {CODES[pos]}")
            out["negative_1"].append(f"{neg} {CODES[neg]}")
    return datasets.Dataset.from_dict(out)


TINY = Recipe(name="tiny", batch_size=4, learning_rate=1e-4)


def test_recipes_and_losses(minilm):
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )

    assert set(RECIPES) == {"mnrl", "cached-mnrl", "matryoshka", "lora"}
    assert get_recipe("lora").lora and get_recipe(TINY) is TINY
    assert isinstance(build_loss(minilm, get_recipe("mnrl")), MultipleNegativesRankingLoss)
    assert isinstance(build_loss(minilm, get_recipe("cached-mnrl")), CachedMultipleNegativesRankingLoss)
    loss = build_loss(minilm, get_recipe("matryoshka"))
    assert isinstance(loss, MatryoshkaLoss) and list(loss.matryoshka_dims) == [384, 256, 128, 64]
    with pytest.raises(KeyError, match="unknown recipe 'triplet'"):
        get_recipe("triplet")
    with pytest.raises(ValueError, match="loss must be one of mnrl, cached-mnrl, matryoshka"):
        Recipe(name="bad", loss="triplet")
    # the gradient-caching twin when the memory plan asks for mini-batches; cached-mnrl keeps the smaller size
    assert build_loss(minilm, get_recipe("mnrl"), 8).mini_batch_size == 8
    assert build_loss(minilm, get_recipe("cached-mnrl"), 64).mini_batch_size == 32
    assert build_loss(minilm, get_recipe("matryoshka"), 8).loss.mini_batch_size == 8


def test_a_new_loss_is_one_registry_entry(minilm, monkeypatch):
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    monkeypatch.setitem(LOSSES, "cosent", Loss(lambda model, recipe, mini: CoSENTLoss(model)))
    assert isinstance(build_loss(minilm, Recipe(name="mine", loss="cosent")), CoSENTLoss)


def test_synthetic_dataset_merges_texts_and_checks_docs():
    corpus = {c: {"title": c, "text": t, "metadata": {}} for c, t in CODES.items()}
    ds = Dataset(corpus=corpus, queries={}, qrels={}, name="tiny")
    syn = synthetic_dataset(ds, [("sugar diabetes", "E10.65"), ("sugar diabetes", "E11.65"), ("NSTEMI", "I21.4")])
    assert syn.queries == {"syn000000": "sugar diabetes", "syn000001": "NSTEMI"}
    assert syn.qrels == {"train": {"syn000000": {"E10.65": 1, "E11.65": 1}, "syn000001": {"I21.4": 1}}}
    with pytest.raises(KeyError, match="doc 'Z99' is not in the corpus"):
        synthetic_dataset(ds, [("x", "Z99")])


def test_sample_rows_and_data_hash():
    data = rows()
    assert sample_rows(data, None, 0) is data and sample_rows(data, 100, 0) is data
    a, b = sample_rows(data, 5, 0), sample_rows(data, 5, 0)
    assert len(a) == 5 and a["anchor"] == b["anchor"]
    assert data_hash(a) == data_hash(b) != data_hash(sample_rows(data, 5, 1))


def test_cards_roundtrip(tmp_path):
    write_card(tmp_path, {"base_model": "all-MiniLM-L6-v2", "dev_metrics": {"recall@10": 0.5}})
    assert read_card(tmp_path)["dev_metrics"]["recall@10"] == 0.5
    with pytest.raises(FileNotFoundError, match="no model card"):
        read_card(tmp_path / "missing")


def test_a_one_step_run_moves_the_weights(tmp_path, minilm):
    """A run of one step has no warm-up: the default ratio would spend that step at learning rate 0 and leave the
    weights as they were (fast mode's one-step code-path runs)."""
    from workbook.retrieval import model_fingerprint

    cfg = get_config(artifacts_dir=tmp_path)
    data = rows(1).select(range(4))
    done = fine_tune(cfg, minilm, data, tmp_path / "one", TINY, show_progress=False)
    assert done.card["steps"] == 1 and done.card["recipe"]["warmup_ratio"] == 0.0
    assert model_fingerprint(done.model) != model_fingerprint(minilm)


def test_a_run_hands_the_trainers_freed_memory_back(tmp_path, minilm, monkeypatch):
    """fine_tune returns the trainer's freed memory to the OS once the trainer is gone (glibc keeps it otherwise, and
    a notebook's next training would start from this one's high-water mark)."""
    import gc

    from transformers import Trainer

    import workbook.train.run as run

    trainers_alive = []

    def release():
        gc.collect()
        trainers_alive.append(sum(isinstance(o, Trainer) for o in gc.get_objects()))

    monkeypatch.setattr(run, "release_freed", release)
    fine_tune(get_config(artifacts_dir=tmp_path), minilm, rows(1).select(range(4)), tmp_path / "one", TINY,
              show_progress=False)  # fmt: skip
    assert trainers_alive == [0]  # called once, after the trainer (and what it holds) was dropped


def test_length_chunked_forward_gives_the_plain_loss_and_gradients_with_less_padding(minilm):
    """Chunks of similar-length texts, each padded to its own longest: the same embeddings, loss and gradients as
    one padded forward (float rounding apart), less work, and the model's own forward back after the block."""
    import copy

    import torch

    from workbook.train import build_loss, get_recipe, length_chunked

    texts = ["heart failure", "Type 2 diabetes mellitus with diabetic chronic kidney disease, stage 3 unspecified",
             "gout", "Atherosclerotic heart disease of native coronary artery without angina pectoris", "angina",
             "Hypertensive heart and chronic kidney disease with heart failure and stage 1 through stage 4 chronic "
             "kidney disease, or unspecified chronic kidney disease", "obesity", "essential hypertension"]
    batch = {"anchor": texts, "positive": texts[::-1], "negative_1": texts[3:] + texts[:3]}
    widths, results = [], []
    for rows in (None, 3):
        model = copy.deepcopy(minilm)
        model.eval()  # no dropout: both forwards must see the same network
        seen = []  # the padded tokens of each encoder call

        def count(*a, _plain=model[0].auto_model.forward, _seen=seen, **k):
            _seen.append(k["input_ids"].shape[0] * k["input_ids"].shape[1])
            return _plain(*a, **k)

        model[0].auto_model.forward = count
        with length_chunked(model, rows):
            features = [model.tokenize(t) for t in batch.values()]
            loss = build_loss(model, get_recipe("mnrl"))(features, None)
            loss.backward()
            embedded = model(model.tokenize(texts))["sentence_embedding"].detach()
        assert "forward" not in vars(model)  # the model's own forward is back
        widths.append(sum(seen))
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((float(loss), grads, embedded))
    (loss_a, grad_a, emb_a), (loss_b, grad_b, emb_b) = results
    assert abs(loss_a - loss_b) < 1e-5
    assert float((grad_a - grad_b).norm() / grad_a.norm()) < 1e-4
    assert torch.allclose(emb_a, emb_b, atol=1e-5)
    assert widths[1] < widths[0]  # the chunks pad less than one padded forward per column


def test_a_run_with_length_chunks_trains_and_restores_the_forward(tmp_path, minilm):
    from workbook.retrieval import model_fingerprint

    cfg = get_config(artifacts_dir=tmp_path, train_chunk_rows=2)
    done = fine_tune(cfg, minilm, rows(1).select(range(4)), tmp_path / "chunked", TINY, show_progress=False)
    assert model_fingerprint(done.model) != model_fingerprint(minilm)
    assert "forward" not in vars(done.model) and done.card["length_chunk_rows"] == 2


def test_release_freed_returns_a_freed_heap_to_the_os():
    from workbook import memory

    def rss_mb() -> float:
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS")) / 1024

    memory.release_freed()
    chunks = [bytearray(64 * 1024) for _ in range(4000)]  # 250 MB in blocks below glibc's mmap threshold: the heap
    tail = bytearray(64 * 1024)  # keeps the heap's top in use, so freeing the chunks cannot shrink it by itself
    before = rss_mb()
    del chunks
    kept = rss_mb()
    memory.release_freed()
    assert kept > before - 50 and rss_mb() < kept - 150, (before, kept, rss_mb())
    del tail


def test_fine_tune_moves_weights_and_resumes_after_interruption(tmp_path, minilm):
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:  # checkpoint-2 is on disk by now
                raise KeyboardInterrupt("simulated crash")

    cfg = get_config(artifacts_dir=tmp_path)
    base_emb = minilm.encode(["NSTEMI"], normalize_embeddings=True)
    with pytest.raises(KeyboardInterrupt):
        fine_tune(cfg, minilm, rows(), tmp_path / "run", TINY, eval_steps=2, max_steps=4,
                  callbacks=[Interrupt()], show_progress=False)  # fmt: skip
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-2").is_dir()
    assert not (tmp_path / "run" / "model").exists()
    class Count(TrainerCallback):
        steps: list[int] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)

    done = fine_tune(cfg, minilm, rows(), tmp_path / "run", TINY, eval_steps=2, max_steps=4, callbacks=[Count()],
                     show_progress=False)  # fmt: skip
    assert done.card["resumed"] and done.card["steps"] == 4
    assert Count.steps == [3, 4]  # the second run went on from checkpoint-2; it did not start over
    # no evaluator: the last step's checkpoint (weights and optimiser state) is skipped, the model is saved instead
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["checkpoint-2"]
    assert (done.path / "config.json").is_file()
    tuned_emb = done.model.encode(["NSTEMI"], normalize_embeddings=True)
    assert not np.allclose(base_emb, tuned_emb, atol=1e-4)  # the weights moved
    assert np.allclose(base_emb, minilm.encode(["NSTEMI"], normalize_embeddings=True))  # the base did not


def test_lora_trains_few_weights_and_saves_a_plain_model(tmp_path, minilm):
    from sentence_transformers import SentenceTransformer

    cfg = get_config(artifacts_dir=tmp_path)
    lora = Recipe(name="lora-tiny", lora=True, batch_size=4, learning_rate=1e-3)
    done = fine_tune(cfg, minilm, rows(), tmp_path / "lora", lora, eval_steps=2, max_steps=2, show_progress=False)
    assert done.card["trainable_parameters"] < 0.1 * done.card["parameters"]
    assert not (done.path / "adapter_config.json").exists()  # merged: loads without peft
    # train._merge_lora clears this transformers internal (the peft integration has no public merge): fail loudly if
    # it moves, and check the merged model no longer claims an adapter
    from transformers.integrations import PeftAdapterMixin

    assert hasattr(PeftAdapterMixin, "_hf_peft_config_loaded"), "transformers moved _hf_peft_config_loaded"
    assert done.model.transformers_model._hf_peft_config_loaded is False
    reloaded = SentenceTransformer(str(done.path), local_files_only=True)
    a = reloaded.encode(["NSTEMI"], normalize_embeddings=True)
    assert np.allclose(a, done.model.encode(["NSTEMI"], normalize_embeddings=True), atol=1e-5)
    assert not np.allclose(a, minilm.encode(["NSTEMI"], normalize_embeddings=True), atol=1e-4)


def test_same_seed_gives_identical_weights_and_losses(tmp_path, minilm):
    """Two LoRA runs back to back in one process, no reseeding between them: the adapter is initialised from the
    seed (not from wherever the first run left the generators), so weights and losses are identical."""
    import torch

    cfg = get_config(artifacts_dir=tmp_path)
    lora = Recipe(name="lora-tiny", lora=True, batch_size=4, learning_rate=1e-3)
    runs = [fine_tune(cfg, minilm, rows(), tmp_path / f"seed-{i}", lora, eval_steps=2, max_steps=2,
                      show_progress=False) for i in range(2)]  # fmt: skip
    a, b = (run.model.state_dict() for run in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[h["loss"] for h in run.history if "loss" in h] for run in runs]
    assert losses[0] and losses[0] == losses[1]


@pytest.mark.parametrize("show_progress", [False, True])
def test_training_logs_go_to_the_history_not_to_the_output(tmp_path, minilm, capsys, show_progress):
    """Committed outputs show results, not machinery: no raw log dict is printed (the curve reads the history)."""
    cfg = get_config(artifacts_dir=tmp_path)
    recipe = Recipe(name="quiet", batch_size=4)
    done = fine_tune(cfg, minilm, rows(), tmp_path / "quiet", recipe, eval_steps=2, max_steps=2,
                     show_progress=show_progress)  # fmt: skip
    printed = capsys.readouterr()
    assert "{'loss'" not in printed.out + printed.err and "train_runtime" not in printed.out + printed.err
    assert any("loss" in h for h in done.history)


def test_losses_for_hard_negatives(minilm):
    from sentence_transformers.sentence_transformer.losses import GISTEmbedLoss, MultipleNegativesRankingLoss

    hard = build_loss(minilm, Recipe(name="h", loss="mnrl-hard", num_negatives=2))
    assert isinstance(hard, MultipleNegativesRankingLoss)
    assert (hard.hardness_mode, hard.hardness_strength) == ("hard_negatives", 5.0)
    assert build_loss(minilm, Recipe(name="h", loss="mnrl-hard"), 8).hardness_mode == "hard_negatives"  # cached too
    gist = build_loss(minilm, Recipe(name="g", loss="gist"))
    assert isinstance(gist, GISTEmbedLoss) and gist.guide is not minilm
    assert not any(p.requires_grad for p in gist.guide.parameters())  # a frozen copy of the starting model
    with pytest.raises(ValueError, match="at most one negative"):
        Recipe(name="g2", loss="gist", num_negatives=2)


@pytest.mark.parametrize("name", ["cached-mnrl", "matryoshka", "mnrl-hard", "gist"])
def test_other_losses_train(tmp_path, minilm, name):
    recipe = Recipe(name=name, loss=name, batch_size=8, mini_batch_size=2, learning_rate=1e-4)
    cfg = get_config(artifacts_dir=tmp_path)
    done = fine_tune(cfg, minilm, rows(), tmp_path / name, recipe, eval_steps=2, max_steps=2, show_progress=False)
    assert done.card["steps"] == 2 and done.history[-1]["train_loss"] > 0


def test_gpl_labels_are_the_cross_encoders_margins_and_margin_mse_trains_on_them(tmp_path, minilm):
    """GPL: each row's label is ce(anchor, positive) - ce(anchor, negative_1), in row order; MarginMSE trains on it."""
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder
    from sentence_transformers.sentence_transformer.losses import MarginMSELoss

    from workbook.models import MINILM, model_path
    from workbook.train import GPL_RECIPE, pseudo_labels

    torch.manual_seed(0)  # the untrained head: any real cross-encoder shows the mechanics
    ce = CrossEncoder(str(model_path(MINILM, get_config())), num_labels=1, max_length=64, local_files_only=True)
    data = rows()
    labelled = pseudo_labels(ce, data.add_column("extra", list(range(len(data)))))
    assert labelled.column_names == ["anchor", "positive", "negative_1", "label"]
    pos = ce.predict(list(zip(data["anchor"], data["positive"], strict=True)))
    neg = ce.predict(list(zip(data["anchor"], data["negative_1"], strict=True)))
    assert np.allclose(labelled["label"], pos - neg, atol=1e-5) and len(set(np.sign(labelled["label"]))) > 1
    with pytest.raises(ValueError, match="negative_1"):
        pseudo_labels(ce, data.select_columns(["anchor", "positive"]))
    assert isinstance(build_loss(minilm, GPL_RECIPE), MarginMSELoss) and "margin-mse" in LOSSES
    recipe = Recipe(name="gpl-tiny", loss="margin-mse", batch_size=8, learning_rate=1e-4)
    done = fine_tune(get_config(artifacts_dir=tmp_path), minilm, labelled, tmp_path / "gpl", recipe, max_steps=2,
                     show_progress=False)  # fmt: skip
    assert done.card["steps"] == 2 and done.history[-1]["train_loss"] > 0
    moved = [not torch.equal(a, b) for a, b in zip(minilm.parameters(), done.model.parameters(), strict=True)]
    assert any(moved)


def test_load_or_train_trains_once_then_loads(tmp_path, minilm):
    """A 400-code slice of the fast case study, 64 rows (2 steps): mining, dev evaluator, training, card, cache."""
    from workbook.data import subset
    from workbook.icd10cm import load_icd10cm

    cfg = get_config(fast=True, artifacts_dir=tmp_path, cache_dir=tmp_path / "cache")
    fast = load_icd10cm(cfg)
    ds = subset(fast, doc_ids=list(fast.corpus)[:400], name="icd10cm-slice")
    first = load_or_train(cfg, "mnrl", "real", max_rows=64, ds=ds, base=minilm, show_progress=False)
    card = read_card(first.path)
    assert card["base_model"] == "all-MiniLM-L6-v2" and card["data"]["rows"] == 64
    assert len(card["data"]["sha256"]) == 64 and card["recipe"]["loss"] == "mnrl" and card["dataset"] == ds.name
    assert set(card["dev_metrics"]) == {"recall@1", "recall@10", "recall@100", "mrr@10", "ndcg@10"}
    assert (first.path / CARD_FILE).is_file() and (first.path.parent / "log_history.json").is_file()
    assert not (first.path.parent / "checkpoints").exists()  # the best checkpoint is the saved model now
    # 2 steps, under cfg.train_eval_steps: one evaluation at the last step would choose nothing, so none runs
    assert planned_steps(64, RECIPES["mnrl"]) == 2 <= cfg.train_eval_steps and card["best_checkpoint"] is None
    assert not any(k.startswith("eval_") for h in first.history for k in h)
    again = load_or_train(cfg, "mnrl", "real", max_rows=64, ds=ds, base=minilm, show_progress=False)
    assert again.path == first.path and again.card == card  # loaded, not retrained
    assert card["model_fingerprint"] != card["base_model_fingerprint"]
    other = load_or_train(cfg, "mnrl", "real", max_rows=32, ds=ds, base=minilm, show_progress=False)
    assert other.path != first.path  # another budget is another run
    cand = load_or_train(cfg, "mnrl", "real", max_rows=64, ds=ds, base=minilm, show_progress=False,
                         dev_scope="candidates")  # fmt: skip
    assert cand.path == first.path and cand.card["dev_scope"] == "candidates" and "candidate docs" in cand.card[
        "dev_metrics_scope"]  # fmt: skip
    assert cand.card["dev_metrics"] == candidate_dev_metrics(cfg, ds, first.model, base=minilm)
    assert cand.card["dev_metrics"]["recall@100"] >= card["dev_metrics"]["recall@100"]  # fewer distractors
    stored = read_card(first.path)["dev_scores"]
    assert set(stored) == {"corpus", "candidates"} and stored["corpus"][0] == card["dev_metrics"]
    with pytest.raises(ValueError, match="dev_scope"):
        load_or_train(cfg, "mnrl", "real", max_rows=64, ds=ds, base=minilm, dev_scope="all")
    # GPL: the same rows, labelled by a cross-encoder's margins (part of the rows' hash, so another run)
    from sentence_transformers.cross_encoder import CrossEncoder

    from workbook.models import MINILM, model_path
    from workbook.train import GPL_RECIPE

    with pytest.raises(ValueError, match="labeller"):
        load_or_train(cfg, GPL_RECIPE, "real", max_rows=64, ds=ds, base=minilm)
    ce = CrossEncoder(str(model_path(MINILM, cfg)), num_labels=1, max_length=64, local_files_only=True)
    gpl = load_or_train(cfg, GPL_RECIPE, "real", max_rows=64, ds=ds, base=minilm, labeller=ce, show_progress=False)
    assert gpl.path != first.path and gpl.card["data"]["columns"] == ["anchor", "positive", "negative_1", "label"]
    assert gpl.card["recipe"]["loss"] == "margin-mse" and gpl.card["data"]["sha256"] != card["data"]["sha256"]


def test_a_pool_scores_the_ends_exactly_and_bounds_the_points_between(tmp_path, minilm):
    """The merge curve's dev pool: exact for a model whose own top 10 is in it, an upper bound for any other model,
    and a model whose whole corpus is encoded reads its pool rows from those embeddings (nothing else encoded)."""
    import copy

    import torch

    from workbook.data import subset
    from workbook.evaluate import evaluate_ranking, interpolate_weights
    from workbook.icd10cm import load_icd10cm
    from workbook.retrieval import dense_ranking
    from workbook.train import dev_candidates, pool_scorer

    cfg = get_config(fast=True, artifacts_dir=tmp_path, cache_dir=tmp_path / "cache")
    fast = load_icd10cm(cfg)
    ds = subset(fast, doc_ids=list(fast.corpus)[:600], name="icd10cm-slice")
    other = copy.deepcopy(minilm)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02 * p.std().nan_to_num())
    ends = [minilm, other]
    pool = dev_candidates(cfg, ds, ends, n=10)
    assert set(pool) == set(dev_candidates(cfg, ds, minilm, n=10)) | set(dev_candidates(cfg, ds, other, n=10))
    assert len(pool) < len(ds.corpus) and pool == [d for d in ds.doc_ids() if d in set(pool)]

    def whole(model, metric):
        ranked = dense_ranking(model, ds, "dev", k=cfg.top_k, cache_dir=cfg.cache_dir / "embeddings",
                               show_progress=False)
        return evaluate_ranking(ranked, ds.qrels["dev"], [metric])[metric]

    emb_dir = cfg.cache_dir / "embeddings"
    for metric in ("recall@10", "ndcg@10"):
        reuse, encode_pool = pool_scorer(cfg, ds, pool, metric, encoded=ends), pool_scorer(cfg, ds, pool, metric)
        for model in ends:
            before = sorted(emb_dir.glob("emb-*.npy"))
            assert reuse(model) == pytest.approx(whole(model, metric), abs=1e-9)  # exact at the ends
            assert sorted(emb_dir.glob("emb-*.npy")) == before  # read off the cached corpus, not encoded again
            assert encode_pool(model) == pytest.approx(reuse(model), abs=1e-3)  # the same rows either way
        middle = interpolate_weights(minilm, other, 0.5)
        assert encode_pool(middle) >= whole(middle, metric) - 1e-9  # a pool can only flatter a model between


def test_long_documents_train_within_the_memory_budget(tmp_path, minilm):
    """256-token documents: the estimate of a plain step matches the measured peak (within 2x), and with a small
    budget the same training runs with gradient caching at a fraction of that memory."""
    import datasets
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    from workbook import memory

    long_doc = " ".join(["glomerular filtration rate decline in chronic kidney disease"] * 40)  # > 256 tokens
    data = datasets.Dataset.from_dict({"anchor": [f"query {i}" for i in range(8)],
                                       "positive": [f"{i} {long_doc}" for i in range(8)],
                                       "negative_1": [f"{long_doc} {i}" for i in range(8)]})  # fmt: skip
    recipe = Recipe(name="mnrl-8", batch_size=8)
    plan = memory.plan_training_memory(minilm, {c: list(data[c]) for c in data.column_names}, 8, 10_000)
    assert plan["tokens"]["positive"] == minilm.max_seq_length and plan["mini_batch"] is None
    assert memory.plan_training_memory(minilm, {"anchor": ["short"] * 8}, 8, 100)["mini_batch"] is None

    peaks = {}
    for name, budget in (("cached", 200), ("plain", 10_000)):  # cached first: freed memory stays resident
        cfg = get_config(artifacts_dir=tmp_path, train_memory_mb=budget)
        memory.reset_peak()
        before = memory.peak_rss_mb()  # the current RSS, right after the reset
        done = fine_tune(cfg, minilm, data, tmp_path / name, recipe, max_steps=1, show_progress=False)
        peaks[name] = memory.peak_rss_mb() - before
        assert done.card["memory_plan"]["budget_mb"] == budget
        if name == "cached":
            assert done.card["memory_plan"]["mini_batch"] == 1  # 200 MiB holds one 256-token sequence (~110 MiB)
    assert isinstance(build_loss(minilm, recipe, 1), CachedMultipleNegativesRankingLoss)
    assert plan["step_mb"] / 2 < peaks["plain"] < plan["step_mb"] * 2, (plan, peaks)
    assert peaks["cached"] < 0.5 * peaks["plain"], peaks
