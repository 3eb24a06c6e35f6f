"""Diagnose why an off-the-shelf embedding model misses a domain, with numbers, before deciding to fine-tune.

Three failure modes are measured (notebook 01) and one decision is computed from measurements (notebook 02):

- **Lookalike collapse**: distinct codes whose descriptions differ by a word or two (type 1 vs type 2 diabetes,
  STEMI vs NSTEMI) land at nearly the same point. Measured as sibling vs random pair cosine, the sibling-confusion
  rate@k (a sibling ranked above the gold doc in the top k) and the margin score(gold) - score(best sibling).
- **Query-document style mismatch**: short clinician wording vs formal code descriptions. Measured as the cosine
  distance between the query and document centroids and the accuracy of a linear probe that tells them apart.
- **Out-of-vocabulary terms**: domain words and code strings break into many word pieces. Measured as word pieces
  per word against general English.
- **The gate** :func:`should_fine_tune`: go only when a gap remains after the cheap wins, there are enough training
  pairs, and errors cluster in domain slices. A check the data cannot measure is "not measured", not failed; each
  measured check carries a bootstrap CI, and one whose CI straddles its threshold is "too small to decide" (see
  :class:`FineTuneDecision`). :func:`gate_inputs` builds its inputs from per-query results; notebook 02 and
  ``workbook run`` both use the two.

Embeddings are expected L2-normalised (as :func:`workbook.retrieval.encode` returns them), so a dot product is the
cosine similarity.
"""

from __future__ import annotations

import pickle
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from workbook.config import Config
from workbook.data import Dataset

#: Slices where a fine-tuned model can learn what the base model lacks (notebook 02's "errors cluster" check).
DOMAIN_SLICES = ("lookalike", "abbreviation", "exact-code")

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


# ------------------------------------------------------------------------------------------------ lookalike collapse


def sibling_map(groups: Iterable[Mapping]) -> dict[str, set[str]]:
    """Code -> its siblings: the other codes of every lookalike group that holds it.

    Args:
        groups: lookalike groups, each with a ``codes`` list (as in ``ds.extras["lookalikes"]``).
    """
    out: dict[str, set[str]] = defaultdict(set)
    for g in groups:
        codes = set(g["codes"])
        for c in codes:
            out[c] |= codes - {c}
    return dict(out)


def sibling_pair_cosines(emb: np.ndarray, ids: Sequence[str], groups: Iterable[Mapping]) -> pd.DataFrame:
    """Cosine of every pair of codes inside each lookalike group (pairs with a code missing from ``ids`` are skipped).

    Returns:
        One row per (group, pair): ``group_id``, ``kind``, ``a``, ``b``, ``cosine``.
    """
    row = {d: i for i, d in enumerate(ids)}
    rows = []
    for g in groups:
        codes = sorted(c for c in set(g["codes"]) if c in row)
        if len(codes) < 2:
            continue
        idx = np.array([row[c] for c in codes])
        sims = emb[idx] @ emb[idx].T
        for i in range(len(codes)):
            for j in range(i + 1, len(codes)):
                rows.append((g.get("group_id", ""), g.get("kind", ""), codes[i], codes[j], float(sims[i, j])))
    return pd.DataFrame(rows, columns=["group_id", "kind", "a", "b", "cosine"])


def random_pair_cosines(
    emb: np.ndarray, n_pairs: int = 10_000, seed: int = 0, strata: Sequence | None = None
) -> np.ndarray:
    """Cosine of ``n_pairs`` random pairs of distinct rows (seeded); within the same stratum when ``strata`` is given.

    Args:
        emb: L2-normalised vectors, one per row.
        n_pairs: pairs to draw (with replacement over pairs).
        seed: random seed.
        strata: one label per row (e.g. the ICD chapter); pairs are then drawn inside a label, labels weighted by
            their number of rows.
    """
    rng = np.random.default_rng(seed)
    n = emb.shape[0]
    if strata is None:
        a = rng.integers(0, n, n_pairs)
        b = (a + rng.integers(1, n, n_pairs)) % n  # never a == b
    else:
        labels = np.asarray(strata)
        members = {lab: np.flatnonzero(labels == lab) for lab in sorted(set(labels.tolist()))}
        members = {k: v for k, v in members.items() if v.size >= 2}
        if not members:
            raise ValueError("no stratum holds two rows")
        pool = np.concatenate(list(members.values()))
        a = rng.choice(pool, n_pairs)
        b = np.empty_like(a)
        where = {int(i): lab for lab, rows in members.items() for i in rows}
        for k, i in enumerate(a):
            rows = members[where[int(i)]]
            j = rows[rng.integers(0, rows.size - 1)]
            b[k] = j if j != i else rows[-1]  # rows[-1] is drawn only in place of i: uniform over the others
    return (emb[a] * emb[b]).sum(axis=1)


