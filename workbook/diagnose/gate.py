"""The decision gate (notebook 02, ``workbook run``): should_fine_tune, its checks with bootstrap CIs, gate_inputs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workbook.evaluate import bootstrap_ci

#: Slices where a fine-tuned model can learn what the base model lacks (notebook 02's "errors cluster" check).
DOMAIN_SLICES = ("lookalike", "abbreviation", "exact-code")


# ------------------------------------------------------------------------------------------------ the decision gate

#: A check's outcome. ``PASS``/``FAIL``: decided (its 95% CI, when measured, lies wholly on one side of the threshold);
#: ``UNDECIDED``: the CI straddles the threshold (the point estimate is kept in ``checks``); ``NOT_MEASURED``: the data
#: cannot measure it (e.g. no query slices), which is not a failure.
PASS, FAIL, UNDECIDED, NOT_MEASURED = "pass", "fail", "too small to decide", "not measured"
GAP_CHECK = "gap remains after the cheap wins"
CLUSTER_CHECK = "errors cluster in domain slices"
_MARK = {PASS: "x", FAIL: " ", UNDECIDED: "?", NOT_MEASURED: "-"}


def pairs_check(min_pairs: int) -> str:
    """The name of the training-pairs check for ``min_pairs``."""
    return f"at least {min_pairs} training pairs"


@dataclass
class FineTuneDecision:
    """The "should you fine-tune?" answer.

    How the verdict is read from the checks (one rule, used by notebook 02 and ``workbook run`` alike):

    - ``checks[name]`` is the point estimate: ``True`` (passes), ``False`` (fails) or ``None`` (not measured: the
      data cannot measure it, e.g. no query slices; that is not a failure).
    - ``status[name]`` adds the uncertainty: ``"pass"``/``"fail"`` when the 95% bootstrap CI lies wholly on one side
      of the threshold (or no per-query values were given), ``"too small to decide"`` when it straddles it.
    - ``go`` is ``True`` when every *measured* check passes on its point estimate.
    - ``verdict``: ``"GO"`` when every measured check passes and is decided; ``"GO (uncertain)"`` when it rests on a
      check too small to decide (an undecided check does not count as passed for a clean GO);
      ``"NO-GO (uncertain)"`` when every failing check is too small to decide (more queries could flip it);
      ``"NO-GO"`` otherwise.
    """

    go: bool
    reasons: list[str]
    checks: dict[str, bool | None] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    #: Per check: ``value``, ``threshold``, ``ci_low``, ``ci_high``, ``queries`` (``None`` where not applicable).
    numbers: dict[str, dict] = field(default_factory=dict)
    #: Per domain slice: queries, the metric, excess error over the overall error, its CI and its outcome.
    slices: pd.DataFrame | None = None
    texts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        for name, ok in self.checks.items():
            self.status.setdefault(name, NOT_MEASURED if ok is None else PASS if ok else FAIL)

    @property
    def failed(self) -> list[str]:
        """Checks whose point estimate fails."""
        return [n for n, ok in self.checks.items() if ok is False]

    @property
    def undecided(self) -> list[str]:
        """Checks whose 95% CI straddles their threshold."""
        return [n for n, s in self.status.items() if s == UNDECIDED]

    @property
    def not_measured(self) -> list[str]:
        """Checks the data could not measure."""
        return [n for n, ok in self.checks.items() if ok is None]

    @property
    def verdict(self) -> str:
        """``GO``, ``GO (uncertain)``, ``NO-GO (uncertain)`` or ``NO-GO`` (see the class docstring)."""
        if self.go:
            return "GO (uncertain)" if self.undecided else "GO"
        return "NO-GO (uncertain)" if all(self.status[n] == UNDECIDED for n in self.failed) else "NO-GO"

    def table(self) -> pd.DataFrame:
        """One row per check: its outcome, value, threshold, 95% CI and queries."""
        rows = {n: {"outcome": self.status[n], **self.numbers.get(n, {})} for n in self.checks}
        frame = pd.DataFrame.from_dict(rows, orient="index")
        frame.index.name = "check"
        return frame

    def to_dict(self) -> dict:
        """JSON-ready: the verdict, each check's point estimate, status and numbers, the reasons and the text."""
        return {"go": self.go, "verdict": self.verdict, "checks": dict(self.checks), "status": dict(self.status),
                "numbers": self.numbers, "reasons": list(self.reasons), "texts": dict(self.texts),
                "slices": None if self.slices is None else self.slices.reset_index().to_dict(orient="records"),
                "text": str(self)}  # fmt: skip

    def __str__(self) -> str:
        verdict = self.verdict
        if verdict == "GO":
            head = "GO: fine-tune"
        elif verdict == "GO (uncertain)":
            head = f"GO (uncertain): fine-tune, but {', '.join(self.undecided)}: too small to decide"
        elif verdict == "NO-GO (uncertain)":
            head = f"NO-GO (uncertain): do not fine-tune yet; {', '.join(self.failed)}: too small to decide"
        else:
            head = "NO-GO: do not fine-tune (yet)"
        if self.not_measured:
            head += f" (not measured: {', '.join(self.not_measured)})"
        lines = [head] + [f"  [{_MARK[self.status[n]]}] {n}" for n in self.checks]
        return "\n".join(lines + [f"  - {r}" for r in self.reasons])


