"""Query-document style mismatch and out-of-vocabulary fragmentation (notebook 01), and metrics by slice."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from workbook.data import Dataset
from workbook.evaluate import slice_table

#: Common general-English words (everyday vocabulary): the reference for tokenizer fragmentation.
_COMMON = (
    "about after again air also animal answer area back because before begin between body book both boy bring "
    "build call came carry change children city close come country cover cross day different does done door down "
    "draw during early earth eat end enough even every example eye face family father feel field find fire first "
    "follow food form found friend from game girl give good great green group grow hand hard have head hear help "
    "here high home house idea important into just keep kind know land large last learn leave letter life light "
    "line list little live long look made make many mark mean might mile mind money more morning mother mountain "
    "move much music must name near need never next night number often old once only open order other over page "
    "paper part people picture place plant play point press problem question quick read real right river road "
    "room round run same saw school science sea second see sentence set should show side small song sound "
    "speak spell stand star start state still stop story street strong study such sun table take talk tell than "
    "that their then there thing think those thought through time today together took tree try turn under until "
    "use very voice walk want warm watch water way week well went where while white whole why wind window with "
    "without word work world write year young"
)
COMMON_ENGLISH = tuple(_COMMON.split())

_WORD = re.compile(r"[A-Za-z]+")


# ------------------------------------------------------------------------------------------------ style mismatch


def centroid_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine distance (1 - cosine) between the mean vectors of two sets."""
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    return float(1.0 - ca @ cb / (np.linalg.norm(ca) * np.linalg.norm(cb)))


def probe_accuracy(a: np.ndarray, b: np.ndarray, seed: int = 0, folds: int = 5) -> float:
    """Cross-validated accuracy of a logistic-regression probe telling set ``a`` from set ``b``.

    The larger set is subsampled (seeded) to the size of the smaller, so chance is 0.5.
    """
    # scikit-learn takes a second to import and only this probe needs it
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    if n < folds:
        raise ValueError(f"need at least {folds} vectors per set, got {n}")
    a = a[np.sort(rng.choice(len(a), n, replace=False))]
    b = b[np.sort(rng.choice(len(b), n, replace=False))]
    x = np.vstack([a, b])
    y = np.r_[np.zeros(n, dtype=int), np.ones(n, dtype=int)]
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    probe = LogisticRegression(max_iter=2000)
    return float(cross_val_score(probe, x, y, cv=cv, scoring="accuracy").mean())


def metric_by_slice(
    per_query: Mapping[str, pd.DataFrame], ds: Dataset, metric: str = "recall@10", slices: Sequence[str] | None = None
) -> pd.DataFrame:
    """Mean of ``metric`` per query slice (rows, plus ``all``) for each run (columns), with the query count.

    Args:
        per_query: run name -> per-query metrics (``RetrievalResult.per_query``) over the same queries.
        ds: the dataset whose ``query_meta[qid]["slices"]`` name the slices.
        metric: the column to average.
        slices: slice order; ``None`` uses the dataset's own order (``ds.extras["slices"]``, set by the case study),
            else the slices that occur, sorted.
    """
    names = list(per_query)
    qids = list(per_query[names[0]].index)
    membership: dict[str, list[str]] = defaultdict(list)
    for q in qids:
        for s in ds.query_meta.get(q, {}).get("slices", []):
            membership[s].append(q)
    order = [s for s in (slices or ds.extras.get("slices") or sorted(membership)) if s in membership]
    table = slice_table({n: per_query[n][metric] for n in names}, {s: membership[s] for s in order}).T
    frame = table.loc[[*order, "all"], ["queries", *names]].astype({"queries": int})
    frame.index.name = "slice"
    return frame


# ------------------------------------------------------------------------------------------------ out-of-vocabulary


def words_of(texts: Iterable[str]) -> list[str]:
    """Alphabetic words of the texts, lower-cased, in order (every occurrence kept)."""
    return [w.lower() for t in texts for w in _WORD.findall(t)]


def word_pieces(tokenizer, terms: Sequence[str]) -> list[list[str]]:
    """The tokenizer's word pieces for each term (no special tokens)."""
    if not terms:
        return []
    ids = tokenizer(list(terms), add_special_tokens=False)["input_ids"]
    return [tokenizer.convert_ids_to_tokens(row) for row in ids]


def fragmentation_table(tokenizer, terms: Sequence[str]) -> pd.DataFrame:
    """Each term with its word pieces and their count."""
    pieces = word_pieces(tokenizer, terms)
    frame = pd.DataFrame({"pieces": [" ".join(p) for p in pieces], "n_pieces": [len(p) for p in pieces]}, index=terms)
    frame.index.name = "term"
    return frame


def fragmentation_summary(tokenizer, samples: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Word pieces per word for several samples of words (every occurrence counted).

    Args:
        tokenizer: a Hugging Face tokenizer (``model.tokenizer``).
        samples: sample name -> its words (see :func:`words_of`) or terms (e.g. code strings).

    Returns:
        One row per sample: ``words``, ``pieces per word`` (mean), ``split`` (share in 2+ pieces),
        ``3+ pieces`` (share).
    """
    rows = {}
    for name, words in samples.items():
        distinct = sorted(set(words))
        counts = dict(zip(distinct, (len(p) for p in word_pieces(tokenizer, distinct)), strict=True))
        n = np.array([counts[w] for w in words], dtype=float)
        rows[name] = {
            "words": len(words),
            "pieces per word": float(n.mean()),
            "split": float((n >= 2).mean()),
            "3+ pieces": float((n >= 3).mean()),
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "sample"
    return frame
