"""Plot helpers: one style set once, every helper takes ``ax=None``, figures saved when run headless."""

from __future__ import annotations

import pandas as pd

from workbook.plotstyle import (  # noqa: F401  (re-exported: notebooks and the report import them from here)
    METHOD_COLOURS,
    _axes,
    is_headless,
    line_styles,
    method_colour,
    method_colours,
    save_figure,
    set_style,
)


def bar_counts(
    frame: pd.DataFrame,
    ax=None,
    title: str = "",
    ylabel: str = "queries",
    log: bool = False,
    counts=None,
    fmt: str | None = None,
):
    """Grouped bars: one group per row of ``frame`` (e.g. split), one bar per column (e.g. slice).

    Columns that are all known methods take their :func:`method_colour`.

    Args:
        counts: queries behind each row (a mapping by row label), printed under its tick label as ``n=...``.
        fmt: a format for each bar's value printed on top of it (e.g. ``"{:.0f}%"``); ``None`` prints none.

    Returns:
        The axes drawn on.
    """
    ax = _axes(ax)
    frame.plot.bar(ax=ax, rot=0, logy=log, width=0.8, color=method_colours(frame.columns))
    if fmt is not None:
        for bars, column in zip(ax.containers, frame.columns, strict=True):  # one container per column
            labels = ["" if pd.isna(v) else fmt.format(v) for v in frame[column]]  # no bar, no label
            ax.bar_label(bars, labels=labels, fontsize="x-small", padding=1)
    if counts is not None:
        ax.set_xticks(range(len(frame)), [f"{i}\nn={int(counts[i]):,}" for i in frame.index])
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("")
    ax.legend(
        frameon=False,
        ncols=min(4, len(frame.columns)),
        fontsize="small",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.08 if counts is None else -0.16),  # below the "n=" line of the tick labels
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
    """Overlaid density histograms, one per named sample (e.g. sibling vs random pair cosines), means dotted.

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
    colours = method_colours(values) or [f"C{i}" for i in range(len(values))]
    for (label, v), colour in zip(values.items(), colours, strict=True):
        # One sample is filled; several are outlines in their own colour, so overlaps never blend into a new colour.
        one = len(values) == 1
        ax.hist(
            v, bins=bins, range=lo_hi, density=True, color=colour, histtype="stepfilled" if one else "step",
            alpha=0.6 if one else 1.0, linewidth=1.8, label=f"{label} (mean {v.mean():.2f}, n={v.size:,})",
        )  # fmt: skip
        ax.axvline(float(v.mean()), color=colour, linestyle=":", linewidth=1.2)
    if vline is not None:
        ax.axvline(vline, color="black", linestyle="--", linewidth=1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(frameon=False, fontsize="small", loc="best")
    return ax


def barh_values(series: pd.Series, ax=None, title: str = "", xlabel: str = "", fmt: str = "{:.2f}",
                points: pd.DataFrame | None = None):
    """Horizontal bars, one per index entry, each labelled with its value.

    Args:
        points: values to draw as dots over each entry's bar (a row per index entry, e.g. a column per seed when
            the bar is their mean).

    Returns:
        The axes drawn on.
    """
    ax = _axes(ax)
    ax.barh([str(i) for i in series.index], series.to_numpy(), color="#1f77b4")
    ax.invert_yaxis()
    for y, (name, v) in enumerate(series.items()):
        row = points.loc[name].dropna().to_numpy() if points is not None else []
        if len(row):
            ax.plot(row, [y] * len(row), "o", color="black", ms=4, zorder=3)
        ax.text(max([v, *row]), y, "  " + fmt.format(v), va="center", fontsize="small")  # right of bar and dots
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
    note: str = "",
):
    """One labelled point per row of ``frame`` (e.g. mining settings): ``x`` against ``y``, ``highlight`` ringed.

    Rows that land on the same point share one label ("a = b"), so labels never overprint; the highlighted row's
    label says "chosen" in the ring's colour (no legend entry that could pass for data).

    Args:
        note: a line printed in the top-left corner (e.g. what the axis scale means).

    Returns:
        The axes drawn on.
    """
    ax = _axes(ax)
    ax.scatter(frame[x], frame[y], s=60, color="#1f77b4", zorder=3)
    points: dict[tuple[float, float], list[str]] = {}
    for name, row in frame.iterrows():
        points.setdefault((round(float(row[x]), 9), round(float(row[y]), 12)), []).append(str(name))
    if highlight is not None and highlight in frame.index:
        ax.scatter(
            [frame.loc[highlight, x]], [frame.loc[highlight, y]], s=260, facecolors="none", edgecolors="#d62728",
            linewidths=2, zorder=4,
        )  # fmt: skip
    x_hi = max(float(frame[x].max()), 1e-9)
    y_hi = max(float(frame[y].max()), 1e-9)
    placed: list[tuple[float, float]] = []
    for (px, py), names in points.items():
        # Labels of points close on the page (labels run a quarter of the width) are stacked above and below in turn.
        near = sum(abs(px - qx) < 0.25 * x_hi and abs(py - qy) < 0.05 * y_hi for qx, qy in placed)
        placed.append((px, py))
        chosen = highlight in names
        names = sorted(names, key=lambda n: n != highlight)  # the chosen one first
        label = " = ".join(f"{n} (chosen)" if n == highlight else n for n in names)
        ax.annotate(
            label, (px, py), xytext=(10, (6, -12, 18, -24)[near % 4]), textcoords="offset points", fontsize="small",
            color="#d62728" if chosen else "black", fontweight="bold" if chosen else "normal",
        )  # fmt: skip
    if note:
        ax.text(0.01, 0.98, note, transform=ax.transAxes, va="top", fontsize="small", color="#555555")
    ax.set_xlim(-0.05 * x_hi, 1.6 * x_hi)
    ax.set_ylim(-0.1 * y_hi, 1.3 * y_hi)
    ax.set_title(title)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    return ax


def training_curves(history: list[dict], ax=None, metric: str = "eval_dev_cosine_ndcg@10", title: str = "",
                    start: float | None = None, metric_label: str | None = None):
    """Training loss (left axis) and a dev metric (right axis, from 0) against the optimiser step, from a trainer's log.

    Args:
        history: ``trainer.state.log_history`` (saved as ``log_history.json`` beside each fine-tuned model).
        metric: the logged evaluation key drawn on the right axis (skipped when never logged).
        start: the metric before training, drawn at step 0 (e.g. the base model on the same dev pool); trainers log
            no evaluation at step 0, so without it the curve starts after most of the gain.
        metric_label: the right axis's label (default: the key without its ``eval_`` prefix).

    Returns:
        The left axes.
    """
    ax = _axes(ax)
    loss = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h[metric]) for h in history if metric in h]
    if start is not None:
        evals = [(0, start), *evals]
    if loss:
        ax.plot(*zip(*loss, strict=True), color="#1f77b4", label="training loss")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss", color="#1f77b4")
    ax.set_xlim(left=0)
    if evals:
        right = ax.twinx()
        steps, values = zip(*evals, strict=True)
        right.plot(steps, values, color="#d62728", marker="o")
        if start is not None:
            right.annotate(f"before training: {start:.3f}", (0, start), textcoords="offset points", xytext=(8, -14),
                           color="#d62728", fontsize="small")
        right.annotate(f"{values[-1]:.3f}", (steps[-1], values[-1]), textcoords="offset points", xytext=(0, 8),
                       ha="center", color="#d62728", fontsize="small")
        right.set_ylim(0, min(1.0, max(values) * 1.25))
        right.set_ylabel(metric_label or metric.removeprefix("eval_"), color="#d62728")
        right.grid(False)
    ax.set_title(title)
    return ax


def ci_bars(table: pd.DataFrame, metric: str, ax=None, title: str = "", highlight: str | None = None):
    """Horizontal bars of ``metric`` per run with its 95% CI (columns ``<metric> lo`` / ``<metric> hi``).

    Args:
        table: from :func:`workbook.evaluate.results_with_ci`, one row per run (drawn top to bottom).
        highlight: a run whose label is set in bold (each bar has its method's colour).

    Returns:
        The axes drawn on.
    """
    import numpy as np

    ax = _axes(ax)
    values = table[metric].to_numpy()
    err = np.vstack([values - table[f"{metric} lo"].to_numpy(), table[f"{metric} hi"].to_numpy() - values])
    colours = [method_colour(name) or "#1f77b4" for name in table.index]
    ax.barh([str(i) for i in table.index], values, xerr=err, color=colours, capsize=3)
    ax.invert_yaxis()
    for label in ax.get_yticklabels():  # the highlighted run: its label in bold
        label.set_fontweight("bold" if label.get_text() == str(highlight) else "normal")
    for y, (v, hi) in enumerate(zip(values, table[f"{metric} hi"].to_numpy(), strict=True)):
        ax.text(hi, y, f"  {v:.3f}", va="center", ha="left", fontsize="small")  # right of the CI whisker
    ax.set_xlim(0, min(1.0, float(table[f"{metric} hi"].max()) * 1.18))
    ax.set_xlabel(f"{metric} (mean over queries, 95% bootstrap CI)")
    ax.set_title(title)
    ax.grid(axis="y", visible=False)
    return ax


def metric_lines(frame: pd.DataFrame, ax=None, title: str = "", xlabel: str = "", ylabel: str = "", logx=False):
    """One line per column of ``frame`` against its index (e.g. Recall@10 per model against embedding size).

    Returns:
        The axes drawn on.
    """
    ax = _axes(ax)
    for col, (colour, linestyle, marker) in zip(frame.columns, line_styles(frame.columns), strict=True):
        ax.plot(frame.index, frame[col], marker=marker, linestyle=linestyle, label=str(col), color=colour)
    if logx:
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(frame.index), [str(i) for i in frame.index])
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize="small", loc="best")
    return ax


def merge_curve(curve: pd.DataFrame, ax=None, chosen: float | None = None, budget: float | None = None, title=""):
    """Domain gain against general-domain loss for each base<->tuned interpolation ratio (``curve`` index).

    Args:
        curve: columns ``domain gain`` and ``general loss`` (metric units; drawn in points, x100).
        chosen: the ratio picked (ringed in red).
        budget: the general-loss budget (a dashed vertical line).

    Returns:
        The axes drawn on.
    """
    ax = _axes(ax)
    x, y = 100 * curve["general loss"], 100 * curve["domain gain"]
    ax.plot(x, y, marker="o", color="#1f77b4")
    for alpha, xi, yi in zip(curve.index, x, y, strict=True):
        ax.annotate(f"alpha={alpha:g}", (xi, yi), xytext=(6, -10), textcoords="offset points", fontsize="small")
    if chosen is not None:
        point = ([100 * curve.loc[chosen, "general loss"]], [100 * curve.loc[chosen, "domain gain"]])
        ax.scatter(*point, s=250, facecolors="none", edgecolors="#d62728", linewidths=2, zorder=4,
                   label=f"chosen: alpha={chosen:g}")  # fmt: skip
    if budget is not None:
        ax.axvline(100 * budget, color="black", linestyle="--", linewidth=1, label=f"budget: {100 * budget:g} pt")
    ax.set_xlabel("general-domain loss (SciFact nDCG@10 points)")
    ax.set_ylabel("domain gain (ICD dev Recall@10 points)")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize="small", loc="lower right")
    return ax


def _stacked_labels(ax, xs, ys, labels, fontsize=7) -> None:
    """Label points without overprinting: each label takes the first offset around its point whose box (estimated
    from the text length, in screen pixels) meets no label already placed. Set the axes limits first."""
    ax.figure.canvas.draw_idle()
    char_w, line_h = 0.62 * fontsize * ax.figure.dpi / 72, 1.25 * fontsize * ax.figure.dpi / 72
    offsets = [(5, 3), (5, -12), (-5, 3), (-5, -12), (5, 14), (5, -23), (-5, 14), (-5, -23), (5, 25), (5, -34)]
    placed: list[tuple[float, float, float, float]] = []
    for x, y, lab in sorted(zip(xs, ys, labels, strict=True), key=lambda t: (-t[1], t[0])):
        px, py = ax.transData.transform((x, y))
        w = char_w * len(lab)
        for dx, dy in offsets:
            x0 = px + dx if dx > 0 else px + dx - w
            box = (x0, py + dy, x0 + w, py + dy + line_h)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        ax.annotate(lab, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, zorder=5,
                    ha="left" if dx > 0 else "right")  # fmt: skip


def lookalike_before_after(maps, axes=None, title: str = ""):
    """Each lookalike group before and after fine-tuning on one shared map (a row per group, a column per model).

    Args:
        maps: a :class:`workbook.diagnose.beforeafter.GroupMaps`.
        axes: a 2-D array of axes (groups x models); ``None`` makes the grid.

    Returns:
        The axes drawn on (2-D).
    """
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.lines import Line2D

    set_style()
    pts = maps.points
    groups, models = list(maps.separation.index), list(maps.separation.columns)
    if axes is None:
        fig, axes = plt.subplots(len(groups), len(models), figsize=(5.2 * len(models), 4.0 * len(groups)),
                                 squeeze=False)  # fmt: skip
    axes = np.asarray(axes).reshape(len(groups), len(models))
    fig = axes[0, 0].figure
    cmap = plt.get_cmap("tab10")
    for r, group in enumerate(groups):
        sub = pts[pts["group"] == group]
        codes = sorted(sub.loc[sub["kind"] == "doc", "label"].unique())
        colour = {c: (cmap(i % 10) if len(codes) <= 10 else plt.get_cmap("tab20")(i % 20)) for i, c in enumerate(codes)}
        pad_x = 0.08 * ((sub["x"].max() - sub["x"].min()) or 1.0)
        pad_y = 0.12 * ((sub["y"].max() - sub["y"].min()) or 1.0)
        for c, model in enumerate(models):
            ax = axes[r, c]
            m = sub[sub["model"] == model]
            docs, queries = m[m["kind"] == "doc"], m[m["kind"] == "query"]
            where = {d.label: (d.x, d.y) for d in docs.itertuples()}
            for q in queries.itertuples():  # a thin line from each query to its gold code
                gx, gy = where[q.label]
                ax.plot([q.x, gx], [q.y, gy], color=colour[q.label], lw=0.6, alpha=0.5, zorder=1)
            right = queries["nearest"] == queries["label"]
            for ok, face in ((True, None), (False, "white")):
                sel = queries[right == ok]
                cols = [colour[lab] for lab in sel["label"]]
                ax.scatter(sel["x"], sel["y"], s=30, zorder=3, c=cols if face is None else face,
                           edgecolors=cols, linewidths=1.2)  # fmt: skip
            ax.scatter(docs["x"], docs["y"], marker="D", s=80, c=[colour[lab] for lab in docs["label"]],
                       edgecolors="black", linewidths=0.8, zorder=4)  # fmt: skip
            ax.set_xlim(sub["x"].min() - 3 * pad_x, sub["x"].max() + 3 * pad_x)
            ax.set_ylim(sub["y"].min() - pad_y, sub["y"].max() + pad_y)
            _stacked_labels(ax, docs["x"].tolist(), docs["y"].tolist(), docs["label"].tolist())
            sep, n = maps.separation.loc[group, model], int(maps.queries.loc[group])
            ax.set_title(f"{group}, {model}:\n{sep:.0%} of {n} held-out queries nearest their code", fontsize="medium")
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [
        Line2D([], [], marker="D", ls="", color="grey", mec="black", ms=8, label="code (its description), labelled"),
        Line2D([], [], marker="o", ls="", color="grey", ms=6, label="held-out query, nearest its own code"),
        Line2D([], [], marker="o", ls="", mfc="white", mec="grey", ms=6, label="held-out query, nearest a sibling"),
        Line2D([], [], color="grey", lw=0.8, label="line: query to its gold code; colour: the gold code"),
    ]
    fig.tight_layout(rect=(0, 0.9 / (4.0 * len(groups)), 1, 1 - 0.5 / (4.0 * len(groups))))
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, fontsize="small", bbox_to_anchor=(0.5, 0))
    fig.suptitle(title or "Lookalike groups before and after fine-tuning (one shared map per group)", fontweight="bold")
    return axes


def before_after_hist(samples, ax=None, title: str = "", xlabel: str = "", zero_line: bool = False, bins: int = 40):
    """Overlaid histograms of one measure per model (e.g. sibling-pair cosines, base vs tuned), medians marked.

    Args:
        samples: model name -> values (each model in its method colour).
        zero_line: draw x = 0 (for margins: left of it the gold code loses to a sibling).

    Returns:
        The axes drawn on.
    """
    import numpy as np

    ax = _axes(ax)
    values = {k: np.asarray(v, dtype=float) for k, v in samples.items()}
    lo = min(float(v.min()) for v in values.values())
    hi = max(float(v.max()) for v in values.values())
    edges = np.linspace(lo, hi, bins + 1)
    for name, v in values.items():
        colour = method_colour(name)
        ax.hist(v, bins=edges, alpha=0.45, color=colour, label=f"{name} (median {np.median(v):.2f}, n={v.size:,})")
        ax.axvline(float(np.median(v)), color=colour, lw=1.5)
    if zero_line:
        ax.axvline(0, color="black", ls="--", lw=1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend(frameon=False, fontsize="small", loc="best")
    return ax


def batch_matrix(sim, anchors, columns, ax=None, flagged=(), title: str = ""):
    """A training batch as MultipleNegativesRankingLoss sees it: anchors (rows) against every text of the batch
    (columns: the positives, then the hard negatives), cosine in each cell.

    Row *i*'s softmax target is column *i* (boxed in green: the diagonal of the positives block); every other column
    of the row is a negative for it.

    Args:
        sim: ``len(anchors) x len(columns)`` cosine similarities.
        flagged: ``(row, column)`` cells boxed in red, e.g. another row's positive that is this row's own answer too
            (a duplicate text in the batch: the loss pushes the anchor away from its right answer).

    Returns:
        The axes drawn on.
    """
    import numpy as np
    from matplotlib.patches import Rectangle

    ax = _axes(ax)
    sim = np.asarray(sim)
    image = ax.imshow(sim, cmap="Blues", vmin=min(0.0, float(sim.min())), vmax=1.0, aspect="auto")
    for (i, j), v in np.ndenumerate(sim):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.6 else "black")
    for i in range(len(anchors)):
        ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#2ca02c", linewidth=2.5))
    for i, j in flagged:
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#d62728", linewidth=2.5))
    ax.axvline(len(anchors) - 0.5, color="black", linewidth=1)
    ax.set_xticks(range(len(columns)), [str(c) for c in columns], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(anchors)), [str(a) for a in anchors], fontsize=7)
    ax.grid(False)
    ax.set_xlabel("positives (left of the line) and hard negatives (right) of the batch")
    ax.figure.colorbar(image, ax=ax, label="cosine", shrink=0.8)
    handles = [Rectangle((0, 0), 1, 1, fill=False, edgecolor="#2ca02c", linewidth=2, label="the row's target"),
               Rectangle((0, 0), 1, 1, fill=False, edgecolor="#d62728", linewidth=2,
                         label="a duplicate: the row's own answer, scored as a negative")]
    ax.legend(handles=handles[: 2 if len(flagged) else 1], loc="upper center", bbox_to_anchor=(0.5, -0.56), ncol=2,
              fontsize="small", frameon=False)
    ax.set_title(title)
    return ax
