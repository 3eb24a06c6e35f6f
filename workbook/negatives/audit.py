"""Auditing mined negatives for false negatives, Excludes1 partners, and picking a setting (notebook 03)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from workbook.data import Dataset
from workbook.negatives.known import _KnownIndex
from workbook.negatives.mine import MinedNegatives
from workbook.negatives.settings import FN_KINDS, TRAIN_LABELS


@dataclass
class Audit:
    """The audited false negatives of one mining run.

    Attributes:
        name: the settings' name.
        negatives: mined negatives in all rows.
        false_negatives: how many of them are known false negatives.
        by_kind: false negatives per category of :data:`FN_KINDS`.
        queries: queries mined for; ``queries_without_negatives``: those left with none in any row.
        rows: (query, positive) rows; ``short_rows``: rows with fewer than N negatives (left out of the n-tuple set).
        flagged: one row per false negative (query id, query, positive, negative, kind, rank, score).
        label_splits: the qrels splits whose judgements the audit read.
        range_min: the settings' rank-window start (:func:`pick_setting` breaks ties with it).
    """

    name: str
    negatives: int
    false_negatives: int
    by_kind: dict[str, int]
    queries: int
    queries_without_negatives: int
    rows: int
    short_rows: int
    flagged: pd.DataFrame
    label_splits: tuple[str, ...] = TRAIN_LABELS
    range_min: int = 0

    @property
    def fn_rate(self) -> float:
        """False negatives / mined negatives (0 when nothing was mined)."""
        return self.false_negatives / self.negatives if self.negatives else 0.0

    def summary(self) -> dict:
        """One table row."""
        return {
            "setting": self.name,
            "negatives": self.negatives,
            "false negatives": self.false_negatives,
            "FN rate %": round(100 * self.fn_rate, 3),
            **{f"FN {k}": v for k, v in self.by_kind.items()},
            "queries": self.queries,
            "queries with no negative": self.queries_without_negatives,
            "rows short of N": self.short_rows,
            "labels from": "+".join(self.label_splits),
        }


def audit(
    ds: Dataset, mined: MinedNegatives, name: str | None = None, label_splits: Sequence[str] | None = TRAIN_LABELS
) -> Audit:
    """Count the known false negatives among ``mined`` (see the module docstring for the four categories).

    Args:
        ds: the dataset.
        mined: the mining run.
        name: the label in tables (default: the settings' name).
        label_splits: the qrels splits whose judgements count: the training split (default: an audit that picks a
            setting must not read held-out labels), or ``None`` for every split (a read-only report).
    """
    known = _KnownIndex(ds, label_splits)
    positives: dict[str, set[str]] = defaultdict(set)
    for row in mined.rows:
        positives[row["query_id"]].add(row["positive"])
    flagged = []
    by_kind = dict.fromkeys(FN_KINDS, 0)
    total = 0
    with_negatives: set[str] = set()
    for row in mined.rows:
        qid = row["query_id"]
        rel = known.relevant[qid] | positives[qid]
        if row["negatives"]:
            with_negatives.add(qid)
        for rank, (neg, score) in enumerate(zip(row["negatives"], row["scores"], strict=True), start=1):
            total += 1
            kind = known.kind(qid, rel, neg)
            if kind:
                by_kind[kind] += 1
                flagged.append(
                    {"query_id": qid, "query": ds.queries[qid], "positive": row["positive"], "negative": neg,
                     "kind": kind, "rank": rank, "score": round(float(score), 4)}
                )  # fmt: skip
    cols = ["query_id", "query", "positive", "negative", "kind", "rank", "score"]
    return Audit(
        name=name or mined.settings.name,
        negatives=total,
        false_negatives=len(flagged),
        by_kind=by_kind,
        queries=len(positives),
        queries_without_negatives=len(set(positives) - with_negatives),
        rows=len(mined.rows),
        short_rows=sum(len(r["negatives"]) < mined.settings.num_negatives for r in mined.rows),
        flagged=pd.DataFrame(flagged, columns=cols),
        label_splits=known.splits,
        range_min=mined.settings.range_min,
    )


def audit_table(audits: Sequence[Audit]) -> pd.DataFrame:
    """One row per audited setting."""
    return pd.DataFrame([a.summary() for a in audits]).set_index("setting")


def pick_setting(audits: Sequence[Audit], max_lost: float = 0.05) -> str:
    """The setting to use: the lowest audited false-negative rate among those that leave at most ``max_lost`` of
    the queries without any negative; ties go to fewer such queries, then to more negatives, then to the larger
    rank-window start (the audit counts only the false negatives the data *knows*, a lower bound, and the unknown
    ones crowd the top ranks, so between equally clean settings the one that skips more of them is the safer), then
    to list order.

    Raises:
        ValueError: no setting keeps enough queries.
    """
    ok = [(i, a) for i, a in enumerate(audits) if a.queries_without_negatives <= max_lost * a.queries]
    if not ok:
        raise ValueError(f"every setting leaves more than {max_lost:.0%} of the queries without a negative")
    return min(
        ok, key=lambda x: (x[1].fn_rate, x[1].queries_without_negatives, -x[1].negatives, -x[1].range_min, x[0])
    )[1].name


# ------------------------------------------------------------------------------------------------ Excludes1


def excludes1_partners(ds: Dataset) -> dict[str, set[str]]:
    """Doc id -> the docs a curated Excludes1 note says it is *not* (``extras["lookalikes"]``, kind excludes1)."""
    partners: dict[str, set[str]] = defaultdict(set)
    for group in ds.extras.get("lookalikes", []):
        if group["kind"] == "excludes1":
            for c in group["codes"]:
                partners[c] |= set(group["codes"]) - {c}
    return dict(partners)


def excludes1_overlap(ds: Dataset, mined: MinedNegatives) -> dict:
    """How mined negatives relate to the curated Excludes1 lookalikes of each row's positive.

    Returns:
        ``rows with Excludes1 partners``, ``share of those rows mining at least one`` partner,
        ``partner recall`` (partners mined / partners of those rows), ``share of negatives that are partners``
        (over all mined negatives) and ``partners flagged as false negatives`` (should be 0: Excludes1 says "not").
    """
    partners = excludes1_partners(ds)
    known = _KnownIndex(ds, TRAIN_LABELS)
    rows = hit_rows = found = wanted = is_partner = flagged = 0
    total = sum(len(r["negatives"]) for r in mined.rows)
    for row in mined.rows:
        mine = partners.get(row["positive"], set()) - known.relevant[row["query_id"]]
        negs = set(row["negatives"])
        is_partner += len(negs & mine)
        if not mine:
            continue
        rows += 1
        hit_rows += bool(negs & mine)
        found += len(negs & mine)
        wanted += len(mine)
        flagged += sum(known.kind(row["query_id"], {row["positive"]}, n) is not None for n in negs & mine)
    return {
        "rows with Excludes1 partners": rows,
        "share of those rows mining at least one": round(hit_rows / rows, 4) if rows else 0.0,
        "partner recall": round(found / wanted, 4) if wanted else 0.0,
        "share of negatives that are partners": round(is_partner / total, 4) if total else 0.0,
        "partners flagged as false negatives": flagged,
    }


def side_by_side(ds: Dataset, mined: MinedNegatives, n: int = 5, seed: int = 0, shown: int = 3) -> pd.DataFrame:
    """Rows whose positive has Excludes1 partners: the query, the positive, the partners and the mined negatives."""

    partners = excludes1_partners(ds)
    candidates = [r for r in mined.rows if partners.get(r["positive"]) and r["negatives"]]
    picked = sorted(random.Random(seed).sample(candidates, min(n, len(candidates))), key=lambda r: r["query_id"])

    def label(d: str) -> str:
        return f"{d} {ds.corpus[d]['text']}"

    return pd.DataFrame(
        [
            {
                "query": ds.queries[r["query_id"]],
                "positive": label(r["positive"]),
                "Excludes1 lookalikes": "; ".join(label(d) for d in sorted(partners[r["positive"]])[:shown]),
                "mined negatives": "; ".join(label(d) for d in r["negatives"][:shown]),
            }
            for r in picked
        ]
    )
