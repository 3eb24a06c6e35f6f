"""The case study's training recipe as several processes (DDP): ``torchrun`` starts them, sentence-transformers'
trainer (through accelerate) shards each global batch across them and averages their gradients.

    torchrun --nproc_per_node 2 -m workbook.train.distributed --out runs/ddp --batch 32 --steps 20   # 2 CPU procs
    torchrun --nproc_per_node 8 -m workbook.train.distributed --out runs/ddp --batch 256 ...          # 8 GPUs

``--batch`` is the **global** batch: each of N processes trains on ``batch / N`` rows a step, so the optimizer sees
the same rows per step whatever N is (keep the learning rate). What changes with N is MultipleNegativesRankingLoss's
in-batch negatives: without ``gather_across_devices`` each process scores its anchors against its own ``batch / N``
candidates only (fewer, easier negatives: a different loss); with it (the default here) every process gathers all
processes' embeddings, so each anchor sees the whole global batch, as on one device, and the loss trajectory matches
the single-process run's (``tests/test_scale.py`` checks it on 2 CPU processes with the gloo backend).

On CPUs the backend is gloo, on GPUs nccl (accelerate picks it). Two things differ from a single-process run by design
and are set here so a comparison is exact: the batch sampler is the plain one (the no-duplicates sampler fills each
process's batch greedily, so the rows per step depend on N), and ``--no-dropout`` turns dropout off (each process draws
its own dropout masks). Rank 0 writes ``losses.json`` (the training loss at every step, averaged over processes) and
the model; ``--also-local`` then trains again from the same starting weights with local negatives only, in the same
processes (``local/losses.json``), so a comparison of the two pays the start-up once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def train(out: Path, *, batch: int, steps: int, rows: int, gather: bool, dropout: bool, lr: float, seed: int,
          also_local: bool = False) -> None:
    """Train MNRL with one mined hard negative per row (the case study's default recipe) in this process's share of
    a DDP run (or alone), and write ``losses.json`` and the model from rank 0; with ``also_local``, then train again
    from the same starting weights with each process's own negatives only and write ``local/losses.json`` (one
    launch for both runs: the processes' start-up, imports and data are paid once)."""
    from accelerate import PartialState

    from workbook.config import get_config
    from workbook.icd10cm import load_icd10cm
    from workbook.models import load_model
    from workbook.train.rows import sample_rows, training_data

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if batch % world:
        raise SystemExit(f"--batch {batch} does not split over {world} processes")
    cfg = get_config()
    state = PartialState()  # joins torchrun's process group (gloo on CPU)
    model = load_model(cfg.base_model, cfg)
    with state.main_process_first():  # rank 0 mines (or reads the cache) first; the others then read the cache
        data = sample_rows(training_data(cfg, load_icd10cm(cfg), model, "real"), rows, seed)
    run = dict(data=data, state=state, batch=batch, world=world, steps=steps, dropout=dropout, lr=lr, seed=seed)
    _train_once(model, out, gather=gather, save_model=True, **run)
    if also_local:  # the same starting weights, freshly loaded: the first run trained `model` in place
        _train_once(load_model(cfg.base_model, cfg), out / "local", gather=False, save_model=False, **run)


def _train_once(model, out: Path, *, data, state, batch: int, world: int, steps: int, gather: bool, dropout: bool,
                lr: float, seed: int, save_model: bool) -> None:
    """One run of :func:`train` from ``model``'s current weights; rank 0 writes ``out/losses.json`` (and the model)."""
    import torch
    from sentence_transformers.sentence_transformer import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    from workbook.files import write_json

    torch.manual_seed(seed)
    if not dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "checkpoints"),
        max_steps=steps,
        per_device_train_batch_size=batch // world,
        learning_rate=lr,
        batch_sampler=BatchSamplers.BATCH_SAMPLER,
        dataloader_drop_last=True,
        logging_steps=1,
        save_strategy="no",
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        disable_tqdm=True,
    )
    loss = MultipleNegativesRankingLoss(model, gather_across_devices=gather)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss)
    trainer.train()
    if state.is_main_process:
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        write_json(out / "losses.json", {"processes": world, "global_batch": batch, "gather_across_devices": gather,
                                         "dropout": dropout, "rows": len(data), "losses": losses})  # fmt: skip
        if save_model:
            model.save(str(out / "model"))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module's docstring."""
    parser = argparse.ArgumentParser(prog="torchrun --nproc_per_node N -m workbook.train.distributed",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="where rank 0 writes losses.json and the model")
    parser.add_argument("--batch", type=int, default=32, help="the global batch (split over the processes)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=None, help="a seeded sample of the training rows (default: all)")
    parser.add_argument("--no-gather", action="store_true", help="in-batch negatives from this process's rows only")
    parser.add_argument("--no-dropout", action="store_true", help="dropout off (exact comparisons across N)")
    parser.add_argument("--also-local", action="store_true",
                        help="then train again from the same start with local negatives only (local/losses.json)")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    train(args.out, batch=args.batch, steps=args.steps, rows=args.rows, gather=not args.no_gather,
          dropout=not args.no_dropout, lr=args.lr, seed=args.seed, also_local=args.also_local)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
