"""Saving, loading and reusing a mined training set (``artifacts/negatives/<mode>-train.jsonl``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from workbook.config import Config
from workbook.data import Dataset
from workbook.files import atomic_write
from workbook.negatives.mine import MinedNegatives, mine_negatives
from workbook.negatives.settings import TRAINING_SETTINGS, MiningSettings, training_pairs
from workbook.retrieval import model_fingerprint

# ------------------------------------------------------------------------------------------------ saving


def training_set_path(cfg: Config) -> Path:
    """Where notebook 03 saves the mined training set for notebook 05: ``artifacts/negatives/<mode>-train.jsonl``."""
    return cfg.artifacts_dir / "negatives" / f"{cfg.mode}-train.jsonl"


def data_digest(ds: Dataset, pairs: Iterable[tuple[str, str]]) -> str:
    """A short hash of what mining saw: the corpus ids and each (query text, positive id) pair, in order."""
    digest = hashlib.sha256()
    for did in ds.corpus:
        digest.update(did.encode() + b"\0")
    for qid, did in pairs:
        digest.update(f"{ds.queries[qid]}\t{did}\n".encode())
    return digest.hexdigest()[:16]


def save_training_set(ds: Dataset, mined: MinedNegatives, path: str | Path, model_id: str = "") -> Path:
    """Write the mined rows as JSONL (anchor, positive, negative_1..N plus ids) and a ``.meta.json`` beside it.

    Rows with fewer than N negatives are left out, as in :meth:`MinedNegatives.to_dataset`. The meta file records the
    settings, the model's fingerprint and :func:`data_digest` of the mined pairs, so a stale set is never reused.
    """
    path = Path(path)
    n = mined.settings.num_negatives
    lines = []
    for r in mined.rows:
        if len(r["negatives"]) < n:
            continue
        rec = {"anchor": ds.queries[r["query_id"]], "positive": ds.doc_text(r["positive"])}
        rec.update({f"negative_{i}": ds.doc_text(d) for i, d in enumerate(r["negatives"][:n], start=1)})
        rec.update({"query_id": r["query_id"], "positive_id": r["positive"], "negative_ids": r["negatives"][:n]})
        lines.append(json.dumps(rec, ensure_ascii=False))
    atomic_write(path, "\n".join(lines) + "\n")
    meta = {
        "settings": asdict(mined.settings),
        "rows": len(lines),
        "dataset": ds.name,
        "data": data_digest(ds, [(r["query_id"], r["positive"]) for r in mined.rows]),
        "model": model_id,
        "labels": list(mined.label_splits),  # whose judgements filtered the rows (never dev or test)
    }
    atomic_write(path.with_suffix(".meta.json"), json.dumps(meta, indent=2) + "\n")
    return path


def load_training_set(path: str | Path, with_ids: bool = False):
    """Load a set written by :func:`save_training_set` as a ``datasets.Dataset`` the trainer takes.

    Args:
        path: the ``.jsonl`` file.
        with_ids: keep ``query_id``/``positive_id``/``negative_ids`` (the trainer would read them as inputs: off).

    Raises:
        FileNotFoundError: naming the file and how to build it.
    """
    import datasets

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no mined training set at {path}; run notebook 03 or load_or_mine_training_set()")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not with_ids:
        rows = [{k: v for k, v in r.items() if k not in {"query_id", "positive_id", "negative_ids"}} for r in rows]
    return datasets.Dataset.from_list(rows)


def load_or_mine_training_set(
    cfg: Config,
    ds: Dataset,
    model,
    settings: MiningSettings = TRAINING_SETTINGS,
    with_ids: bool = False,
    path: str | Path | None = None,
    split: str = "train",
):
    """The saved training set when it was mined with ``settings``, ``model``'s weights and the same pairs of
    ``split``; otherwise mine it (shared embedding cache) and save it.

    Args:
        path: where the set lives; ``None`` is :func:`training_set_path` (the case study's train split).
    """
    path = Path(path) if path is not None else training_set_path(cfg)
    meta_path = path.with_suffix(".meta.json")
    pairs, _ = training_pairs(ds, split)
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if (
            meta.get("settings") == asdict(settings)
            and meta.get("model") == model_fingerprint(model)
            and meta.get("data") == data_digest(ds, pairs)
            and meta.get("labels") == ([split] if settings.exclude_known and split in ds.qrels else [])
        ):
            return load_training_set(path, with_ids=with_ids)
    mined = mine_negatives(ds, model, settings, split=split, cache_dir=cfg.cache_dir / "embeddings")
    save_training_set(ds, mined, path, model_id=model_fingerprint(model))
    return load_training_set(path, with_ids=with_ids)