def _gold(judged: Mapping[str, int]) -> set[str]:
    return {d for d, s in judged.items() if s > 0}


def sibling_confusion(
    ranked: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    siblings: Mapping[str, set[str]],
    k: int,
) -> pd.DataFrame:
    """Per query: is a sibling of a gold code ranked above every gold doc inside the top ``k``?

    A query's siblings are the siblings of any of its gold codes, less the gold codes themselves; queries without
    siblings are left out. When no gold doc is in the top ``k``, any sibling there counts as ranked above it.

    Returns:
        Indexed by query id: ``gold_rank`` and ``sibling_rank`` (1-based rank of the first gold doc / first sibling
        in the top ``k``, NaN when none), ``confused`` (bool). The confusion rate@k is ``confused.mean()``.
    """
    rows = {}
    for qid in sorted(qrels):
        gold = _gold(qrels[qid])
        sibs = set().union(*(siblings.get(c, set()) for c in gold)) - gold if gold else set()
        if not sibs:
            continue
        top = list(ranked.get(qid, []))[:k]
        g = next((r for r, d in enumerate(top, 1) if d in gold), np.nan)
        s = next((r for r, d in enumerate(top, 1) if d in sibs), np.nan)
        confused = bool(s == s and (g != g or s < g))  # x == x is False only for NaN
        rows[qid] = {"gold_rank": g, "sibling_rank": s, "confused": confused}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["gold_rank", "sibling_rank", "confused"])
    frame.index.name = "query"
    return frame.astype({"gold_rank": float, "sibling_rank": float, "confused": bool})


def sibling_margins(
    q_emb: np.ndarray,
    query_ids: Sequence[str],
    doc_emb: np.ndarray,
    doc_ids: Sequence[str],
    qrels: Mapping[str, Mapping[str, int]],
    siblings: Mapping[str, set[str]],
) -> pd.DataFrame:
    """Per query: margin = cosine to its best gold doc - cosine to its best sibling (negative = collapse).

    Returns:
        Indexed by query id (queries with a sibling only): ``gold``, ``gold_score``, ``sibling``,
        ``sibling_score``, ``margin``.
    """
    row = {d: i for i, d in enumerate(doc_ids)}
    rows = {}
    for qi, qid in enumerate(query_ids):
        gold = sorted(d for d in _gold(qrels.get(qid, {})) if d in row)
        sibs = sorted(set().union(*(siblings.get(c, set()) for c in gold)) - set(gold) & row.keys()) if gold else []
        if not sibs:
            continue
        gs = doc_emb[[row[d] for d in gold]] @ q_emb[qi]
        ss = doc_emb[[row[d] for d in sibs]] @ q_emb[qi]
        gi, si = int(np.argmax(gs)), int(np.argmax(ss))
        rows[qid] = {
            "gold": gold[gi],
            "gold_score": float(gs[gi]),
            "sibling": sibs[si],
            "sibling_score": float(ss[si]),
            "margin": float(gs[gi] - ss[si]),
        }
    frame = pd.DataFrame.from_dict(
        rows, orient="index", columns=["gold", "gold_score", "sibling", "sibling_score", "margin"]
    )
    frame.index.name = "query"
    return frame


def collapse_summary(
    pairs: pd.DataFrame, random_cos: np.ndarray, confusion: pd.DataFrame, margins: pd.DataFrame, k: int
) -> pd.Series:
    """The headline collapse numbers in one Series (means over pairs/queries, median margin)."""
    return pd.Series(
        {
            "sibling pair cosine (mean)": float(pairs["cosine"].mean()),
            "random pair cosine (mean)": float(np.mean(random_cos)),
            f"sibling confusion rate@{k}": float(confusion["confused"].mean()),
            "margin gold - best sibling (median)": float(margins["margin"].median()),
            "queries with negative margin": float((margins["margin"] < 0).mean()),
            "queries measured": float(len(margins)),
        },
        name="lookalike collapse",
    )


def score_table(
    query_texts: Sequence[str], q_emb: np.ndarray, doc_ids: Sequence[str], doc_emb: np.ndarray, gold: Sequence[str]
) -> pd.DataFrame:
    """A worked example: cosine of each query (row) to each doc of a group (column), with its gold and the winner."""
    frame = pd.DataFrame(q_emb @ doc_emb.T, index=list(query_texts), columns=list(doc_ids)).round(3)
    frame.index.name = "query"
    winner = frame.idxmax(axis=1)
    frame.insert(0, "gold", list(gold))
    frame["closest"] = winner
    frame["margin"] = [
        round(frame.loc[q, g] - max(v for d, v in frame.loc[q, list(doc_ids)].items() if d != g), 3)
        for q, g in zip(frame.index, frame["gold"], strict=True)
    ]
    return frame


