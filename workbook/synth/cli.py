"""The command line, ``python -m workbook.synth generate|build``: generating, or building, the case study's set."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from workbook.config import get_config
from workbook.synth.build import build_synthetic_set, generate_case_study


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m workbook.synth generate|build``: (resume) generating, or building, the case study's set."""
    parser = argparse.ArgumentParser(prog="python -m workbook.synth", description=main.__doc__)
    parser.add_argument("command", choices=["generate", "build"])
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp CPU threads (default: all cores)")
    parser.add_argument("--limit", type=int, default=None, help="generate for the first N sampled docs only")
    args = parser.parse_args(argv)
    cfg = get_config(fast=False)
    if args.command == "generate":
        run = generate_case_study(cfg, n_threads=args.threads, limit=args.limit)
        print(f"{run.new} documents generated, {run.reused} reused, {run.seconds:.0f} s")
        return 0
    path = build_synthetic_set(cfg, n_threads=args.threads, limit=args.limit)
    print(path.relative_to(cfg.root) if path.is_relative_to(cfg.root) else path)
    return 0
