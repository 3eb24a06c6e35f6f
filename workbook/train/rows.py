"""Training rows: real, synthetic or both sources with mined hard negatives; sampling and a data hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from workbook.config import Config
from workbook.data import Dataset
from workbook.negatives import load_or_mine_training_set, training_set_path
from workbook.negatives.lookalike import NEGATIVE_SOURCES, lookalike_negatives, mix_negatives

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
    negatives: str = "mined",
):
    """Training rows ``anchor, positive, negative_1..N`` for a data source, with hard negatives mined by the base
    ``model`` (notebook 03's settings, known false negatives excluded; cached under ``artifacts/negatives``).

    Args:
        source: ``"real"`` (train-split queries), ``"synthetic"`` (notebook 04's pairs) or ``"both"``.
        num_negatives: hard negatives kept per row (at most the 5 mined).
        synthetic_pairs: (query text, doc id) pairs to use as the synthetic source; ``None`` loads the case study's
            cached set (:func:`workbook.synth.load_synthetic_pairs`).
        negatives: ``"mined"``, ``"lookalike"`` or ``"both"``: where the negative columns come from
            (:mod:`workbook.negatives.lookalike`; the lookalike kinds need ``ds.extras["lookalikes"]``).

    Returns:
        A ``datasets.Dataset``; for ``both``, the real rows then the synthetic rows.
    """
    return training_data_with_stats(cfg, ds, model, source, num_negatives, synthetic_pairs, negatives)[0]


def training_data_with_stats(
    cfg: Config,
    ds: Dataset,
    model,
    source: str = "real",
    num_negatives: int = 1,
    synthetic_pairs: Sequence[tuple[str, str]] | None = None,
    negatives: str = "mined",
):
    """:func:`training_data` and, per data source, the :class:`~workbook.negatives.lookalike.MixStats` of its rows
    (an empty list for ``negatives="mined"``)."""
    import datasets

    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if negatives not in NEGATIVE_SOURCES:
        raise ValueError(f"negatives must be one of {NEGATIVE_SOURCES}, got {negatives!r}")
    if negatives != "mined" and not ds.extras.get("lookalikes"):
        raise ValueError(f"{ds.name}: negatives={negatives!r} needs lookalike groups (lookalikes.jsonl); it has none")
    sets = []  # (dataset the ids refer to, mined rows with ids)
    if source in {"real", "both"}:
        sets.append((ds, load_or_mine_training_set(cfg, ds, model, with_ids=True)))
    if source in {"synthetic", "both"}:
        if synthetic_pairs is None:
            from workbook.synth import load_synthetic_pairs  # lazy: the synth package loads llama.cpp helpers

            synthetic_pairs = load_synthetic_pairs(cfg, ds)
        syn = synthetic_dataset(ds, synthetic_pairs)
        path = synthetic_training_set_path(cfg)
        sets.append((syn, load_or_mine_training_set(cfg, syn, model, with_ids=True, path=path)))
    columns = ["anchor", "positive"] + [f"negative_{i}" for i in range(1, num_negatives + 1)]
    parts, stats = [], []
    for data, rows in sets:
        if negatives == "mined":
            parts.append(rows.select_columns(columns))
            continue
        pairs = zip(rows["query_id"], rows["positive_id"], strict=True)
        look = lookalike_negatives(data, pairs, model, ds.extras["lookalikes"], cfg.cache_dir / "embeddings")
        mixed, stat = mix_negatives(rows, data, look, negatives, num_negatives)
        parts.append(mixed)
        stats.append(stat)
    return (parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)), stats


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
