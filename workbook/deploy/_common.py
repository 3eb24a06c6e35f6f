"""Small pieces every deploy module shares: names, timestamps, paths for messages, checked JSON reads, hashes, ids."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from workbook.cards import CARD_FILE  # noqa: F401  (re-exported: the one card file, see workbook.cards)
from workbook.config import ROOT
from workbook.deploy.errors import DeployError
from workbook.files import read_json

PRODUCTION_ALIAS = "production"
REGISTRY_FILE = "registry.json"
COLLECTION_PREFIX = "docs"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Point ids are UUIDv5 of the doc id in this namespace: the same doc always gets the same id, so re-upserting a
#: batch after a crash overwrites it instead of duplicating it.
_POINT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "workbook.deploy/doc")
#: The key under which a collection's Qdrant metadata holds what this package records about it.
_META_KEY = "workbook_deploy"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _shown(path: Path) -> str:
    """A path for messages: relative to the repository when inside it, ``$TMPDIR/...`` inside the temporary folder
    (no machine paths in notebook outputs)."""
    path = Path(path)
    if path.is_absolute() and path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT))
    tmp = Path(tempfile.gettempdir()).resolve()
    if path.is_absolute() and path.resolve().is_relative_to(tmp):
        return str(Path("$TMPDIR") / path.resolve().relative_to(tmp))
    return str(path)


def _check_version(version: str) -> str:
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise DeployError(
            f"model version {version!r} is not a valid name: use letters, digits, '.', '_' or '-' (e.g. 'v2'), "
            "at most 64 characters"
        )
    return version


def _read_json(path: Path, what: str, error: type[DeployError] = DeployError) -> dict:
    """:func:`workbook.files.read_json` for a file that must hold a JSON object, raising ``error`` with the file (and
    line) and what it is (``what``) when it is missing, not JSON, or not an object."""
    try:
        data = read_json(path)
    except FileNotFoundError as exc:
        raise error(f"{what} {_shown(path)} is missing") from exc
    except json.JSONDecodeError as exc:
        raise error(f"{what} {_shown(path)}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise error(f"{what} {_shown(path)}:1: must hold a JSON object")
    return data


def corpus_hash(doc_ids: Sequence[str], texts: Sequence[str]) -> str:
    """A short hash of the ordered (doc id, text) pairs: a checkpoint or collection belongs to one corpus.

    SHA-1, 16 hex digits: collection metadata and checkpoints already written record it, so it must not change.
    """
    digest = hashlib.sha1()
    for doc_id, text in zip(doc_ids, texts, strict=True):
        digest.update(str(doc_id).encode("utf-8") + b"\0" + text.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


def _dimension(model) -> int:
    """The model's embedding size (``get_embedding_dimension`` in sentence-transformers 6, the old name before)."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def point_id(doc_id: str) -> str:
    """The Qdrant point id of a document (UUIDv5 of its id: stable across runs and versions)."""
    return str(uuid.uuid5(_POINT_NAMESPACE, str(doc_id)))
