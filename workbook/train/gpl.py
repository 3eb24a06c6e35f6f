"""GPL-style pseudo-labels: a cross-encoder scores each synthetic (query, positive, negative) row, MarginMSE trains on
its margins.

Plain MNRL trusts every synthetic pair completely: the positive is right and the mined negative is wrong. GPL
(Wang et al., 2022) asks a cross-encoder instead: the label of a row is its score margin
``ce(query, positive) - ce(query, negative)``, and MarginMSE makes the embedding model's margin match it. A noisy
query whose "negative" fits it as well as its positive gets a margin near zero and teaches little; a clear one
teaches the gap the cross-encoder sees.

The cross-encoder must not have seen evaluation labels. On a corpus without training queries it is trained on the
synthetic pairs themselves (:func:`workbook.retrieval.load_reranker` on :func:`workbook.train.synthetic_dataset`);
where a training split exists, the case study's reranker (trained on that split) may score instead.
"""

from __future__ import annotations

from workbook.train.recipes import Recipe

#: GPL's recipe: MarginMSE on one mined negative per row, the default recipe's batch and learning rate.
GPL_RECIPE = Recipe(name="gpl", loss="margin-mse", num_negatives=1)


def pseudo_labels(cross_encoder, rows, batch_size: int = 64, show_progress: bool = False):
    """The rows with GPL's ``label`` column: the cross-encoder's score of (anchor, positive) minus (anchor, negative_1).

    Args:
        cross_encoder: a sentence-transformers ``CrossEncoder`` (its ``predict`` scores, after its activation).
        rows: a ``datasets.Dataset`` with ``anchor``, ``positive`` and ``negative_1`` columns (other columns dropped).
        batch_size: pairs scored at once.

    Returns:
        ``anchor, positive, negative_1, label`` rows, in the same order.
    """
    import numpy as np

    missing = {"anchor", "positive", "negative_1"} - set(rows.column_names)
    if missing:
        raise ValueError(f"pseudo-labelling needs anchor, positive and negative_1 columns; missing {sorted(missing)}")
    rows = rows.select_columns(["anchor", "positive", "negative_1"])
    pairs = [(a, p) for a, p in zip(rows["anchor"], rows["positive"], strict=True)]
    pairs += [(a, n) for a, n in zip(rows["anchor"], rows["negative_1"], strict=True)]
    scores = np.asarray(cross_encoder.predict(pairs, batch_size=batch_size, show_progress_bar=show_progress))
    margins = scores[: len(rows)] - scores[len(rows) :]
    return rows.add_column("label", [float(m) for m in margins])
