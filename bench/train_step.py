"""Benchmark: where a training step's time goes (issue 21), against what these cores can compute.

Usage (from the repository root, after ``make setup``)::

    .venv/bin/python bench/train_step.py --machine "2 cores, quiet"   # writes bench/results/train_step.json

1. **The ceiling.** fp32 GFLOP/s of this CPU's matrix products at the training thread count: a large square
   product, and the step's own Linear shapes (a batch's padded tokens x 384 -> 1,536 and back).
2. **One step, taken apart.** The final training's loss (``DEFAULT_RECIPE``: MNRL, one mined negative) on the case
   study's fast-mode training rows, in batches of the recipe's size drawn with a seed: tokenising (what the data
   collator does), forward, backward and the optimiser step, each timed over several steps. Per column the real and
   the padded tokens (sentence-transformers embeds the anchor column alone and merges the candidate columns, padded
   to their common width). The step's matrix arithmetic is counted from the model's shape and the padded lengths
   (forward: Q, K, V, output and feed-forward products plus the two attention products; backward: twice the
   forward), so ``achieved`` is GFLOP/s actually computed and ``of ceiling`` its fraction of the square product's.
3. **Threads.** The same steps at 1 thread and at the default count.
4. **The trainer around the steps.** One fast-mode ``fine_tune`` of the final recipe with a callback that times each
   optimiser step, each dev evaluation and each checkpoint save: the share of the run that is not a training step.

Nothing here is a timed assert: the numbers are ratios measured in one run, with the machine's state recorded.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "train_step.json"
STEPS = 6  # timed steps per setting (after one warm-up step)
CHUNK_ROWS = 16  # texts per length-sorted chunk (workbook.train.length_chunked; cfg.train_chunk_rows)
TRAINER_ROWS = 384  # rows of the timed fine_tune runs (fast mode's final training when this bench was recorded)


def matmul_gflops(m: int, k: int, n: int, seconds: float = 2.0) -> float:
    """fp32 GFLOP/s of ``(m x k) @ (k x n)`` products, repeated for about ``seconds``."""
    import torch

    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.mm(a, b)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        done += 1
    return round(2 * m * k * n * done / (time.perf_counter() - start) / 1e9, 1)


def forward_flops(lengths: list[int], layers: int, hidden: int, ff: int) -> float:
    """Matrix-product FLOPs of one encoder forward over sequences of these lengths (per layer: Q, K, V and output
    projections ``8 L h^2``, feed-forward ``4 L h ff``, scores and weighted sum ``4 L^2 h``)."""
    return float(sum(layers * (8 * n * hidden**2 + 4 * n * hidden * ff + 4 * n * n * hidden) for n in lengths))


def _shape(model) -> tuple[int, int, int]:
    config = model[0].auto_model.config
    return config.num_hidden_layers, config.hidden_size, config.intermediate_size


def step_parts(model, loss, optimizer, batches: list[dict], rows_per_chunk: int | None = None) -> dict:
    """Time tokenise / forward / backward / optimiser over ``batches`` (the first is a warm-up) and count tokens."""
    layers, hidden, ff = _shape(model)
    times = {"tokenise": [], "forward": [], "backward": [], "optimiser": []}
    tokens = {"real": 0, "padded": 0}
    flops = {"padded": 0.0, "real": 0.0}
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        features = [model.tokenize(texts) for texts in batch.values()]
        t1 = time.perf_counter()
        value = loss(features, None)
        t2 = time.perf_counter()
        value.backward()
        t3 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if i == 0:
            continue
        for part, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            times[part].append(seconds)
        real = [f["attention_mask"].sum(1).tolist() for f in features]
        # The anchor column runs alone; the candidate columns merge, padded to their common widest text.
        widths = [features[0]["input_ids"].shape[1]] + [max(f["input_ids"].shape[1] for f in features[1:])] * (
            len(features) - 1)  # fmt: skip
        padded = [[w] * len(r) for w, r in zip(widths, real, strict=True)]
        if rows_per_chunk:  # the anchor column alone, the candidates merged, each in length-sorted chunks
            groups = [real[0], [n for col in real[1:] for n in col]]
            padded = [[max(c)] * len(c) for g in groups for c in _chunks(sorted(g, reverse=True), rows_per_chunk)]
        tokens["real"] += sum(map(sum, real))
        tokens["padded"] += sum(map(sum, padded))
        flops["padded"] += 3 * forward_flops([n for col in padded for n in col], layers, hidden, ff)
        flops["real"] += 3 * forward_flops([n for col in real for n in col], layers, hidden, ff)
    n = len(batches) - 1
    median = {part: statistics.median(v) for part, v in times.items()}
    step = sum(median.values())
    return {"steps timed": n, "seconds per step": round(step, 3),
            "share": {part: round(s / step, 3) for part, s in median.items()},
            "tokens per step": {k: round(v / n) for k, v in tokens.items()},
            "padding share": round(1 - tokens["real"] / tokens["padded"], 3),
            "GFLOP per step": round(flops["padded"] / n / 1e9, 2),
            "achieved GFLOP/s": round(flops["padded"] / n / 1e9 / step, 1),
            "useful GFLOP/s (real tokens)": round(flops["real"] / n / 1e9 / step, 1)}  # fmt: skip


def chunked_matches_plain(base, loss_builder, batch: dict) -> dict:
    """The loss and gradients of one batch with the plain and the chunked forward, from the same weights without
    dropout: how far apart they are (relative to the plain gradient's size)."""
    import torch

    from workbook.train import length_chunked

    grads, losses = [], []
    for rows in (None, CHUNK_ROWS):
        model = copy.deepcopy(base)
        model.eval()  # no dropout: the two forwards must see the same network
        with length_chunked(model, rows):
            value = loss_builder(model)([model.tokenize(texts) for texts in batch.values()], None)
            value.backward()
        losses.append(float(value))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    diff = (grads[0] - grads[1]).norm() / grads[0].norm()
    return {"loss plain": round(losses[0], 6), "loss chunked": round(losses[1], 6),
            "gradient difference (relative L2)": float(f"{float(diff):.2e}")}  # fmt: skip


def _chunks(values: list, size: int) -> list[list]:
    return [values[i:i + size] for i in range(0, len(values), size)] if len(values) > size else [values]


def draw_batches(rows, batch_size: int, count: int, seed: int) -> list[dict]:
    """``count`` batches of ``batch_size`` rows drawn without replacement with ``seed`` (one column -> texts each)."""
    import random

    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    picks = [order[i * batch_size:(i + 1) * batch_size] for i in range(count)]
    return [{c: [rows[c][j] for j in pick] for c in rows.column_names} for pick in picks]


def trainer_overhead(cfg, ds, base, rows, out: Path) -> dict:
    """One ``fine_tune`` of the final recipe with its dev evaluator: wall time split into steps, evaluations and
    checkpoint saves (a ``TrainerCallback`` stamps each)."""
    from transformers import TrainerCallback

    from workbook.train import DEFAULT_RECIPE, dev_evaluator, fine_tune

    class Clock(TrainerCallback):
        def __init__(self):
            self.step, self.evaluate, self.save, self._t = [], [], [], None

        def on_step_begin(self, args, state, control, **kw):
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.step.append(time.perf_counter() - self._t)
            self._t = time.perf_counter()  # what follows a step's end until the next begins: evaluate and save

        def on_evaluate(self, args, state, control, **kw):
            self.evaluate.append(time.perf_counter() - self._t)
            self._t = time.perf_counter()

        def on_save(self, args, state, control, **kw):
            self.save.append(time.perf_counter() - self._t)

    clock = Clock()
    evaluator = dev_evaluator(cfg, ds, base)
    start = time.perf_counter()
    trained = fine_tune(cfg, base, rows, out, DEFAULT_RECIPE, evaluator=evaluator, callbacks=[clock],
                        show_progress=False)  # fmt: skip
    wall = time.perf_counter() - start
    parts = {"steps": sum(clock.step), "evaluations": sum(clock.evaluate), "checkpoint saves": sum(clock.save)}
    parts["other (set-up, final save)"] = wall - sum(parts.values())
    from workbook.train import full_dev_metrics

    dev = full_dev_metrics(cfg, ds, trained.model)
    return {"rows": len(rows), "steps": trained.card["steps"], "evaluations": len(clock.evaluate),
            "saves": len(clock.save), "wall seconds": round(wall, 1),
            "dev (whole fast corpus)": {k: round(float(v), 4) for k, v in dev.items() if k in ("recall@10", "ndcg@10")},
            "seconds": {k: round(v, 1) for k, v in parts.items()},
            "share": {k: round(v / wall, 3) for k, v in parts.items()}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machine", default="2 CPU cores", help="a note on the machine and whether it was quiet")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from workbook.config import get_config, seed_everything
    from workbook.icd10cm import load_icd10cm
    from workbook.models import load_model
    from workbook.precision import cpu_flags
    from workbook.train import DEFAULT_RECIPE, build_loss, get_recipe, length_chunked, training_data

    cfg = get_config(fast=True)
    seed_everything(cfg.seed)
    threads = torch.get_num_threads()
    ds = load_icd10cm(cfg)
    base = load_model(cfg.base_model, cfg)
    rows = training_data(cfg, ds, base, "real", num_negatives=1)
    recipe = get_recipe(DEFAULT_RECIPE)
    layers, hidden, ff = _shape(base)
    started = time.time()
    ceiling = {"square 2048": matmul_gflops(2048, 2048, 2048)}
    batches = draw_batches(rows, recipe.batch_size, STEPS + 1, cfg.seed)
    tokens = recipe.batch_size * 40  # about a merged batch's padded tokens (measured below): the Linear shapes
    ceiling |= {f"{tokens} x {hidden} -> {ff}": matmul_gflops(tokens, hidden, ff),
                f"{tokens} x {ff} -> {hidden}": matmul_gflops(tokens, ff, hidden)}  # fmt: skip
    steps = {}
    for n in sorted({1, threads}):
        torch.set_num_threads(n)
        seed_everything(cfg.seed)
        model = copy.deepcopy(base)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate)
        steps[f"{n} thread{'s' if n > 1 else ''}"] = step_parts(model, build_loss(model, recipe), optimizer, batches)
        print(n, steps, flush=True)
    torch.set_num_threads(threads)
    seed_everything(cfg.seed)
    model = copy.deepcopy(base)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate)
    with length_chunked(model, CHUNK_ROWS):
        steps[f"{threads} threads, length-sorted chunks of {CHUNK_ROWS} texts"] = step_parts(
            model, build_loss(model, recipe), optimizer, batches, rows_per_chunk=CHUNK_ROWS)  # fmt: skip
    same = chunked_matches_plain(base, lambda m: build_loss(m, recipe), batches[1])
    for record in steps.values():
        record["of ceiling"] = round(record["achieved GFLOP/s"] / ceiling["square 2048"], 3)
    with tempfile.TemporaryDirectory(prefix="workbook-trainstep-") as tmp:
        from workbook.train import sample_rows

        sample = sample_rows(rows, TRAINER_ROWS, cfg.seed)
        overhead = {"plain": trainer_overhead(cfg, ds, base, sample, Path(tmp) / "plain"),
                    f"length-sorted chunks of {CHUNK_ROWS}": trainer_overhead(
                        cfg.replace(train_chunk_rows=CHUNK_ROWS), ds, base, sample, Path(tmp) / "chunked")}  # fmt: skip
    result = {
        "machine": args.machine,
        "cpu_flags": sorted(f for f in cpu_flags() if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")),
        "threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "model": f"{cfg.base_model} ({layers} layers, hidden {hidden}, feed-forward {ff})",
        "recipe": f"{recipe.name}: batch {recipe.batch_size}, columns {', '.join(rows.column_names)}",
        "ceiling GFLOP/s": ceiling,
        "step": steps,
        "chunked vs plain (one batch, no dropout)": same,
        "trainer": overhead,
        "seconds": round(time.time() - started, 1),
    }
    from workbook.files import atomic_write

    atomic_write(args.out, json.dumps(result, indent=1) + "\n")
    print(table(result))


def table(result: dict) -> str:
    """The bench README's section: the ceiling, the step at each thread count, and the trainer's overhead."""
    ceiling = ", ".join(f"{shape}: {g} GFLOP/s" for shape, g in result["ceiling GFLOP/s"].items())
    lines = [f"{result['machine']} ({', '.join(result['cpu_flags']) or 'no flags read'}; torch {result['torch']}); "
             f"{result['model']}; {result['recipe']}.", "", f"Ceiling (fp32 matrix products, {result['threads']} "
             f"threads): {ceiling}.", "",
             "| threads | s per step | tokenise | forward | backward | optimiser | tokens real / padded | padding "
             "| GFLOP per step | achieved GFLOP/s | of ceiling |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, s in result["step"].items():
        share = s["share"]
        lines.append(f"| {name} | {s['seconds per step']} | {share['tokenise']:.0%} | {share['forward']:.0%} | "
                     f"{share['backward']:.0%} | {share['optimiser']:.0%} | {s['tokens per step']['real']:,} / "
                     f"{s['tokens per step']['padded']:,} | {s['padding share']:.0%} | {s['GFLOP per step']} | "
                     f"{s['achieved GFLOP/s']} | {s['of ceiling']:.0%} |")  # fmt: skip
    same = result.get("chunked vs plain (one batch, no dropout)")
    if same:
        lines += ["", "Length-sorted chunks (`cfg.train_chunk_rows`: on in fast mode, off in full mode until the full "
                      "case study is re-run) against the plain step on one batch, from the same weights without "
                      "dropout: loss "
                      f"{same['loss plain']} vs {same['loss chunked']}, gradients "
                      f"{same['gradient difference (relative L2)']} apart (relative L2)."]  # fmt: skip
    runs = result["trainer"]
    first = next(iter(runs.values()))
    lines += ["", f"The trainer around the steps: one fast-mode `fine_tune` ({first['rows']} rows, {first['steps']} "
                  f"steps, {first['evaluations']} dev evaluations, {first['saves']} checkpoint saves) per setting, "
                  "then its dev metrics over the whole fast corpus:", "",
              "| forward | wall s | steps | evaluations | checkpoint saves | other | dev Recall@10 | dev nDCG@10 |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, t in runs.items():
        sec, share, dev = t["seconds"], t["share"], t["dev (whole fast corpus)"]
        cells = [f"{sec[k]} s ({share[k]:.0%})" for k in ("steps", "evaluations", "checkpoint saves",
                                                          "other (set-up, final save)")]  # fmt: skip
        lines.append(f"| {name} | {t['wall seconds']} | " + " | ".join(cells) +
                     f" | {dev['recall@10']} | {dev['ndcg@10']} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