# ------------------------------------------------------------------------------------------------ UMAP projection


def group_points(ds: Dataset, groups: Sequence[Mapping]) -> pd.DataFrame:
    """The docs of some lookalike groups and every query (all splits) whose gold codes all lie in one group.

    Returns:
        One row per point: ``id`` (doc id, or query id), ``kind`` (doc/query), ``group`` (the group's anchor and
        kind), ``label`` (the code; for a query judged on several codes their shared prefix + "x"), ``text``.
    """
    rows = []
    for g in groups:
        name = f"{g['anchor']} ({g['kind']})"
        codes = sorted(set(g["codes"]) & ds.corpus.keys())
        rows += [{"id": c, "kind": "doc", "group": name, "label": c, "text": ds.doc_text(c)} for c in codes]
        for split in ds.splits:
            for qid, judged in sorted(ds.qrels[split].items()):
                gold = sorted(_gold(judged))
                if gold and set(gold) <= set(codes):
                    label = gold[0] if len(gold) == 1 else _common_prefix(gold) + "x"
                    rows.append({"id": qid, "kind": "query", "group": name, "label": label, "text": ds.queries[qid]})
    return pd.DataFrame(rows, columns=["id", "kind", "group", "label", "text"])


def _common_prefix(codes: Sequence[str]) -> str:
    first, last = min(codes), max(codes)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def find_group(groups: Iterable[Mapping], code: str, kind: str | None = None) -> dict:
    """The first lookalike group holding ``code`` (of ``kind`` when given).

    Raises:
        KeyError: no such group.
    """
    for g in groups:
        if code in g["codes"] and (kind is None or g["kind"] == kind):
            return dict(g)
    raise KeyError(f"no {kind or ''} lookalike group holds {code}".replace("  ", " "))


def projection_path(cfg: Config) -> Path:
    """Where the fitted lookalike UMAP is saved: ``artifacts/umap/lookalikes-<mode>.pkl``."""
    return cfg.artifacts_dir / "umap" / f"lookalikes-{cfg.mode}.pkl"


@dataclass
class Projection:
    """A fitted 2-D UMAP with the ids it was fit on, their coordinates and any saved context (e.g. the points)."""

    reducer: object
    ids: list[str]
    coords: np.ndarray
    meta: dict = field(default_factory=dict)

    def transform(self, emb: np.ndarray) -> np.ndarray:
        """Place new vectors (e.g. the same texts embedded by a tuned model) on the fitted map."""
        return self.reducer.transform(emb)


def fit_projection(
    emb: np.ndarray,
    ids: Sequence[str],
    path: str | Path | None = None,
    seed: int = 42,
    meta: dict | None = None,
    **umap_kwargs,
) -> Projection:
    """Fit a 2-D UMAP (cosine metric, seeded) and save it with the ids it was fit on, to reuse after tuning.

    Args:
        emb: vectors to fit on (one per id).
        ids: the doc/query id of each row, saved beside the reducer.
        path: a ``.pkl`` file to write; ``None`` saves nothing.
        seed: UMAP's ``random_state`` (which also makes it single-threaded, hence reproducible).
        meta: anything else to save with it (e.g. ``{"points": frame}`` with each point's label).
        **umap_kwargs: other ``umap.UMAP`` arguments (defaults: ``n_neighbors=15``, ``min_dist=0.1``).

    Returns:
        The :class:`Projection`; ``coords`` holds the 2-D coordinates of ``emb``.
    """
    import umap

    if len(ids) != emb.shape[0]:
        raise ValueError(f"{len(ids)} ids for {emb.shape[0]} vectors")
    params = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "n_jobs": 1, **umap_kwargs}
    reducer = umap.UMAP(n_components=2, random_state=seed, **params)
    coords = reducer.fit_transform(emb)
    projection = Projection(reducer=reducer, ids=list(ids), coords=coords, meta=dict(meta or {}))
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(projection, fh)
        tmp.replace(path)
    return projection


