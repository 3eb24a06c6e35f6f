"""A dev split for datasets without one, carved out of train, so no choice is ever made on test."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

from workbook.data import Dataset, equivalence_key  # equivalence_key: the key find_leakage uses for "the same wording"

#: Fewest queries a carved dev split may have; a train split too small for it keeps all its queries.
MIN_CARVED_DEV = 10


def carved_dev_size(n_train: int, share: float = 0.15, min_queries: int = 50) -> int:
    """Train queries to hold out as dev: ``share`` of them, at least ``min_queries`` when that leaves three quarters
    of train (else a quarter); 0 when that is under :data:`MIN_CARVED_DEV` (too few to choose anything on)."""
    n = max(math.ceil(share * n_train), min(min_queries, n_train // 4))
    return n if n >= MIN_CARVED_DEV else 0


def carve_dev_split(ds: Dataset, seed: int, share: float = 0.15, min_queries: int = 50) -> dict:
    """Give a dataset without a dev split one, held out of train (in place), so no choice is ever made on test.

    A seeded sample of the train queries that have a relevant doc moves from ``qrels["train"]`` to ``qrels["dev"]``
    (:func:`carved_dev_size` of them, sorted ids). Queries with the same wording (the key the leakage check uses)
    move together, so the carved dev split never repeats a train query. Training pairs, hard negatives and the
    in-training evaluator then see train without them. A dataset with a dev split is left alone; one without enough
    train queries gets none, and the pipeline's choices fall back to fixed defaults instead (never to test).

    Returns:
        A record for the report: ``source`` (``"dataset"``, ``"carved from train"`` or ``"none"``), ``queries``, and
        for a carved split ``train_queries_before``, ``seed``, ``share`` and the sorted ``query_ids``.
    """
    if "dev" in ds.qrels:
        return {"source": "dataset", "queries": len(ds.qrels["dev"])}
    train = ds.qrels.get("train", {})
    judged = sorted(q for q, docs in train.items() if any(s > 0 for s in docs.values()))
    n = carved_dev_size(len(judged), share, min_queries)
    if n == 0:
        why = "no train split" if not train else f"only {len(judged)} train queries"
        return {"source": "none", "queries": 0, "why": why}
    groups: dict[str, list[str]] = {}
    for qid in judged:
        groups.setdefault(equivalence_key(ds.queries[qid]), []).append(qid)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    picked: list[str] = []
    for key in keys:
        if len(picked) >= n:
            break
        picked += groups[key]
    held = set(picked)
    ds.qrels["dev"] = {q: train[q] for q in sorted(held)}
    ds.qrels["train"] = {q: docs for q, docs in train.items() if q not in held}
    return {"source": "carved from train", "queries": len(held), "train_queries_before": len(train), "seed": seed,
            "share": share, "query_ids": sorted(held)}  # fmt: skip


def dev_note(dev: Mapping) -> str:
    """One sentence on where the dev split comes from (for the report)."""
    if dev.get("source") == "carved from train":
        return (f"no dev split: {dev['queries']} train queries held out as dev (seed {dev['seed']}), and left out "
                "of training")  # fmt: skip
    if dev.get("source") == "none":
        return (f"no dev split, and {dev.get('why', 'too few train queries')} to hold one out: choices fall back to "
                "fixed defaults, never to test")  # fmt: skip
    return f"dev split from the dataset ({dev.get('queries', 0)} queries)"


def selection_note(dev: Mapping) -> str:
    """How the best cheap method and tuned variant were chosen, given the dev split's record."""
    if dev.get("source") == "carved from train":
        return f"picked on the dev split (held out of train: {dev['queries']} queries, seed {dev['seed']})"
    return "picked on the dev split"
