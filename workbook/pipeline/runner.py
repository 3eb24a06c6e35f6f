"""The manifest runner: a step runs unless its inputs are unchanged and its outputs intact, then the report."""

from __future__ import annotations

import datetime
import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from workbook import memory
from workbook.config import Config, get_config, seed_everything
from workbook.data import DatasetError, Problem
from workbook.files import clean_json, file_sha256, json_sha256, read_json, write_json
from workbook.pipeline.context import RunContext, RunLog, Step
from workbook.pipeline.report import write_report
from workbook.pipeline.settings import PipelineSettings, settings_values
from workbook.pipeline.steps import STEPS, preflight
from workbook.pipeline.store import LOG_FILE, MANIFEST, RESULT, RUN_FILE, dataset_files


def step_inputs(ctx: RunContext, step: Step, files: Mapping[str, str]) -> dict:
    """Everything a step's result depends on (compared with its manifest to decide whether it is cached)."""
    values = settings_values(ctx.cfg, ctx.settings)
    inputs = {
        "version": step.version,
        "settings": {k: values[k] for k in sorted(step.uses)},
        "upstream": {d: read_json(ctx.step_dir(d) / MANIFEST)["outputs_sha256"] for d in step.deps},
    }
    if step.dataset:
        inputs["dataset"] = dict(files)
    if step.extra_inputs is not None:
        inputs["extra"] = step.extra_inputs(ctx)
    return clean_json(inputs)


