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
  pairs, and errors cluster in domain slices. A check the data cannot measure is "not measured", not failed; each
  measured check carries a bootstrap CI, and one whose CI straddles its threshold is "too small to decide" (see
  :class:`FineTuneDecision`). :func:`gate_inputs` builds its inputs from per-query results; notebook 02 and
  ``workbook run`` both use the two.

Embeddings are expected L2-normalised (as :func:`workbook.retrieval.encode` returns them), so a dot product is the
cosine similarity.

Modules:

- :mod:`workbook.diagnose.collapse` — lookalike collapse measures
- :mod:`workbook.diagnose.mismatch` — style mismatch, out-of-vocabulary fragmentation, metrics by slice
- :mod:`workbook.diagnose.projection` — UMAP pictures of lookalike groups
- :mod:`workbook.diagnose.beforeafter` — lookalike groups before and after tuning on one shared map, with separation
- :mod:`workbook.diagnose.gate` — the decision gate
"""
from __future__ import annotations

# Every public name of the submodules, so `from workbook import diagnose as dg; dg.should_fine_tune` keeps working.
from workbook.diagnose.beforeafter import (  # noqa: F401
    PROJECTION,
    GroupMaps,
    before_after_maps,
)
from workbook.diagnose.collapse import (  # noqa: F401
    collapse_distributions,
    collapse_summary,
    measure_collapse,
    random_pair_cosines,
    score_table,
    sibling_confusion,
    sibling_map,
    sibling_margins,
    sibling_pair_cosines,
    telling_words,
)
from workbook.diagnose.gate import (  # noqa: F401
    CLUSTER_CHECK,
    DOMAIN_SLICES,
    GAP_CHECK,
    FineTuneDecision,
    gate_inputs,
    pairs_check,
    should_fine_tune,
)
from workbook.diagnose.mismatch import (  # noqa: F401
    COMMON_ENGLISH,
    centroid_distance,
    fragmentation_summary,
    fragmentation_table,
    metric_by_slice,
    probe_accuracy,
    word_pieces,
    words_of,
)
from workbook.diagnose.projection import (  # noqa: F401
    Projection,
    find_group,
    fit_projection,
    group_points,
    load_projection,
    lookalike_projection,
    nearest_doc_agreement,
    picked_groups,
    projection_path,
)

# The case study's picks, defined with its other rules in workbook.icd10cm (generic code reads
# ds.extras["umap_picks"]); kept here because notebook 01's committed full-mode run reads dg.UMAP_PICKS.
from workbook.icd10cm import UMAP_PICKS  # noqa: F401, E402