def load_projection(path: str | Path) -> Projection:
    """Load a projection saved by :func:`fit_projection`; project new vectors with ``.transform``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved projection {path.name}: run notebook 01 first (it fits and saves it)")
    with open(path, "rb") as fh:
        return pickle.load(fh)  # our own artifact, written by fit_projection


def nearest_doc_agreement(points: pd.DataFrame, coords: np.ndarray) -> float:
    """Share of single-code queries whose nearest doc on the map (same group) is their own code's doc."""
    hits = []
    for _, grp in points.assign(_x=coords[:, 0], _y=coords[:, 1]).groupby("group", sort=True):
        docs = grp[grp.kind == "doc"]
        xy = docs[["_x", "_y"]].to_numpy()
        for _, q in grp[(grp.kind == "query") & grp.label.isin(set(docs.label))].iterrows():
            nearest = docs.label.iloc[int(np.argmin(((xy - [q._x, q._y]) ** 2).sum(axis=1)))]
            hits.append(nearest == q.label)
    if not hits:
        raise ValueError("no single-code query to check")
    return float(np.mean(hits))


# ------------------------------------------------------------------------------------------------ style mismatch


def centroid_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine distance (1 - cosine) between the mean vectors of two sets."""
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    return float(1.0 - ca @ cb / (np.linalg.norm(ca) * np.linalg.norm(cb)))


def probe_accuracy(a: np.ndarray, b: np.ndarray, seed: int = 0, folds: int = 5) -> float:
    """Cross-validated accuracy of a logistic-regression probe telling set ``a`` from set ``b``.

    The larger set is subsampled (seeded) to the size of the smaller, so chance is 0.5.
    """
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
        slices: slice order; ``None`` uses the case study's slices that occur.
    """
    from workbook.icd10cm import SLICES

    names = list(per_query)
    qids = list(per_query[names[0]].index)
    membership: dict[str, list[str]] = defaultdict(list)
    for q in qids:
        for s in ds.query_meta.get(q, {}).get("slices", []):
            membership[s].append(q)
    order = [s for s in (slices or SLICES) if s in membership]
    rows = {}
    for s in [*order, "all"]:
        members = qids if s == "all" else membership[s]
        rows[s] = {"queries": len(members), **{n: float(per_query[n].loc[members, metric].mean()) for n in names}}
    frame = pd.DataFrame.from_dict(rows, orient="index")
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
    from workbook.evaluate import bootstrap_ci

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


#: The lookalike groups drawn on the UMAP in notebooks 01 and 06: (a member code, group kind). All four lie in the
#: endocrine and circulatory chapters, so the same groups exist in fast and full mode.
UMAP_PICKS = (("I21.4", "category"), ("E10.21", "excludes1"), ("I22.0", "category"), ("I50.810", "siblings"))


def lookalike_projection(cfg: Config, ds: Dataset, model, refit: bool = False) -> Projection:
    """The UMAP of the :data:`UMAP_PICKS` groups fit on ``model``'s embeddings, loaded from
    :func:`projection_path` when notebook 01 saved it (fit and saved here otherwise, or when ``refit``).

    ``meta["points"]`` holds the points (docs and queries of each group) in the order of ``ids``.
    """
    from workbook.retrieval import encode

    path = projection_path(cfg)
    if path.exists() and not refit:
        return load_projection(path)
    groups = [find_group(ds.extras["lookalikes"], code, kind) for code, kind in UMAP_PICKS]
    points = group_points(ds, groups)
    emb = encode(model, points["text"].tolist(), show_progress=False)
    meta = {"points": points, "model": cfg.base_model}
    return fit_projection(emb, points["id"].tolist(), path, seed=cfg.seed, meta=meta)


def measure_collapse(
    model,
    ds: Dataset,
    qrels: Mapping[str, Mapping[str, int]],
    ranked: Mapping[str, Sequence[str]],
    k: int = 10,
    cache_dir: str | Path | None = None,
    seed: int = 0,
) -> pd.Series:
    """The lookalike-collapse numbers of notebook 01 (:func:`collapse_summary`) for ``model`` on ``qrels``' queries.

    Args:
        ranked: ``model``'s ranking for those queries (for the sibling-confusion rate@k).
        cache_dir: the shared embedding cache (corpus embeddings are computed once per model weights).
    """
    from workbook.retrieval import encode, encode_cached

    doc_ids = ds.doc_ids()
    doc_emb = encode_cached(model, ds.doc_texts(), cache_dir, show_progress=False)
    query_ids = sorted(qrels)
    q_emb = encode(model, [ds.queries[q] for q in query_ids], show_progress=False)
    groups = ds.extras["lookalikes"]
    siblings = sibling_map(groups)
    pairs = sibling_pair_cosines(doc_emb, doc_ids, groups)
    random_cos = random_pair_cosines(doc_emb, 20_000, seed=seed)
    confusion = sibling_confusion(ranked, qrels, siblings, k=k)
    margins = sibling_margins(q_emb, query_ids, doc_emb, doc_ids, qrels, siblings)
    return collapse_summary(pairs, random_cos, confusion, margins, k=k)