def gate_inputs(
    results: Mapping[str, object], slices: Mapping[str, Iterable[str]] | None = None, metric: str = "recall@10"
) -> dict:
    """The measured arguments of :func:`should_fine_tune` from the cheap methods' per-query results on one split.

    The best cheap method is the one with the highest mean ``metric`` (ties: the first in ``results``' order), the
    same rule notebook 02 and ``workbook run`` use.

    Args:
        results: method name -> a :class:`~workbook.evaluate.RetrievalResult`, or a per-query Series / mapping of
            ``metric`` values (query id -> value), every method over the same queries.
        slices: slice name -> query ids (e.g. :func:`workbook.icd10cm.slice_queries`); ``None`` or empty: no slices.
        metric: the per-query column to read.

    Returns:
        ``best_cheap``, ``best_name``, ``overall``, ``slice_metrics`` (each slice's mean), ``per_query`` (the best
        method's values) and ``slice_queries`` (each slice's query ids among them): pass them on with ``**``.
    """
    per = {}
    for name, res in results.items():
        values = res.per_query[metric] if hasattr(res, "per_query") else pd.Series(res, dtype=float)
        per[name] = values.astype(float).sort_index()
    if not per:
        raise ValueError("no method to pick the best cheap method from")
    names = list(per)
    means = {n: float(per[n].mean()) for n in names}
    best = max(names, key=lambda n: (means[n], -names.index(n)))
    col = per[best]
    known = set(col.index)
    members = {s: sorted(known.intersection(map(str, q))) for s, q in (slices or {}).items()}
    members = {s: q for s, q in members.items() if q}
    return {"best_cheap": means[best], "best_name": best, "overall": means[best],
            "slice_metrics": {s: float(col.loc[q].mean()) for s, q in members.items()}, "per_query": col,
            "slice_queries": members}  # fmt: skip


