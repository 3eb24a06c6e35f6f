"""One model card: ``workbook_card.json`` in a saved model folder, written by training and by the deploy registry.

Training (:func:`workbook.train.load_or_train`) writes what made a model: base model and its fingerprint, the data
source and hash, the recipe, timings, dev metrics. The deploy registry writes the same file into a registered
version's folder: what the version is (name, fingerprint, dimension, the metrics it was registered with) and, for a
model trained here, the whole training card under ``training``. The report reads the training card of the model it
describes. sentence-transformers' own ``README.md`` card, written beside it on every save, stays the human-readable
summary of the architecture; this file is the machine-readable record the package reads back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from workbook.files import atomic_write

CARD_FILE = "workbook_card.json"


def write_card(folder: str | Path, card: Mapping) -> Path:
    """Write ``workbook_card.json`` into a saved model folder (atomically; keys sorted, so diffs stay readable)."""
    target = Path(folder) / CARD_FILE
    atomic_write(target, json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    return target


def read_card(folder: str | Path) -> dict:
    """The ``workbook_card.json`` of a saved model folder.

    Raises:
        FileNotFoundError: naming the folder when it has no card.
    """
    target = Path(folder) / CARD_FILE
    if not target.is_file():
        raise FileNotFoundError(f"{target}: no model card; is this a folder saved by workbook.train or .deploy?")
    return json.loads(target.read_text(encoding="utf-8"))


def training_summary(card: Mapping) -> dict:
    """What the deploy registry takes from a training card: base model, data hash, dev metrics and recipe."""
    return {
        "base_model": card["base_model"],
        "train_data_hash": (card.get("data") or {}).get("sha256"),
        "metrics": dict(card.get("dev_metrics") or {}),
        "recipe": dict(card.get("recipe") or {}),
    }
