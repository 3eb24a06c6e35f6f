"""Checks for the notebooks' exercises: each says whether a learner's answer is right, and if not, where to look.

Every check recomputes the right answer from the data, rankings or models it is given (never from a stored
number, so it holds in fast and in full mode), compares it with the answer, with a tolerance where measurement
noise exists, and returns a :class:`CheckResult` that prints a verdict and, when the answer is wrong, a hint.
Worked solutions live in ``notebooks/solutions/``; :data:`EXERCISES` maps each exercise ("01.2") to its check.

    from workbook import exercises as ex
    ex.check_lookalike_groups(my_groups, ds, code="I50.21")

One module per notebook, all re-exported here:

- ``_common``: :class:`CheckResult` and the helpers every check shares
- ``nb00_setup_check``: 00.1-00.3
- ``nb01_diagnose_mismatch``: 01.1-01.4
- ``nb02_baseline``: 02.1-02.4
- ``nb03_hard_negatives``: 03.1-03.3 (and the equivalence rules)
- ``nb04_synthetic_data``: 04.1-04.4
- ``nb05_fine_tune``: 05.1-05.4
- ``nb06_evaluate``: 06.1-06.4
- ``nb07_deploy``: 07.1-07.3
- ``nb08_scale_out``: 08.1-08.2
"""

from __future__ import annotations

from collections.abc import Callable

from workbook.exercises._common import CheckResult
from workbook.exercises.nb00_setup_check import check_colloquial_recall, check_lookalike_groups, check_unseen_codes
from workbook.exercises.nb01_diagnose_mismatch import (
    check_code_fragmentation,
    check_confusion_by_kind,
    check_gate_margin,
    check_score_table,
)
from workbook.exercises.nb02_baseline import check_bm25_params, check_gate_flip, check_rerank_depth, check_rrf_constant
from workbook.exercises.nb03_hard_negatives import (
    ENCOUNTER_LETTERS,
    check_equivalence_rule,
    check_random_window,
    check_reranker_margin,
    encounter_twins,
    last_character_twins,
)
from workbook.exercises.nb04_synthetic_data import (
    check_contradicting_labels,
    check_endpoint_filters,
    check_round_trip_k,
    check_round_trip_retention,
    round_trip_retention,
)
from workbook.exercises.nb05_fine_tune import (
    check_batch_sampler,
    check_both_sources,
    check_hard_negative_lift,
    check_lora_rank,
)
from workbook.exercises.nb06_evaluate import (
    check_ci_width,
    check_hybrid_after_tuning,
    check_merge_crossing,
    check_worst_siblings,
    merge_crossing,
)
from workbook.exercises.nb07_deploy import check_gate_limits, check_reembed_cost, check_third_version
from workbook.exercises.nb08_scale_out import check_actor_ratio, check_capacity_plan

# ================================================================================================ index

#: Exercise id ("<notebook>.<number>") -> its check.
EXERCISES: dict[str, Callable[..., CheckResult]] = {
    "00.1": check_lookalike_groups,
    "00.2": check_colloquial_recall,
    "00.3": check_unseen_codes,
    "01.1": check_score_table,
    "01.2": check_confusion_by_kind,
    "01.3": check_code_fragmentation,
    "01.4": check_gate_margin,
    "02.1": check_rrf_constant,
    "02.2": check_bm25_params,
    "02.3": check_rerank_depth,
    "02.4": check_gate_flip,
    "03.1": check_random_window,
    "03.2": check_reranker_margin,
    "03.3": check_equivalence_rule,
    "04.1": check_round_trip_retention,
    "04.2": check_endpoint_filters,
    "04.3": check_round_trip_k,
    "04.4": check_contradicting_labels,
    "05.1": check_hard_negative_lift,
    "05.2": check_batch_sampler,
    "05.3": check_lora_rank,
    "05.4": check_both_sources,
    "06.1": check_hybrid_after_tuning,
    "06.2": check_ci_width,
    "06.3": check_merge_crossing,
    "06.4": check_worst_siblings,
    "07.1": check_gate_limits,
    "07.2": check_third_version,
    "07.3": check_reembed_cost,
    "08.1": check_actor_ratio,
    "08.2": check_capacity_plan,
}


def check(exercise: str, answer, objects: Callable[[], tuple] | None = None) -> CheckResult:
    """Check ``answer`` to ``exercise`` ("05.1") with its check, once there is an answer.

    The answer cells under each notebook's exercises call this: it runs before the learner has answered (``answer``
    is ``None``: "no answer yet", and the check's signature as the hint), and ``objects`` is a function returning the
    objects the check needs besides the answer, called only once there is an answer (so a cell that names objects
    the learner has yet to build still runs).

    Args:
        exercise: an id of :data:`EXERCISES`.
        answer: the learner's answer (``None``: not answered yet).
        objects: ``lambda: (obj1, obj2, ...)``, the check's arguments after the answer, in order.
    """
    import inspect
    import re

    if exercise not in EXERCISES:
        raise KeyError(f"unknown exercise {exercise!r}; known: {sorted(EXERCISES)}")
    fn = EXERCISES[exercise]
    if answer is None:
        required = [n for n, p in inspect.signature(fn).parameters.items() if p.default is inspect.Parameter.empty]
        params = ", ".join(required[1:])
        summary = " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split()).split(" — ", 1)[-1].replace("``", "`")
        summary = re.sub(r":\w+:`", "`", summary)
        return CheckResult(exercise, False, f"no answer yet ({summary})",
                           f"set `answer`, then this cell calls ex.{fn.__name__}(answer, {params})")  # fmt: skip
    return fn(answer, *(objects() if objects is not None else ()))


def exercises_of(notebook: str) -> dict[str, Callable[..., CheckResult]]:
    """The checks of one notebook (``"01"`` or ``"01_diagnose_mismatch"``), by exercise id."""
    prefix = notebook[:2]
    return {k: v for k, v in EXERCISES.items() if k.startswith(prefix + ".")}


__all__ = [
    "ENCOUNTER_LETTERS",
    "check",
    "EXERCISES",
    "CheckResult",
    "check_actor_ratio",
    "check_batch_sampler",
    "check_bm25_params",
    "check_both_sources",
    "check_capacity_plan",
    "check_ci_width",
    "check_code_fragmentation",
    "check_colloquial_recall",
    "check_confusion_by_kind",
    "check_contradicting_labels",
    "check_endpoint_filters",
    "check_equivalence_rule",
    "check_gate_flip",
    "check_gate_limits",
    "check_gate_margin",
    "check_hard_negative_lift",
    "check_hybrid_after_tuning",
    "check_lookalike_groups",
    "check_lora_rank",
    "check_merge_crossing",
    "check_random_window",
    "check_reembed_cost",
    "check_rerank_depth",
    "check_reranker_margin",
    "check_round_trip_k",
    "check_round_trip_retention",
    "check_rrf_constant",
    "check_score_table",
    "check_third_version",
    "check_unseen_codes",
    "check_worst_siblings",
    "encounter_twins",
    "exercises_of",
    "last_character_twins",
    "merge_crossing",
    "round_trip_retention",
]
