"""Benchmark: the disk a course machine needs, measured on this checkout, for the instructor guide (docs/teaching.md).

Usage (from the repository root, after ``make setup`` and ``make test``, so the fast-mode caches exist)::

    .venv/bin/python bench/footprint.py

Writes ``bench/results/footprint.json``: the size in MB of the venv, the assembled models, the built case study,
and each cache and artifact folder as this checkout has them; the installed size of the optional extras' own
packages; and what one full-mode corpus encode adds (74,714 codes x dimensions x 4 bytes, computed, not measured).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "footprint.json"
FULL_CORPUS = 74_714  # codes in the full case study (tests/test_icd10cm.py checks the build)
DIMS = {"all-MiniLM-L6-v2": 384, "all-mpnet-base-v2": 768}
FOLDERS = {
    "venv": ".venv",
    "models (assembled mpnet)": ".cache/models",
    "corpus embeddings": ".cache/embeddings",
    "rerankers": ".cache/rerankers",
    "rerank scores": ".cache/rerank",
    "artifacts (models, negatives, figures, results)": "artifacts",
    "case study build": "data/icd10cm",
}

#: What `make test` leaves beyond the venv, the models and the case study (the mode's caches).
CACHES = ["corpus embeddings", "rerankers", "rerank scores", "artifacts (models, negatives, figures, results)"]


def size_mb(path: Path) -> float:
    """Total apparent size of the files under ``path`` in MB (symlinks not followed)."""
    if not path.exists():
        return 0.0
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            p = Path(folder) / name
            if not p.is_symlink():
                total += p.stat().st_size
    return round(total / 1e6, 1)


#: The optional extras' own packages (what `pip install -e '.[EXTRA]'` adds to a venv that has the rest).
EXTRAS = {"scale": ["ray", "msgpack"], "dev: playwright": ["playwright", "greenlet", "pyee"]}


def dist_mb(names: list[str]) -> float:
    """Installed size in MB of the files of these distributions (as their RECORD lists them)."""
    from importlib import metadata

    total = 0
    for name in names:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            continue
        total += sum(f.locate().stat().st_size for f in files if f.locate().is_file())
    return round(total / 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", default="after make test (fast-mode caches), no full-mode caches",
                        help="what this checkout's caches hold, recorded with the sizes")  # fmt: skip
    args = parser.parse_args()
    sizes = {name: size_mb(ROOT / rel) for name, rel in FOLDERS.items()}
    result = {
        "measured": datetime.date.today().isoformat(),
        "state": args.state,
        "mb": sizes,
        "gb": {name: round(mb / 1000, 1) for name, mb in sizes.items()},
        "caches_and_artifacts_gb": round(sum(sizes[k] for k in CACHES) / 1000, 1),
        "total_mb": round(sum(sizes.values()), 1),
        "extras_mb": {extra: dist_mb(names) for extra, names in EXTRAS.items()},
        "full_corpus_encode_mb": {m: round(FULL_CORPUS * d * 4 / 1e6, 1) for m, d in DIMS.items()},
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
