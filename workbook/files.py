"""Files, written once: atomic writes, JSON and JSONL, file and content hashes.

Every module that saves something goes through here, so a crash never leaves half a file, JSON is written one way
(indented, UTF-8, NaN as null), and a hash means the same thing wherever it is computed. Bad JSONL input is reported
with its file, line and field.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def _staged(path: Path, mode: str) -> Iterator:
    """A temporary file beside ``path``, renamed onto it when the block ends without an error (removed otherwise)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        kwargs = {"encoding": "utf-8", "newline": "\n"} if "b" not in mode else {}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file and a rename, so a crash never leaves half a file."""
    path = Path(path)
    with _staged(path, "w") as fh:
        fh.write(text)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """:func:`atomic_write` for bytes."""
    path = Path(path)
    with _staged(path, "wb") as fh:
        fh.write(data)
    return path


def atomic_save(path: str | Path, save: Callable[[Path], object]) -> Path:
    """Call ``save(tmp)`` (a writer that takes a path, e.g. ``np.save`` or ``fig.savefig``) on a temporary file
    beside ``path`` (same suffix, so writers that pick a format from it still do), then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        save(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def clean_json(obj):
    """``obj`` made JSON-safe: NumPy scalars and arrays as Python values, NaN/inf as null, paths as strings, tuples
    as lists, sets as sorted lists."""
    if isinstance(obj, Mapping):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [clean_json(v) for v in (sorted(obj) if isinstance(obj, set) else obj)]
    if isinstance(obj, np.ndarray):
        return clean_json(obj.tolist())
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer | int):
        return int(obj)
    if isinstance(obj, np.floating | float):
        value = float(obj)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented UTF-8 JSON, atomically (NaN becomes null)."""
    return atomic_write(path, json.dumps(clean_json(obj), indent=1, ensure_ascii=False) + "\n")


def read_json(path: str | Path):
    """Read a JSON file (as :func:`write_json` writes it)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def jsonl_text(rows: Iterable[dict]) -> str:
    """Rows as JSON Lines text, one object per line."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write rows as JSON Lines, atomically."""
    return atomic_write(path, jsonl_text(rows))


def iter_jsonl(path: str | Path, required: Sequence[str] = (),
               error: type[Exception] = ValueError) -> Iterator[tuple[int, dict]]:  # fmt: skip
    """The (line number, object) of each non-blank line of a JSON Lines file.

    Raises:
        error: naming the file, line and field, for a line that is not JSON, not an object, or lacks a
            ``required`` field.
    """
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            missing = [k for k in required if not isinstance(obj, dict) or k not in obj]
            if missing:
                raise error(f"{path}:{lineno}: field '{missing[0]}' is missing")
            yield lineno, obj


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def text_sha256(text: str, n: int | None = None) -> str:
    """SHA-256 of a string's UTF-8 bytes (its first ``n`` hex digits when given)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def json_sha256(obj, n: int | None = None) -> str:
    """SHA-256 of ``obj`` as canonical JSON (keys sorted; see :func:`clean_json`): one content hash for settings,
    manifests and cache keys."""
    return text_sha256(json.dumps(clean_json(obj), sort_keys=True), n)
