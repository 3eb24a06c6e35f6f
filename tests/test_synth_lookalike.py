"""The synthetic set's lookalike filter (workbook.synth.lookalike): a query whose distinguishing words point to a
lookalike of its source is relabelled or dropped; on the committed set it brings wrong-side queries under 2%."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from workbook import synth
from workbook.config import get_config
from workbook.icd10cm import load_icd10cm
from workbook.synth import CASE_STUDY_ATTRIBUTES, LookalikeCheck, attribute_mismatch
from workbook.synth.lookalike import words

RIGHT = "E10.3211"  # Type 1 diabetes mellitus with mild nonproliferative diabetic retinopathy with macular edema,
# right eye; its left-eye, bilateral and type 2 lookalikes:
LEFT, BOTH, TYPE2 = "E10.3212", "E10.3213", "E11.3211"


@pytest.fixture(scope="module")
def ds():
    return load_icd10cm()  # fast mode: E00-E35 and I00-I52


@pytest.fixture(scope="module")
def check(ds):
    return LookalikeCheck(ds, attributes=CASE_STUDY_ATTRIBUTES)


def test_words_keep_diabetes_types_apart_from_other_digits():
    assert {"type_1", "stage", "2"} <= words("Type 1 diabetes, CKD stage 2") and "1" not in words("type 1")


def test_a_query_that_names_the_sources_attributes_or_none_is_kept(ds, check):
    assert ds.corpus[RIGHT]["text"].endswith("right eye") and ds.corpus[LEFT]["text"].endswith("left eye")
    for query in ("type 1 diabetic macular edema, right eye", "mild NPDR with macular oedema"):
        assert check.check(query, RIGHT) == synth.lookalike.Verdict("keep", RIGHT)


def test_a_query_that_names_a_lookalikes_side_or_type_is_relabelled_to_it(ds, check):
    assert check.check("type 1 diabetes mild retinopathy with macular edema, left eye", RIGHT).doc_id == LEFT
    assert check.check("bilateral mild nonproliferative retinopathy, type 1, macular edema", RIGHT).doc_id == BOTH
    verdict = check.check("type 2 diabetes with mild nonproliferative retinopathy and macular edema, right eye", RIGHT)
    assert verdict.action == "relabel" and verdict.doc_id == TYPE2 and verdict.why == f"{RIGHT} -> {TYPE2}"


def test_a_query_that_contradicts_its_document_with_nowhere_clear_to_go_is_dropped(ds, check):
    verdict = check.check("type 1 diabetic retinopathy with macular edema, right eye and left eye", RIGHT)
    assert verdict.action == "drop" and verdict.why == "names side 'left', not in E10.3211"


def test_without_an_attribute_vocabulary_the_groups_alone_decide(ds):
    generic = LookalikeCheck(ds)  # a dataset's lookalikes.jsonl, no vocabulary: what `workbook run` uses
    assert generic.members(RIGHT)[0] == RIGHT and LEFT in generic.members(RIGHT)
    assert generic.check("mild retinopathy with macular edema, left eye, type 1", RIGHT).doc_id == LEFT
    assert generic.check("diabetic eye disease", RIGHT).action == "keep"


def test_the_filter_runs_inside_apply_filters_and_is_counted(ds, check):
    frame = pd.DataFrame(
        {"doc_id": [RIGHT, RIGHT, RIGHT],
         "query": ["mild NPDR with macular oedema, right eye", "type 1 mild NPDR with macular oedema, left eye",
                   "type 1 NPDR with macular oedema, right eye and left eye"]}
    )  # fmt: skip
    out = synth.apply_filters(frame, ds, round_trip=None, lookalikes=check)
    assert out["doc_id"].tolist() == [RIGHT, LEFT, RIGHT] and out["source_doc"].tolist() == [RIGHT] * 3
    assert out["dropped_by"].tolist() == ["", "", "lookalike"] and out["kept"].tolist() == [True, True, False]
    report = synth.filter_report(out)
    assert report.loc["lookalike", "dropped"] == 1 and report.loc["lookalike", "in"] == 3
    assert attribute_mismatch(out, ds, CASE_STUDY_ATTRIBUTES["side"]) == {"named": 2, "wrong": 0, "rate": 0.0}
    unchecked = synth.apply_filters(frame, ds, round_trip=None)
    assert attribute_mismatch(unchecked, ds, CASE_STUDY_ATTRIBUTES["side"]) == {"named": 3, "wrong": 2, "rate": 0.6667}


def test_the_committed_set_was_built_with_the_filter_and_meets_the_wrong_side_target():
    """The datasheet's claim (issue 23's target): at most 2% of the kept queries that name a side name one their
    document does not state; the provenance records the same count without the filter."""
    cfg = get_config()
    prov = synth.load_provenance(cfg)
    side = prov["attribute_mismatch"]["side"]
    assert side["with it"]["rate"] <= 0.02 < side["without lookalike filter"]["rate"]
    rows = [json.loads(line) for line in synth.synthetic_set_path(cfg).read_text(encoding="utf-8").splitlines()]
    assert sum(r["kept"] and r["doc_id"] != r["source_doc"] for r in rows) == prov["counts"][
        "kept queries relabelled to a lookalike"]  # fmt: skip
    assert sum(r["dropped_by"] == "lookalike" for r in rows) > 0
