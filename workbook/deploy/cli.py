"""The command line ``python -m workbook.deploy reembed|status``: the re-embedding job headless, or the store."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

from workbook.data import load_dataset
from workbook.deploy.deployment import Deployment

DESCRIPTION = (
    "Ship a new embedding model safely: model versions, a resumable re-embedding job, blue/green collections in "
    "Qdrant, a shadow test, a promotion gate, an atomic alias cut-over and rollback."
)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m workbook.deploy reembed|status``: run the re-embedding job headless, or show the store."""
    parser = argparse.ArgumentParser(prog="python -m workbook.deploy", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    job = sub.add_parser("reembed", help="embed a BEIR corpus with a registered model version (resumable)")
    job.add_argument("root")
    job.add_argument("version")
    job.add_argument("dataset", help="a BEIR-layout folder (its corpus.jsonl is embedded, title + text)")
    job.add_argument("--batch-size", type=int, default=256)
    job.add_argument("--encode-batch-size", type=int, default=64)
    job.add_argument("--processes", type=int, default=1)
    job.add_argument("--no-progress", action="store_true")
    job.add_argument("--engine", choices=["local", "ray"], default="local",
                     help="ray: encode on a Ray Data actor pool (the scale extra)")  # fmt: skip
    job.add_argument("--ray-address", default=None, help="with --engine ray: the cluster's host:port (default: local)")
    job.add_argument("--actors", type=int, default=None, help="with --engine ray: encoder actors (default: 1 per CPU)")
    status = sub.add_parser("status", help="list collections, versions and aliases")
    status.add_argument("root")
    for p in (job, status):
        p.add_argument("--url", default=None, help="a Qdrant server URL (default: local mode in ROOT/qdrant)")
        p.add_argument("--api-key-env", default="QDRANT_API_KEY", help="environment variable holding the API key")
    args = parser.parse_args(argv)
    with Deployment(args.root, url=args.url, api_key=os.environ.get(args.api_key_env)) as dep:
        if args.command == "status":
            print(dep.status().to_string())
            return 0
        ds = load_dataset(args.dataset)
        report = dep.reembed(
            args.version,
            ds.doc_ids(),
            ds.doc_texts(),
            batch_size=args.batch_size,
            encode_batch_size=args.encode_batch_size,
            processes=args.processes,
            show_progress=not args.no_progress,
            engine=args.engine,
            ray_address=args.ray_address,
            actors=args.actors,
        )
        print(json.dumps(report.summary().to_dict(), default=str))
    return 0
