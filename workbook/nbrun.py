"""Execute the course notebooks (fast mode: two side by side where they allow it), with progress, an ETA, and
each one's wall time and peak RSS.

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
from workbook.memory import TreePeak, maxrss_mb

RECORD = "notebooks.json"
#: The committed end-to-end record (``bench/e2e.py``): its cold runs give a first run, which has no times of its own
#: (a fresh clone), its ETA.
COLD_REFERENCE = Path("bench") / "results" / "e2e.json"

#: What nbclient raises when a kernel exits before it answers its first request: no cell has run.
KERNEL_DIED_AT_START = "Kernel died before replying to kernel_info"

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


def is_progress_output(output: dict) -> bool:
    """Whether a notebook output is a progress display: tqdm bar states on stderr, or transformers' notebook progress
    bar (an HTML ``<progress>``, with the trainer's loss table), which a cold run shows while it trains and a warm
    one (the model cached) never does."""
    if output["output_type"] == "stream":
        return output["name"] == "stderr" and _is_progress("".join(output["text"]))
    if output["output_type"] in ("display_data", "update_display_data"):
        html = output.get("data", {}).get("text/html", "")
        return "<progress " in ("".join(html) if isinstance(html, list) else html)
    return False


def strip_progress(path: Path) -> int:
    """Drop progress displays (:func:`is_progress_output`) from a notebook's outputs, in place; the number dropped.

    Committed outputs show results, not machinery: a full run writes hundreds of bar states ("Loading weights",
    "re-embed docs") that bury the cell's result, and a cold run's trainings a progress table a warm run lacks.
    Anything else on stderr (a warning, a traceback) is kept.
    """
    nb = read_json(path)
    dropped = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        kept = [o for o in cell.get("outputs", []) if not is_progress_output(o)]
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


#: What a notebook's environment gets when another runs beside it. torch's OpenMP threads (GNU libgomp in the Linux
#: wheels) spin for a while when they wait for work, and two spinning kernels with two threads each on two cores
#: slow each other far past half speed. Measured on 2 cores (AMD EPYC, quiet), a fast-mode MNRL step (32 rows) and an
#: encode of 1,818 short codes, default spinning / GOMP_SPINCOUNT=1000 / OMP_WAIT_POLICY=PASSIVE: alone 2.34 / 2.36 /
#: 2.85 s a step and 9.5 / 9.0 / 10.6 s; two side by side 7.7 / 4.6 / 4.0 s a step and 34 / 17.8 / 18.3 s. Side by
#: side is where the quick path spends its time (both cores 99% busy from its first minute to its sixth), and the cold
#: quick path took 599 s twice with passive waiting, 651 s with the short spin. A value already in the environment
#: is kept.
SIDE_BY_SIDE_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}

#: How much lower the CPU priority of a notebook started beside one on a longer chain is: when both are busy the
#: longer chain (the critical path, :func:`critical_path`) gets most of the cores, and the other fills what it leaves
#: idle (imports, process start-ups, single-threaded stretches), so the run ends when that chain does.
SIDE_NICE = 10


def execute(path: Path, fast: bool, out_dir: Path | None = None, env: dict[str, str] | None = None,
            nice: int = 0) -> dict:  # fmt: skip
    """Execute one notebook in a child process, in place or into ``out_dir`` (same name; the kernel still runs in
    the notebook's own folder), with ``env`` added to the environment and its CPU priority lowered by ``nice``; its
    wall time, exit code and peak RSS (MiB)."""
    where = ["--inplace"] if out_dir is None else ["--output-dir", str(out_dir)]
    cmd = [sys.executable, "-c", _WRAPPER, sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook",
           "--execute", *where, "--ExecutePreprocessor.timeout=-1", str(path)]  # fmt: skip
    env = {**(env or {}), **os.environ, "WORKBOOK_FAST": "1" if fast else "0", "WORKBOOK_NOTEBOOK": path.name}
    start = time.perf_counter()
    lower = (lambda: os.nice(nice)) if nice and hasattr(os, "nice") else None  # noqa: E731 (POSIX only)
    proc = subprocess.run(cmd, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=lower)
    if proc.returncode != 0 and KERNEL_DIED_AT_START in proc.stderr:
        # No cell ran, so once more is safe: jupyter_client picks a kernel's ports by binding and releasing them,
        # and another kernel starting at the same moment (a neighbour, a test) can take one first.
        proc = subprocess.run(cmd, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=lower)
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


#: What each course notebook reads that an earlier one writes (its "What you need"), by file name: with ``jobs`` above
#: 1 a notebook starts once these are done, so no two notebooks compute the same cached artifact side by side. 02, 03
#: and 04 reuse 01's MiniLM corpus embeddings; 05 and 08 train on 03's mined negatives; 06 reads 02's reranker and
#: 05's models; 07 ships 05's model. Every notebook needs 00 (it builds the case study). A notebook not listed here
#: waits for every notebook before it.
NEEDS: dict[str, tuple[str, ...]] = {
    "00_setup_check.ipynb": (),
    "01_diagnose_mismatch.ipynb": ("00_setup_check.ipynb",),
    "02_baseline.ipynb": ("01_diagnose_mismatch.ipynb",),
    "03_hard_negatives.ipynb": ("01_diagnose_mismatch.ipynb",),
    "04_synthetic_data.ipynb": ("01_diagnose_mismatch.ipynb",),
    "05_fine_tune.ipynb": ("03_hard_negatives.ipynb",),
    "06_evaluate.ipynb": ("02_baseline.ipynb", "05_fine_tune.ipynb"),
    "07_deploy.ipynb": ("05_fine_tune.ipynb",),
    "08_scale_out.ipynb": ("03_hard_negatives.ipynb",),
}

#: Notebooks run side by side by default only with this much memory: fast mode's notebooks held up to 7.5 GiB
#: together (PSS of every process they ran, sampled each second: 02 and 05, each near 3.4 GiB at its peak, plus their
#: kernels' and servers' neighbours), too much for an 8 GiB laptop, where one at a time peaks near 3.4.
SIDE_BY_SIDE_MIN_GIB = 16


def needs(names: Sequence[str]) -> dict[str, list[str]]:
    """Each notebook's prerequisites among ``names`` (in order): :data:`NEEDS`, or every earlier one if unlisted."""
    out = {}
    for i, name in enumerate(names):
        listed = NEEDS.get(name)
        out[name] = list(names[:i]) if listed is None else [n for n in listed if n in names]
    return out


def default_jobs(fast: bool) -> int:
    """Notebooks run side by side by default: 2 in fast mode on a machine with 2+ cores and
    :data:`SIDE_BY_SIDE_MIN_GIB` of memory, else 1. Full mode runs one at a time: its committed outputs include
    timings, which a neighbour would slow."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not fast or cores < 2:
        return 1
    try:
        gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): stay with one at a time
        return 1
    return 2 if gib >= SIDE_BY_SIDE_MIN_GIB else 1


def cold_times(cfg: Config, jobs: int = 1) -> dict[str, float]:
    """Each notebook's seconds in the committed cold runs of ``cfg``'s mode with ``jobs`` notebooks at a time (side
    by side, each one's time includes its neighbour's share of the cores), from :data:`COLD_REFERENCE` (``{}`` where
    there is none, or it cannot be read): the ETA of a first run."""
    path = cfg.root / COLD_REFERENCE
    if not path.is_file():
        return {}
    times: dict[str, float] = {}
    try:
        for run in (read_json(path).get("casestudy_runs") or {}).values():
            if run.get("mode") == cfg.mode and not run.get("warm_cache") and (run.get("jobs") or 1) == jobs:
                for name, rec in run.get("notebooks", {}).items():
                    times.setdefault(name, float(rec["seconds"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # a broken reference costs the ETA, not the run
        return {}
    return times


def eta_text(left: Sequence[str], last: dict[str, float], cold: dict[str, float], jobs: int) -> str:
    """The ETA of the notebooks ``left``: from the last run's times where there are some for each (``last``), else
    with a committed cold run's (``cold``, :func:`cold_times`) for those never run here; ``""`` where some have
    neither."""
    if all(last.get(n) is not None for n in left):
        return f", ETA {plan_seconds(left, last, jobs) / 60:.0f} min from the last run's times"
    both = cold | {n: t for n, t in last.items() if t is not None}
    if not all(both.get(n) is not None for n in left):
        return ""
    source = "the last run's times and " if any(n in last for n in left) else ""
    return f", ETA {plan_seconds(left, both, jobs) / 60:.0f} min from {source}a cold run's ({COLD_REFERENCE})"


def critical_path(names: Sequence[str], seconds: dict[str, float | None]) -> dict[str, float]:
    """Each notebook's own time plus the longest chain of notebooks that wait for it (unknown times count 60 s): the
    scheduler starts the ready notebook with the longest one first."""
    after = needs(names)
    longest: dict[str, float] = {}
    for name in reversed(names):
        waiting = [longest[n] for n in names if name in after[n]]
        longest[name] = (seconds.get(name) or 60.0) + max(waiting, default=0.0)
    return longest


def next_up(ready: Sequence[str], rank: dict[str, float], slots: int) -> list[str]:
    """The ready notebooks to start in ``slots`` free places: the longest remaining chain first."""
    return sorted(ready, key=lambda n: -rank[n])[:slots]


def plan_seconds(names: Sequence[str], seconds: dict[str, float | None], jobs: int) -> float:
    """The wall time of :func:`run_notebooks`'s schedule if each notebook took ``seconds`` (its ETA)."""
    after, rank = needs(names), critical_path(names, seconds)
    done: dict[str, float] = {}
    running: dict[str, float] = {}  # name -> end time
    now = 0.0
    while len(done) < len(names):
        ready = [n for n in names if n not in done and n not in running and all(d in done for d in after[n])]
        for name in next_up(ready, rank, jobs - len(running)):
            running[name] = now + (seconds.get(name) or 60.0)
        name = min(running, key=running.get)
        now = running.pop(name)
        done[name] = now
    return now


def peak_together_mb(records: Sequence[dict]) -> float | None:
    """An upper bound on the memory notebooks held at once: the largest sum of peak RSS over notebooks whose runs
    overlapped in time (each record's ``started_s`` and ``seconds``); ``None`` if a peak was not measured."""
    if any(r.get("peak_rss_mb") is None or r.get("started_s") is None for r in records):
        return None
    return max((sum(o["peak_rss_mb"] for o in records
                    if o["started_s"] <= r["started_s"] < o["started_s"] + o["seconds"] or o is r)
                for r in records), default=None)  # fmt: skip


def run_notebooks(cfg: Config, names: Sequence[str] = (), out: Path | None = None,
                  log: Callable[[str], None] = print, jobs: int | None = None) -> list[dict]:  # fmt: skip
    """Execute the notebooks, up to ``jobs`` side by side in the order :data:`NEEDS` allows; after a failure no new
    one starts (its stderr tail is logged and recorded).

    Full mode executes them in place and stamps them: their outputs are the committed case study. Fast mode (a
    first look in minutes) leaves the committed notebooks alone and writes the executed copies beside the record,
    in ``runs/casestudy-fast/executed-notebooks/``.

    Args:
        jobs: notebooks at a time (default :func:`default_jobs`: 2 in fast mode where the machine allows, 1 in full).

    Returns:
        One record per notebook executed, in the order they finished: name, seconds, exit code, peak RSS (MiB),
        when it started after the first one (``started_s``) and how much its CPU priority was lowered (``nice``).
        The run's record adds the memory the notebooks held together, sampled each second
        (``peak_pss_mb_together``), and an upper bound from each one's peak (``peak_rss_mb_together``).
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    jobs = default_jobs(cfg.fast) if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    out = out or cfg.root / "runs" / f"casestudy-{cfg.mode}" / RECORD
    copies = out.parent / "executed-notebooks" if cfg.fast else None
    kept: dict[str, dict] = {}
    if out.is_file():
        kept = {r["notebook"]: r for r in read_json(out).get("notebooks", [])}
    previous = {name: r["seconds"] for name, r in kept.items()}
    cold = cold_times(cfg, jobs)
    paths = {p.name: p for p in notebook_paths(cfg, names)}
    order = list(paths)
    rank = critical_path(order, cold | previous)
    # one at a time: in file order, as the course reads; side by side: as NEEDS allows, the longest chain first
    after = needs(order) if jobs > 1 else {name: order[:i] for i, name in enumerate(order)}
    number = {name: i for i, name in enumerate(order, start=1)}
    records: list[dict] = []
    done: set[str] = set()  # finished with exit code 0
    started: set[str] = set()
    failed = False
    start = time.perf_counter()

    def save(finished: bool) -> None:
        """Write the record: after each notebook (``finished`` None until the run ends), so a run stopped midway
        (killed, the machine taken back) keeps the times of the notebooks it finished, and the next run's ETA."""
        rows = kept | {r["notebook"]: r for r in records}  # notebooks not run this time keep their last record
        write_json(out, {"mode": cfg.mode, "jobs": jobs, "seconds": round(time.perf_counter() - start, 1),
                         "peak_pss_mb_together": together.peak_mb, "peak_rss_mb_together": peak_together_mb(records),
                         "finished": datetime.datetime.now().isoformat(timespec="seconds") if finished else None,
                         "notebooks": [rows[k] for k in sorted(rows)]})  # fmt: skip

    def finish(name: str, rec: dict) -> None:
        nonlocal failed
        records.append(rec)
        save(finished=False)
        if rec["exit_code"] == 0:
            done.add(name)
            strip_progress(paths[name] if copies is None else copies / name)
            if copies is None:
                stamp(paths[name], cfg.mode)
                unlist_pending(paths[name])
        peak = "not measured" if rec["peak_rss_mb"] is None else f"{rec['peak_rss_mb'] / 1024:.2f} GiB"
        log(f"[{number[name]}/{len(order)}] {name}: {'done' if rec['exit_code'] == 0 else 'FAILED'} in "
            f"{rec['seconds'] / 60:.1f} min, peak RSS {peak}")  # fmt: skip
        if rec["exit_code"] != 0:
            failed = True
            log(rec["stderr_tail"])

    def launch(name: str, nice: int) -> dict:
        began = round(time.perf_counter() - start, 1)
        rec = execute(paths[name], cfg.fast, copies, SIDE_BY_SIDE_ENV if jobs > 1 else None, nice=nice)
        return {**rec, "started_s": began, "nice": nice}

    with ThreadPoolExecutor(max_workers=jobs) as pool, TreePeak() as together:
        running: dict = {}
        while True:
            ready = [] if failed else [n for n in order if n not in started and all(d in done for d in after[n])]
            for name in next_up(ready, rank, jobs - len(running)):
                left = [n for n in order if n not in done]  # a running one counts its whole last time
                eta = eta_text(left, previous, cold, jobs)
                longer = [n for n in (*running.values(), *ready) if rank[n] > rank[name]] if jobs > 1 else []
                nice = SIDE_NICE if longer else 0
                side = f", beside {', '.join(running.values())}" if running else ""
                low = f", at lower CPU priority than {longer[0]}" if nice else ""
                log(f"[{number[name]}/{len(order)}] {name}: running ({cfg.mode} mode{side}{low}{eta})")
                running[pool.submit(launch, name, nice)] = name
                started.add(name)
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: number[running[f]]):
                finish(running.pop(future), future.result())
    save(finished=True)
    return records
