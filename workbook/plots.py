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
