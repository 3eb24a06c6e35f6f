"""The resumable generation cache: one JSONL line per finished document, and a registry of templates and settings."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from workbook.synth.prompts import PromptTemplate, _sha


class CacheError(ValueError):
    """A generation cache file holds a line that cannot be read; the message names the file and line."""


class GenerationCache:
    """A resumable on-disk cache of generations: a folder holding two append-only JSONL files.

    - ``generations.jsonl``: one line per finished document (key, doc id, template hash, prompt hash, generator,
      settings hash, seed, raw text, finish reason, parsed queries, seconds), appended and flushed to disk as soon
      as the document is done.
    - ``registry.jsonl``: each distinct prompt template and settings block once, ``{"kind", "hash", "value"}``.

    A last line cut off by an interrupted write (no newline, not valid JSON) is set aside on load and that document
    is generated again; any other unreadable line raises :class:`CacheError` naming the file and line, and the
    file is left as it is.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / "generations.jsonl"
        self.registry_path = self.folder / "registry.jsonl"
        self.records: dict[str, dict] = {}
        self.registry: dict[str, dict] = {}
        self._torn_tail: dict[Path, int] = {}
        self._load()

    def _read(self, path: Path, required: Sequence[str]) -> list[dict]:
        if not path.is_file():
            return []
        raw = path.read_bytes()
        lines = raw.split(b"\n")
        rows = []
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            last = lineno == len(lines)  # no newline after it: the write may have been interrupted
            try:
                obj = json.loads(line.decode("utf-8"))
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
                missing = [k for k in required if k not in obj]
                if missing:
                    raise ValueError(f"field '{missing[0]}' is missing")
            except (ValueError, UnicodeDecodeError) as exc:
                if last:
                    self._torn_tail[path] = len(raw) - len(line)
                    continue
                raise CacheError(
                    f"{path}:{lineno}: unreadable cache line ({exc}); fix or delete that line "
                    "(the other lines are kept; a deleted line's document is generated again)"
                ) from exc
            rows.append(obj)
        return rows

    def _load(self) -> None:
        for obj in self._read(self.registry_path, ("kind", "hash", "value")):
            self.registry[obj["hash"]] = obj
        for obj in self._read(self.path, ("key", "doc_id", "queries")):
            self.records[obj["key"]] = obj

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> dict | None:
        """The record stored under ``key``, or ``None``."""
        return self.records.get(key)

    def _append(self, path: Path, obj: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if path in self._torn_tail:  # drop the half-written line of an interrupted run before appending
            with open(path, "r+b") as fh:
                fh.truncate(self._torn_tail.pop(path))
        with open(path, "a", encoding="utf-8", newline="\n") as fh:
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def register(self, kind: str, value: dict) -> str:
        """Store ``value`` once (if new) and return its hash."""
        digest = _sha(value)
        if digest not in self.registry:
            entry = {"kind": kind, "hash": digest, "value": value}
            self._append(self.registry_path, entry)
            self.registry[digest] = entry
        return digest

    def add(self, record: dict) -> None:
        """Append one finished document's record."""
        self._append(self.path, record)
        self.records[record["key"]] = record

    def template(self, digest: str) -> PromptTemplate:
        """The prompt template stored under ``digest``."""
        return PromptTemplate.from_dict(self.registry[digest]["value"])
