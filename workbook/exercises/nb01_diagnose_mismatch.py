"""Checks for notebook 01 (01_diagnose_mismatch): score table, confusion by kind, code fragmentation, gate margin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from workbook.data import Dataset
from workbook.diagnose import fragmentation_summary, score_table, should_fine_tune, sibling_confusion, sibling_map
from workbook.exercises._common import (
    CheckResult,
    _compare_numbers,
    _keyed,
    _passing,
    _right,
    _wrong,
)
from workbook.retrieval import encode


def check_score_table(
    table: pd.DataFrame,
    model,
    ds: Dataset,
    codes: Sequence[str] = ("E11.3211", "E11.3212"),
    picks_right: bool | None = None,
) -> CheckResult:
    """01.1 — a :func:`workbook.diagnose.score_table` for a right/left pair, recomputed with the model.

    Args:
        table: your score table (rows: your queries; columns ``gold``, the codes, ``closest``, ``margin``).
        model: the model that scored it.
        ds: the case study (documents are ``ds.doc_text(code)``).
        codes: the codes the table must compare.
        picks_right: your reading: does the model pick the gold code for every query?
    """
    ex = "01.1"
    need = {"gold", "closest", "margin", *codes}
    if not isinstance(table, pd.DataFrame) or not need <= set(table.columns):
        return _wrong(
            ex,
            f"the table needs the columns {sorted(need)}",
            "build it with dg.score_table(queries, q_emb, codes, doc_emb, golds)",
        )
    if len(table) < 2 or not set(codes) <= set(table["gold"]):
        return _wrong(
            ex,
            "the table needs at least one query per code (one per side)",
            f"write one query whose right answer is {codes[0]} and one for {codes[1]}",
        )
    doc_cols = [c for c in table.columns if c in ds.corpus]
    queries = [str(q) for q in table.index]
    expected = score_table(
        queries,
        encode(model, queries, show_progress=False),
        doc_cols,
        encode(model, [ds.doc_text(c) for c in doc_cols], show_progress=False),
        list(table["gold"]),
    )
    diff = float(np.abs(table[doc_cols].to_numpy(float) - expected[doc_cols].to_numpy(float)).max())
    if diff > 0.002:
        return _wrong(
            ex,
            f"the cosines differ from the model's by up to {diff:.3f}",
            "score the documents as the retriever sees them (ds.doc_text(code): code + category + description) and "
            "encode queries and documents with the same model (normalised, as workbook.retrieval.encode does)",
            expected,
        )
    right = int((expected["closest"] == expected["gold"]).sum())
    verdict = right == len(expected)
    if picks_right is not None and bool(picks_right) != verdict:
        return _wrong(
            ex,
            "the table is right, but your reading of it is not",
            "look at the closest and margin columns: a negative margin means a lookalike wins",
            expected,
        )
    return _right(
        ex,
        f"the model picks the gold code for {right} of {len(expected)} queries "
        f"(margins {', '.join(f'{m:+.3f}' for m in expected['margin'])})",
        expected,
    )


def check_confusion_by_kind(
    answer: Mapping,
    ranked: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    groups: Sequence[Mapping],
    k: int = 10,
    most: str | None = None,
) -> CheckResult:
    """01.2 — the sibling-confusion rate@k for each kind of lookalike group, and which kind collapses most.

    Args:
        answer: kind -> confusion rate (``{"excludes1": 0.2, "category": ..., "siblings": ...}``).
        ranked: the dense model's ranking of the queries; ``qrels``: their judgements.
        groups: ``ds.extras["lookalikes"]``.
        most: the kind you found with the highest rate (optional).
    """
    ex = "01.2"
    kinds = sorted({g["kind"] for g in groups})
    answer, bad = _keyed(ex, answer, kinds, "{" + ", ".join(f'"{k}": 0.25' for k in kinds) + "}")
    if bad is not None:
        return bad
    expected = {}
    for kind in kinds:
        conf = sibling_confusion(ranked, qrels, sibling_map([g for g in groups if g["kind"] == kind]), k=k)
        expected[kind] = float(conf["confused"].mean()) if len(conf) else 0.0
    top = max(expected, key=expected.get)
    bad = _compare_numbers(
        ex,
        answer,
        expected,
        0.001,
        "build one sibling map per kind (dg.sibling_map of the groups of that kind only), then "
        f"dg.sibling_confusion(ranking, qrels, that_map, k={k})['confused'].mean()",
    )
    if bad is not None:
        return bad
    if most is not None and most != top:
        return _wrong(
            ex,
            f"the rates are right, but {most!r} is not the kind with the highest rate",
            "compare the three rates",
            expected,
        )
    shown = ", ".join(f"{kd} {v:.3f}" for kd, v in sorted(expected.items(), key=lambda x: -x[1]))
    return _right(ex, f"confusion rate@{k} by kind: {shown}; {top} collapses most", expected)


def check_code_fragmentation(
    answer: Mapping, tokenizers: Mapping[str, Any], codes: Sequence[str], fewer: str | None = None
) -> CheckResult:
    """01.3 — word pieces per code string under each tokenizer, and which one fragments codes less.

    Args:
        answer: tokenizer name -> mean word pieces per code.
        tokenizers: the same names -> tokenizers (``model.tokenizer`` or ``AutoTokenizer.from_pretrained``).
        codes: the code strings (``ds.doc_ids()``).
        fewer: the name of the tokenizer you found fragments codes less (optional).
    """
    ex = "01.3"
    names = list(tokenizers)
    answer, bad = _keyed(ex, answer, names, "{" + ", ".join(f'"{n}": 5.6' for n in names) + "}")
    if bad is not None:
        return bad
    expected = {
        n: float(fragmentation_summary(tok, {"codes": list(codes)}).loc["codes", "pieces per word"])
        for n, tok in tokenizers.items()
    }
    bad = _compare_numbers(
        ex,
        answer,
        expected,
        0.01,
        "tokenise each code string without special tokens and average the number of pieces "
        "(dg.fragmentation_summary(tokenizer, {'ICD codes': ds.doc_ids()}))",
    )
    if bad is not None:
        return bad
    low = min(expected, key=expected.get)
    if fewer is not None and fewer != low:
        return _wrong(
            ex,
            f"the counts are right, but {fewer!r} does not fragment codes less",
            "compare the pieces per code",
            expected,
        )
    shown = ", ".join(f"{n} {v:.2f}" for n, v in expected.items())
    return _right(ex, f"word pieces per code: {shown}; {low} fragments codes least", expected)


def check_gate_margin(answer: Any, gate: Mapping[str, Any], margin: float = 0.15) -> CheckResult:
    """01.4 — which checks of :func:`workbook.diagnose.should_fine_tune` still pass with ``margin=0.15``.

    Args:
        answer: the passing checks: a list of check names, a ``{name: passed}`` dict or the decision itself.
        gate: the other arguments of ``should_fine_tune`` as the notebook measured them (best_cheap, target,
            n_pairs, slice_metrics, overall, ...), without ``margin``.
        margin: the margin asked for.
    """
    ex = "01.4"
    decision = should_fine_tune(**{**gate, "margin": margin})
    expected = {n for n, ok in decision.checks.items() if ok is not None and bool(ok)}
    got = _passing(answer)
    if got == expected:
        return _right(
            ex,
            f"with margin {margin}: {len(expected)} of {len(decision.checks)} checks pass "
            f"({'; '.join(sorted(expected)) or 'none'}); go = {decision.go}",
            sorted(expected),
        )
    return _wrong(
        ex,
        f"not the checks that pass with margin {margin}",
        f"call should_fine_tune with the same measurements and margin={margin}; the check names are "
        f"{list(decision.checks)}. Only the 'errors cluster' check reads the margin",
        sorted(expected),
    )
