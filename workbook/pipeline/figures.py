"""The report's figures, drawn from the steps' JSON outputs and saved as PNG files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from workbook.files import atomic_save
from workbook.plots import bar_counts, before_after_hist, ci_bars, lookalike_before_after, metric_lines, set_style


def _save(fig, folder: Path, name: str) -> Path:
    path = atomic_save(folder / f"{name}.png", fig.savefig)
    plt.close(fig)
    return path


def figure_methods(ci: pd.DataFrame, highlight: str, folder: Path, title: str) -> Path:
    """Recall@10 and nDCG@10 per method with 95% CIs, side by side."""
    set_style()
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(ci) + 1.8), sharey=True)
    for ax, metric in zip(axes, ("recall@10", "ndcg@10"), strict=True):
        ci_bars(ci, metric, ax=ax, highlight=highlight, title=metric)
    fig.suptitle(title, fontweight="bold")
    return _save(fig, folder, "methods")


def figure_slices(
    slices: pd.DataFrame, methods: list[str], folder: Path, title: str, order: Sequence[str] = ()
) -> Path:
    """Recall@10 per slice for a few methods (grouped bars): ``all``, the dataset's slice ``order``, then the rest; each
    slice's query count under its name."""
    known = [s for s in order if s in slices.columns]
    columns = ["all", *known, *sorted(c for c in slices.columns if c != "all" and c not in known)]
    frame = slices.drop(index="queries").loc[methods, columns].T
    ax = bar_counts(frame, title=title, ylabel="Recall@10", counts=slices.loc["queries", columns])
    ax.figure.set_size_inches(max(7.5, 1.5 * len(frame)), 4.2)
    return _save(ax.figure, folder, "slices")


def figure_truncation(trunc: pd.DataFrame, folder: Path, title: str) -> Path:
    """Recall@10 against embedding size, base vs fine-tuned."""
    cols = [c for c in trunc.columns if c.endswith("recall@10")]
    frame = trunc[cols].rename(columns=lambda c: c.removesuffix(" recall@10")).sort_index()
    ax = metric_lines(frame, title=title, xlabel="embedding dimensions (first k, renormalised)", ylabel="Recall@10",
                      logx=True)  # fmt: skip
    return _save(ax.figure, folder, "truncation")


def figure_lookalikes(drawn: dict, folder: Path, title: str) -> Path:
    """Each drawn lookalike group before and after tuning on its shared map, separation in the panel titles."""
    from workbook.diagnose.beforeafter import GroupMaps

    maps = GroupMaps(points=pd.DataFrame(drawn["points"]), separation=pd.DataFrame(drawn["separation"]),
                     queries=pd.Series(drawn["queries"]), method=drawn["method"])  # fmt: skip
    axes = lookalike_before_after(maps, title=title)
    return _save(axes[0, 0].figure, folder, "lookalikes_before_after")


def figure_lookalike_distributions(drawn: dict, folder: Path) -> Path:
    """Sibling-pair cosines and test queries' gold-minus-best-sibling margins, base vs fine-tuned."""
    set_style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4))
    before_after_hist(drawn["pair_cosines"], ax=left, xlabel="cosine", title="Sibling code pairs")
    before_after_hist(drawn["margins"], ax=right, zero_line=True, title="Test queries with a sibling",
                      xlabel="cosine to gold - to best sibling (left of 0: a sibling wins)")  # fmt: skip
    return _save(fig, folder, "lookalike_distributions")
