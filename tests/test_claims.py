"""Numbers in the READMEs that come from a results file are rendered from it: edit one by hand and this fails."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def _block(text: str, name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)\n?<!-- {name}:end -->", text, re.S)
    assert match, f"no <!-- {name}:start --> ... <!-- {name}:end --> block"
    return match.group(1).strip()


def test_readme_llm_build_cost_comes_from_the_bench_result():
    """The README's sentence is the rendering of bench/results/llm_build.json; with no result, there is no sentence."""
    import llm_build

    path = ROOT / "bench" / "results" / "llm_build.json"
    block = _block((ROOT / "README.md").read_text(), "llm-build")
    assert block == (llm_build.readme_block(json.loads(path.read_text())) if path.is_file() else "")


def test_readme_test_time_comes_from_the_bench_result():
    import e2e

    result = json.loads((ROOT / "bench" / "results" / "e2e.json").read_text())
    assert _block((ROOT / "README.md").read_text(), "test-time") == e2e.readme_block(result)


@pytest.mark.parametrize("name", ["targets", "quality", "lookalike", "speed", "e2e", "memory", "precision",
                                  "allocator", "train-step", "synth-speed", "synth-gpl", "synth-style",
                                  "synth-generators", "docs-only"])
def test_bench_readme_tables_come_from_the_results(name):
    import run

    results = {n: run._load(n) for n in ("mining", "speed", "quality", "e2e", "memory", "precision", "allocator",
                                         "train_step", "synth_speed", "synth_gpl", "synth_style", "synth_generators",
                                         "docs_only")}
    rows = run.all_targets(results["mining"], results["quality"], results["e2e"], results["memory"])
    render = {"targets": lambda: run.md_targets(rows), "quality": lambda: run.md_quality(results["quality"]),
              "lookalike": lambda: run.md_lookalike(results["quality"]),
              "speed": lambda: run.md_speed(results["speed"], results["mining"]),
              "e2e": lambda: run.md_e2e(results["e2e"]), "memory": lambda: run.md_memory(results["memory"]),
              "precision": lambda: run.md_precision(results["precision"]),
              "allocator": lambda: run.md_allocator(results["allocator"]),
              "train-step": lambda: run.md_train_step(results["train_step"]),
              "synth-speed": lambda: run.md_synth_speed(results["synth_speed"]),
              "synth-gpl": lambda: run.md_synth_gpl(results["synth_gpl"]),
              "synth-style": lambda: run.md_synth_style(results["synth_style"]),
              "synth-generators": lambda: run.md_synth_generators(results["synth_generators"]),
              "docs-only": lambda: run.md_docs_only(results["docs_only"])}
    assert _block((ROOT / "bench" / "README.md").read_text(), name) == render[name]().strip()