def _outputs(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def read_manifest(folder: Path) -> dict | None:
    """A step folder's manifest when the step is complete and intact (its outputs and external files unchanged)."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = read_json(path)
    except json.JSONDecodeError:
        return None
    if _outputs(folder) != manifest.get("outputs"):
        return None
    for ext, digest in manifest.get("external", {}).items():
        if not Path(ext).is_file() or file_sha256(ext) != digest:
            return None
    return manifest


def _changed(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


@dataclass
class StepRecord:
    """What happened to one step in this invocation."""

    name: str
    status: str  # "ran" or "cached"
    seconds: float
    last_run_seconds: float
    #: The process's peak RSS (MiB) while the step last ran (``None`` for runs recorded before it was measured).
    peak_rss_mb: float | None = None
    #: Whether that peak is the step's own (reset before it started) or the process's lifetime peak.
    peak_rss_per_step: bool = True


def run_step(ctx: RunContext, step: Step, files: Mapping[str, str]) -> StepRecord:
    """Run one step unless its manifest says it is done with the same inputs; write it atomically."""
    inputs = step_inputs(ctx, step, files)
    final = ctx.step_dir(step.name)
    manifest = read_manifest(final)
    if manifest is not None and manifest["inputs"] == inputs:
        ctx.log(f"{step.name}: cached (ran {manifest['seconds']:.1f} s on {manifest['finished']})")
        return StepRecord(step.name, "cached", 0.0, manifest["seconds"], manifest.get("peak_rss_mb"),
                          manifest.get("peak_rss_per_step", True))  # fmt: skip
    why = "new" if manifest is None else "inputs changed: " + ", ".join(_changed(manifest["inputs"], inputs))
    ctx.log(f"{step.name}: start ({why})")
    tmp = ctx.run_dir / f".{step.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    seed_everything(ctx.cfg.seed)
    per_step = memory.reset_peak()
    start = time.perf_counter()
    try:
        result = step.run(ctx, tmp)
    except BaseException:
        ctx.log(f"{step.name}: failed after {time.perf_counter() - start:.1f} s")
        raise
    seconds = time.perf_counter() - start
    peak = round(memory.peak_rss_mb(), 1)
    external = result.pop("external", {}) if isinstance(result, dict) else {}
    write_json(tmp / RESULT, result)
    outputs = _outputs(tmp)
    manifest = {
        "step": step.name,
        "inputs": inputs,
        "outputs": outputs,
        "external": external,
        "outputs_sha256": json_sha256({"outputs": outputs, "external": external}),
        "seconds": round(seconds, 2),
        "peak_rss_mb": peak,
        "peak_rss_per_step": per_step,
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    write_json(tmp / MANIFEST, manifest)  # written last: a folder with a manifest is a finished step
    old = ctx.run_dir / f".{step.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    ctx.log(f"{step.name}: done in {seconds:.1f} s, peak RSS {peak / 1024:.2f} GiB")
    return StepRecord(step.name, "ran", seconds, seconds, peak, per_step)


@dataclass
class RunSummary:
    """The outcome of :func:`run_pipeline`."""

    run_dir: Path
    steps: list[StepRecord]
    report_md: Path
    report_html: Path
    seconds: float


def run_pipeline(
    dataset_dir: str | Path,
    run_dir: str | Path,
    cfg: Config,
    settings: PipelineSettings | None = None,
    casestudy: bool = False,
    log: Callable[[str], None] | None = None,
) -> RunSummary:
    """Run every step (skipping cached ones), then write ``report.md`` and ``report.html`` into ``run_dir``.

    Args:
        dataset_dir: a BEIR-layout folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``; train and dev
            optional; ``lookalikes.jsonl`` optional: one ``{"codes": [doc ids]}`` group per line).
        run_dir: where the steps, ``run.log`` and the report go.
        cfg: the run config (its ``artifacts_dir`` receives mined negatives and models).
        settings: the pipeline's settings (defaults when ``None``).
        casestudy: the ICD-10-CM case study (loaded with :func:`workbook.icd10cm.load_icd10cm`).
        log: where log lines go (default: stdout and ``run_dir/run.log``).

    Raises:
        DatasetError: the dataset is invalid (every problem listed), before any expensive step.
        SettingsError, PipelineError: a setting or a resource is wrong or missing.
    """
    run_dir = Path(run_dir).resolve()
    dataset_dir = Path(dataset_dir).resolve()
    settings = settings or PipelineSettings()
    log = log or RunLog(run_dir / LOG_FILE)
    ctx = RunContext(cfg, settings, dataset_dir, run_dir, casestudy=casestudy, log=log)
    start = time.perf_counter()
    log(f"workbook run: {dataset_dir} -> {run_dir} ({cfg.mode} mode)")
    if not dataset_dir.is_dir():
        raise DatasetError([Problem(str(dataset_dir), None, None, "no such dataset folder")])
    files = dataset_files(dataset_dir)
    preflight(ctx)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / RUN_FILE, {
        "dataset_dir": str(dataset_dir), "mode": cfg.mode, "casestudy": casestudy, "dataset_files": files,
        "settings": settings_values(cfg, settings), "artifacts_dir": str(cfg.artifacts_dir),
        "started": datetime.datetime.now().isoformat(timespec="seconds"), "steps": [],
    })  # fmt: skip
    records = []
    for step in STEPS:
        records.append(run_step(ctx, step, files))
    seconds = time.perf_counter() - start
    run_info = read_json(run_dir / RUN_FILE)
    run_info.update({"steps": [asdict(r) for r in records], "seconds": round(seconds, 1),
                     "finished": datetime.datetime.now().isoformat(timespec="seconds")})  # fmt: skip
    write_json(run_dir / RUN_FILE, run_info)
    t0 = time.perf_counter()
    md, html = write_report(run_dir)
    log(f"report: {md} and {html.name} ({time.perf_counter() - t0:.1f} s)")
    ran = sum(r.status == "ran" for r in records)
    log(f"done in {seconds:.1f} s: {ran} step(s) ran, {len(records) - ran} cached")
    return RunSummary(run_dir, records, md, html, seconds)


def team_config(run_dir: str | Path, fast: bool | None = None, overrides: Mapping | None = None) -> Config:
    """The config of a team's run: artifacts (negatives, models) under ``RUN_DIR/artifacts``, then overrides."""
    cfg = get_config(fast=fast).replace(artifacts_dir=Path(run_dir).resolve() / "artifacts")
    return cfg.replace(**dict(overrides or {})) if overrides else cfg
