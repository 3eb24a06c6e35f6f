"""UMAP pictures of lookalike groups: their points, fitting, saving and loading the projection, and a sanity check."""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from workbook.config import Config
from workbook.data import Dataset
from workbook.diagnose.collapse import _gold
from workbook.files import atomic_write_bytes
from workbook.retrieval import encode

# ------------------------------------------------------------------------------------------------ UMAP projection


def group_points(ds: Dataset, groups: Sequence[Mapping], splits: Sequence[str] | None = None) -> pd.DataFrame:
    """The docs of some lookalike groups and every query (of ``splits``; ``None``: all) whose gold codes all lie in
    one group.

    Returns:
        One row per point: ``id`` (doc id, or query id), ``kind`` (doc/query), ``group`` (the group's anchor and
        kind), ``label`` (the code; for a query judged on several codes their shared prefix + "x"), ``text``.
    """
    rows = []
    for g in groups:
        name = f"{g['anchor']} ({g['kind']})"
        codes = sorted(set(g["codes"]) & ds.corpus.keys())
        rows += [{"id": c, "kind": "doc", "group": name, "label": c, "text": ds.doc_text(c)} for c in codes]
        for split in ds.splits if splits is None else [x for x in splits if x in ds.qrels]:
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
    import umap  # umap-learn (numba) takes seconds to import; only fitting needs it

    if len(ids) != emb.shape[0]:
        raise ValueError(f"{len(ids)} ids for {emb.shape[0]} vectors")
    params = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "n_jobs": 1, **umap_kwargs}
    reducer = umap.UMAP(n_components=2, random_state=seed, **params)
    coords = reducer.fit_transform(emb)
    projection = Projection(reducer=reducer, ids=list(ids), coords=coords, meta=dict(meta or {}))
    if path is not None:
        atomic_write_bytes(path, pickle.dumps(projection))
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


def picked_groups(ds: Dataset) -> list[dict]:
    """The lookalike groups a dataset names for its maps (``ds.extras["umap_picks"]``: (a member code, group kind)
    pairs; the case study names four), in that order; empty when it names none."""
    return [find_group(ds.extras["lookalikes"], code, kind) for code, kind in ds.extras.get("umap_picks", ())]


def lookalike_projection(cfg: Config, ds: Dataset, model, refit: bool = False) -> Projection:
    """The UMAP of the dataset's :func:`picked_groups` fit on ``model``'s embeddings, loaded from
    :func:`projection_path` when notebook 01 saved it (fit and saved here otherwise, or when ``refit``).

    ``meta["points"]`` holds the points (docs and queries of each group) in the order of ``ids``.
    """
    path = projection_path(cfg)
    if path.exists() and not refit:
        return load_projection(path)
    groups = picked_groups(ds)
    if not groups:
        raise ValueError(f"{ds.name}: no lookalike groups picked to draw (extras['umap_picks'] is empty)")
    points = group_points(ds, groups)
    emb = encode(model, points["text"].tolist(), show_progress=False)
    meta = {"points": points, "model": cfg.base_model}
    return fit_projection(emb, points["id"].tolist(), path, seed=cfg.seed, meta=meta)
