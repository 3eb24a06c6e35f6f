"""Execute the course notebooks in order, in place, with progress, an ETA, and each one's wall time and peak RSS.

``make casestudy`` runs this (``workbook notebooks``): each notebook runs in its own ``jupyter nbconvert`` child,
under a small wrapper process whose ``getrusage(RUSAGE_CHILDREN)`` after the child exits is that notebook's peak
RSS (the kernel's, the largest process it ran). Results go to ``runs/casestudy-<mode>/notebooks.json``; the next run
reads them for its ETA.

A full-mode notebook that ran through loses its progress-bar chunks (:func:`strip_progress`) and is *stamped*: its
metadata records the mode and a hash of its code cells' sources (:func:`source_hash`). ``tests/test_outputs_fresh.py``
checks every committed course notebook's stamp against its current code, so committed full-mode outputs are provably
the outputs of the code beside them, and a notebook whose code changed after its last full run must be listed, with
the reason, in ``notebooks/PENDING.json``. Fast mode writes executed copies under ``runs/casestudy-fast/`` instead.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from workbook.config import Config
from workbook.files import read_json, write_json
from workbook.memory import maxrss_mb

RECORD = "notebooks.json"

# Runs the command in argv and prints the largest ru_maxrss of any process it waited for.
_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[1:])\n"
    "print('PEAK_RSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def notebook_paths(cfg: Config, names: Sequence[str] = ()) -> list[Path]:
    """The course notebooks ``NN_*.ipynb`` in order (or those whose file name starts with one of ``names``)."""
    paths = sorted((cfg.root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if names:
        paths = [p for p in paths if any(p.name.startswith(n) for n in names)]
    if not paths:
        raise FileNotFoundError(f"no notebook matches {list(names)} in {cfg.root / 'notebooks'}")
    return paths


STAMP_KEY = "workbook"
PENDING = "PENDING.json"


#: The tag of an exercise's answer cell: it computes nothing until a learner answers (its output is the check's "no
#: answer yet", a function of the exercise alone: ``tests/test_exercises.py`` compares it), so it is left out of the
#: stamp's hash.
ANSWER_TAG = "answer"


def source_hash(nb: dict) -> str:
    """Short SHA-256 of a notebook's code-cell sources, in order (markdown, outputs and answer cells excluded)."""
    digest = hashlib.sha256()
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and ANSWER_TAG not in cell.get("metadata", {}).get("tags", []):
            digest.update("".join(cell["source"]).encode() + b"\0")
    return digest.hexdigest()[:16]


def stamp(path: Path, mode: str) -> None:
    """Record in the notebook's metadata that its outputs come from a complete run of its current code in ``mode``."""
    nb = read_json(path)
    nb["metadata"][STAMP_KEY] = {"mode": mode, "code": source_hash(nb),
                                 "executed": datetime.date.today().isoformat()}  # fmt: skip
    write_json(path, nb)


def unlist_pending(path: Path) -> None:
    """Drop a notebook from ``PENDING.json`` beside it (after a full run stamped it fresh)."""
    pending = path.parent / PENDING
    if not pending.is_file():
        return
    record = read_json(pending)
    if record.get("pending", {}).pop(path.name, None) is not None:
        write_json(pending, record)


# One tqdm bar state: "desc:  50%|█████     | 2/4 [00:11<00:11,  5.59s/it]" (or "3/? [...]" without a total).
_BAR = re.compile(r"\d+%\|.*\|\s*[\d.]+[kMG]?/[\d.?]+[kMG]?\s*\[|^[^|\n]*:\s+[\d.]+[kMG]?/\?\s*\[")


def _is_progress(text: str) -> bool:
    """Whether a stderr chunk holds only progress-bar states (or the blank carriage returns between them)."""
    parts = [p.strip() for p in re.split(r"[\r\n]", text)]
    return all(not p or _BAR.search(p) for p in parts)


def strip_progress(path: Path) -> int:
    """Drop progress-bar chunks from a notebook's stderr outputs, in place; the number dropped.

    Committed outputs show results, not machinery: a full run writes hundreds of bar states ("Loading weights",
    "re-embed docs") that bury the cell's result. Anything else on stderr (a warning, a traceback) is kept.
    """
    nb = read_json(path)
    dropped = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        kept = [o for o in cell.get("outputs", [])
                if not (o["output_type"] == "stream" and o["name"] == "stderr" and _is_progress("".join(o["text"])))]
        dropped += len(cell.get("outputs", [])) - len(kept)
        cell["outputs"] = kept
    if dropped:
        write_json(path, nb)
    return dropped


