"""Checks for notebook 03 (03_hard_negatives): random window, reranker margin, equivalence rules."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from workbook.data import Dataset
from workbook.exercises._common import (
    CheckResult,
    _compare_numbers,
    _keyed,
    _number,
    _right,
    _wrong,
)
from workbook.negatives import audit, excludes1_overlap


def _audit_numbers(ds: Dataset, mined) -> dict[str, float]:
    a = audit(ds, mined)
    return {
        "FN rate %": 100 * a.fn_rate,
        "queries with no negative": float(a.queries_without_negatives),
        "partner recall": float(excludes1_overlap(ds, mined)["partner recall"]),
    }


def _settings_problem(mined, wanted: Mapping[str, Any]) -> str | None:
    settings = getattr(mined, "settings", None)
    if settings is None:
        return "expected the MinedNegatives that mine_negatives returned"
    off = [f"{k}={getattr(settings, k)!r} (asked {v!r})" for k, v in wanted.items() if getattr(settings, k) != v]
    return f"mined with other settings: {', '.join(off)}" if off else None


def check_reranker_margin(answer: Mapping, ds: Dataset, bi_encoder, cross_encoder) -> CheckResult:
    """03.2 — training queries left with no negative by ``relative_margin=0.05``: bi-encoder scores vs a reranker's.

    Args:
        answer: ``{"bi-encoder": n, "cross-encoder": n}``: queries with no negative in each run.
        ds: the case study.
        bi_encoder: what ``mine_negatives`` returned with the margin applied to the bi-encoder's cosines.
        cross_encoder: the same settings and queries, mined with ``cross_encoder=reranker`` (margins then apply to
            the reranker's scores).
    """
    ex = "03.2"
    answer, bad = _keyed(ex, answer, ["bi-encoder", "cross-encoder"], '{"bi-encoder": 28, "cross-encoder": 1}')
    if bad is not None:
        return bad
    wanted = {"relative_margin": 0.05, "one_positive_per_query": False, "exclude_known": False}
    for name, mined in (("bi-encoder", bi_encoder), ("cross-encoder", cross_encoder)):
        problem = _settings_problem(mined, wanted)
        if problem:
            return _wrong(
                ex, f"{name} run: {problem}", "MiningSettings(num_negatives=5, range_max=50, relative_margin=0.05)"
            )
    pairs = {(r["query_id"], r["positive"]): r["positive_score"] for r in bi_encoder.rows}
    other = {(r["query_id"], r["positive"]): r["positive_score"] for r in cross_encoder.rows}
    if set(pairs) != set(other):
        return _wrong(
            ex, "the two runs mined different (query, positive) pairs", "pass the same query_ids to both runs"
        )
    scored = [k for k in pairs if not (math.isnan(pairs[k]) or math.isnan(other[k]))]
    if scored and all(abs(pairs[k] - other[k]) < 1e-6 for k in scored):
        return _wrong(
            ex,
            "both runs scored the positives identically: the reranker was not used",
            "mine_negatives(ds, model, settings, cross_encoder=reranker, ...) for the second run",
        )
    expected = {
        "bi-encoder": float(audit(ds, bi_encoder).queries_without_negatives),
        "cross-encoder": float(audit(ds, cross_encoder).queries_without_negatives),
    }
    bad = _compare_numbers(
        ex,
        answer,
        expected,
        0.5,
        "audit(ds, mined).queries_without_negatives for each run (the queries whose every row has no negative)",
    )
    if bad is not None:
        return bad
    queries = audit(ds, bi_encoder).queries
    verdict = (
        "the reranker's scores leave fewer queries empty: the margin becomes usable"
        if expected["cross-encoder"] < expected["bi-encoder"]
        else "the reranker does not leave fewer queries empty here"
    )
    return _right(
        ex,
        f"of {queries} queries, {int(expected['bi-encoder'])} have no negative with bi-encoder scores, "
        f"{int(expected['cross-encoder'])} with the reranker's: {verdict}",
        expected,
    )


def check_random_window(answer: Mapping, ds: Dataset, mined) -> CheckResult:
    """03.1 — audited FN rate (%) and Excludes1 partner recall of random sampling from ranks 10-100.

    Args:
        answer: ``{"FN rate %": .., "partner recall": ..}``.
        mined: what ``mine_negatives`` returned with ``range_min=10, range_max=100, sampling_strategy="random"``.
    """
    ex = "03.1"
    answer, bad = _keyed(ex, answer, ["FN rate %", "partner recall"], '{"FN rate %": 0.01, "partner recall": 0.02}')
    if bad is not None:
        return bad
    problem = _settings_problem(
        mined,
        {
            "range_min": 10,
            "range_max": 100,
            "sampling_strategy": "random",
            "one_positive_per_query": False,
            "exclude_known": False,
        },
    )
    if problem:
        return _wrong(
            ex, problem, 'MiningSettings(name="random 10-100", range_min=10, range_max=100, sampling_strategy="random")'
        )
    numbers = _audit_numbers(ds, mined)
    expected = {k: numbers[k] for k in ("FN rate %", "partner recall")}
    bad = _compare_numbers(
        ex,
        answer,
        expected,
        {"FN rate %": 0.001, "partner recall": 0.0005},
        "audit(ds, mined).fn_rate * 100 and excludes1_overlap(ds, mined)['partner recall']",
    )
    if bad is not None:
        return bad
    return _right(
        ex,
        f"random 10-100: FN rate {expected['FN rate %']:.3f}%, Excludes1 partner recall "
        f"{expected['partner recall']:.4f}",
        expected,
    )


def last_character_twins(positive: str, negative: str) -> bool:
    """True when two codes differ only in their last character (``I50.21``/``I50.22``, ``S31.552A``/``S31.552D``)."""
    return len(positive) == len(negative) and positive != negative and positive[:-1] == negative[:-1]


ENCOUNTER_LETTERS = frozenset("ADS")  # initial encounter, subsequent encounter, sequela


def encounter_twins(positive: str, negative: str) -> bool:
    """True when two codes differ only in a 7th-character encounter letter (``S31.552A`` initial encounter vs
    ``S31.552D`` subsequent encounter): the same condition, another visit."""
    return (
        last_character_twins(positive, negative)
        and len(positive.replace(".", "")) == 7
        and {positive[-1], negative[-1]} <= ENCOUNTER_LETTERS
    )


def check_equivalence_rule(answer: Any, mined, rule: Callable[[str, str], bool] = last_character_twins) -> CheckResult:
    """03.3 — how many mined negatives an equivalence rule of your own would flag.

    Args:
        answer: the count over every row of ``mined``.
        mined: the mined negatives (notebook 03's chosen setting).
        rule: ``rule(positive, negative) -> bool``, e.g. :func:`encounter_twins` or :func:`last_character_twins`.
    """
    ex = "03.3"
    name = getattr(rule, "__name__", "the rule")
    expected = sum(bool(rule(r["positive"], n)) for r in mined.rows for n in r["negatives"])
    total = sum(len(r["negatives"]) for r in mined.rows)
    if _number(answer) == expected:
        return _right(
            ex,
            f"{name} flags {expected} of {total} mined negatives ({100 * expected / max(total, 1):.1f}%): read a "
            "few before calling them false negatives; another stage, side or encounter is a lookalike to learn",
            expected,
        )
    return _wrong(
        ex,
        f"{answer!r} is not the number of mined negatives {name} flags",
        "count, over every row r and every n in r['negatives'], rule(r['positive'], n)",
        expected,
    )
