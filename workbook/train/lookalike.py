"""Lookalike-aware fine-tuning compared on dev: where the negatives come from, and a loss made for hard negatives.

Every run starts from the base model and trains on the same seeded sample of training-split rows; only the
negatives and the loss change (:data:`LOOKALIKE_VARIANTS`). Each is scored on dev over the whole corpus with
:func:`lookalike_dev_metrics`, and :func:`pick_lookalike_variant` applies the rule fixed before any run. Used by
notebook 05 and ``bench/lookalike.py`` (the same runs: the trained models are shared through ``load_or_train``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from workbook.config import Config
from workbook.data import Dataset
from workbook.train.recipes import Recipe


@dataclass(frozen=True)
class Variant:
    """One compared run: a name, where its negatives come from, and its recipe."""

    name: str
    negatives: str
    recipe: Recipe


def _recipe(loss: str, num_negatives: int) -> Recipe:
    return Recipe(name=f"{loss}-{num_negatives}neg", loss=loss, num_negatives=num_negatives)


#: The compared runs. Two negative columns each, except GISTEmbed, which takes one per row in this
#: sentence-transformers version (its row holds the hardest sibling, or a mined negative where there is none).
LOOKALIKE_VARIANTS = (
    Variant("mined", "mined", _recipe("mnrl", 2)),
    Variant("lookalike", "lookalike", _recipe("mnrl", 2)),
    Variant("both", "both", _recipe("mnrl", 2)),
    Variant("both + mnrl-hard", "both", _recipe("mnrl-hard", 2)),
    Variant("sibling + gist", "both", _recipe("gist", 1)),
)
#: The pick rule's Recall@10 slack: a run may lose at most this much dev Recall@10 against ``mined``.
RECALL_SLACK = 0.01
PICK_RULE = f"lowest dev sibling confusion@10 among runs with dev Recall@10 >= mined's - {RECALL_SLACK}"


def _dev_per_query(cfg: Config, ds: Dataset, model, split: str, docs: Sequence[str] | None):
    """``model`` on ``split`` query by query: Recall@10 and nDCG@10 per query, the per-query sibling confusion@10 and
    gold-minus-best-sibling margin (queries with a sibling), and the ranked docs' embeddings and ids."""
    from workbook.diagnose import sibling_confusion, sibling_map, sibling_margins
    from workbook.evaluate import evaluate_ranking
    from workbook.retrieval import DenseIndex, encode, encode_cached

    doc_ids = ds.doc_ids() if docs is None else list(docs)
    doc_emb = encode_cached(model, [ds.doc_text(d) for d in doc_ids], cfg.cache_dir / "embeddings", show_progress=False)
    query_ids = sorted(ds.qrels[split])
    q_emb = encode(model, [ds.queries[q] for q in query_ids], show_progress=False)
    ranked = DenseIndex(doc_emb, doc_ids).ranked(query_ids, q_emb, cfg.top_k)
    per_query = evaluate_ranking(ranked, ds.qrels[split], ["recall@10", "ndcg@10"]).per_query
    siblings = sibling_map(ds.extras["lookalikes"])
    confused = sibling_confusion(ranked, ds.qrels[split], siblings, k=10)["confused"]
    margins = sibling_margins(q_emb, query_ids, doc_emb, doc_ids, ds.qrels[split], siblings)["margin"]
    return per_query, confused, margins, doc_emb, doc_ids


def lookalike_dev_metrics(cfg: Config, ds: Dataset, model, split: str = "dev", docs: Sequence[str] | None = None,
                          seed_pairs: int = 20_000) -> dict:
    """Metrics of ``model`` on ``split`` with 95% bootstrap CIs, and the lookalike-collapse numbers.

    Args:
        docs: rank these doc ids only (e.g. :func:`dev_candidates`, which holds every gold code's siblings); ``None``
            ranks the whole corpus. A candidate pool reads high on Recall@10 (fewer distractors) and is for
            comparing runs on one footing; its embeddings are cached like the card's candidate metrics.
        seed_pairs: random pairs for the random-pair cosine (seeded by ``cfg.seed``).

    Returns:
        Recall@10, nDCG@10 (with a CI for Recall@10), the sibling confusion rate@10 (with a CI), the share of queries
        whose gold code scores below its best sibling, the median margin, the mean sibling-pair cosine (groups whose
        codes are all ranked), and counts.
    """
    return _summarise(cfg, ds, _dev_per_query(cfg, ds, model, split, docs), seed_pairs)


