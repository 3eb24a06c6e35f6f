"""The run folder's file names, DataFrames as JSON, and the SHA-256 of the files a run reads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from workbook.files import clean_json, file_sha256

MANIFEST = "manifest.json"
RESULT = "result.json"
RUN_FILE = "run.json"
LOG_FILE = "run.log"


def frame_to_json(frame: pd.DataFrame) -> dict:
    """A DataFrame as ``{"index", "index_name", "columns", "data"}``: full precision, integers kept as integers."""
    return clean_json(
        {
            "index": list(frame.index),
            "index_name": frame.index.name,
            "columns": list(frame.columns),
            "data": frame.astype(object).to_numpy().tolist(),
        }
    )


def frame_from_json(obj: Mapping) -> pd.DataFrame:
    """Inverse of :func:`frame_to_json` (null cells come back as NaN in numeric columns)."""
    frame = pd.DataFrame(obj["data"], index=obj["index"], columns=obj["columns"])
    frame.index.name = obj.get("index_name")
    for col in frame.columns:
        with contextlib.suppress(TypeError, ValueError):
            frame[col] = pd.to_numeric(frame[col])
    return frame


def dataset_files(folder: str | Path) -> dict[str, str]:
    """SHA-256 of each file of a BEIR-layout folder that the pipeline reads (sorted relative paths)."""
    folder = Path(folder)
    names = ["corpus.jsonl", "queries.jsonl", "lookalikes.jsonl", "examples.jsonl"]
    files = [folder / n for n in names if (folder / n).is_file()]
    files += sorted((folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
    return {str(f.relative_to(folder)): file_sha256(f) for f in sorted(files)}


def external_files(paths: Iterable[str | Path]) -> dict[str, str]:
    """``{path: sha256}`` of files a step leaves outside its folder (shared artifacts), recorded in its result."""
    return {str(Path(p).resolve()): file_sha256(p) for p in sorted(map(str, paths))}
