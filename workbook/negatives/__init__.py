"""Hard-negative mining with sentence-transformers' ``mine_hard_negatives`` (faiss), and an audit of the result.

Mining: one training row per (query, relevant doc) pair of a split; sentence-transformers groups rows that share
an anchor, so every relevant doc of a query is excluded from its candidates *provided every pair is passed*
(:class:`MiningSettings.one_positive_per_query` reproduces the common mistake of passing one). Candidates come from
the whole corpus through an exact faiss index searched in query batches, so no query x doc matrix is ever built.

Audit: a mined negative is a *known false negative* when the data itself says it is relevant or equivalent:

- ``judged``: it is relevant to the same query in the qrels of the label splits.
- ``same wording``: another query whose wording is the same under :func:`description_key` (e.g. "Lymphadenitis" and
  "Lymphadenitis NOS") is judged relevant to it in the label splits: the data gives that doc as an answer to this
  wording.
- ``same description``: its description is near-identical to a positive's: equal after :func:`description_key`
  (NFKC, case, punctuation, spaces, and the boilerplate qualifiers "NOS" / "NEC" / "not elsewhere classified",
  which in ICD-10-CM only say "no further detail given"). Word order and every other word are kept: with/without,
  left/right, type 1/type 2, initial/subsequent and "unspecified" (a code of its own) are the distinctions hard
  negatives must teach, and a bag-of-words comparison would wrongly merge "with X, without Y" and "without X, with Y".
- ``query names it``: the query's wording is, under the same key, the official description of that doc (e.g.
  "Viral pericarditis" is an inclusion term of I30.1 and the title of B33.23: both are right answers).

Label splits: the two label-based categories read judgements, and whatever feeds training (``exclude_known``, the
audit that picks a setting) reads the **training split's only** (``TRAIN_LABELS``): dev and test judgements must not
shape training data. An audit may read every split (``label_splits=None``) to *report* what held-out judgements would
flag, as a read-only check; the two label-free categories need no judgements at all.

Modules:

- :mod:`workbook.negatives.settings` — mining settings, the training-label rule, input pairs
- :mod:`workbook.negatives.known` — known relevant/equivalent docs per query
- :mod:`workbook.negatives.mine` — mining
- :mod:`workbook.negatives.lookalike` — curated lookalike negatives (the positive's siblings) beside the mined ones
- :mod:`workbook.negatives.audit` — the false-negative audit, Excludes1 partners, picking a setting
- :mod:`workbook.negatives.store` — saving and loading a mined training set
"""
from __future__ import annotations

from workbook.negatives.audit import (  # noqa: F401
    Audit,
    audit,
    audit_table,
    excludes1_overlap,
    excludes1_partners,
    pick_setting,
    side_by_side,
)
from workbook.negatives.known import (  # noqa: F401
    known_equivalents,
)
from workbook.negatives.lookalike import (  # noqa: F401
    NEGATIVE_SOURCES,
    MixStats,
    lookalike_negatives,
    mix_negatives,
    sibling_coverage,
)
from workbook.negatives.mine import (  # noqa: F401
    MinedNegatives,
    mine_negatives,
)

# Every public name of the submodules, so `from workbook.negatives import mine_negatives` keeps working.
from workbook.negatives.settings import (  # noqa: F401
    DEFAULT_SETTINGS,
    FN_KINDS,
    TRAIN_LABELS,
    TRAINING_SETTINGS,
    MiningError,
    MiningSettings,
    Skip,
    description_key,
    training_pairs,
)
from workbook.negatives.store import (  # noqa: F401
    data_digest,
    load_or_mine_training_set,
    load_training_set,
    save_training_set,
    training_set_path,
)
