"""Checks for notebook 05 (05_fine_tune): hard-negative lift, batch sampler, LoRA rank, both sources."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from workbook.data import Dataset
from workbook.exercises._common import (
    CheckResult,
    _close,
    _compare_numbers,
    _fmt,
    _keyed,
    _number,
    _right,
    _wrong,
)
from workbook.train import candidate_dev_metrics, full_dev_metrics

_RUN_NAME = re.compile(r"^(?P<recipe>.+)-(?P<source>real|synthetic|both)(?:-(?P<rows>\d+))?-(?P<key>[0-9a-f]{10})$")


def _card(run) -> dict:
    return getattr(run, "card", None) or {}


def _dev(run, metric: str = "recall@10") -> float | None:
    return _number(_card(run).get("dev_metrics", {}).get(metric))


def _scope(run) -> str:
    """Over what a run's card dev metrics were computed: ``"corpus"`` or ``"candidates"`` (``load_or_train``'s
    ``dev_scope``)."""
    return str(_card(run).get("dev_scope", "corpus"))


def _scope_problem(ex: str, a, b) -> CheckResult | None:
    if _scope(a) == _scope(b):
        return None
    return _wrong(
        ex,
        f"the runs' dev metrics are on different footings ({_scope(a)} vs {_scope(b)})",
        "load both runs with the same dev_scope (notebook 05 compares its budget runs with dev_scope='candidates')",
    )


def _budget(run) -> str | None:
    """The row budget in a run's folder name (``None`` for 'every row'), or ``"?"`` when the name has another form."""
    match = _RUN_NAME.match(str(_card(run).get("name", "")))
    return match.group("rows") if match else "?"


def check_hard_negative_lift(answer: Any, with_hard, without_hard, metric: str = "recall@10") -> CheckResult:
    """05.1 — dev Recall@10 with the mined hard negative minus without (in-batch negatives only).

    Args:
        answer: the difference in dev Recall@10 (with - without).
        with_hard: the default mnrl run on the comparison budget (``load_or_train``'s result).
        without_hard: the ``Recipe(name="mnrl-no-hard", num_negatives=0)`` run on the same budget.
    """
    ex = "05.1"
    a, b = _card(with_hard), _card(without_hard)
    if b.get("recipe", {}).get("num_negatives") != 0 or a.get("recipe", {}).get("num_negatives", 0) < 1:
        return _wrong(
            ex,
            "one run must use hard negatives and the other none",
            'Recipe(name="mnrl-no-hard", num_negatives=0) against the default "mnrl" recipe',
        )
    if _budget(with_hard) != _budget(without_hard) or a.get("data", {}).get("source") != b.get("data", {}).get(
        "source"
    ):
        return _wrong(
            ex,
            "the two runs differ in row budget or data source",
            "train both with the same source and max_rows=cfg.compare_max_rows",
        )
    bad = _scope_problem(ex, with_hard, without_hard)
    if bad is not None:
        return bad
    hi, lo = _dev(with_hard, metric), _dev(without_hard, metric)
    if hi is None or lo is None:
        return _wrong(ex, f"a run's card has no dev {metric}", "use the TrainedModel that load_or_train returns")
    expected = hi - lo
    if _close(answer, expected, 0.0005):
        return _right(
            ex,
            f"dev {metric}: {hi:.4f} with the hard negative, {lo:.4f} without: the mined negative is "
            f"worth {expected:+.4f}",
            expected,
        )
    return _wrong(
        ex,
        f"{_fmt(answer)} is not the difference of the two runs' dev {metric}",
        f"with.card['dev_metrics']['{metric}'] - without.card['dev_metrics']['{metric}']",
        expected,
    )


def check_batch_sampler(
    answer: Any, args, model, reference, cfg, ds: Dataset, dev_scope: str | None = None
) -> CheckResult:
    """05.2 — dev Recall@10 of a model trained with the default batch sampler (duplicates allowed in a batch).

    Args:
        answer: that model's dev Recall@10, on the reference's footing: over the whole corpus
            (:func:`workbook.train.full_dev_metrics`) or over the dev candidates
            (:func:`workbook.train.candidate_dev_metrics`).
        args: the training arguments you trained it with (``batch_sampler`` must be ``BATCH_SAMPLER``).
        model: the trained model.
        reference: the no-duplicates run on the same rows (``load_or_train(cfg, "mnrl", "real", max_rows=...)``).
        cfg, ds: the config and the case study.
        dev_scope: ``"corpus"`` or ``"candidates"``; ``None``: the reference card's.
    """
    # lazy: sentence_transformers pulls in torch; the other checks (and importing exercises) do without it
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    ex = "05.2"
    if getattr(args, "batch_sampler", None) != BatchSamplers.BATCH_SAMPLER:
        return _wrong(
            ex,
            f"args.batch_sampler is {getattr(args, 'batch_sampler', None)!r}",
            "set args.batch_sampler = BatchSamplers.BATCH_SAMPLER before building the trainer",
        )
    scope = dev_scope or _scope(reference)
    if scope == "candidates":
        expected = candidate_dev_metrics(cfg, ds, model)["recall@10"]
        how = "candidate_dev_metrics(cfg, ds, model)['recall@10'] (the dev candidates, as the reference's card)"
    else:
        expected = full_dev_metrics(cfg, ds, model)["recall@10"]
        how = "full_dev_metrics(cfg, ds, model)['recall@10'] (the whole corpus, as the reference's card)"
    ref = _dev(reference)
    if not _close(answer, expected, 0.0005):
        return _wrong(ex, f"{_fmt(answer)} is not the model's dev Recall@10 ({scope})", how, expected)
    queries = len(ds.qrels["dev"])
    delta = "" if ref is None else f"; no-duplicates run {ref:.4f} (difference {ref - expected:+.4f})"
    return _right(
        ex,
        f"default sampler: dev Recall@10 {expected:.4f} ({scope}){delta}. With {queries} dev queries one "
        f"query moves Recall@10 by up to {1 / queries:.4f}: judge the difference against that",
        expected,
    )