def _excess_ci(
    values: np.ndarray, members: np.ndarray, n_resamples: int, confidence: float, seed: int, chunk: int = 250
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``mean(values) - mean(values[members])``: all queries resampled together (seeded),
    so the slice's share varies as it would in another sample of queries."""
    rng = np.random.default_rng(seed)
    n = values.size
    out = []
    for start in range(0, n_resamples, chunk):
        idx = rng.integers(0, n, (min(chunk, n_resamples - start), n))
        v, m = values[idx], members[idx]
        count = m.sum(axis=1)
        keep = count > 0
        out.append(v[keep].mean(axis=1) - (v[keep] * m[keep]).sum(axis=1) / count[keep])
    excess = np.concatenate(out)
    alpha = (1 - confidence) / 2
    return float(np.quantile(excess, alpha)), float(np.quantile(excess, 1 - alpha))


def _side(low: float | None, high: float | None, value: float, threshold: float) -> str:
    """Where a measurement lies against a threshold: ``"above"`` (>=), ``"below"`` (<) or :data:`UNDECIDED` when its
    CI straddles the threshold; without a CI the point estimate decides."""
    if low is None or high is None:
        return "above" if value >= threshold else "below"
    return "above" if low >= threshold else "below" if high < threshold else UNDECIDED


def _agree(status: str, point_passes: bool) -> str:
    """A decided status that contradicts its point estimate (a skewed bootstrap) is reported as undecided."""
    return UNDECIDED if (status == PASS and not point_passes) or (status == FAIL and point_passes) else status


def should_fine_tune(
    best_cheap: float | None,
    target: float,
    n_pairs: int,
    slice_metrics: Mapping[str, float] | None = None,
    overall: float | None = None,
    min_pairs: int = 1000,
    margin: float = 0.05,
    domain_slices: Sequence[str] = DOMAIN_SLICES,
    best_name: str = "best cheap method",
    metric: str = "Recall@10",
    per_query: pd.Series | Mapping[str, float] | None = None,
    slice_queries: Mapping[str, Iterable[str]] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> FineTuneDecision:
    """Decide whether fine-tuning is worth it, from measurements, with each check's uncertainty.

    Three checks: a gap remains (``best_cheap < target``), enough training pairs (``n_pairs >= min_pairs``), and
    errors cluster in domain slices (some domain slice's error rate, 1 - metric, is at least ``margin`` above the
    overall error rate). A check the data cannot measure (no metric, no query slices) is *not measured*, not failed;
    with ``per_query`` values each measured check also gets a seeded 95% bootstrap CI, and a CI that straddles the
    threshold makes the check *too small to decide*. :class:`FineTuneDecision` says how these make the verdict.
    :func:`gate_inputs` builds every measured argument from per-query results.

    Args:
        best_cheap: the metric of the best method that needs no training (BM25, hybrid, reranker, bigger model);
            ``None``: not measured.
        target: the metric the application needs.
        n_pairs: (query, relevant doc) training pairs available.
        slice_metrics: slice name -> the best method's metric on that slice (``None`` or empty: no slices).
        overall: the best method's metric over all queries (default: ``best_cheap``).
        min_pairs: fewest pairs worth a fine-tune.
        margin: how much higher a domain slice's error rate must be than the overall one.
        domain_slices: slices that count as domain-specific errors.
        best_name: label of the best method, for the reasons.
        metric: label of the metric, for the reasons.
        per_query: the best method's metric per query (indexed by query id): gives the CIs.
        slice_queries: slice name -> query ids (for the slices' CIs and query counts).
        n_resamples, seed, confidence: the bootstrap's resamples, seed and level.

    Returns:
        A :class:`FineTuneDecision`; ``print`` it for a readable verdict with reasons.
    """
    values = None
    if per_query is not None:
        values = (per_query if isinstance(per_query, pd.Series) else pd.Series(per_query, dtype=float)).astype(float)
        values = values.sort_index()
        if best_cheap is None:
            best_cheap = float(values.mean())
    if overall is None:
        overall = best_cheap if best_cheap is not None else (float(values.mean()) if values is not None else None)
    if values is not None and slice_queries and not slice_metrics:
        slice_metrics = {s: float(values.loc[values.index.intersection(list(q))].mean()) for s, q in
                         slice_queries.items() if len(values.index.intersection(list(q)))}  # fmt: skip
    level = f"{confidence:.0%} CI"
    pairs_name = pairs_check(min_pairs)
    checks: dict[str, bool | None] = {}
    status: dict[str, str] = {}
    numbers: dict[str, dict] = {}
    texts: dict[str, str] = {}

    # -- 1. a gap remains after the cheap wins
    if best_cheap is None:
        checks[GAP_CHECK], status[GAP_CHECK] = None, NOT_MEASURED
        numbers[GAP_CHECK] = {"value": None, "threshold": target, "ci_low": None, "ci_high": None, "queries": None}
        texts[GAP_CHECK] = f"not measured: no {metric} of a cheap method on a selection split (dev)"
    else:
        lo = hi = None
        n = None
        if values is not None:
            n = int(values.size)
            lo, hi = bootstrap_ci(values.to_numpy(), n_resamples=n_resamples, confidence=confidence, seed=seed)
        ok = bool(best_cheap < target)  # a Python bool (numpy inputs give numpy bools, and `is True` matters)
        side = _side(lo, hi, best_cheap, target)
        checks[GAP_CHECK] = ok
        status[GAP_CHECK] = _agree({"above": FAIL, "below": PASS}.get(side, side), ok)
        numbers[GAP_CHECK] = {"value": best_cheap, "threshold": target, "ci_low": lo, "ci_high": hi, "queries": n}
        ci = f" ({level} [{lo:.3f}, {hi:.3f}], {n} queries)" if lo is not None else ""
        if status[GAP_CHECK] == UNDECIDED:
            texts[GAP_CHECK] = (f"too small to decide: {best_name} reaches {metric} {best_cheap:.3f}{ci}, and the "
                                f"CI contains the target {target:.3f}: measure on more queries first")  # fmt: skip
        elif ok:
            texts[GAP_CHECK] = (f"{best_name} reaches {metric} {best_cheap:.3f}{ci} < target {target:.3f}: "
                                f"a gap of {target - best_cheap:.3f} remains")  # fmt: skip
        else:
            texts[GAP_CHECK] = (f"{best_name} already reaches {metric} {best_cheap:.3f}{ci} >= target {target:.3f}: "
                                "ship it, no fine-tune")  # fmt: skip

    # -- 2. enough training pairs (a count: no uncertainty)
    checks[pairs_name] = bool(n_pairs >= min_pairs)
    status[pairs_name] = PASS if checks[pairs_name] else FAIL
    numbers[pairs_name] = {"value": n_pairs, "threshold": min_pairs, "ci_low": None, "ci_high": None, "queries": None}
    texts[pairs_name] = (
        f"{n_pairs} training pairs >= {min_pairs}"
        if checks[pairs_name]
        else f"only {n_pairs} training pairs < {min_pairs}: label or generate more first (notebook 04)"
    )

    # -- 3. errors cluster in domain slices
    measured = {s: float(v) for s, v in (slice_metrics or {}).items() if v == v}  # NaN: an empty slice
    present = [s for s in domain_slices if s in measured]
    slice_table = None
    if not measured or overall is None:
        checks[CLUSTER_CHECK], status[CLUSTER_CHECK] = None, NOT_MEASURED
        texts[CLUSTER_CHECK] = "not measured: no query slices in this dataset"
    elif not present:
        checks[CLUSTER_CHECK], status[CLUSTER_CHECK] = None, NOT_MEASURED
        texts[CLUSTER_CHECK] = (f"not measured: none of the domain slices ({', '.join(domain_slices)}) is among this "
                                f"dataset's slices ({', '.join(sorted(measured))})")  # fmt: skip
    else:
        overall_err = 1.0 - overall
        rows = {}
        for s in present:
            excess = (1.0 - measured[s]) - overall_err
            lo = hi = n = None
            if slice_queries is not None and s in slice_queries:
                qids = set(map(str, slice_queries[s]))
                if values is not None:
                    mask = values.index.isin(list(qids))
                    n = int(mask.sum())
                    if n >= 2:
                        lo, hi = _excess_ci(values.to_numpy(), mask, n_resamples, confidence, seed)
                else:
                    n = len(qids)
            side = _side(lo, hi, excess, margin)
            if values is not None and n is not None and n < 2:
                side = UNDECIDED  # one query cannot tell a cluster from chance
            outcome = _agree({"above": PASS, "below": FAIL}.get(side, side), excess >= margin)
            rows[s] = {"queries": n, metric: measured[s], "excess error": excess, "ci_low": lo, "ci_high": hi,
                       "outcome": outcome}  # fmt: skip
        slice_table = pd.DataFrame.from_dict(rows, orient="index")
        slice_table.index.name = "slice"
        clustered = {s: r["excess error"] for s, r in rows.items() if r["excess error"] >= margin}
        ok = bool(clustered)
        outcomes = [r["outcome"] for r in rows.values()]
        decided = _agree(PASS if PASS in outcomes else FAIL if all(o == FAIL for o in outcomes) else UNDECIDED, ok)
        checks[CLUSTER_CHECK], status[CLUSTER_CHECK] = ok, decided
        best_slice = max(rows, key=lambda s: (rows[s]["excess error"], -present.index(s)))
        r = rows[best_slice]
        numbers[CLUSTER_CHECK] = {"value": r["excess error"], "threshold": margin, "ci_low": r["ci_low"],
                                  "ci_high": r["ci_high"], "queries": r["queries"]}  # fmt: skip

        def describe(s: str) -> str:
            r = rows[s]
            ci = f", {level} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]" if r["ci_low"] is not None else ""
            n = f", {r['queries']} quer{'y' if r['queries'] == 1 else 'ies'}" if r["queries"] is not None else ""
            return f"{s} (error {r['excess error']:+.3f}{ci}{n})"

        if decided == UNDECIDED:
            straddle = [s for s in present if rows[s]["outcome"] == UNDECIDED]
            point = "errors cluster" if ok else "no domain slice clusters errors"
            lead = (f"{point} on the point estimates, but the {level} of the excess error straddles the margin "
                    f"{margin:.2f} in {', '.join(straddle)}")  # fmt: skip
            where = "that slice" if len(straddle) == 1 else "those slices"
            texts[CLUSTER_CHECK] = (f"too small to decide: {lead} (overall error {overall_err:.3f}): "
                                    f"{', '.join(describe(s) for s in present)}; more queries in {where} would "
                                    "settle it")  # fmt: skip
        elif ok:
            where = ", ".join(describe(s) for s in sorted(clustered, key=lambda x: -clustered[x]))
            texts[CLUSTER_CHECK] = f"errors cluster in domain slices vs overall error {overall_err:.3f}: {where}"
        else:
            if any(r["ci_low"] is not None or r["queries"] is not None for r in rows.values()):
                shown = ", ".join(describe(s) for s in present)
            else:
                shown = ", ".join(f"{s} {rows[s]['excess error']:+.3f}" for s in present)
            texts[CLUSTER_CHECK] = (
                f"errors do not cluster in domain slices (no domain slice's error rate is {margin:.2f} above the "
                f"overall {overall_err:.3f}: {shown}): look at data quality, query wording or chunking first"
            )
    if CLUSTER_CHECK not in numbers:
        numbers[CLUSTER_CHECK] = {"value": None, "threshold": margin, "ci_low": None, "ci_high": None, "queries": None}

    order = [GAP_CHECK, pairs_name, CLUSTER_CHECK]
    checks = {k: checks[k] for k in order}
    go = all(ok for ok in checks.values() if ok is not None)
    if go:
        reasons = [texts[k] for k in order]
    else:
        reasons = [texts[k] for k in order if checks[k] is False]
        reasons += [texts[k] for k in order if checks[k] is not False and status[k] in (UNDECIDED, NOT_MEASURED)]
    return FineTuneDecision(go=go, reasons=reasons, checks=checks, status={k: status[k] for k in order},
                            numbers={k: numbers[k] for k in order}, slices=slice_table, texts=texts)  # fmt: skip
