"""The lookalike filter: a synthetic query whose distinguishing words point to a lookalike of its source document is
relabelled to that lookalike, or dropped when they point nowhere clear.

The round-trip filter asks the *base* model whether the source is in its top k, and the base model cannot tell
"left" from "right" (the lookalike collapse the course is about), so "Malignant neoplasm of right conjunctiva"
generated for C69.02 (left conjunctiva) passes it and trains the model toward the sibling. This filter looks only at
the words that tell a document's lookalikes apart, which BM25-style word matching sees exactly:

1. The **members**: the source, its lookalike siblings (the dataset's ``lookalikes.jsonl`` groups), and its
   *counterparts* (documents whose words differ from the source's only in attribute words, such as C69.01 for
   C69.02: found without any group, from the texts alone).
2. The **distinguishing words**: those some members have and others lack, plus the attribute words the query names.
3. The query's distinguishing words are counted in each member. The source stays when it has the most (ties
   included: the query does not point away from it). When one other member has strictly the most, the query is
   **relabelled** to it; when several tie above the source, it is **dropped** (it points to siblings, not to one).
4. With an attribute vocabulary (the case study's: side, diabetes type, acuity, encounter), a query that still names
   a value its document does not state, of an attribute that tells the members apart (a "left" query for a "right"
   document with no "left" counterpart, or for an "unspecified knee" whose siblings are the left and right knee), is
   dropped.

Every rule reads document texts and the lookalike groups (structure), never the qrels. It runs as the ``lookalike``
stage of :func:`workbook.synth.apply_filters` (``lookalikes=``), after the round trip.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from workbook.data import Dataset
from workbook.diagnose.collapse import sibling_map

_TOKEN = re.compile(r"\b\w+\b")
_TYPE = re.compile(r"\btype\s+([12])\b")


def words(text: str) -> frozenset[str]:
    """Lower-cased word tokens; "type 1" and "type 2" become one token each (``type_1``), so a digit elsewhere is
    not a diabetes type."""
    text = _TYPE.sub(r"type_\1", text.lower())
    return frozenset(_TOKEN.findall(text))


@dataclass(frozen=True)
class Verdict:
    """What :meth:`LookalikeCheck.check` decided for one query."""

    action: str  # "keep", "relabel" or "drop"
    doc_id: str  # the document the query is kept for (the source, or the lookalike it points to)
    why: str = ""


@dataclass
class LookalikeCheck:
    """Checks synthetic queries against their source's lookalikes (module docstring).

    Args:
        ds: the corpus.
        groups: lookalike groups (dicts with ``codes``); default ``ds.extras["lookalikes"]``.
        attributes: attribute name -> the words that are its values (e.g. ``{"side": {"left", "right", ...}}``);
            empty for a dataset that has none (then only the groups and word differences count).
    """

    ds: Dataset
    groups: Sequence[Mapping] | None = None
    attributes: Mapping[str, Iterable[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        groups = self.ds.extras.get("lookalikes", []) if self.groups is None else self.groups
        self.siblings = sibling_map(groups)
        self.families = {name: frozenset(values) for name, values in self.attributes.items()}
        self.attribute_words = frozenset().union(*self.families.values()) if self.families else frozenset()
        self._words = {d: words(self.ds.corpus[d]["text"]) for d in self.ds.doc_ids()}
        by_rest: dict[frozenset[str], list[str]] = defaultdict(list)
        if self.attribute_words:
            for d, w in self._words.items():
                if w & self.attribute_words:
                    by_rest[w - self.attribute_words].append(d)
        self._counterparts = {d: ds_ for ds_ in by_rest.values() if len(ds_) > 1 for d in ds_}

    def members(self, doc_id: str) -> list[str]:
        """The source first, then its siblings and counterparts, sorted."""
        others = set(self.siblings.get(doc_id, ())) | set(self._counterparts.get(doc_id, ()))
        return [doc_id, *sorted(others - {doc_id})]

    def check(self, query: str, doc_id: str) -> Verdict:
        """Keep, relabel or drop one (query, source document) pair."""
        q = words(query)
        members = self.members(doc_id)
        target = doc_id
        if len(members) > 1:
            sets = [self._words[m] for m in members]
            distinguishing = frozenset().union(*sets) - frozenset.intersection(*sets)
            named = q & (distinguishing | self.attribute_words)
            if named:
                score = {m: len(named & self._words[m]) for m in members}
                best = max(score.values())
                top = [m for m in members if score[m] == best]
                if doc_id not in top:
                    if len(top) > 1:
                        return Verdict("drop", doc_id, f"points to {', '.join(top[:3])}")
                    target = top[0]
        for family, values in self.families.items():
            asked, stated = q & values, self._words[target] & values
            told_apart = stated or any(self._words[m] & values for m in members)  # the family matters here
            if asked and told_apart and not asked <= stated:
                value = "/".join(sorted(asked - stated)).replace("_", " ")
                return Verdict("drop", doc_id, f"names {family} '{value}', not in {target}")
        if target != doc_id:
            return Verdict("relabel", target, f"{doc_id} -> {target}")
        return Verdict("keep", doc_id)


def attribute_mismatch(frame: pd.DataFrame, ds: Dataset, values: Iterable[str]) -> dict:
    """Among kept queries that name one of ``values`` (e.g. a side), how many name one their document lacks.

    Returns:
        ``named``, ``wrong`` and ``rate`` (wrong / named; 0 when none is named).
    """
    values = frozenset(values)
    kept = frame[frame["kept"]]
    named = wrong = 0
    for query, doc in zip(kept["query"], kept["doc_id"], strict=True):
        asked = words(str(query)) & values
        if asked:
            named += 1
            wrong += not asked <= words(ds.corpus[doc]["text"])
    return {"named": named, "wrong": wrong, "rate": round(wrong / named, 4) if named else 0.0}