def check_lora_rank(answer: Mapping, lora, full, metric: str = "recall@10") -> CheckResult:
    """05.3 — share of trained weights (%) of a rank-64 LoRA run, and its dev Recall@10 gap to full fine-tuning.

    Args:
        answer: ``{"trained weights %": .., "gap": ..}`` (gap = full - LoRA, dev Recall@10).
        lora: the ``lora-64`` run; ``full``: the full fine-tune (mnrl) on the same budget.
    """
    ex = "05.3"
    answer, bad = _keyed(ex, answer, ["trained weights %", "gap"], '{"trained weights %": 8.3, "gap": 0.02}')
    if bad is not None:
        return bad
    card, rec = _card(lora), _card(lora).get("recipe", {})
    if not rec.get("lora") or rec.get("lora_r") != 64:
        return _wrong(
            ex,
            f"the LoRA run has lora={rec.get('lora')}, lora_r={rec.get('lora_r')}",
            'Recipe(name="lora-64", lora=True, lora_r=64, lora_alpha=128, learning_rate=1e-3)',
        )
    if _card(full).get("recipe", {}).get("lora") or _budget(full) != _budget(lora):
        return _wrong(
            ex,
            "the reference must be a full fine-tune on the same row budget",
            'load_or_train(cfg, "mnrl", "real", max_rows=cfg.compare_max_rows)',
        )
    bad = _scope_problem(ex, lora, full)
    if bad is not None:
        return bad
    share = 100 * card["trainable_parameters"] / card["parameters"]
    expected = {"trained weights %": share, "gap": _dev(full, metric) - _dev(lora, metric)}
    bad = _compare_numbers(
        ex,
        answer,
        expected,
        {"trained weights %": 0.01, "gap": 0.0005},
        "trainable_parameters / parameters from the LoRA card (in percent), and the difference "
        f"of the two cards' dev {metric}",
    )
    if bad is not None:
        return bad
    return _right(
        ex,
        f"rank 64 trains {share:.2f}% of the weights; gap to full fine-tuning {expected['gap']:+.4f} dev {metric}",
        expected,
    )


def check_both_sources(answer: Any, both, reference, metric: str = "recall@10") -> CheckResult:
    """05.4 — dev Recall@10 of training on real + synthetic queries minus real only, on the same row budget.

    Args:
        answer: the difference (both - real) in dev Recall@10.
        both: the ``source="both"`` run; ``reference``: the real-only run with the same ``max_rows``.
    """
    ex = "05.4"
    if _card(both).get("data", {}).get("source") != "both" or _card(reference).get("data", {}).get("source") != "real":
        return _wrong(
            ex,
            "expected a 'both' run and a 'real' run",
            'load_or_train(cfg, "mnrl", "both", max_rows=...) '
            'against load_or_train(cfg, "mnrl", "real", max_rows=...) with the same max_rows',
        )
    same = {k: (_card(both).get("data", {}).get(k), _card(reference).get("data", {}).get(k)) for k in ("negatives",)}
    same["recipe"] = tuple(_card(r).get("recipe", {}).get("num_negatives") for r in (both, reference))
    differs = {k: v for k, v in same.items() if v[0] != v[1]}
    if differs:
        return _wrong(
            ex,
            "the runs differ in more than the data: "
            + ", ".join(f"{k} {a!r} vs {b!r}" for k, (a, b) in differs.items()),
            "train the both run with the default model's recipe and negatives: recipe, negatives = "
            "final_training(True); load_or_train(cfg, recipe, 'both', ..., negatives=negatives)",
        )
    if _budget(both) != _budget(reference):
        return _wrong(
            ex,
            f"the runs have different row budgets ({_budget(both)} vs {_budget(reference)})",
            "give both the same max_rows (None: every row)",
        )
    bad = _scope_problem(ex, both, reference)
    if bad is not None:
        return bad
    expected = _dev(both, metric) - _dev(reference, metric)
    if _close(answer, expected, 0.0005):
        return _right(
            ex,
            f"dev {metric}: both {_dev(both, metric):.4f}, real {_dev(reference, metric):.4f} ({expected:+.4f})",
            expected,
        )
    return _wrong(
        ex,
        f"{_fmt(answer)} is not the difference of the two runs' dev {metric}",
        f"both.card['dev_metrics']['{metric}'] - reference.card['dev_metrics']['{metric}']",
        expected,
    )
