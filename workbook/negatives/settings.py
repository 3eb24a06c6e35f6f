"""Hard-negative mining settings, the training-label rule, and the (query, positive) pairs to mine."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from workbook.data import Dataset, equivalence_key

#: Audit categories, in the order they are checked (a negative is counted once, under its first category).
FN_KINDS = ("judged", "same wording", "same description", "query names it")
#: The judgements training-side code may read: the training split's (see the module docstring).
TRAIN_LABELS = ("train",)


class MiningError(ValueError):
    """Bad mining input: a query without positives or a positive missing from the corpus (ids named)."""


#: The near-identity key of descriptions and queries: :func:`workbook.data.equivalence_key` (the project's one key
#: for "the same wording", also used by the leakage checks), under the name the audit's lesson uses.
description_key = equivalence_key


# ------------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class MiningSettings:
    """The miner's knobs (names as in ``sentence_transformers.util.mine_hard_negatives``).

    Attributes:
        name: a label for tables and plots.
        num_negatives: negatives per (query, positive) row.
        range_min: skip this many top-ranked candidates (the rank window's start).
        range_max: consider candidates up to this rank.
        absolute_margin: drop candidates scoring above ``positive - absolute_margin``.
        relative_margin: drop candidates scoring above ``positive - |positive| * relative_margin``.
        sampling_strategy: ``"top"`` (the hardest that pass) or ``"random"`` (sampled from those that pass).
        exclude_known: also drop every known false negative (see :func:`known_equivalents`), refilling from the
            window: a label-based filter, possible only where the data knows its equivalents.
        one_positive_per_query: pass only each query's first relevant doc (the mistake the audit catches).
    """

    name: str = "default"
    num_negatives: int = 5
    range_min: int = 0
    range_max: int = 50
    absolute_margin: float | None = None
    relative_margin: float | None = None
    sampling_strategy: str = "top"
    exclude_known: bool = False
    one_positive_per_query: bool = False

    def miner_kwargs(self) -> dict:
        """Arguments for ``mine_hard_negatives`` (asks for spare candidates when known ones will be dropped)."""
        window = self.range_max - self.range_min
        wanted = min(window, 2 * self.num_negatives) if self.exclude_known else self.num_negatives
        return {
            "range_min": self.range_min,
            "range_max": self.range_max,
            "absolute_margin": self.absolute_margin,
            "relative_margin": self.relative_margin,
            "num_negatives": wanted,
            "sampling_strategy": self.sampling_strategy,
        }


#: The label-free default picked in notebook 03 (full mode) from the audited trade-off by :func:`pick_setting`.
DEFAULT_SETTINGS = MiningSettings(name="window 10-60", num_negatives=5, range_min=10, range_max=60)
#: What notebook 03 saves for fine-tuning: the default plus the label-based filter of known false negatives.
TRAINING_SETTINGS = MiningSettings(
    name=f"{DEFAULT_SETTINGS.name} + exclude known", num_negatives=5, range_min=10, range_max=60, exclude_known=True
)


# ------------------------------------------------------------------------------------------------ input pairs


@dataclass(frozen=True)
class Skip:
    """A query left out of mining, and why."""

    query_id: str
    reason: str


def training_pairs(
    ds: Dataset, split: str = "train", query_ids: Iterable[str] | None = None, on_bad: str = "raise", first_only=False
) -> tuple[list[tuple[str, str]], list[Skip]]:
    """The (query id, relevant doc id) pairs of ``split`` to mine for, sorted, after checking them.

    Args:
        ds: the dataset.
        split: the qrels split.
        query_ids: restrict to these queries (each must be judged in ``split``).
        on_bad: ``"raise"`` a :class:`MiningError` naming every bad query/doc id, or ``"skip"`` them (reported).
        first_only: keep only each query's first relevant doc (sorted ids).

    Returns:
        The pairs and the skipped queries.
    """
    if on_bad not in {"raise", "skip"}:
        raise ValueError(f"on_bad must be 'raise' or 'skip', got {on_bad!r}")
    if split not in ds.qrels:
        raise MiningError(f"{ds.name}: no split {split!r}; splits are {ds.splits}")
    judged = ds.qrels[split]
    qids = sorted(judged) if query_ids is None else sorted(set(query_ids))
    pairs: list[tuple[str, str]] = []
    problems: list[Skip] = []
    for qid in qids:
        if qid not in judged:
            problems.append(Skip(qid, f"query {qid!r} is not judged in split {split!r}"))
            continue
        if qid not in ds.queries or not ds.queries[qid].strip():
            problems.append(Skip(qid, f"query {qid!r} has no text in queries"))
            continue
        positives = sorted(d for d, s in judged[qid].items() if s > 0)
        if not positives:
            problems.append(Skip(qid, f"query {qid!r} has no positive (relevance > 0) in split {split!r}"))
            continue
        missing = [d for d in positives if d not in ds.corpus]
        if missing:
            problems.append(Skip(qid, f"query {qid!r}: positive doc(s) {missing} not in the corpus"))
            continue
        pairs += [(qid, d) for d in (positives[:1] if first_only else positives)]
    if problems and on_bad == "raise":
        shown = "\n".join(f"  - {p.reason}" for p in problems[:25])
        more = f"\n  ... and {len(problems) - 25} more" if len(problems) > 25 else ""
        raise MiningError(f"{len(problems)} bad quer(y/ies) for mining in {ds.name}:\n{shown}{more}")
    if not pairs:
        raise MiningError(f"{ds.name}: nothing to mine in split {split!r} ({len(problems)} quer(y/ies) skipped)")
    return pairs, problems
