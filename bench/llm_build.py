"""Benchmark: what the portable llama.cpp build costs in generation speed, on the same prompts.

Usage (from the repository root, after ``make setup``)::

    .venv/bin/python bench/llm_build.py              # builds the comparison once (~7 min on 2 cores), then measures
    .venv/bin/python bench/llm_build.py --report-only

The set-up builds llama-cpp-python with ``GGML_NATIVE=OFF`` (AVX2/FMA/F16C), which runs on any x86-64 laptop. A
native build (``-march=native``) dies with SIGILL on this machine kind (its AMX code faults), so the comparison is
the fastest build that runs here: the same flags plus AVX-512 (F, VBMI, VNNI, BF16) and AVX-VNNI, where the CPU has
them. Both generate greedily from the same few-shot case-study prompts, one thread each, in child processes,
alternating build by build so that load on shared cores hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "llm_build.json"
WIDE = ROOT / ".cache" / "bench" / "llama-avx512"
AVX512_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON "
               "-DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON")  # fmt: skip

_CHILD = r"""
import contextlib, io, json, sys, time
from llama_cpp import Llama, llama_print_system_info
path, prompts = sys.argv[1], json.loads(sys.argv[2])
with contextlib.redirect_stderr(io.StringIO()):
    llm = Llama(model_path=path, n_ctx=1024, n_threads=1, n_threads_batch=1, seed=0, verbose=False)
tokens, seconds, texts = 0, 0.0, []
for p in prompts:
    llm.reset()
    t = time.perf_counter()
    out = llm.create_completion(p, max_tokens=48, temperature=0.0)
    seconds += time.perf_counter() - t
    tokens += out["usage"]["completion_tokens"]
    texts.append(out["choices"][0]["text"])
info = llama_print_system_info()
print(json.dumps({"tokens": tokens, "seconds": seconds, "texts": texts,
                  "system_info": info.decode() if isinstance(info, bytes) else str(info)}))
llm.close()
"""


def build_wide(python: str) -> Path:
    """Build the AVX-512 variant of the pinned llama-cpp-python into ``WIDE`` (once; outside pip's cache)."""
    sys.path.insert(0, str(ROOT))
    from workbook.llmbuild import pinned_requirement, pip_build

    if not (WIDE / "llama_cpp").is_dir():
        pip_build(python, pinned_requirement(ROOT / "pyproject.toml"), AVX512_ARGS, target=WIDE)
    return WIDE


def prompts(n: int = 6) -> list[str]:
    """The case study's few-shot generation prompts for ``n`` fast-mode codes (what notebook 04 sends)."""
    sys.path.insert(0, str(ROOT))
    from workbook import synth
    from workbook.config import get_config
    from workbook.icd10cm import load_icd10cm

    ds = load_icd10cm(get_config(fast=True))
    template = synth.few_shot_template(ds, n_shots=3, seed=7)
    return [template.render(ds.corpus[d]["text"]) for d in sorted(ds.corpus)[:: max(1, len(ds.corpus) // n)][:n]]


def measure(python: str, model: Path, texts: list[str], pythonpath: Path | None) -> dict:
    env = {**os.environ}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    done = subprocess.run([python, "-c", _CHILD, str(model), json.dumps(texts)], env=env, capture_output=True,
                          text=True)  # fmt: skip
    if done.returncode != 0:
        return {"exit_code": done.returncode, "stderr": done.stderr[-500:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def readme_block(result: dict) -> str:
    """The README's sentence on what the portable build costs, from ``bench/results/llm_build.json``."""
    (_, portable), (_, wide) = result["builds"].items()
    return (f"Measured ({result['machine']}; `bench/llm_build.py`, {result['prompts']} case-study prompts x "
            f"{result['rounds']} rounds, greedy, 1 thread): the portable build generates {portable['tokens_per_s']} "
            f"tokens/s, the AVX-512 build {wide['tokens_per_s']} tokens/s, so the portable build runs at "
            f"{result['portable_over_widest']:.2f}x the speed of the widest build that runs here"
            + (", with identical text." if result["same_text"] else ". The greedy texts differ between the two builds "
               "(their float rounding differs), so generated queries depend on the build as well as the seed."))


def write_readme(result: dict, readme: Path = ROOT / "README.md") -> None:
    """Put :func:`readme_block` between the README's ``llm-build`` markers."""
    sys.path.insert(0, str(ROOT / "bench"))
    from run import replace_block

    readme.write_text(replace_block(readme.read_text(), "llm-build", readme_block(result), readme))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--machine", default="2 CPU cores, quiet")
    args = parser.parse_args()
    if not args.report_only:
        sys.path.insert(0, str(ROOT))
        from workbook.config import get_config
        from workbook.synth import gemma_path

        python = sys.executable
        wide = build_wide(python)
        model, texts = gemma_path(get_config()), prompts()
        builds = {"portable (GGML_NATIVE=OFF)": None, "AVX-512 (this CPU's widest that runs)": wide}
        totals = {name: {"tokens": 0, "seconds": 0.0} for name in builds}
        same_text = True
        for _ in range(args.rounds):
            outs = {name: measure(python, model, texts, path) for name, path in builds.items()}
            for name, out in outs.items():
                if "tokens" not in out:
                    raise SystemExit(f"{name}: {out}")
                totals[name]["tokens"] += out["tokens"]
                totals[name]["seconds"] += out["seconds"]
                totals[name]["system_info"] = out["system_info"]
            same_text &= len({json.dumps(o["texts"]) for o in outs.values()}) == 1
        result = {"machine": args.machine, "prompts": len(texts), "rounds": args.rounds, "max_tokens": 48,
                  "threads": 1, "same_text": same_text, "builds": {}}  # fmt: skip
        for name, t in totals.items():
            result["builds"][name] = {"tokens": t["tokens"], "seconds": round(t["seconds"], 2),
                                      "tokens_per_s": round(t["tokens"] / t["seconds"], 1),
                                      "system_info": t["system_info"]}  # fmt: skip
        rates = [b["tokens_per_s"] for b in result["builds"].values()]
        result["portable_over_widest"] = round(rates[0] / rates[1], 2)
        OUT.write_text(json.dumps(result, indent=2) + "\n")
    result = json.loads(OUT.read_text())
    write_readme(result)
    for name, b in result["builds"].items():
        print(f"{name}: {b['tokens_per_s']} tokens/s")
    print(f"portable / widest: {result['portable_over_widest']}x; same text: {result['same_text']}")


if __name__ == "__main__":
    main()
