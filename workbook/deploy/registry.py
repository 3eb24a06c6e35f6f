"""The model registry: a saved folder per model version, with its card, and ``registry.json`` (versions, promotions)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from workbook.cards import training_summary, write_card
from workbook.deploy._common import CARD_FILE, REGISTRY_FILE, _check_version, _dimension, _now, _read_json, _shown
from workbook.deploy.errors import DeployError, ModelMismatchError, UnknownVersionError
from workbook.files import atomic_write
from workbook.models import load_model
from workbook.retrieval import model_fingerprint


def _dumps(obj) -> str:
    """JSON as the registry and the cards are written: indented, keys sorted (diffs stay readable)."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class ModelCard:
    """What a model version is: where it came from, what it was trained on, how good it was, when it was made."""

    version: str
    base_model: str
    train_data_hash: str | None
    metrics: dict
    created: str
    fingerprint: str
    dimension: int
    recipe: dict = field(default_factory=dict)
    notes: str = ""

    def to_dict(self) -> dict:
        """The card as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "card") -> ModelCard:
        """Read a card written by :meth:`to_dict`; a missing field is a clear error naming it."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in data
        ]
        if missing:
            raise DeployError(f"{where}: field(s) {', '.join(missing)} missing from the model card")
        return cls(**{k: data[k] for k in names if k in data})


