"""Shared machinery of the exercise checks: the verdict type, right/not-yet results with hints, number helpers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbook.evaluate import evaluate_ranking


@dataclass(frozen=True, repr=False)
class CheckResult:
    """The verdict on one answer: ``passed``, what was found (``message``), a ``hint`` when wrong.

    ``expected`` keeps the reference value the check computed (for instructors; the printed verdict does not give it
    away when the answer is wrong). ``bool(result)`` is ``passed``.
    """

    exercise: str
    passed: bool
    message: str
    hint: str = ""
    expected: Any = field(default=None, compare=False)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        head = f"Exercise {self.exercise}: {'RIGHT' if self.passed else 'NOT YET'}"
        lines = [head, f"  {self.message}"]
        if not self.passed and self.hint:
            lines.append(f"  Hint: {self.hint}")
        return "\n".join(lines)

    __repr__ = __str__


def _right(exercise: str, message: str, expected: Any = None) -> CheckResult:
    return CheckResult(exercise, True, message, expected=expected)


def _wrong(exercise: str, message: str, hint: str, expected: Any = None) -> CheckResult:
    return CheckResult(exercise, False, message, hint, expected=expected)


def _number(value: Any) -> float | None:
    """``value`` as a float (numpy and pandas scalars included), or None when it is not a number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _close(answer: Any, expected: float, tol: float) -> bool:
    value = _number(answer)
    return value is not None and abs(value - expected) <= tol


def _fmt(value: Any, digits: int = 4) -> str:
    number = _number(value)
    return repr(value) if number is None else f"{number:.{digits}f}"


def _keyed(exercise: str, answer: Any, keys: Sequence[str], example: str) -> tuple[dict | None, CheckResult | None]:
    """The answer as a dict holding every key of ``keys``, or a failed result saying what shape was expected."""
    if not isinstance(answer, Mapping) and hasattr(answer, "to_dict"):
        answer = answer.to_dict()
    if not isinstance(answer, Mapping):
        return None, _wrong(exercise, f"expected a dict, got {type(answer).__name__}", f"answer like {example}")
    missing = [k for k in keys if k not in answer]
    if missing:
        return None, _wrong(exercise, f"the answer lacks {missing}", f"answer like {example}")
    return dict(answer), None


def _compare_numbers(
    exercise: str, answer: Mapping, expected: Mapping[str, float], tol: Mapping[str, float] | float, hint: str
) -> CheckResult | None:
    """A failed result naming every key whose number is off, or None when all are within tolerance."""
    off = []
    for key, value in expected.items():
        t = tol if isinstance(tol, float | int) else tol[key]
        if not _close(answer[key], value, t):
            off.append(f"{key} = {_fmt(answer[key])}")
    if off:
        return _wrong(exercise, f"not what the data gives: {', '.join(off)}", hint, expected=dict(expected))
    return None


def _recall_at(ranked: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], k: int = 10) -> float:
    return evaluate_ranking(ranked, qrels, [f"recall@{k}"])[f"recall@{k}"]


def _passing(answer: Any) -> set[str] | None:
    """The names of the checks an answer says pass: a FineTuneDecision, a {name: bool} dict or a list of names
    (a check that was not measured, ``None``, does not pass)."""
    if hasattr(answer, "checks"):
        answer = answer.checks
    if isinstance(answer, Mapping):
        return {str(k) for k, v in answer.items() if v}
    if isinstance(answer, str):
        return {answer}
    try:
        return {str(a) for a in answer}
    except TypeError:
        return None
