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
  pairs, and errors cluster in domain slices.

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


@dataclass
class FineTuneDecision:
    """The "should you fine-tune?" answer: ``go``, the reasons, and each check's outcome."""

    go: bool
    reasons: list[str]
    checks: dict[str, bool] = field(default_factory=dict)

    def __str__(self) -> str:
        head = "GO: fine-tune" if self.go else "NO-GO: do not fine-tune (yet)"
        lines = [head] + [f"  [{'x' if ok else ' '}] {name}" for name, ok in self.checks.items()]
        return "\n".join(lines + [f"  - {r}" for r in self.reasons])


def should_fine_tune(
    best_cheap: float,
    target: float,
    n_pairs: int,
    slice_metrics: Mapping[str, float],
    overall: float,
    min_pairs: int = 1000,
    margin: float = 0.05,
    domain_slices: Sequence[str] = DOMAIN_SLICES,
    best_name: str = "best cheap method",
    metric: str = "Recall@10",
) -> FineTuneDecision:
    """Decide whether fine-tuning is worth it, from measurements.

    Go iff all three hold: a gap remains (``best_cheap < target``), enough training pairs (``n_pairs >= min_pairs``),
    and errors cluster in domain slices (some domain slice's error rate, 1 - metric, is at least ``margin`` above
    the overall error rate).

    Args:
        best_cheap: the metric of the best method that needs no training (BM25, hybrid, reranker, bigger model).
        target: the metric the application needs.
        n_pairs: (query, relevant doc) training pairs available.
        slice_metrics: slice name -> the best method's metric on that slice.
        overall: the best method's metric over all queries.
        min_pairs: fewest pairs worth a fine-tune.
        margin: how much higher a domain slice's error rate must be than the overall one.
        domain_slices: slices that count as domain-specific errors.
        best_name: label of the best method, for the reasons.
        metric: label of the metric, for the reasons.

    Returns:
        A :class:`FineTuneDecision`; ``print`` it for a readable go/no-go with reasons.
    """
    overall_err = 1.0 - overall
    excess = {s: (1.0 - v) - overall_err for s, v in slice_metrics.items() if s in domain_slices}
    clustered = {s: e for s, e in excess.items() if e >= margin}
    checks = {
        "gap remains after the cheap wins": best_cheap < target,
        f"at least {min_pairs} training pairs": n_pairs >= min_pairs,
        "errors cluster in domain slices": bool(clustered),
    }
    gap = (
        f"{best_name} reaches {metric} {best_cheap:.3f} < target {target:.3f}: "
        f"a gap of {target - best_cheap:.3f} remains"
        if checks["gap remains after the cheap wins"]
        else f"{best_name} already reaches {metric} {best_cheap:.3f} >= target {target:.3f}: ship it, no fine-tune"
    )
    pairs = (
        f"{n_pairs} training pairs >= {min_pairs}"
        if checks[f"at least {min_pairs} training pairs"]
        else f"only {n_pairs} training pairs < {min_pairs}: label or generate more first (notebook 04)"
    )
    if clustered:
        where = ", ".join(f"{s} (error +{e:.3f})" for s, e in sorted(clustered.items(), key=lambda x: -x[1]))
        cluster = f"errors cluster in domain slices vs overall error {overall_err:.3f}: {where}"
    else:
        shown = ", ".join(f"{s} {e:+.3f}" for s, e in excess.items()) or "no domain slice measured"
        cluster = (
            f"errors do not cluster in domain slices (no domain slice's error rate is {margin:.2f} above the "
            f"overall {overall_err:.3f}: {shown}): look at data quality, query wording or chunking first"
        )
    texts = {
        "gap remains after the cheap wins": gap,
        f"at least {min_pairs} training pairs": pairs,
        "errors cluster in domain slices": cluster,
    }
    go = all(checks.values())
    reasons = list(texts.values()) if go else [texts[k] for k, ok in checks.items() if not ok]
    return FineTuneDecision(go=go, reasons=reasons, checks=checks)


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
