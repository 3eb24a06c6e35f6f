"""One colour per method everywhere: the plot helpers colour a method by its name, whichever chart draws it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import pandas as pd  # noqa: E402

from workbook.plots import bar_counts, ci_bars, method_colour, method_colours, metric_lines  # noqa: E402

# The names the notebooks and the run report give their methods.
NAMES = {
    "dense all-MiniLM-L6-v2": "#1f77b4",
    "dense MiniLM (base)": "#1f77b4",
    "base": "#1f77b4",
    "BM25": "#ff7f0e",
    "hybrid all-MiniLM-L6-v2+BM25": "#9467bd",
    "hybrid MiniLM+BM25": "#9467bd",
    "reranker (hybrid top-k)": "#8c564b",
    "fine-tuned": "#2ca02c",
    "tuned MiniLM (mnrl, real, all rows)": "#2ca02c",
    "hybrid fine-tuned+BM25": "#17becf",
    "tuned + BM25 hybrid": "#17becf",
    "dense mpnet": "#7f7f7f",
    "hybrid mpnet+BM25": "#e377c2",  # not the MiniLM hybrid's purple: notebook 02 draws both
}


def _hex(rgba) -> str:
    return mcolors.to_hex(rgba)


def test_each_method_name_has_its_colour():
    assert {n: method_colour(n) for n in NAMES} == NAMES
    assert method_colour("exact-code") is None
    assert method_colours(["train", "dev"]) is None, "columns that are not methods keep the default cycle"


def test_every_chart_draws_a_method_in_its_colour():
    methods = ["dense all-MiniLM-L6-v2", "BM25", "fine-tuned"]
    frame = pd.DataFrame([[0.5, 0.4, 0.7], [0.6, 0.7, 0.8]], index=["all", "lookalike"], columns=methods)
    ax = bar_counts(frame, counts={"all": 43, "lookalike": 35})
    bars = ax.patches
    assert [_hex(bars[i * len(frame)].get_facecolor()) for i in range(len(methods))] == [NAMES[m] for m in methods]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["all\nn=43", "lookalike\nn=35"]

    table = pd.DataFrame({"recall@10": [0.5, 0.7], "recall@10 lo": [0.4, 0.6], "recall@10 hi": [0.6, 0.8]},
                         index=["BM25", "fine-tuned"])  # fmt: skip
    ax = ci_bars(table, "recall@10", highlight="fine-tuned")
    assert [_hex(p.get_facecolor()) for p in ax.patches] == [NAMES["BM25"], NAMES["fine-tuned"]]
    assert {t.get_text(): t.get_fontweight() for t in ax.get_yticklabels()} == {"BM25": "normal", "fine-tuned": "bold"}

    ax = metric_lines(pd.DataFrame({"base": [0.7, 0.8], "fine-tuned": [0.75, 0.86]}, index=[128, 384]))
    assert [_hex(line.get_color()) for line in ax.get_lines()] == [NAMES["base"], NAMES["fine-tuned"]]


def test_lines_that_share_a_method_colour_differ_in_style():
    frame = pd.DataFrame({"base": [0.7, 0.8], "tuned (all rows)": [0.8, 0.9], "tuned mnrl (1,000 rows)": [0.75, 0.85],
                          "tuned matryoshka (1,000 rows)": [0.76, 0.84]}, index=[128, 384])  # fmt: skip
    lines = metric_lines(frame).get_lines()
    assert {_hex(line.get_color()) for line in lines[1:]} == {NAMES["fine-tuned"]}  # each keeps its method's colour
    looks = [(line.get_linestyle(), line.get_marker()) for line in lines]
    assert looks[0] == looks[1] == ("-", "o") and len(set(looks[1:])) == 3  # the three tuned runs tell apart


def test_training_curve_starts_at_the_score_before_training():
    from workbook.plots import training_curves

    history = [{"step": 10, "loss": 1.2}, {"step": 20, "loss": 0.8}, {"step": 20, "eval_dev_cosine_ndcg@10": 0.55}]
    ax = training_curves(history, start=0.36, metric_label="dev nDCG@10")
    right = next(a for a in ax.figure.axes if a is not ax)
    steps, values = right.lines[0].get_data()
    assert list(steps) == [0, 20] and list(values) == [0.36, 0.55]  # the gain from step 0 is on the chart
    assert right.get_ylim()[0] == 0 and right.get_ylabel() == "dev nDCG@10"
    assert any("0.360" in t.get_text() for t in right.texts)
    matplotlib.pyplot.close(ax.figure)


def test_batch_matrix_boxes_the_targets_and_the_duplicates():
    import numpy as np

    from workbook.plots import batch_matrix

    sim = np.array([[0.9, 0.9, 0.2, 0.1], [0.9, 0.8, 0.3, 0.2]])  # both rows share one positive text
    ax = batch_matrix(sim, ["q1", "q2"], ["p", "p", "n1", "n2"], flagged=[(0, 1), (1, 0)])
    boxes = [(p.get_xy(), p.get_edgecolor()[:3]) for p in ax.patches]
    green, red = mcolors.to_rgb("#2ca02c"), mcolors.to_rgb("#d62728")
    assert sorted(xy for xy, c in boxes if np.allclose(c, green)) == [(-0.5, -0.5), (0.5, 0.5)]  # the diagonal
    assert sorted(xy for xy, c in boxes if np.allclose(c, red)) == [(-0.5, 0.5), (0.5, -0.5)]
    assert len(ax.texts) == sim.size  # every cell's value is printed
    matplotlib.pyplot.close(ax.figure)


def test_points_on_one_spot_share_one_label_and_the_chosen_one_says_so():
    from workbook.plots import tradeoff_scatter

    frame = pd.DataFrame({"empty %": [0.0, 0.0, 32.4, 0.0], "fn %": [0.002, 0.0, 0.0, 0.0]},
                         index=["no filter", "window 3-50", "absolute margin 0", "window 10-60"])  # fmt: skip
    ax = tradeoff_scatter(frame, "empty %", "fn %", highlight="window 10-60", note="y in percent")
    labels = {t.get_text(): t.get_color() for t in ax.texts}
    # "window 3-50" and "window 10-60" sit on one point: one label, never two printed over each other
    assert labels.get("window 10-60 (chosen) = window 3-50") == "#d62728"
    assert not any(t == "window 3-50" or t == "window 10-60" for t in labels) and "y in percent" in labels
    assert ax.get_legend() is None  # no legend marker that could pass for a data point
    matplotlib.pyplot.close(ax.figure)


def test_overlaid_histograms_are_outlines_and_bars_can_carry_their_values():
    import numpy as np

    from workbook.plots import hist_compare

    rng = np.random.default_rng(0)
    ax = hist_compare({"real": rng.normal(size=50), "synthetic": rng.normal(1, size=50)}, bins=10)
    kinds = [p for p in ax.patches if p.get_fill()]
    assert not kinds, "several samples are drawn as outlines, so overlaps do not blend into a third colour"
    assert len({_hex(p.get_edgecolor()) for p in ax.patches}) == 2
    matplotlib.pyplot.close(ax.figure)

    frame = pd.DataFrame({"train": [41.2, 4.3], "dev": [27.8, float("nan")]}, index=["% colloquial", "% abbrev"])
    ax = bar_counts(frame, fmt="{:.0f}")
    assert sorted(t.get_text() for t in ax.texts) == ["", "28", "4", "41"]  # a missing bar gets no label
    matplotlib.pyplot.close(ax.figure)


def test_barh_values_draws_each_seed_over_its_mean():
    """A bar is a mean; its seeds are dots on the same row (a missing seed draws nothing)."""
    from workbook.plots import barh_values

    means = pd.Series({"a": 0.5, "b": 0.6})
    seeds = pd.DataFrame({42: [0.48, 0.61], 1042: [0.52, None]}, index=["a", "b"])
    ax = barh_values(means, points=seeds)
    dots = [(list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()]
    assert dots == [([0.48, 0.52], [0, 0]), ([0.61], [1])]
    assert [p.get_width() for p in ax.patches] == [0.5, 0.6]
    assert not barh_values(means).get_lines(), "no points, no dots"
