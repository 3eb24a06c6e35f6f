"""Plot helpers: one style set once, every helper takes ``ax=None``, figures saved when run headless."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from workbook.config import Config, get_config

_STYLE = {
    "figure.figsize": (7.5, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "savefig.bbox": "tight",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titleweight": "bold",
    "axes.prop_cycle": matplotlib.cycler(
        color=["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    ),
}
_styled = False


def set_style() -> None:
    """Apply the workbook's matplotlib style (idempotent)."""
    global _styled
    if not _styled:
        plt.rcParams.update(_STYLE)
        _styled = True


def _axes(ax=None):
    set_style()
    if ax is None:
        _, ax = plt.subplots()
    return ax


def is_headless() -> bool:
    """True when matplotlib draws to files only (e.g. under nbval or a script)."""
    return matplotlib.get_backend().lower() in {"agg", "pdf", "svg", "ps", "cairo", "template"}


def save_figure(fig, name: str, cfg: Config | None = None) -> Path:
    """Save ``fig`` as ``artifacts/figures/<mode>/<name>.png`` and return the path."""
    cfg = cfg or get_config()
    path = cfg.artifacts_dir / "figures" / cfg.mode / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def bar_counts(frame: pd.DataFrame, ax=None, title: str = "", ylabel: str = "queries", log: bool = False):
    """Grouped bars: one group per row of ``frame`` (e.g. split), one bar per column (e.g. slice).

    Returns:
        The axes drawn on.
    """
    ax = _axes(ax)
    frame.plot.bar(ax=ax, rot=0, logy=log, width=0.8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("")
    ax.legend(
        frameon=False,
        ncols=min(4, len(frame.columns)),
        fontsize="small",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.08),
    )
    return ax


def hist_compare(
    samples: dict,
    ax=None,
    bins: int = 50,
    title: str = "",
    xlabel: str = "",
    vline: float | None = None,
    range_: tuple[float, float] | None = None,
):
    """Overlaid density histograms, one per named sample (e.g. sibling vs random pair cosines), with their means.

    Args:
        samples: label -> 1-D values.
        vline: draw a dashed reference line at this x (e.g. 0 for margins).
        range_: the x range shared by every histogram; ``None`` spans all values.

    Returns:
        The axes drawn on.
    """
    import numpy as np

    ax = _axes(ax)
    values = {k: np.asarray(v, dtype=float) for k, v in samples.items()}
    lo_hi = range_ or (min(v.min() for v in values.values()), max(v.max() for v in values.values()))
    for label, v in values.items():
        ax.hist(
            v, bins=bins, range=lo_hi, density=True, alpha=0.45, label=f"{label} (mean {v.mean():.2f}, n={v.size:,})"
        )
    if vline is not None:
        ax.axvline(vline, color="black", linestyle="--", linewidth=1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(frameon=False, fontsize="small", loc="upper left")
    return ax


def barh_values(series: pd.Series, ax=None, title: str = "", xlabel: str = "", fmt: str = "{:.2f}"):
    """Horizontal bars, one per index entry, each labelled with its value.

    Returns:
        The axes drawn on.
    """
    ax = _axes(ax)
    ax.barh([str(i) for i in series.index], series.to_numpy(), color="#1f77b4")
    ax.invert_yaxis()
    for y, v in enumerate(series.to_numpy()):
        ax.text(v, y, " " + fmt.format(v), va="center", fontsize="small")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", visible=False)
    ax.set_xlim(0, series.max() * 1.15)
    return ax


def lookalike_maps(points: pd.DataFrame, axes=None, ncols: int = 2, title: str = ""):
    """Small multiples of a 2-D map of lookalike groups: one panel per ``group``, coloured by ``label`` (true code).

    Args:
        points: columns ``x``, ``y``, ``kind`` (doc/query), ``group``, ``label``; docs are drawn as large labelled
            diamonds, queries as dots of their code's colour (a query judged on several codes as a grey cross).
        axes: a flat sequence of axes, one per group; ``None`` makes a grid with ``ncols`` columns.

    Returns:
        The axes drawn on.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    set_style()
    groups = list(dict.fromkeys(points["group"]))
    if axes is None:
        nrows = -(-len(groups) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 4.6 * nrows), squeeze=False)
        axes = list(np.ravel(axes))
        for extra in axes[len(groups) :]:
            extra.set_visible(False)
        if title:
            fig.suptitle(title, fontweight="bold")
    cmap = plt.get_cmap("tab20")
    for ax, group in zip(axes, groups, strict=False):
        sub = points[points["group"] == group]
        docs = sub[sub["kind"] == "doc"]
        colour = {lab: cmap(i % 20) for i, lab in enumerate(sorted(docs["label"]))}
        queries = sub[sub["kind"] == "query"]
        known = queries[queries["label"].isin(colour)]
        other = queries[~queries["label"].isin(colour)]
        ax.scatter(known["x"], known["y"], c=[colour[lab] for lab in known["label"]], s=28, alpha=0.85, lw=0)
        if len(other):
            ax.scatter(other["x"], other["y"], c="grey", marker="x", s=22, alpha=0.7, label="query on several codes")
            ax.legend(frameon=False, fontsize="x-small", loc="best")
        ax.scatter(docs["x"], docs["y"], c=[colour[lab] for lab in docs["label"]], marker="D", s=70, ec="black", lw=0.8)
        for _, d in docs.iterrows():
            ax.annotate(d["label"], (d["x"], d["y"]), xytext=(4, 4), textcoords="offset points", fontsize=7)
        ax.set_title(f"{group}: {len(docs)} codes, {len(queries)} queries", fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
    return axes


def tradeoff_scatter(
    frame: pd.DataFrame,
    x: str,
    y: str,
    ax=None,
    highlight: str | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
):
    """One labelled point per row of ``frame`` (e.g. mining settings): ``x`` against ``y``, ``highlight`` ringed.

    Returns:
        The axes drawn on.
    """
    ax = _axes(ax)
    ax.scatter(frame[x], frame[y], s=60, color="#1f77b4", zorder=3)
    if highlight is not None and highlight in frame.index:
        ax.scatter(
            [frame.loc[highlight, x]], [frame.loc[highlight, y]], s=260, facecolors="none", edgecolors="#d62728",
            linewidths=2, zorder=4, label=f"chosen: {highlight}",
        )  # fmt: skip
        ax.legend(frameon=False, fontsize="small", loc="best", markerscale=0.4)
    for i, (name, row) in enumerate(frame.iterrows()):
        ax.annotate(
            str(name), (row[x], row[y]), xytext=(8, 6 if i % 2 == 0 else -12), textcoords="offset points",
            fontsize="small",
        )  # fmt: skip
    x_hi = max(float(frame[x].max()), 1e-9)
    y_hi = max(float(frame[y].max()), 1e-9)
    ax.set_xlim(-0.05 * x_hi, 1.45 * x_hi)
    ax.set_ylim(-0.1 * y_hi, 1.3 * y_hi)
    ax.set_title(title)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    return ax