def _summarise(cfg: Config, ds: Dataset, parts: tuple, seed_pairs: int = 20_000) -> dict:
    """:func:`lookalike_dev_metrics` from :func:`_dev_per_query`'s per-query values."""
    from workbook.diagnose import random_pair_cosines, sibling_pair_cosines
    from workbook.evaluate import bootstrap_ci

    per_query, confused, margins, doc_emb, doc_ids = parts
    groups = ds.extras["lookalikes"]
    ranked_docs = set(doc_ids)
    inside = [g for g in groups if set(g["codes"]) <= ranked_docs]
    pairs = sibling_pair_cosines(doc_emb, doc_ids, inside)["cosine"]
    out = {m: round(float(per_query[m].mean()), 4) for m in ("recall@10", "ndcg@10")}
    out["recall@10 CI"] = [round(x, 4) for x in bootstrap_ci(per_query["recall@10"].to_numpy(), seed=cfg.seed)]
    out["sibling confusion@10"] = round(float(confused.mean()), 4)
    out["sibling confusion@10 CI"] = [round(x, 4) for x in bootstrap_ci(confused.to_numpy(float), seed=cfg.seed)]
    out["gold below a sibling"] = round(float((margins < 0).mean()), 4)
    out["gold below a sibling CI"] = [round(x, 4) for x in bootstrap_ci((margins < 0).to_numpy(float), seed=cfg.seed)]
    out["margin gold - best sibling (median)"] = round(float(margins.median()), 4)
    out["sibling pair cosine (mean)"] = round(float(pairs.mean()), 4)
    out["random pair cosine (mean)"] = round(float(random_pair_cosines(doc_emb, seed_pairs, seed=cfg.seed).mean()), 4)
    out["queries"] = int(len(per_query))
    out["queries with a sibling"] = int(len(confused))
    out["sibling pairs"] = int(len(pairs))
    out["docs ranked"] = len(doc_ids)
    return out


def pick_lookalike_variant(dev: dict[str, dict]) -> str:
    """:data:`PICK_RULE` over ``{run name: lookalike_dev_metrics(...)}`` (must hold ``"mined"``)."""
    floor = dev["mined"]["recall@10"] - RECALL_SLACK
    ok = {n: m for n, m in dev.items() if m["recall@10"] >= floor}
    return min(ok, key=lambda n: (ok[n]["sibling confusion@10"], -ok[n]["recall@10"]))


def full_budget_challenger(dev: dict[str, dict]) -> str:
    """The run the full-budget confirmation sets against ``mined``: the screen's pick (:func:`pick_lookalike_variant`),
    or, when the screen keeps mined negatives, the run with the lowest sibling confusion (the strongest case for
    lookalike negatives), so the confirmation always tests one."""
    picked = pick_lookalike_variant(dev)
    if picked != "mined":
        return picked
    return min((n for n in dev if n != "mined"), key=lambda n: (dev[n]["sibling confusion@10"], -dev[n]["recall@10"]))


def get_variant(name: str) -> Variant:
    """A :data:`LOOKALIKE_VARIANTS` entry by name."""
    for v in LOOKALIKE_VARIANTS:
        if v.name == name:
            return v
    raise KeyError(f"unknown variant {name!r}; known: {[v.name for v in LOOKALIKE_VARIANTS]}")


def full_budget_candidate(picked: str) -> tuple[Recipe, str]:
    """The screen's pick as a full-budget training: :data:`~workbook.train.recipes.DEFAULT_RECIPE` with the picked
    variant's loss, negative columns and source of negatives (``"both"``: the earlier final training's recipe).

    Returns:
        ``(recipe, negatives)`` for :func:`~workbook.train.load_or_train` on every training row.
    """
    from dataclasses import replace

    from workbook.train.recipes import DEFAULT_RECIPE, get_recipe

    v = get_variant(picked)
    return replace(get_recipe(DEFAULT_RECIPE), loss=v.recipe.loss, num_negatives=v.recipe.num_negatives), v.negatives


def full_budget_comparison(cfg: Config, ds: Dataset, runs: dict) -> dict:
    """Confirm the screen's pick at the full budget: each run's dev metrics over the whole corpus, the pair compared
    query by query on the same dev queries, and :data:`PICK_RULE` applied to the two.

    Args:
        runs: ``{"mined": <TrainedRun>, <screen's pick>: <TrainedRun>}``, both trained on every training row.

    Returns:
        ``{name: lookalike_dev_metrics(...)}`` for each run, ``"paired"`` (the pick minus mined, per dev query: mean
        difference, 95% bootstrap CI, permutation p-value and query count for Recall@10, nDCG@10 and the per-query
        sibling confusion@10, on the queries that have a sibling), ``"pick_rule"`` and ``"picked"``.
    """
    from workbook.evaluate import RetrievalResult, paired_comparison

    if "mined" not in runs or len(runs) != 2:
        raise ValueError(f"full_budget_comparison needs 'mined' and one other run, got {sorted(runs)}")
    other = next(n for n in runs if n != "mined")
    out, per_query = {}, {}
    for name, run in runs.items():
        parts = _dev_per_query(cfg, ds, run.model, "dev", None)  # one encode and ranking per model
        res, confused = RetrievalResult(name, parts[0]), parts[1].astype(float).to_frame("sibling confusion@10")
        per_query[name] = {"recall@10": res, "ndcg@10": res, "sibling confusion@10": RetrievalResult(name, confused)}
        out[name] = _summarise(cfg, ds, parts)
    paired = {"what": f"{other} minus mined, per dev query (whole corpus): paired bootstrap CI, permutation p-value"}
    for metric in ("recall@10", "ndcg@10", "sibling confusion@10"):
        c = paired_comparison(per_query["mined"][metric], per_query[other][metric], metric, seed=cfg.seed)
        paired[metric] = {"delta": round(c.delta, 4), "ci": [round(c.ci_low, 4), round(c.ci_high, 4)],
                          "p_value": round(c.p_value, 4), "queries": c.queries}  # fmt: skip
    out["paired"] = paired
    out["pick_rule"] = PICK_RULE
    out["picked"] = pick_lookalike_variant({n: out[n] for n in runs})
    return out
