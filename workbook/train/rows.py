"""Training rows: real, synthetic or both sources with mined hard negatives; sampling and a data hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from workbook.config import Config
from workbook.data import Dataset
from workbook.negatives import load_or_mine_training_set, training_set_path

SOURCES = ("real", "synthetic", "both")


# ------------------------------------------------------------------------------------------------ training data


def synthetic_dataset(ds: Dataset, pairs: Sequence[tuple[str, str]]) -> Dataset:
    """The case study's corpus with the synthetic (query, doc id) pairs as its ``train`` split.

    Identical query texts are merged into one query relevant to each of their docs (as the case study merges terms).
    """
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    by_text: dict[str, str] = {}
    for text, doc in pairs:
        if doc not in ds.corpus:
            raise KeyError(f"synthetic pair ({text!r}, {doc!r}): doc {doc!r} is not in the corpus of {ds.name}")
        qid = by_text.setdefault(text, f"syn{len(by_text):06d}")
        queries[qid] = text
        qrels.setdefault(qid, {})[doc] = 1
    return Dataset(corpus=ds.corpus, queries=queries, qrels={"train": qrels}, name=f"{ds.name}-synthetic")


def synthetic_training_set_path(cfg: Config) -> Path:
    """Where the synthetic source's mined rows are saved: beside notebook 03's set, ``<mode>-synthetic.jsonl``."""
    return training_set_path(cfg).with_name(f"{cfg.mode}-synthetic.jsonl")


def training_data(
    cfg: Config,
    ds: Dataset,
    model,
    source: str = "real",
    num_negatives: int = 1,
    synthetic_pairs: Sequence[tuple[str, str]] | None = None,
):
    """Training rows ``anchor, positive, negative_1..N`` for a data source, with hard negatives mined by the base
    ``model`` (notebook 03's settings, known false negatives excluded; cached under ``artifacts/negatives``).

    Args:
        source: ``"real"`` (train-split queries), ``"synthetic"`` (notebook 04's pairs) or ``"both"``.
        num_negatives: hard negatives kept per row (at most the 5 mined).
        synthetic_pairs: (query text, doc id) pairs to use as the synthetic source; ``None`` loads the case study's
            cached set (:func:`workbook.synth.load_synthetic_pairs`).

    Returns:
        A ``datasets.Dataset``; for ``both``, the real rows then the synthetic rows.
    """
    import datasets


    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    parts = []
    if source in {"real", "both"}:
        parts.append(load_or_mine_training_set(cfg, ds, model))
    if source in {"synthetic", "both"}:
        if synthetic_pairs is None:
            from workbook.synth import load_synthetic_pairs  # lazy: the synth package loads llama.cpp helpers

            synthetic_pairs = load_synthetic_pairs(cfg, ds)
        syn = synthetic_dataset(ds, synthetic_pairs)
        parts.append(load_or_mine_training_set(cfg, syn, model, path=synthetic_training_set_path(cfg)))
    columns = ["anchor", "positive"] + [f"negative_{i}" for i in range(1, num_negatives + 1)]
    parts = [p.select_columns(columns) for p in parts]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def sample_rows(data, max_rows: int | None, seed: int):
    """A seeded sample of at most ``max_rows`` rows (all rows, in order, when ``None`` or not fewer)."""
    if max_rows is None or len(data) <= max_rows:
        return data
    return data.shuffle(seed=seed).select(range(max_rows))


def data_hash(data) -> str:
    """SHA-256 of the training rows (every column, in order): the card's record of what the model saw."""
    digest = hashlib.sha256()
    for row in data:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()