def freshness(path: Path) -> str:
    """``"fresh"`` (stamped by a full run of the current code), ``"stale"`` (stamped, code changed since) or
    ``"unstamped"``."""
    nb = read_json(path)
    got = nb.get("metadata", {}).get(STAMP_KEY)
    if not got or got.get("mode") != "full":
        return "unstamped"
    return "fresh" if got.get("code") == source_hash(nb) else "stale"


def execute(path: Path, fast: bool, out_dir: Path | None = None) -> dict:
    """Execute one notebook in a child process, in place or into ``out_dir`` (same name; the kernel still runs in
    the notebook's own folder); its wall time, exit code and peak RSS (MiB)."""
    where = ["--inplace"] if out_dir is None else ["--output-dir", str(out_dir)]
    cmd = [sys.executable, "-c", _WRAPPER, sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook",
           "--execute", *where, "--ExecutePreprocessor.timeout=-1", str(path)]  # fmt: skip
    env = {**os.environ, "WORKBOOK_FAST": "1" if fast else "0"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    peak = None
    kept = []
    for line in proc.stderr.splitlines():
        if line.startswith("PEAK_RSS "):
            peak = maxrss_mb(int(line.split()[1]))
        else:
            kept.append(line)
    return {"notebook": path.name, "seconds": round(seconds, 1), "exit_code": proc.returncode,
            "peak_rss_mb": None if peak is None else round(peak, 1), "stderr_tail": "\n".join(kept[-20:])}  # fmt: skip


def run_notebooks(cfg: Config, names: Sequence[str] = (), out: Path | None = None,
                  log: Callable[[str], None] = print) -> list[dict]:  # fmt: skip
    """Execute the notebooks in order; stop at the first failure (its stderr tail is logged and recorded).

    Full mode executes them in place and stamps them: their outputs are the committed case study. Fast mode (a
    first look in minutes) leaves the committed notebooks alone and writes the executed copies beside the record,
    in ``runs/casestudy-fast/executed-notebooks/``.

    Returns:
        One record per notebook executed: name, seconds, exit code, peak RSS (MiB).
    """
    out = out or cfg.root / "runs" / f"casestudy-{cfg.mode}" / RECORD
    copies = out.parent / "executed-notebooks" if cfg.fast else None
    kept: dict[str, dict] = {}
    if out.is_file():
        kept = {r["notebook"]: r for r in read_json(out).get("notebooks", [])}
    previous = {name: r["seconds"] for name, r in kept.items()}
    paths = notebook_paths(cfg, names)
    records: list[dict] = []
    start = time.perf_counter()
    for i, path in enumerate(paths, start=1):
        left = [previous.get(p.name) for p in paths[i - 1 :]]
        eta = (f", ETA {sum(left) / 60:.0f} min from the last run's times" if all(x is not None for x in left)
               else "")  # fmt: skip
        log(f"[{i}/{len(paths)}] {path.name}: running ({cfg.mode} mode{eta})")
        rec = execute(path, cfg.fast, copies)
        records.append(rec)
        if rec["exit_code"] == 0:
            strip_progress(path if copies is None else copies / path.name)
            if copies is None:
                stamp(path, cfg.mode)
                unlist_pending(path)
        peak = "not measured" if rec["peak_rss_mb"] is None else f"{rec['peak_rss_mb'] / 1024:.2f} GiB"
        log(f"[{i}/{len(paths)}] {path.name}: {'done' if rec['exit_code'] == 0 else 'FAILED'} in "
            f"{rec['seconds'] / 60:.1f} min, peak RSS {peak}")  # fmt: skip
        if rec["exit_code"] != 0:
            log(rec["stderr_tail"])
            break
    kept.update({r["notebook"]: r for r in records})  # notebooks not run this time keep their last record
    write_json(out, {"mode": cfg.mode, "seconds": round(time.perf_counter() - start, 1),
                     "finished": datetime.datetime.now().isoformat(timespec="seconds"),
                     "notebooks": [kept[k] for k in sorted(kept)]})  # fmt: skip
    return records
