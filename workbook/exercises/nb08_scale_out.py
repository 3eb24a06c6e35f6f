"""Checks for notebook 08 (08_scale_out): actors on one machine, a capacity plan."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from workbook.exercises._common import CheckResult, _close, _fmt, _keyed, _number, _right, _wrong


def check_actor_ratio(answer: Any, one_actor, two_actors) -> CheckResult:
    """08.1 — the Ray job's docs/s with two actors divided by its docs/s with one, on this machine.

    Args:
        answer: the ratio (above 1: two actors were faster).
        one_actor, two_actors: the :class:`workbook.deploy.JobReport` of each run (same documents and batch size).
    """
    ex = "08.1"
    if one_actor.docs_this_run != two_actors.docs_this_run or one_actor.batch_size != two_actors.batch_size:
        return _wrong(ex, "the two runs embedded different documents or batch sizes",
                      "run both on the same ids, texts and BATCH; only actors= changes")  # fmt: skip
    expected = two_actors.docs_per_s / one_actor.docs_per_s
    if _close(answer, expected, 0.02 * expected):
        verdict = "more actors helped" if expected > 1 else "on these cores a second actor costs more than it gives"
        return _right(ex, f"{two_actors.docs_per_s:.1f} / {one_actor.docs_per_s:.1f} docs/s = {expected:.2f}: "
                          f"{verdict}", expected)  # fmt: skip
    return _wrong(ex, f"{_fmt(answer, 2)} is not the ratio of these two runs", "two_actors.docs_per_s / "
                  "one_actor.docs_per_s (JobReport.docs_per_s counts encode, upsert and checkpoint time)", expected)


def check_capacity_plan(
    answer: Mapping, job, n_docs: int = 10_000_000, hours: float = 1.0, price_per_hour: float = 0.10
) -> CheckResult:
    """08.2 — how many machines like this one re-embed ``n_docs`` in ``hours`` at ``job``'s rate, and the cost.

    Args:
        answer: ``{"machines": int, "cost": float}`` (cost: all machines for ``hours`` at ``price_per_hour``).
        job: the Ray job's :class:`workbook.deploy.JobReport` (its docs/s is one machine's rate).
    """
    ex = "08.2"
    answer, bad = _keyed(ex, answer, ["machines", "cost"], '{"machines": 50, "cost": 5.0}')
    if bad is not None:
        return bad
    machines = math.ceil(n_docs / (job.docs_per_s * 3600 * hours))
    cost = machines * hours * price_per_hour
    expected = {"machines": machines, "cost": cost}
    if _number(answer["machines"]) == machines and _close(answer["cost"], cost, 0.01 * cost):
        return _right(ex, f"{job.docs_per_s:.1f} docs/s a machine -> {machines:,} machines for {hours:g} h, "
                          f"{cost:.2f} at {price_per_hour}/h", expected)  # fmt: skip
    return _wrong(ex, "not the plan this job's rate gives",
                  "machines = ceil(n_docs / (job.docs_per_s * 3600 * hours)) (round up: a part of a machine is a "
                  "machine), cost = machines * hours * price_per_hour", expected)  # fmt: skip
