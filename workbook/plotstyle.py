"""The plots' shared style: one matplotlib style, one colour per method, axes and saving (for workbook.plots)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

from workbook.config import Config, default_config

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

#: One colour per method, everywhere (notebooks, solutions, the run report): the first rule whose words all occur in
#: a method's name (case-insensitive) gives its colour. Order matters: "hybrid fine-tuned+BM25" is a hybrid of the
#: tuned model, not BM25; "reranker (hybrid top-k)" is the reranker, not the hybrid.
METHOD_COLOURS: list[tuple[tuple[str, ...], str]] = [
    (("hybrid", "tuned"), "#17becf"),  # hybrid of the fine-tuned model and BM25: cyan
    (("rerank",), "#8c564b"),  # cross-encoder reranker (of the hybrid's top k): brown
    (("merged",), "#bcbd22"),  # base<->tuned interpolation: olive
    (("hybrid", "mpnet"), "#e377c2"),  # hybrid of the bigger comparator and BM25: pink
    (("hybrid",), "#9467bd"),  # hybrid of the base model and BM25: purple
    (("rrf",), "#9467bd"),
    (("tuned",), "#2ca02c"),  # the fine-tuned model: green
    (("bm25",), "#ff7f0e"),  # BM25: orange
    (("mpnet",), "#7f7f7f"),  # the bigger off-the-shelf comparator: grey
    (("minilm",), "#1f77b4"),  # the base model: blue
    (("dense",), "#1f77b4"),
    (("base",), "#1f77b4"),
]


def method_colour(name: str) -> str | None:
    """The colour of a method by its name (:data:`METHOD_COLOURS`), or ``None`` when no rule names it."""
    lowered = str(name).lower()
    for words, colour in METHOD_COLOURS:
        if all(w in lowered for w in words):
            return colour
    return None


def method_colours(names) -> list[str] | None:
    """Each method's colour, when every name is a known method (else ``None``: the caller keeps its own colours)."""
    colours = [method_colour(n) for n in names]
    return None if None in colours else colours


#: Line style and marker for the 1st, 2nd, ... series that share a method colour in one chart (e.g. several tuned
#: models), so each stays tellable apart while keeping its method's colour.
SHARED_COLOUR_STYLES: list[tuple[str, str]] = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]


def line_styles(names) -> list[tuple[str | None, str, str]]:
    """``(colour, linestyle, marker)`` per method name: its method colour, and a distinct style and marker when an
    earlier name in ``names`` has the same colour (the first of each colour draws as a plain solid line with dots)."""
    seen: dict[str | None, int] = {}
    out = []
    for name in names:
        colour = method_colour(name)
        n = seen[colour] = seen.get(colour, -1) + 1
        linestyle, marker = SHARED_COLOUR_STYLES[n % len(SHARED_COLOUR_STYLES)]
        out.append((colour, linestyle, marker))
    return out


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
    cfg = cfg or default_config()
    path = cfg.artifacts_dir / "figures" / cfg.mode / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
