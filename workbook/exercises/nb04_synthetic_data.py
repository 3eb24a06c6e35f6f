"""Checks for notebook 04 (04_synthetic_data): round-trip retention, endpoint filters, round-trip k, label clashes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from workbook.data import Dataset, equivalence_key
from workbook.exercises._common import (
    CheckResult,
    _compare_numbers,
    _keyed,
    _number,
    _right,
    _wrong,
)
from workbook.synth import FILTERS, FilterSettings, apply_filters, filter_report


def round_trip_retention(filtered: pd.DataFrame) -> float:
    """Of the candidates that reach the round trip (not dropped by an earlier filter), the % that pass it."""
    reached = filtered["dropped_by"].isin(["", "round-trip", "leakage"])
    passed = reached & (filtered["dropped_by"] != "round-trip")
    return 100.0 * passed.sum() / reached.sum() if reached.sum() else float("nan")


def check_round_trip_retention(
    answer: Mapping, candidates: Mapping[str, pd.DataFrame], ds: Dataset, round_trip, settings=None
) -> CheckResult:
    """04.1 — round-trip retention (%) of each prompt's candidates, the filters re-run here.

    Args:
        answer: prompt name -> retention % (the share of the candidates reaching the round trip that pass it).
        candidates: the same names -> ``GenerationRun.candidates()``.
        ds: the case study; ``round_trip``: the :class:`workbook.synth.RoundTrip` used; ``settings``: the filters'.
    """
    ex = "04.1"
    names = list(candidates)
    answer, bad = _keyed(ex, answer, names, "{" + ", ".join(f'"{n}": 60.0' for n in names) + "}")
    if bad is not None:
        return bad
    expected = {n: round_trip_retention(apply_filters(c, ds, round_trip, settings)) for n, c in candidates.items()}
    bad = _compare_numbers(
        ex,
        answer,
        expected,
        0.1,
        "filter each prompt's candidates with apply_filters; retention = 100 * (reached - dropped "
        "by round-trip) / reached, where reached = not dropped by format, copy, duplicate or "
        "overlap",
    )
    if bad is not None:
        return bad
    shown = ", ".join(f"{n} {v:.1f}%" for n, v in expected.items())
    return _right(ex, f"round-trip retention: {shown}", expected)


def check_endpoint_filters(answer: Any, filtered: Mapping[str, pd.DataFrame]) -> CheckResult:
    """04.2 — which filters drop a smaller share of their input for the endpoint's queries than for the local model's.

    Args:
        answer: the filter names (a list or set; an empty list when none does).
        filtered: two generators' ``apply_filters`` results, the local baseline first and the endpoint second
            (e.g. ``{"local gemma": ..., "endpoint": ...}``), filtered with the same settings.
    """
    ex = "04.2"
    if not isinstance(filtered, Mapping) or len(filtered) != 2:
        return _wrong(
            ex,
            "expected two filtered candidate sets: the local baseline first, the endpoint second",
            '{"local": apply_filters(local.candidates(), ...), "endpoint": apply_filters(remote.candidates(), ...)}',
        )
    (base_name, base), (new_name, new) = filtered.items()
    shares = {}
    for name, frame in ((base_name, base), (new_name, new)):
        report = filter_report(frame)
        shares[name] = (report["dropped"] / report["in"].where(report["in"] > 0)).fillna(0.0)
    expected = sorted(f for f in FILTERS if shares[new_name][f] < shares[base_name][f] - 1e-12)
    if isinstance(answer, str) or not isinstance(answer, Iterable):
        return _wrong(
            ex, f"{answer!r} is not a list of filter names", f"a list of names from {list(FILTERS)}", expected
        )
    got = sorted(set(answer))
    unknown = [f for f in got if f not in FILTERS]
    if unknown:
        return _wrong(ex, f"not filter names: {unknown}", f"the filters are {list(FILTERS)}", expected)
    if got == expected:
        shown = ", ".join(
            f"{f} {100 * shares[base_name][f]:.1f}% -> {100 * shares[new_name][f]:.1f}%" for f in expected
        )
        return _right(ex, f"{new_name} drops less at: {shown or 'no filter'}", expected)
    return _wrong(
        ex,
        "not the filters that drop less",
        "compare filter_report(...)['dropped'] / ['in'] per filter: each filter's share of what reached it",
        expected,
    )


def check_round_trip_k(answer: Mapping, candidates: pd.DataFrame, ds: Dataset, round_trip) -> CheckResult:
    """04.3 — the kept set of the cached candidates with a stricter round trip (``round_trip.k``, e.g. 5).

    Args:
        answer: ``{"kept": n, "mean overlap": x, "% colloquial": y}`` of the queries every filter keeps.
        candidates: the candidates filtered (``load_synthetic_candidates`` rows of this mode's corpus:
            ``doc_id``, ``query``).
        round_trip: the ``RoundTrip`` with the stricter ``k``.
    """
    ex = "04.3"
    answer, bad = _keyed(
        ex,
        answer,
        ["kept", "mean overlap", "% colloquial"],
        '{"kept": 500, "mean overlap": 0.44, "% colloquial": 16.5}',
    )
    if bad is not None:
        return bad
    k = round_trip.k
    filtered = apply_filters(candidates[["doc_id", "query"]], ds, round_trip, FilterSettings(round_trip_k=k))
    kept = filtered[filtered["kept"]]
    expected = {
        "kept": float(len(kept)),
        "mean overlap": float(kept["overlap"].mean()),
        "% colloquial": float(100 * (kept["overlap"] < 0.25).mean()),
    }
    bad = _compare_numbers(
        ex,
        answer,
        expected,
        {"kept": 0.5, "mean overlap": 0.001, "% colloquial": 0.1},
        f"apply_filters(candidates, ds, RoundTrip(ds, model, k={k}, ...), FilterSettings("
        f"round_trip_k={k})), then profile the kept rows (overlap < 0.25 is colloquial)",
    )
    if bad is not None:
        return bad
    return _right(
        ex,
        f"round trip top {k}: {int(expected['kept'])} kept, mean overlap "
        f"{expected['mean overlap']:.3f}, {expected['% colloquial']:.1f}% colloquial",
        expected,
    )


def check_contradicting_labels(answer: Any, pairs: Sequence[tuple[str, str]], ds: Dataset) -> CheckResult:
    """04.4 — synthetic (query, doc) pairs whose query (same wording) is a real train query judged on other codes.

    Args:
        answer: the number of such pairs.
        pairs: the synthetic pairs (``load_synthetic_pairs(cfg, ds)``).
        ds: the case study (its ``train`` split).
    """
    ex = "04.4"
    judged: dict[str, set[str]] = {}
    for qid, docs in ds.qrels.get("train", {}).items():
        judged.setdefault(equivalence_key(ds.queries[qid]), set()).update(d for d, s in docs.items() if s > 0)
    hits = [(q, d) for q, d in pairs if equivalence_key(q) in judged and d not in judged[equivalence_key(q)]]
    expected = len(hits)
    same = sum(1 for q, d in pairs if d in judged.get(equivalence_key(q), set()))
    if _number(answer) == expected:
        return _right(
            ex,
            f"{expected} of {len(pairs)} synthetic pairs contradict a real training label "
            f"({same} more repeat a real query on its own code)",
            expected,
        )
    return _wrong(
        ex,
        f"{answer!r} is not the number of contradicting pairs",
        "key both sides with workbook.data.equivalence_key; a pair contradicts when its query equals "
        "a train query and its doc is not among that query's relevant codes",
        expected,
    )
