"""What a run computed: one JSON line per expensive piece of work (an encode, a training, reranked pairs, generated
queries), appended to the file named by ``WORKBOOK_WORKLOG`` when it is set, and nothing otherwise.

A cache hit writes nothing, so the log of a cold run lists exactly the work it did, and two lines with the same
``what`` are work done twice. Every process of a run (the test process, each notebook's kernel, the pipeline's
children) appends to the same file; a line is written with one ``write`` on a file opened for appending, so lines
from processes side by side do not interleave. ``where`` says who asked: the notebook or test (from
``PYTEST_CURRENT_TEST``, which a notebook's kernel inherits from the test that started it, or ``WORKBOOK_NOTEBOOK``,
which :mod:`workbook.nbrun` sets), else the command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from workbook.files import iter_jsonl

ENV = "WORKBOOK_WORKLOG"


def enabled() -> bool:
    """Whether this process logs its work (``WORKBOOK_WORKLOG`` is set): skip computing a log-only key otherwise."""
    return bool(os.environ.get(ENV))


def where() -> str:
    """The notebook or test this process works for, else its command line."""
    current = os.environ.get("PYTEST_CURRENT_TEST")
    if current:
        return current.split("::")[0] if ".ipynb" in current else current.rsplit(" (", 1)[0]
    return os.environ.get("WORKBOOK_NOTEBOOK") or " ".join(Path(a).name for a in sys.argv[:2])


def record(kind: str, seconds: float, **fields) -> None:
    """Append one line for work of ``kind`` that took ``seconds`` (a no-op unless ``WORKBOOK_WORKLOG`` is set)."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = {"kind": kind, "seconds": round(seconds, 2), **fields, "where": where(), "pid": os.getpid()}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")


@contextlib.contextmanager
def timed(kind: str, what: Callable[[], str] | str | None = None, **fields) -> Iterator[None]:
    """Record the work done in the ``with`` block (nothing when it raises).

    Args:
        kind: ``"encode"``, ``"train"``, ``"rerank"``, ...
        what: the work's identity (a cache key), or a function that computes it, called only when logging.
        fields: sizes to record (texts, rows, pairs).
    """
    start = time.perf_counter()
    yield
    if enabled():
        record(kind, time.perf_counter() - start, what=what() if callable(what) else what, **fields)


def read(path: str | Path) -> list[dict]:
    """The lines of a work log (an absent file is an empty log; a bad line is named by file and line)."""
    return [line for _, line in iter_jsonl(path, required=("kind", "seconds"))] if Path(path).exists() else []


def summary(lines: list[dict]) -> dict:
    """Per kind: how many pieces of work, their seconds, and how many pieces (and seconds) redid a piece done earlier
    in the log (the same ``what``): what a shared cache could have saved, unless the repeat is the point (a test that
    trains twice to show the same seed gives the same weights)."""
    out: dict[str, dict] = {}
    seen: set[str] = set()
    for line in lines:
        entry = out.setdefault(line["kind"], {"count": 0, "seconds": 0.0, "repeated": 0, "repeated_seconds": 0.0})
        entry["count"] += 1
        entry["seconds"] = round(entry["seconds"] + line["seconds"], 1)
        if line.get("what") is None:
            continue
        key = json.dumps([line["kind"], line["what"]])
        if key in seen:
            entry["repeated"] += 1
            entry["repeated_seconds"] = round(entry["repeated_seconds"] + line["seconds"], 1)
        seen.add(key)
    return out