class ModelRegistry:
    """Saved model versions (one folder each, with its card) and ``registry.json`` (versions, promotion history).

    Args:
        root: the registry folder (created on first write).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.file = self.root / REGISTRY_FILE

    # -- reading
    def _data(self) -> dict:
        if not self.file.exists():
            return {"format": 1, "versions": {}, "production": [], "events": []}
        data = _read_json(self.file, "model registry")
        for key, kind in (("versions", dict), ("production", list), ("events", list)):
            if not isinstance(data.get(key), kind):
                raise DeployError(f"model registry {_shown(self.file)}: field '{key}' missing or not a {kind.__name__}")
        return data

    def _write(self, data: dict) -> None:
        atomic_write(self.file, _dumps(data))

    def versions(self) -> list[str]:
        """Registered versions, in registration order."""
        return list(self._data()["versions"])

    def card(self, version: str) -> ModelCard:
        """The card of ``version``.

        Raises:
            UnknownVersionError: no such version in the registry.
        """
        versions = self._data()["versions"]
        if version not in versions:
            known = ", ".join(versions) or "none yet"
            raise UnknownVersionError(
                f"no model version {version!r} in the registry {_shown(self.file)} (registered: {known}); "
                "register it first with ModelRegistry.register"
            )
        return ModelCard.from_dict(versions[version]["card"], where=f"{_shown(self.file)}: version {version!r}")

    def path(self, version: str) -> Path:
        """The saved model folder of ``version``.

        Raises:
            UnknownVersionError: the version is not registered, or its folder is missing.
        """
        self.card(version)
        folder = self.root / self._data()["versions"][version]["folder"]
        if not (folder / CARD_FILE).is_file() or not (folder / "modules.json").is_file():
            raise UnknownVersionError(
                f"model version {version!r} is registered but its folder {_shown(folder)} is missing or incomplete "
                f"(no {CARD_FILE} or modules.json): restore it or register the version again"
            )
        return folder

    def load(self, version: str, device: str | None = None):
        """Load ``version`` as a SentenceTransformer and check its weights still match the card's fingerprint."""
        folder = self.path(version)
        model = load_model(str(folder), device=device)
        card = self.card(version)
        actual = model_fingerprint(model)
        if actual != card.fingerprint:
            raise ModelMismatchError(
                f"the weights in {_shown(folder)} (fingerprint {actual}) are not those registered as version "
                f"{version!r} (fingerprint {card.fingerprint}): the folder was changed after registration"
            )
        return model

    @property
    def promoted(self) -> str | None:
        """The version promoted last (what ``production`` should point to), or ``None``."""
        stack = self._data()["production"]
        return stack[-1] if stack else None

    @property
    def production_history(self) -> list[str]:
        """Promoted versions, oldest first; the last is in production, a rollback returns to the one before."""
        return list(self._data()["production"])

    def events(self) -> pd.DataFrame:
        """Every promotion and rollback: time, action, version, previous version."""
        rows = [{**e, "previous": e.get("previous") or "-"} for e in self._data()["events"]]
        return pd.DataFrame(rows, columns=["at", "action", "version", "previous"])

    def table(self) -> pd.DataFrame:
        """One row per version: base model, data hash, fingerprint, dimension, created, key metrics, promoted."""
        promoted = self.promoted
        rows = []
        for version in self.versions():
            card = self.card(version)
            row = {
                "version": version,
                "base model": card.base_model,
                "train data hash": card.train_data_hash or "-",
                "fingerprint": card.fingerprint,
                "dim": card.dimension,
                "created": card.created,
                **{k: round(float(v), 4) for k, v in sorted(card.metrics.items())},
                "promoted": version == promoted,
            }
            rows.append(row)
        return pd.DataFrame(rows).set_index("version") if rows else pd.DataFrame()

    # -- writing
    def register(
        self,
        version: str,
        model,
        *,
        card: Mapping | None = None,
        base_model: str | None = None,
        train_data_hash: str | None = None,
        metrics: Mapping[str, float] | None = None,
        recipe: Mapping | None = None,
        notes: str = "",
        overwrite: bool = False,
    ) -> ModelCard:
        """Save ``model`` as ``version`` with its card, and list it in ``registry.json``.

        The model is saved into a temporary folder renamed into place, so a crash leaves no half-saved version.

        Args:
            version: a short name (``v1``, ``2025-06-tuned``); becomes part of the collection name.
            model: a SentenceTransformer.
            card: the training card of a model trained here (``load_or_train(...).card``): base model, data hash,
                metrics (its dev metrics) and recipe default to its own, and it is kept whole under ``training``.
            base_model: the model it was fine-tuned from (or its own name for an off-the-shelf model).
            train_data_hash: a hash of the training data (``None`` for a model not trained here).
            metrics: metric name -> value measured when it was made (e.g. dev Recall@10).
            recipe: how it was made (loss, steps, learning rate, the trainer's own card, ...).
            overwrite: replace an existing version (refused by default: versions are immutable).

        Returns:
            The card written (``workbook_card.json`` in the version's folder, see :mod:`workbook.cards`).
        """
        from transformers.utils import logging as hf_logging  # heavy (~3 s): only when a version is saved

        _check_version(version)
        given = {"base_model": base_model, "train_data_hash": train_data_hash, "metrics": metrics, "recipe": recipe}
        facts = {**(training_summary(card) if card else {}), **{k: v for k, v in given.items() if v is not None}}
        if not facts.get("base_model"):
            raise DeployError(f"register {version!r}: pass base_model (or the training card it came from, card=...)")
        data = self._data()
        if version in data["versions"] and not overwrite:
            raise DeployError(
                f"model version {version!r} is already registered in {_shown(self.file)}: versions are immutable, "
                "pick a new name (or pass overwrite=True)"
            )
        if version in data["production"] and overwrite:
            raise DeployError(f"model version {version!r} has been promoted: it cannot be overwritten")
        written = ModelCard(
            version=version,
            base_model=facts["base_model"],
            train_data_hash=facts.get("train_data_hash"),
            metrics={k: float(v) for k, v in (facts.get("metrics") or {}).items()},
            created=_now(),
            fingerprint=model_fingerprint(model),
            dimension=_dimension(model),
            recipe=json.loads(json.dumps(dict(facts.get("recipe") or {}), default=str)),
            notes=notes,
        )
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / version
        with tempfile.TemporaryDirectory(dir=self.root, prefix=f".{version}-") as tmp:
            staged = Path(tmp) / "model"
            hf_logging.disable_progress_bar()
            try:
                model.save(str(staged))
            finally:
                hf_logging.enable_progress_bar()
            write_card(staged, {**written.to_dict(), **({"training": dict(card)} if card else {})})
            if target.exists():
                shutil.rmtree(target)
            os.replace(staged, target)
        data["versions"][version] = {"folder": version, "card": written.to_dict()}
        self._write(data)
        return written

    def _record(self, action: str, version: str, previous: str | None) -> None:
        data = self._data()
        if action == "promote":
            data["production"].append(version)
        else:  # rollback
            data["production"].pop()
        data["events"].append({"at": _now(), "action": action, "version": version, "previous": previous})
        self._write(data)
