"""What the data already knows is relevant or equivalent for a query (training labels + label-free rules)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from workbook.data import Dataset
from workbook.negatives.settings import TRAIN_LABELS, description_key

# ------------------------------------------------------------------------------------------------ audit


def _label_splits(ds: Dataset, splits: Sequence[str] | None) -> tuple[str, ...]:
    """The qrels splits to read judgements from: ``splits`` (those present), or every split when ``None``."""
    return tuple(ds.qrels) if splits is None else tuple(s for s in splits if s in ds.qrels)


class _KnownIndex:
    """Lookups for the audit: a query's judgements in ``splits`` (``None``: every split), description keys, and docs
    by description key."""

    def __init__(self, ds: Dataset, splits: Sequence[str] | None):
        self.ds = ds
        self.splits = _label_splits(ds, splits)
        self.relevant: dict[str, set[str]] = defaultdict(set)
        for split in self.splits:
            for qid, docs in ds.qrels[split].items():
                self.relevant[qid] |= {d for d, s in docs.items() if s > 0}
        self.key = {d: description_key(doc["text"]) for d, doc in ds.corpus.items()}
        self.qkey = {q: description_key(t) for q, t in ds.queries.items()}
        self.by_wording: dict[str, set[str]] = defaultdict(set)
        for qid, docs in self.relevant.items():
            self.by_wording[self.qkey.get(qid, "")] |= docs
        self.by_key: dict[str, set[str]] = defaultdict(set)
        for d, k in self.key.items():
            self.by_key[k].add(d)

    def kind(self, qid: str, positives: set[str], neg: str) -> str | None:
        """The first audit category ``neg`` falls in for query ``qid``, or None (a true negative as far as known)."""
        if neg in self.relevant[qid]:
            return "judged"
        if neg in self.by_wording.get(self.qkey[qid], ()):
            return "same wording"
        if any(self.key.get(p) == self.key.get(neg) for p in positives):
            return "same description"
        if self.qkey[qid] == self.key.get(neg):
            return "query names it"
        return None

    def equivalents(self, qid: str) -> set[str]:
        """Every doc the audit would flag for ``qid`` (its judgements, same-wording judgements, description twins of
        its positives, docs it names)."""
        rel = self.relevant[qid]
        out = rel | self.by_wording.get(self.qkey[qid], set())
        for p in rel:
            out |= self.by_key.get(self.key.get(p, ""), set())
        return out | self.by_key.get(self.qkey[qid], set())


def known_equivalents(ds: Dataset, query_id: str, label_splits: Sequence[str] | None = TRAIN_LABELS) -> set[str]:
    """The docs the data knows are relevant or equivalent for ``query_id`` (what ``exclude_known`` drops), from the
    judgements of ``label_splits`` (default: the training split's only) plus the label-free rules."""
    return _KnownIndex(ds, label_splits).equivalents(query_id)
