"""Lookalike groups before and after fine-tuning: one shared projection per group, and the measured separation.

The map answers one question per group: does each held-out query sit by its own code, or by a sibling's? UMAP of
all points mostly shows the query/document style gap (queries on one side, descriptions on the other), so each
group gets its own linear map instead:

- **Shared projection.** A PCA fit on the union of both models' vectors of the group's codes, each model's vectors
  centred on that model's own group mean (so the shift between the two models' spaces does not become an axis).
  The two axes are the directions along which the group's codes differ most, in either model; queries are placed
  with the same centring and the same axes. The same axes for "before" and "after", so distances compare.
- **Measured separation** (in the full embedding space, not on the map): the share of the group's held-out queries
  whose most similar code *inside the group* is their gold code. Chance is one over the number of codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbook.data import Dataset
from workbook.diagnose.projection import group_points
from workbook.retrieval import encode

#: How the map is fit (printed under the figure).
PROJECTION = "per group: PCA fit on both models' code vectors (each centred on its group mean), queries placed alike"


@dataclass
class GroupMaps:
    """Points of each lookalike group under each model, and each group's measured separation.

    Attributes:
        points: one row per (model, point): ``model``, ``group``, ``id``, ``kind`` (doc/query), ``label`` (the code;
            a query's gold code), ``text``, ``x``, ``y``, and for queries ``nearest`` (the group's most similar code
            in the full space) and ``margin`` (cosine to gold minus to the best other code of the group).
        separation: indexed by group, one column per model: the share of held-out queries nearest their own code.
        queries: indexed by group: the number of held-out single-code queries measured.
        method: how the map was fit (:data:`PROJECTION`).
    """

    points: pd.DataFrame
    separation: pd.DataFrame
    queries: pd.Series
    method: str = PROJECTION


def _pca_axes(centred: np.ndarray) -> np.ndarray:
    """The first two principal directions of already centred rows (a zero axis when there is only one)."""
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    if axes.shape[0] < 2:
        axes = np.vstack([axes, np.zeros_like(axes[0])])
    return axes.T


def before_after_maps(
    ds: Dataset, models: Mapping[str, object], groups: Sequence[Mapping], splits: Sequence[str] = ("test",)
) -> GroupMaps:
    """Project each group's codes and held-out queries under every model on one shared map per group.

    Args:
        ds: the dataset.
        models: name -> SentenceTransformer, in drawing order (e.g. ``{"base": base, "tuned": tuned}``).
        groups: the lookalike groups to draw (e.g. :func:`workbook.diagnose.picked_groups`).
        splits: the query splits shown and measured (held-out: never the training split).

    Returns:
        The :class:`GroupMaps`. Queries judged on several codes are left out (they have no one code to sit by).
    """
    if "train" in splits:
        raise ValueError("before/after maps show held-out queries only; 'train' was asked for")
    base_points = group_points(ds, groups, splits=splits)
    base_points = base_points[(base_points["kind"] == "doc") | base_points["label"].isin(set(ds.corpus))]
    frames, separation, counts = [], {}, {}
    vectors = {name: encode(m, base_points["text"].tolist(), show_progress=False) for name, m in models.items()}
    for group, sub in base_points.groupby("group", sort=False):
        rows = base_points.index.get_indexer(sub.index)
        is_doc = (sub["kind"] == "doc").to_numpy()
        centred = {name: vectors[name][rows] - vectors[name][rows][is_doc].mean(axis=0) for name in models}
        axes = _pca_axes(np.vstack([centred[n][is_doc] for n in models]))
        codes = sub.loc[is_doc, "label"].tolist()
        counts[group] = int((~is_doc).sum())
        for name in models:
            v = vectors[name][rows]
            xy = centred[name] @ axes
            frame = sub.assign(model=name, x=xy[:, 0], y=xy[:, 1], nearest=None, margin=np.nan)
            sims = v[~is_doc] @ v[is_doc].T  # queries x codes, full space
            if sims.size:
                gold = [codes.index(lab) for lab in sub.loc[~is_doc, "label"]]
                best = sims.argmax(axis=1)
                others = np.where(np.eye(len(codes), dtype=bool)[gold], -np.inf, sims)
                frame.loc[~is_doc, "nearest"] = [codes[i] for i in best]
                frame.loc[~is_doc, "margin"] = sims[np.arange(len(gold)), gold] - others.max(axis=1)
                separation.setdefault(name, {})[group] = float(np.mean(best == np.array(gold)))
            else:
                separation.setdefault(name, {})[group] = np.nan
            frames.append(frame)
    points = pd.concat(frames, ignore_index=True)
    order = list(dict.fromkeys(base_points["group"]))
    sep = pd.DataFrame(separation).reindex(order)
    sep.index.name = "group"
    return GroupMaps(points=points, separation=sep, queries=pd.Series(counts, name="held-out queries").reindex(order))
