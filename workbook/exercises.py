"""Checks for the notebooks' exercises: each says whether a learner's answer is right, and if not, where to look.

Every check recomputes the right answer from the data, rankings or models it is given (never from a stored
number, so it holds in fast and in full mode), compares it with the answer, with a tolerance where measurement
noise exists, and returns a :class:`CheckResult` that prints a verdict and, when the answer is wrong, a hint.
Worked solutions live in ``notebooks/solutions/``; :data:`EXERCISES` maps each exercise ("01.2") to its check.

    from workbook import exercises as ex
    ex.check_lookalike_groups(my_groups, ds, code="I50.21")
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbook.data import Dataset


@dataclass(frozen=True, repr=False)
class CheckResult:
    """The verdict on one answer: ``passed``, what was found (``message``), a ``hint`` when wrong.

    ``expected`` keeps the reference value the check computed (for instructors; the printed verdict does not give it
    away when the answer is wrong). ``bool(result)`` is ``passed``.
    """

    exercise: str
    passed: bool
    message: str
    hint: str = ""
    expected: Any = field(default=None, compare=False)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        head = f"Exercise {self.exercise}: {'RIGHT' if self.passed else 'NOT YET'}"
        lines = [head, f"  {self.message}"]
        if not self.passed and self.hint:
            lines.append(f"  Hint: {self.hint}")
        return "\n".join(lines)

    __repr__ = __str__


def _right(exercise: str, message: str, expected: Any = None) -> CheckResult:
    return CheckResult(exercise, True, message, expected=expected)


def _wrong(exercise: str, message: str, hint: str, expected: Any = None) -> CheckResult:
    return CheckResult(exercise, False, message, hint, expected=expected)


def _number(value: Any) -> float | None:
    """``value`` as a float (numpy and pandas scalars included), or None when it is not a number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _close(answer: Any, expected: float, tol: float) -> bool:
    value = _number(answer)
    return value is not None and abs(value - expected) <= tol


def _fmt(value: Any, digits: int = 4) -> str:
    number = _number(value)
    return repr(value) if number is None else f"{number:.{digits}f}"


def _keyed(exercise: str, answer: Any, keys: Sequence[str], example: str) -> tuple[dict | None, CheckResult | None]:
    """The answer as a dict holding every key of ``keys``, or a failed result saying what shape was expected."""
    if not isinstance(answer, Mapping) and hasattr(answer, "to_dict"):
        answer = answer.to_dict()
    if not isinstance(answer, Mapping):
        return None, _wrong(exercise, f"expected a dict, got {type(answer).__name__}", f"answer like {example}")
    missing = [k for k in keys if k not in answer]
    if missing:
        return None, _wrong(exercise, f"the answer lacks {missing}", f"answer like {example}")
    return dict(answer), None


def _compare_numbers(
    exercise: str, answer: Mapping, expected: Mapping[str, float], tol: Mapping[str, float] | float, hint: str
) -> CheckResult | None:
    """A failed result naming every key whose number is off, or None when all are within tolerance."""
    off = []
    for key, value in expected.items():
        t = tol if isinstance(tol, float | int) else tol[key]
        if not _close(answer[key], value, t):
            off.append(f"{key} = {_fmt(answer[key])}")
    if off:
        return _wrong(exercise, f"not what the data gives: {', '.join(off)}", hint, expected=dict(expected))
    return None


def _recall_at(ranked: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], k: int = 10) -> float:
    from workbook.evaluate import evaluate_ranking

    return evaluate_ranking(ranked, qrels, [f"recall@{k}"])[f"recall@{k}"]


# ================================================================================================ 00 setup check


def check_lookalike_groups(answer: Iterable, ds: Dataset, code: str = "I50.21") -> CheckResult:
    """00.1 — every lookalike group holding ``code``: its kind and its codes.

    Args:
        answer: the groups found: dicts with ``kind`` and ``codes`` (as in ``ds.extras["lookalikes"]``) or
            ``(kind, codes)`` pairs.
        ds: the case study (``extras["lookalikes"]``).
        code: the code asked about.
    """
    ex = "00.1"
    if code not in ds.corpus:
        return _wrong(ex, f"{code} is not in this corpus ({ds.name})", "pick a code of this mode's corpus")
    expected = {(g["kind"], tuple(sorted(g["codes"]))) for g in ds.extras["lookalikes"] if code in g["codes"]}
    try:
        got = {
            (g["kind"], tuple(sorted(g["codes"]))) if isinstance(g, Mapping) else (g[0], tuple(sorted(g[1])))
            for g in answer
        }
    except (TypeError, KeyError, IndexError):
        return _wrong(ex, "could not read the answer", "give a list of groups (dicts) or of (kind, codes) pairs")
    if got == expected:
        kinds = ", ".join(f"{k} ({len(c)} codes)" for k, c in sorted(expected))
        return _right(ex, f"{code} is in {len(expected)} lookalike group(s): {kinds}", sorted(expected))
    missing, extra = expected - got, got - expected
    parts = []
    if missing:
        parts.append(f"{len(missing)} group(s) missing (kinds: {', '.join(sorted(k for k, _ in missing))})")
    if extra:
        parts.append(f"{len(extra)} group(s) that do not hold {code} or whose codes differ")
    return _wrong(
        ex,
        "; ".join(parts),
        f"a code can sit in several groups (an Excludes1 note and its siblings): keep every group g of "
        f"ds.extras['lookalikes'] with {code!r} in g['codes']",
        sorted(expected),
    )


def check_colloquial_recall(
    answer: Mapping,
    ds: Dataset,
    model,
    split: str = "dev",
    cache_dir=None,
    winner: str | None = None,
) -> CheckResult:
    """00.2 — Recall@10 of BM25 and of the dense model on the ``colloquial`` queries of ``split``.

    Args:
        answer: ``{"BM25": recall, "dense": recall}``.
        ds: the case study.
        model: the dense model (all-MiniLM-L6-v2).
        split: the split measured (dev: test stays untouched until notebook 06).
        cache_dir: the embedding cache (``cfg.cache_dir / "embeddings"``).
        winner: your prediction, ``"BM25"`` or ``"dense"`` (optional).
    """
    from workbook.icd10cm import slice_queries
    from workbook.retrieval import bm25_ranking, dense_ranking

    ex = "00.2"
    answer, bad = _keyed(ex, answer, ["BM25", "dense"], '{"BM25": 0.31, "dense": 0.42}')
    if bad is not None:
        return bad
    qids = slice_queries(ds, split).get("colloquial", [])
    if not qids:
        return _wrong(ex, f"no colloquial query in {split}", "use a split with colloquial queries")
    qrels = {q: ds.qrels[split][q] for q in qids}
    expected = {
        "BM25": _recall_at(bm25_ranking(ds, split, k=10), qrels),
        "dense": _recall_at(dense_ranking(model, ds, split, k=10, cache_dir=cache_dir, show_progress=False), qrels),
    }
    best = max(expected, key=expected.get)
    bad = _compare_numbers(
        ex,
        answer,
        expected,
        0.005,
        f"keep only the {len(qids)} colloquial queries of {split} (slice_queries(ds, {split!r})['colloquial']), "
        "rank the whole corpus with each retriever and average Recall@10 over those queries",
    )
    if bad is not None:
        return bad
    if winner is not None and str(winner).strip().lower() != best.lower():
        return _wrong(
            ex,
            f"the numbers are right, but the prediction {winner!r} is not what they show",
            "compare the two numbers you measured: which retriever finds more colloquial queries' codes?",
            expected,
        )
    return _right(
        ex,
        f"colloquial {split} queries ({len(qids)}): BM25 {expected['BM25']:.3f}, dense {expected['dense']:.3f}; "
        f"{best} wins: colloquial wording shares few words with the code description",
        expected,
    )


def check_unseen_codes(answer: Any, ds: Dataset, split: str = "test") -> CheckResult:
    """00.3 — how many ``split`` queries have no relevant code that any training query is judged on.

    Args:
        answer: the count, computed from the qrels.
    """
    ex = "00.3"
    trained = {d for docs in ds.qrels.get("train", {}).values() for d, s in docs.items() if s > 0}
    unseen = [q for q, docs in ds.qrels[split].items() if not {d for d, s in docs.items() if s > 0} & trained]
    expected = len(unseen)
    meta = sum(ds.query_meta.get(q, {}).get("codes") == "unseen-code" for q in ds.qrels[split])
    if _number(answer) == expected:
        agree = "the same as the unseen-code slice" if meta == expected else f"the unseen-code slice says {meta}"
        return _right(
            ex, f"{expected} of {len(ds.qrels[split])} {split} queries are on unseen codes; {agree}", expected
        )
    return _wrong(
        ex,
        f"{answer!r} is not the count the qrels give",
        "collect every code judged relevant to a TRAIN query; a query is unseen-code when none of its relevant "
        "codes is in that set",
        expected,
    )


# ================================================================================================ 01 diagnose


def check_score_table(
    table: pd.DataFrame,
    model,
    ds: Dataset,
    codes: Sequence[str] = ("I63.311", "I63.312"),
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
    from workbook.diagnose import score_table
    from workbook.retrieval import encode

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
    from workbook.diagnose import sibling_confusion, sibling_map

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
    from workbook.diagnose import fragmentation_summary

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


def _passing(answer: Any) -> set[str] | None:
    """The names of the checks an answer says pass: a FineTuneDecision, a {name: bool} dict or a list of names
    (a check that was not measured, ``None``, does not pass)."""
    if hasattr(answer, "checks"):
        answer = answer.checks
    if isinstance(answer, Mapping):
        return {str(k) for k, v in answer.items() if v}
    if isinstance(answer, str):
        return {answer}
    try:
        return {str(a) for a in answer}
    except TypeError:
        return None


def check_gate_margin(answer: Any, gate: Mapping[str, Any], margin: float = 0.15) -> CheckResult:
    """01.4 — which checks of :func:`workbook.diagnose.should_fine_tune` still pass with ``margin=0.15``.

    Args:
        answer: the passing checks: a list of check names, a ``{name: passed}`` dict or the decision itself.
        gate: the other arguments of ``should_fine_tune`` as the notebook measured them (best_cheap, target,
            n_pairs, slice_metrics, overall, ...), without ``margin``.
        margin: the margin asked for.
    """
    from workbook.diagnose import should_fine_tune

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


# ================================================================================================ 02 baselines


def check_rrf_constant(
    answer: Mapping, rankings: Sequence[Mapping[str, Sequence[str]]], qrels: Mapping, k: int = 100
) -> CheckResult:
    """02.1 — Recall@1 and Recall@100 of the dense + BM25 hybrid with RRF constants ``c`` 10 and 200.

    Args:
        answer: ``{10: {"recall@1": .., "recall@100": ..}, 200: {...}}`` (other constants may be added).
        rankings: the fused runs (dense MiniLM and BM25 on dev, depth ``cfg.top_k``).
        qrels: the dev judgements.
        k: the fused depth.
    """
    from workbook.evaluate import evaluate_ranking
    from workbook.retrieval import rrf

    ex = "02.1"
    if not isinstance(answer, Mapping) or not {10, 200} <= {int(c) for c in answer if _number(c) is not None}:
        return _wrong(
            ex,
            "the answer needs constants 10 and 200",
            'answer like {10: {"recall@1": 0.3, "recall@100": 0.8}, 200: {...}}',
        )
    expected = {}
    for c in sorted(answer, key=int):
        res = evaluate_ranking(rrf(list(rankings), k=k, c=int(c)), qrels, ["recall@1", "recall@100"])
        expected[int(c)] = {m: res[m] for m in ("recall@1", "recall@100")}
    for c, metrics in expected.items():
        got = answer[c] if c in answer else answer[str(c)]
        if not isinstance(got, Mapping) or not {"recall@1", "recall@100"} <= set(got):
            return _wrong(ex, f"c={c}: expected recall@1 and recall@100", "a dict of both metrics per constant")
        bad = _compare_numbers(
            ex,
            {f"c={c} {m}": got[m] for m in metrics},
            {f"c={c} {m}": v for m, v in metrics.items()},
            0.001,
            "fuse the same two dev runs with rrf(runs, k=cfg.top_k, c=c) and score them with "
            "evaluate_ranking on the dev qrels",
        )
        if bad is not None:
            return bad
    lo, hi = expected[10], expected[200]
    return _right(
        ex,
        f"c=10: R@1 {lo['recall@1']:.4f}, R@100 {lo['recall@100']:.4f}; c=200: R@1 {hi['recall@1']:.4f}, "
        f"R@100 {hi['recall@100']:.4f}. A small c lets one retriever's top ranks dominate; a large c "
        "approaches a plain vote count",
        expected,
    )


def check_bm25_params(answer: Mapping, ds: Dataset, split: str = "dev", k1: float = 0.9, b: float = 0.4) -> CheckResult:
    """02.2 — Recall@10 of BM25 with ``k1``, ``b`` on the ``exact-code`` slice and overall.

    Args:
        answer: ``{"exact-code": recall, "all": recall}``.
    """
    from workbook.icd10cm import slice_queries
    from workbook.retrieval import BM25Index, bm25_ranking

    ex = "02.2"
    answer, bad = _keyed(ex, answer, ["exact-code", "all"], '{"exact-code": 0.99, "all": 0.55}')
    if bad is not None:
        return bad
    ranked = bm25_ranking(ds, split, k=10, index=BM25Index.from_dataset(ds, k1=k1, b=b))
    qrels = ds.qrels[split]
    codes = slice_queries(ds, split).get("exact-code", [])
    expected = {
        "exact-code": _recall_at(ranked, {q: qrels[q] for q in codes}) if codes else float("nan"),
        "all": _recall_at(ranked, qrels),
    }
    bad = _compare_numbers(
        ex,
        answer,
        expected,
        0.001,
        f"build BM25Index.from_dataset(ds, k1={k1}, b={b}), rank {split} with bm25_ranking and "
        "average Recall@10 over the exact-code queries and over all of them",
    )
    if bad is not None:
        return bad
    return _right(
        ex,
        f"BM25 k1={k1}, b={b} on {split}: exact-code {expected['exact-code']:.4f}, all {expected['all']:.4f}. "
        "b scales the length normalisation: with short, similar-length documents it changes little",
        expected,
    )


def check_rerank_depth(
    answer: Any,
    candidates: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    reranked: Mapping[str, Sequence[str]] | None = None,
    depth: int = 10,
) -> CheckResult:
    """02.3 — Recall@10 after reranking only the top ``depth`` candidates of the hybrid.

    Args:
        answer: the Recall@10 you measured.
        candidates: the hybrid run the reranker re-scored.
        qrels: the dev judgements.
        reranked: your reranked run (optional; checked for keeping each query's top ``depth`` set).
        depth: the depth reranked.
    """
    ex = "02.3"
    if reranked is not None:
        moved = sum(1 for q, docs in candidates.items() if list(reranked.get(q, []))[:depth] != list(docs)[:depth])
        changed_set = [
            q for q, docs in candidates.items() if set(list(reranked.get(q, []))[:depth]) != set(list(docs)[:depth])
        ]
        if changed_set:
            return _wrong(
                ex,
                f"{len(changed_set)} queries' top {depth} hold other documents than the candidates'",
                "rerank(cross_encoder, ds, split, candidates, depth) only reorders each query's top depth",
            )
        if moved == 0:
            return _wrong(
                ex,
                "the reranked run has the candidates' order everywhere: nothing was reranked",
                "pass the hybrid run as candidates and depth=10 to rerank()",
            )
    source = reranked if reranked is not None and depth > 10 else candidates
    expected = _recall_at(source, qrels)
    if _close(answer, expected, 0.001):
        why = (
            (
                "reranking the top 10 reorders the same 10 documents, so Recall@10 cannot change (MRR@10 and "
                "Recall@1 can)"
            )
            if depth <= 10
            else "documents below rank 10 can now move up"
        )
        return _right(ex, f"Recall@10 = {expected:.4f}: {why}", expected)
    return _wrong(
        ex,
        f"{_fmt(answer)} is not the Recall@10 of the run",
        "which documents are in the top 10 after reordering only the top 10?",
        expected,
    )


def check_gate_flip(answer: Any, gate: Mapping[str, Any], target: float) -> CheckResult:
    """02.4 — which check of the gate flips when the target becomes ``target`` (the best cheap score - 0.01).

    Args:
        answer: the check name that flips (or a list of names).
        gate: the arguments of ``should_fine_tune`` as notebook 02 measured them (with the original target).
        target: the new target.
    """
    from workbook.diagnose import should_fine_tune

    ex = "02.4"
    before = should_fine_tune(**gate).checks  # point estimates: True, False or None (not measured)
    after = should_fine_tune(**{**gate, "target": target}).checks
    flipped = {n for n in before if before[n] is not after[n]}
    got = _passing(answer)
    if got == flipped:
        shown = "; ".join(f"{n}: {before[n]} -> {after[n]}" for n in sorted(flipped)) or "nothing flips"
        return _right(ex, f"target {target:.4f}: {shown}", sorted(flipped))
    return _wrong(
        ex,
        "not the check that flips",
        f"rerun should_fine_tune with target={target:.4f} and compare its checks with the original "
        f"decision's; the names are {list(before)}",
        sorted(flipped),
    )


# ================================================================================================ 03 hard negatives


def _audit_numbers(ds: Dataset, mined) -> dict[str, float]:
    from workbook.negatives import audit, excludes1_overlap

    a = audit(ds, mined)
    return {
        "FN rate %": 100 * a.fn_rate,
        "queries with no negative": float(a.queries_without_negatives),
        "partner recall": float(excludes1_overlap(ds, mined)["partner recall"]),
    }


def _settings_problem(mined, wanted: Mapping[str, Any]) -> str | None:
    settings = getattr(mined, "settings", None)
    if settings is None:
        return "expected the MinedNegatives that mine_negatives returned"
    off = [f"{k}={getattr(settings, k)!r} (asked {v!r})" for k, v in wanted.items() if getattr(settings, k) != v]
    return f"mined with other settings: {', '.join(off)}" if off else None


def check_reranker_margin(answer: Mapping, ds: Dataset, bi_encoder, cross_encoder) -> CheckResult:
    """03.2 — training queries left with no negative by ``relative_margin=0.05``: bi-encoder scores vs a reranker's.

    Args:
        answer: ``{"bi-encoder": n, "cross-encoder": n}``: queries with no negative in each run.
        ds: the case study.
        bi_encoder: what ``mine_negatives`` returned with the margin applied to the bi-encoder's cosines.
        cross_encoder: the same settings and queries, mined with ``cross_encoder=reranker`` (margins then apply to
            the reranker's scores).
    """
    ex = "03.2"
    answer, bad = _keyed(ex, answer, ["bi-encoder", "cross-encoder"], '{"bi-encoder": 28, "cross-encoder": 1}')
    if bad is not None:
        return bad
    wanted = {"relative_margin": 0.05, "one_positive_per_query": False, "exclude_known": False}
    for name, mined in (("bi-encoder", bi_encoder), ("cross-encoder", cross_encoder)):
        problem = _settings_problem(mined, wanted)
        if problem:
            return _wrong(
                ex, f"{name} run: {problem}", "MiningSettings(num_negatives=5, range_max=50, relative_margin=0.05)"
            )
    pairs = {(r["query_id"], r["positive"]): r["positive_score"] for r in bi_encoder.rows}
    other = {(r["query_id"], r["positive"]): r["positive_score"] for r in cross_encoder.rows}
    if set(pairs) != set(other):
        return _wrong(
            ex, "the two runs mined different (query, positive) pairs", "pass the same query_ids to both runs"
        )
    scored = [k for k in pairs if not (math.isnan(pairs[k]) or math.isnan(other[k]))]
    if scored and all(abs(pairs[k] - other[k]) < 1e-6 for k in scored):
        return _wrong(
            ex,
            "both runs scored the positives identically: the reranker was not used",
            "mine_negatives(ds, model, settings, cross_encoder=reranker, ...) for the second run",
        )
    from workbook.negatives import audit

    expected = {
        "bi-encoder": float(audit(ds, bi_encoder).queries_without_negatives),
        "cross-encoder": float(audit(ds, cross_encoder).queries_without_negatives),
    }
    bad = _compare_numbers(
        ex,
        answer,
        expected,
        0.5,
        "audit(ds, mined).queries_without_negatives for each run (the queries whose every row has no negative)",
    )
    if bad is not None:
        return bad
    queries = audit(ds, bi_encoder).queries
    verdict = (
        "the reranker's scores leave fewer queries empty: the margin becomes usable"
        if expected["cross-encoder"] < expected["bi-encoder"]
        else "the reranker does not leave fewer queries empty here"
    )
    return _right(
        ex,
        f"of {queries} queries, {int(expected['bi-encoder'])} have no negative with bi-encoder scores, "
        f"{int(expected['cross-encoder'])} with the reranker's: {verdict}",
        expected,
    )


def check_random_window(answer: Mapping, ds: Dataset, mined) -> CheckResult:
    """03.1 — audited FN rate (%) and Excludes1 partner recall of random sampling from ranks 10-100.

    Args:
        answer: ``{"FN rate %": .., "partner recall": ..}``.
        mined: what ``mine_negatives`` returned with ``range_min=10, range_max=100, sampling_strategy="random"``.
    """
    ex = "03.1"
    answer, bad = _keyed(ex, answer, ["FN rate %", "partner recall"], '{"FN rate %": 0.01, "partner recall": 0.02}')
    if bad is not None:
        return bad
    problem = _settings_problem(
        mined,
        {
            "range_min": 10,
            "range_max": 100,
            "sampling_strategy": "random",
            "one_positive_per_query": False,
            "exclude_known": False,
        },
    )
    if problem:
        return _wrong(
            ex, problem, 'MiningSettings(name="random 10-100", range_min=10, range_max=100, sampling_strategy="random")'
        )
    numbers = _audit_numbers(ds, mined)
    expected = {k: numbers[k] for k in ("FN rate %", "partner recall")}
    bad = _compare_numbers(
        ex,
        answer,
        expected,
        {"FN rate %": 0.001, "partner recall": 0.0005},
        "audit(ds, mined).fn_rate * 100 and excludes1_overlap(ds, mined)['partner recall']",
    )
    if bad is not None:
        return bad
    return _right(
        ex,
        f"random 10-100: FN rate {expected['FN rate %']:.3f}%, Excludes1 partner recall "
        f"{expected['partner recall']:.4f}",
        expected,
    )


def last_character_twins(positive: str, negative: str) -> bool:
    """True when two codes differ only in their last character (``I50.21``/``I50.22``, ``S31.552A``/``S31.552D``)."""
    return len(positive) == len(negative) and positive != negative and positive[:-1] == negative[:-1]


ENCOUNTER_LETTERS = frozenset("ADS")  # initial encounter, subsequent encounter, sequela


def encounter_twins(positive: str, negative: str) -> bool:
    """True when two codes differ only in a 7th-character encounter letter (``S31.552A`` initial encounter vs
    ``S31.552D`` subsequent encounter): the same condition, another visit."""
    return (
        last_character_twins(positive, negative)
        and len(positive.replace(".", "")) == 7
        and {positive[-1], negative[-1]} <= ENCOUNTER_LETTERS
    )


def check_equivalence_rule(answer: Any, mined, rule: Callable[[str, str], bool] = last_character_twins) -> CheckResult:
    """03.3 — how many mined negatives an equivalence rule of your own would flag.

    Args:
        answer: the count over every row of ``mined``.
        mined: the mined negatives (notebook 03's chosen setting).
        rule: ``rule(positive, negative) -> bool``, e.g. :func:`encounter_twins` or :func:`last_character_twins`.
    """
    ex = "03.3"
    name = getattr(rule, "__name__", "the rule")
    expected = sum(bool(rule(r["positive"], n)) for r in mined.rows for n in r["negatives"])
    total = sum(len(r["negatives"]) for r in mined.rows)
    if _number(answer) == expected:
        return _right(
            ex,
            f"{name} flags {expected} of {total} mined negatives ({100 * expected / max(total, 1):.1f}%): read a "
            "few before calling them false negatives; another stage, side or encounter is a lookalike to learn",
            expected,
        )
    return _wrong(
        ex,
        f"{answer!r} is not the number of mined negatives {name} flags",
        "count, over every row r and every n in r['negatives'], rule(r['positive'], n)",
        expected,
    )


# ================================================================================================ 04 synthetic data


def round_trip_retention(filtered: pd.DataFrame) -> float:
    """Of the candidates that reach the round trip (not dropped by an earlier filter), the % that pass it."""
    reached = filtered["dropped_by"].isin(["", "round-trip", "leakage"])
    passed = reached & (filtered["dropped_by"] != "round-trip")
    return 100.0 * passed.sum() / reached.sum() if reached.sum() else float("nan")


def check_round_trip_retention(
    answer: Mapping, candidates: Mapping[str, pd.DataFrame], ds: Dataset, round_trip, settings=None
) -> CheckResult:
    """04.1 — round-trip retention (%) of each prompt's candidates, the filters re-run here.

    Args:
        answer: prompt name -> retention % (the share of the candidates reaching the round trip that pass it).
        candidates: the same names -> ``GenerationRun.candidates()``.
        ds: the case study; ``round_trip``: the :class:`workbook.synth.RoundTrip` used; ``settings``: the filters'.
    """
    from workbook.synth import apply_filters

    ex = "04.1"
    names = list(candidates)
    answer, bad = _keyed(ex, answer, names, "{" + ", ".join(f'"{n}": 60.0' for n in names) + "}")
    if bad is not None:
        return bad
    expected = {n: round_trip_retention(apply_filters(c, ds, round_trip, settings)) for n, c in candidates.items()}
    bad = _compare_numbers(
        ex,
        answer,
        expected,
        0.1,
        "filter each prompt's candidates with apply_filters; retention = 100 * (reached - dropped "
        "by round-trip) / reached, where reached = not dropped by format, copy, duplicate or "
        "overlap",
    )
    if bad is not None:
        return bad
    shown = ", ".join(f"{n} {v:.1f}%" for n, v in expected.items())
    return _right(ex, f"round-trip retention: {shown}", expected)


def check_endpoint_filters(answer: Any, filtered: Mapping[str, pd.DataFrame]) -> CheckResult:
    """04.2 — which filters drop a smaller share of their input for the endpoint's queries than for the local model's.

    Args:
        answer: the filter names (a list or set; an empty list when none does).
        filtered: two generators' ``apply_filters`` results, the local baseline first and the endpoint second
            (e.g. ``{"local gemma": ..., "endpoint": ...}``), filtered with the same settings.
    """
    from workbook.synth import FILTERS, filter_report

    ex = "04.2"
    if not isinstance(filtered, Mapping) or len(filtered) != 2:
        return _wrong(
            ex,
            "expected two filtered candidate sets: the local baseline first, the endpoint second",
            '{"local": apply_filters(local.candidates(), ...), "endpoint": apply_filters(remote.candidates(), ...)}',
        )
    (base_name, base), (new_name, new) = filtered.items()
    shares = {}
    for name, frame in ((base_name, base), (new_name, new)):
        report = filter_report(frame)
        shares[name] = (report["dropped"] / report["in"].where(report["in"] > 0)).fillna(0.0)
    expected = sorted(f for f in FILTERS if shares[new_name][f] < shares[base_name][f] - 1e-12)
    if isinstance(answer, str) or not isinstance(answer, Iterable):
        return _wrong(
            ex, f"{answer!r} is not a list of filter names", f"a list of names from {list(FILTERS)}", expected
        )
    got = sorted(set(answer))
    unknown = [f for f in got if f not in FILTERS]
    if unknown:
        return _wrong(ex, f"not filter names: {unknown}", f"the filters are {list(FILTERS)}", expected)
    if got == expected:
        shown = ", ".join(
            f"{f} {100 * shares[base_name][f]:.1f}% -> {100 * shares[new_name][f]:.1f}%" for f in expected
        )
        return _right(ex, f"{new_name} drops less at: {shown or 'no filter'}", expected)
    return _wrong(
        ex,
        "not the filters that drop less",
        "compare filter_report(...)['dropped'] / ['in'] per filter: each filter's share of what reached it",
        expected,
    )


def check_round_trip_k(answer: Mapping, candidates: pd.DataFrame, ds: Dataset, round_trip) -> CheckResult:
    """04.3 — the kept set of the cached candidates with a stricter round trip (``round_trip.k``, e.g. 5).

    Args:
        answer: ``{"kept": n, "mean overlap": x, "% colloquial": y}`` of the queries every filter keeps.
        candidates: the candidates filtered (``load_synthetic_candidates`` rows of this mode's corpus:
            ``doc_id``, ``query``).
        round_trip: the ``RoundTrip`` with the stricter ``k``.
    """
    from workbook.synth import FilterSettings, apply_filters

    ex = "04.3"
    answer, bad = _keyed(
        ex,
        answer,
        ["kept", "mean overlap", "% colloquial"],
        '{"kept": 500, "mean overlap": 0.44, "% colloquial": 16.5}',
    )
    if bad is not None:
        return bad
    k = round_trip.k
    filtered = apply_filters(candidates[["doc_id", "query"]], ds, round_trip, FilterSettings(round_trip_k=k))
    kept = filtered[filtered["kept"]]
    expected = {
        "kept": float(len(kept)),
        "mean overlap": float(kept["overlap"].mean()),
        "% colloquial": float(100 * (kept["overlap"] < 0.25).mean()),
    }
    bad = _compare_numbers(
        ex,
        answer,
        expected,
        {"kept": 0.5, "mean overlap": 0.001, "% colloquial": 0.1},
        f"apply_filters(candidates, ds, RoundTrip(ds, model, k={k}, ...), FilterSettings("
        f"round_trip_k={k})), then profile the kept rows (overlap < 0.25 is colloquial)",
    )
    if bad is not None:
        return bad
    return _right(
        ex,
        f"round trip top {k}: {int(expected['kept'])} kept, mean overlap "
        f"{expected['mean overlap']:.3f}, {expected['% colloquial']:.1f}% colloquial",
        expected,
    )


def check_contradicting_labels(answer: Any, pairs: Sequence[tuple[str, str]], ds: Dataset) -> CheckResult:
    """04.4 — synthetic (query, doc) pairs whose query (same wording) is a real train query judged on other codes.

    Args:
        answer: the number of such pairs.
        pairs: the synthetic pairs (``load_synthetic_pairs(cfg, ds)``).
        ds: the case study (its ``train`` split).
    """
    from workbook.data import equivalence_key

    ex = "04.4"
    judged: dict[str, set[str]] = {}
    for qid, docs in ds.qrels.get("train", {}).items():
        judged.setdefault(equivalence_key(ds.queries[qid]), set()).update(d for d, s in docs.items() if s > 0)
    hits = [(q, d) for q, d in pairs if equivalence_key(q) in judged and d not in judged[equivalence_key(q)]]
    expected = len(hits)
    same = sum(1 for q, d in pairs if d in judged.get(equivalence_key(q), set()))
    if _number(answer) == expected:
        return _right(
            ex,
            f"{expected} of {len(pairs)} synthetic pairs contradict a real training label "
            f"({same} more repeat a real query on its own code)",
            expected,
        )
    return _wrong(
        ex,
        f"{answer!r} is not the number of contradicting pairs",
        "key both sides with workbook.data.equivalence_key; a pair contradicts when its query equals "
        "a train query and its doc is not among that query's relevant codes",
        expected,
    )


# ================================================================================================ 05 fine-tune

_RUN_NAME = re.compile(r"^(?P<recipe>.+)-(?P<source>real|synthetic|both)(?:-(?P<rows>\d+))?-(?P<key>[0-9a-f]{10})$")


def _card(run) -> dict:
    return getattr(run, "card", None) or {}


def _dev(run, metric: str = "recall@10") -> float | None:
    return _number(_card(run).get("dev_metrics", {}).get(metric))


def _scope(run) -> str:
    """Over what a run's card dev metrics were computed: ``"corpus"`` or ``"candidates"`` (``load_or_train``'s
    ``dev_scope``)."""
    return str(_card(run).get("dev_scope", "corpus"))


def _scope_problem(ex: str, a, b) -> CheckResult | None:
    if _scope(a) == _scope(b):
        return None
    return _wrong(
        ex,
        f"the runs' dev metrics are on different footings ({_scope(a)} vs {_scope(b)})",
        "load both runs with the same dev_scope (notebook 05 compares its budget runs with dev_scope='candidates')",
    )


def _budget(run) -> str | None:
    """The row budget in a run's folder name (``None`` for 'every row'), or ``"?"`` when the name has another form."""
    match = _RUN_NAME.match(str(_card(run).get("name", "")))
    return match.group("rows") if match else "?"


def check_hard_negative_lift(answer: Any, with_hard, without_hard, metric: str = "recall@10") -> CheckResult:
    """05.1 — dev Recall@10 with the mined hard negative minus without (in-batch negatives only).

    Args:
        answer: the difference in dev Recall@10 (with - without).
        with_hard: the default mnrl run on the comparison budget (``load_or_train``'s result).
        without_hard: the ``Recipe(name="mnrl-no-hard", num_negatives=0)`` run on the same budget.
    """
    ex = "05.1"
    a, b = _card(with_hard), _card(without_hard)
    if b.get("recipe", {}).get("num_negatives") != 0 or a.get("recipe", {}).get("num_negatives", 0) < 1:
        return _wrong(
            ex,
            "one run must use hard negatives and the other none",
            'Recipe(name="mnrl-no-hard", num_negatives=0) against the default "mnrl" recipe',
        )
    if _budget(with_hard) != _budget(without_hard) or a.get("data", {}).get("source") != b.get("data", {}).get(
        "source"
    ):
        return _wrong(
            ex,
            "the two runs differ in row budget or data source",
            "train both with the same source and max_rows=cfg.compare_max_rows",
        )
    bad = _scope_problem(ex, with_hard, without_hard)
    if bad is not None:
        return bad
    hi, lo = _dev(with_hard, metric), _dev(without_hard, metric)
    if hi is None or lo is None:
        return _wrong(ex, f"a run's card has no dev {metric}", "use the TrainedModel that load_or_train returns")
    expected = hi - lo
    if _close(answer, expected, 0.0005):
        return _right(
            ex,
            f"dev {metric}: {hi:.4f} with the hard negative, {lo:.4f} without: the mined negative is "
            f"worth {expected:+.4f}",
            expected,
        )
    return _wrong(
        ex,
        f"{_fmt(answer)} is not the difference of the two runs' dev {metric}",
        f"with.card['dev_metrics']['{metric}'] - without.card['dev_metrics']['{metric}']",
        expected,
    )


def check_batch_sampler(
    answer: Any, args, model, reference, cfg, ds: Dataset, dev_scope: str | None = None
) -> CheckResult:
    """05.2 — dev Recall@10 of a model trained with the default batch sampler (duplicates allowed in a batch).

    Args:
        answer: that model's dev Recall@10, on the reference's footing: over the whole corpus
            (:func:`workbook.train.full_dev_metrics`) or over the dev candidates
            (:func:`workbook.train.candidate_dev_metrics`).
        args: the training arguments you trained it with (``batch_sampler`` must be ``BATCH_SAMPLER``).
        model: the trained model.
        reference: the no-duplicates run on the same rows (``load_or_train(cfg, "mnrl", "real", max_rows=...)``).
        cfg, ds: the config and the case study.
        dev_scope: ``"corpus"`` or ``"candidates"``; ``None``: the reference card's.
    """
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    from workbook.train import candidate_dev_metrics, full_dev_metrics

    ex = "05.2"
    if getattr(args, "batch_sampler", None) != BatchSamplers.BATCH_SAMPLER:
        return _wrong(
            ex,
            f"args.batch_sampler is {getattr(args, 'batch_sampler', None)!r}",
            "set args.batch_sampler = BatchSamplers.BATCH_SAMPLER before building the trainer",
        )
    scope = dev_scope or _scope(reference)
    if scope == "candidates":
        expected = candidate_dev_metrics(cfg, ds, model)["recall@10"]
        how = "candidate_dev_metrics(cfg, ds, model)['recall@10'] (the dev candidates, as the reference's card)"
    else:
        expected = full_dev_metrics(cfg, ds, model)["recall@10"]
        how = "full_dev_metrics(cfg, ds, model)['recall@10'] (the whole corpus, as the reference's card)"
    ref = _dev(reference)
    if not _close(answer, expected, 0.0005):
        return _wrong(ex, f"{_fmt(answer)} is not the model's dev Recall@10 ({scope})", how, expected)
    queries = len(ds.qrels["dev"])
    delta = "" if ref is None else f"; no-duplicates run {ref:.4f} (difference {ref - expected:+.4f})"
    return _right(
        ex,
        f"default sampler: dev Recall@10 {expected:.4f} ({scope}){delta}. With {queries} dev queries one "
        f"query moves Recall@10 by up to {1 / queries:.4f}: judge the difference against that",
        expected,
    )


def check_lora_rank(answer: Mapping, lora, full, metric: str = "recall@10") -> CheckResult:
    """05.3 — share of trained weights (%) of a rank-64 LoRA run, and its dev Recall@10 gap to full fine-tuning.

    Args:
        answer: ``{"trained weights %": .., "gap": ..}`` (gap = full - LoRA, dev Recall@10).
        lora: the ``lora-64`` run; ``full``: the full fine-tune (mnrl) on the same budget.
    """
    ex = "05.3"
    answer, bad = _keyed(ex, answer, ["trained weights %", "gap"], '{"trained weights %": 8.3, "gap": 0.02}')
    if bad is not None:
        return bad
    card, rec = _card(lora), _card(lora).get("recipe", {})
    if not rec.get("lora") or rec.get("lora_r") != 64:
        return _wrong(
            ex,
            f"the LoRA run has lora={rec.get('lora')}, lora_r={rec.get('lora_r')}",
            'Recipe(name="lora-64", lora=True, lora_r=64, lora_alpha=128, learning_rate=1e-3)',
        )
    if _card(full).get("recipe", {}).get("lora") or _budget(full) != _budget(lora):
        return _wrong(
            ex,
            "the reference must be a full fine-tune on the same row budget",
            'load_or_train(cfg, "mnrl", "real", max_rows=cfg.compare_max_rows)',
        )
    bad = _scope_problem(ex, lora, full)
    if bad is not None:
        return bad
    share = 100 * card["trainable_parameters"] / card["parameters"]
    expected = {"trained weights %": share, "gap": _dev(full, metric) - _dev(lora, metric)}
    bad = _compare_numbers(
        ex,
        answer,
        expected,
        {"trained weights %": 0.01, "gap": 0.0005},
        "trainable_parameters / parameters from the LoRA card (in percent), and the difference "
        f"of the two cards' dev {metric}",
    )
    if bad is not None:
        return bad
    return _right(
        ex,
        f"rank 64 trains {share:.2f}% of the weights; gap to full fine-tuning {expected['gap']:+.4f} dev {metric}",
        expected,
    )


def check_both_sources(answer: Any, both, reference, metric: str = "recall@10") -> CheckResult:
    """05.4 — dev Recall@10 of training on real + synthetic queries minus real only, on the same row budget.

    Args:
        answer: the difference (both - real) in dev Recall@10.
        both: the ``source="both"`` run; ``reference``: the real-only run with the same ``max_rows``.
    """
    ex = "05.4"
    if _card(both).get("data", {}).get("source") != "both" or _card(reference).get("data", {}).get("source") != "real":
        return _wrong(
            ex,
            "expected a 'both' run and a 'real' run",
            'load_or_train(cfg, "mnrl", "both", max_rows=...) '
            'against load_or_train(cfg, "mnrl", "real", max_rows=...) with the same max_rows',
        )
    if _budget(both) != _budget(reference):
        return _wrong(
            ex,
            f"the runs have different row budgets ({_budget(both)} vs {_budget(reference)})",
            "give both the same max_rows (None: every row)",
        )
    bad = _scope_problem(ex, both, reference)
    if bad is not None:
        return bad
    expected = _dev(both, metric) - _dev(reference, metric)
    if _close(answer, expected, 0.0005):
        return _right(
            ex,
            f"dev {metric}: both {_dev(both, metric):.4f}, real {_dev(reference, metric):.4f} ({expected:+.4f})",
            expected,
        )
    return _wrong(
        ex,
        f"{_fmt(answer)} is not the difference of the two runs' dev {metric}",
        f"both.card['dev_metrics']['{metric}'] - reference.card['dev_metrics']['{metric}']",
        expected,
    )


# ================================================================================================ 06 evaluate


def check_hybrid_after_tuning(
    answer: Mapping,
    tuned_run: Mapping[str, Sequence[str]],
    bm25_run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    slices: Mapping[str, Sequence[str]],
    k: int = 100,
    min_queries: int = 10,
) -> CheckResult:
    """06.1 — tuned + BM25 (RRF) minus the tuned model alone: test Recall@10, significance, and the slice it helps most.

    Args:
        answer: ``{"delta": .., "significant": bool, "slice": name}`` (``significant`` and ``slice`` optional).
        tuned_run, bm25_run: the test runs fused (depth ``cfg.top_k``); ``qrels``: the test judgements.
        slices: slice name -> query ids (``slice_queries(ds, "test")``); slices under ``min_queries`` are ignored.
    """
    from workbook.evaluate import evaluate_ranking, paired_comparison
    from workbook.retrieval import rrf

    ex = "06.1"
    answer, bad = _keyed(ex, answer, ["delta"], '{"delta": 0.03, "significant": True, "slice": "exact-code"}')
    if bad is not None:
        return bad
    tuned = evaluate_ranking(tuned_run, qrels, ["recall@10"], name="tuned")
    hybrid = evaluate_ranking(rrf([tuned_run, bm25_run], k=k), qrels, ["recall@10"], name="hybrid")
    pc = paired_comparison(tuned, hybrid, "recall@10")
    diff = hybrid.per_query["recall@10"] - tuned.per_query["recall@10"]
    gains = {
        s: float(diff.loc[diff.index.intersection(list(q))].mean())
        for s, q in slices.items()
        if len(diff.index.intersection(list(q))) >= min_queries
    }
    top = max(gains, key=gains.get) if gains else None
    expected = {"delta": pc.delta, "significant": pc.significant, "slice": top}
    if not _close(answer["delta"], pc.delta, 0.001):
        return _wrong(
            ex,
            f"delta {_fmt(answer['delta'])} is not hybrid minus tuned test Recall@10",
            "fuse rrf([tuned_run, bm25_run], k=cfg.top_k) and compare with paired_comparison(tuned, "
            "hybrid, 'recall@10').delta",
            expected,
        )
    borderline = min(abs(pc.ci_low), abs(pc.ci_high)) < 0.002
    if "significant" in answer and bool(answer["significant"]) != pc.significant and not borderline:
        return _wrong(
            ex,
            "the delta is right, but not its significance",
            "a paired difference is significant at 95% when its bootstrap CI excludes 0",
            expected,
        )
    if "slice" in answer and answer["slice"] != top:
        return _wrong(
            ex,
            f"the delta is right, but {answer['slice']!r} is not where the hybrid helps most",
            "per slice, average the per-query difference (hybrid - tuned) over the slice's queries",
            expected,
        )
    return _right(
        ex,
        f"tuned + BM25 - tuned: {pc.delta:+.4f} Recall@10, 95% CI [{pc.ci_low:+.4f}, "
        f"{pc.ci_high:+.4f}] ({'significant' if pc.significant else 'not significant'}); largest gain on "
        f"{top} ({gains.get(top, float('nan')):+.4f})",
        expected,
    )


def check_ci_width(
    answer: Mapping, per_query, n: int = 300, target: float = 0.02, metric: str = "recall@10"
) -> CheckResult:
    """06.2 — the 95% bootstrap CI width of a run's mean on its first ``n`` test queries, and the queries needed for a
    CI of +/- ``target`` (n ~ (1.96 sd / target)^2).

    Args:
        answer: ``{"width": hi - lo, "queries needed": n}``.
        per_query: the run's per-query values on the whole split (``result.per_query`` or its ``metric`` column).
        n: the queries kept (the first ``n`` by id).
        target: the half-width wanted (0.02: a 2-point difference).
    """
    from workbook.evaluate import bootstrap_ci

    ex = "06.2"
    answer, bad = _keyed(ex, answer, ["width", "queries needed"], '{"width": 0.11, "queries needed": 2400}')
    if bad is not None:
        return bad
    if hasattr(per_query, "per_query"):
        per_query = per_query.per_query
    values = per_query[metric] if isinstance(per_query, pd.DataFrame) else pd.Series(per_query)
    values = values.sort_index().iloc[:n].to_numpy(dtype=float)
    lo, hi = bootstrap_ci(values)
    sd = float(np.std(values, ddof=1))
    expected = {"width": hi - lo, "queries needed": math.ceil((1.96 * sd / target) ** 2)}
    ok_width = _close(answer["width"], expected["width"], 0.1 * expected["width"] + 1e-9)
    ok_n = _close(answer["queries needed"], expected["queries needed"], 0.15 * expected["queries needed"] + 1)
    if ok_width and ok_n:
        return _right(
            ex,
            f"{len(values)} queries: 95% CI width {expected['width']:.3f} (sd {sd:.3f}); about "
            f"{expected['queries needed']:,} queries for +/-{target} (paired comparisons need fewer: "
            "their sd is that of the per-query difference)",
            expected,
        )
    what = "the CI width" if not ok_width else "the number of queries"
    return _wrong(
        ex,
        f"{what} is off",
        f"bootstrap_ci of the first {n} per-query values (width = hi - lo); the half-width is about "
        f"1.96 * sd / sqrt(n), so n = (1.96 * sd / {target})^2",
        expected,
    )


def merge_crossing(curve: pd.DataFrame, budget: float = 0.01) -> float | None:
    """The ratio at which ``general loss`` first exceeds ``budget``, linearly interpolated between the measured
    ratios; ``None`` when it never does."""
    pts = curve.sort_index()["general loss"]
    alphas, losses = pts.index.to_numpy(float), pts.to_numpy(float)
    for i in range(1, len(alphas)):
        if losses[i - 1] <= budget < losses[i]:
            return float(
                alphas[i - 1] + (budget - losses[i - 1]) * (alphas[i] - alphas[i - 1]) / (losses[i] - losses[i - 1])
            )
    return None


def check_merge_crossing(
    answer: Any, curve: pd.DataFrame, budget: float = 0.01, alphas: Sequence[float] = (0.6, 0.7, 0.8, 0.9)
) -> CheckResult:
    """06.3 — where the SciFact loss crosses ``budget`` on the interpolation curve (``None``: it never does).

    Args:
        answer: the crossing ratio, or ``None``.
        curve: ``interpolation_curve``'s table, with alpha 0 and at least one of ``alphas`` traced.
    """
    ex = "06.3"
    if not isinstance(curve, pd.DataFrame) or "general loss" not in curve or 0.0 not in curve.index:
        return _wrong(
            ex,
            "expected interpolation_curve's table (alpha index, 'general loss' column, alpha 0 in it)",
            "interpolation_curve(base, tuned, [0.0, *alphas, 1.0], score_domain, score_general)",
        )
    if not any(any(abs(a - b) < 1e-9 for b in curve.index) for a in alphas):
        return _wrong(ex, f"the curve traces none of {list(alphas)}", "add the new ratios to the alphas you trace")
    expected = merge_crossing(curve, budget)
    if expected is None:
        if answer is None:
            return _right(
                ex,
                f"the SciFact loss stays within {budget} at every traced ratio "
                f"(max {curve['general loss'].max():.4f}): no crossing",
                None,
            )
        return _wrong(
            ex,
            f"{_fmt(answer)}: but the loss never exceeds {budget} on this curve",
            "answer None when every ratio stays within the budget",
            None,
        )
    if _close(answer, expected, 0.02):
        return _right(
            ex,
            f"the SciFact loss crosses {budget} at alpha ~ {expected:.3f} (linear between the traced ratios)",
            expected,
        )
    return _wrong(
        ex,
        f"{_fmt(answer, 3)} is not where the loss crosses {budget}",
        "find the two traced ratios around the crossing and interpolate linearly between them",
        expected,
    )


def check_worst_siblings(
    answer: Any, query_ids: Sequence[str], ranked: Mapping[str, Sequence[str]], ds: Dataset, split: str = "test"
) -> CheckResult:
    """06.4 — of the worst queries, how many have a lookalike (sibling) of a gold code as their top hit.

    Args:
        answer: the count.
        query_ids: the worst queries (``worst_queries(...).index``).
        ranked: the tuned model's test run.
    """
    from workbook.diagnose import sibling_map

    ex = "06.4"
    siblings = sibling_map(ds.extras.get("lookalikes", []))
    hits = []
    for q in query_ids:
        gold = {d for d, s in ds.qrels[split][q].items() if s > 0}
        sibs = set().union(*(siblings.get(g, set()) for g in gold)) - gold
        top = list(ranked.get(q, []))[:1]
        if top and top[0] in sibs:
            hits.append(q)
    expected = len(hits)
    if _number(answer) == expected:
        return _right(
            ex,
            f"{expected} of {len(query_ids)} worst queries rank a sibling of their gold code first: "
            "read those two descriptions to judge model error vs incomplete judgement",
            hits,
        )
    return _wrong(
        ex,
        f"{answer!r} is not the count",
        "siblings = dg.sibling_map(ds.extras['lookalikes']); count the queries whose ranked[q][0] is in the "
        "siblings of a gold code (and is not gold itself)",
        hits,
    )


# ================================================================================================ 07 deploy


def check_gate_limits(answer: Mapping, report, cfg, version: str = "v2") -> CheckResult:
    """07.1 — the strictest ``gate_min_win_rate`` and ``gate_min_metric_delta`` the candidate still passes.

    Args:
        answer: ``{"gate_min_win_rate": .., "gate_min_metric_delta": ..}`` (found by raising them step by step:
            within 0.01 below the limit is right).
        report: the shadow test of ``version`` against production; ``cfg``: the config.
    """
    from workbook.deploy import promotion_gate

    ex = "07.1"
    keys = ["gate_min_win_rate", "gate_min_metric_delta"]
    answer, bad = _keyed(ex, answer, keys, '{"gate_min_win_rate": 0.62, "gate_min_metric_delta": 0.05}')
    if bad is not None:
        return bad
    metric = cfg.gate_metric
    outcomes = report.outcomes(metric)
    wins, losses = int((outcomes == "win").sum()), int((outcomes == "loss").sum())
    expected = {
        "gate_min_win_rate": wins / (wins + losses) if wins + losses else 0.0,  # nothing decided: nothing passes
        "gate_min_metric_delta": float(report.new[metric] - report.old[metric]),
    }  # as promotion_gate reads them
    rows = {"gate_min_win_rate": "win rate", "gate_min_metric_delta": f"{metric} delta"}
    off = []
    for key in keys:
        value = _number(answer[key])
        if value is None:
            off.append(key)
            continue
        checks = promotion_gate(report, cfg.replace(**{key: value - 1e-9}), version).checks  # float noise
        passes = bool(checks[checks.index.str.startswith(rows[key])]["passed"].all())
        if not passes or value < expected[key] - 0.01:
            off.append(f"{key} = {value:g} ({'fails' if not passes else 'not the strictest'})")
    if off:
        return _wrong(
            ex,
            f"not the limits: {', '.join(off)}",
            "the gate passes while the threshold is below the measured value (it asks for an improvement): raise "
            "it until the row of dp.promotion_gate(report, cfg.replace(...), version).checks fails",
            expected,
        )
    first = min(expected, key=lambda k: expected[k] - getattr(cfg, k))
    return _right(
        ex,
        f"limits: win rate {expected['gate_min_win_rate']:.4f}, {cfg.gate_metric} delta "
        f"{expected['gate_min_metric_delta']:+.4f}; raised together from the defaults, {first} fails "
        "first (it has the least slack)",
        expected,
    )


def check_reembed_cost(answer: Any, job, n_docs: int = 10_000_000, price_per_hour: float = 0.5) -> CheckResult:
    """07.3 — the cost of re-embedding ``n_docs`` at ``price_per_hour``, from a job's measured throughput.

    Args:
        answer: the cost (same currency as ``price_per_hour``).
        job: the :class:`workbook.deploy.JobReport` of a re-embedding run.
    """
    ex = "07.3"
    rate = job.docs_per_s
    expected = n_docs / rate / 3600 * price_per_hour
    if _close(answer, expected, 0.01 * expected):
        return _right(
            ex,
            f"{rate:.1f} docs/s -> {n_docs / rate / 3600:.1f} hours for {n_docs:,} docs -> "
            f"{expected:.2f} at {price_per_hour}/h",
            expected,
        )
    return _wrong(
        ex,
        f"{_fmt(answer, 2)} is not what this job's throughput gives",
        "hours = n_docs / job.docs_per_s / 3600, cost = hours * price_per_hour "
        "(job.projection(n_docs, price_per_hour=...) shows both)",
        expected,
    )


def check_third_version(answer: Any, report, cfg, version: str = "v3") -> CheckResult:
    """07.2 — does the third version pass the promotion gate against production?

    Args:
        answer: ``True`` (promote) or ``False``.
        report: the shadow test of ``version`` against production; ``cfg``: the gate's thresholds.
    """
    from workbook.deploy import promotion_gate

    ex = "07.2"
    if not str(getattr(report, "new_name", "")).endswith(version):
        return _wrong(
            ex,
            f"the report's candidate is {getattr(report, 'new_name', None)!r}, not {version}'s collection",
            f"shadow_test(production retriever, dep.retriever(dep.collection_name({version!r})), ...)",
        )
    decision = promotion_gate(report, cfg, version)
    failed = [c for c, ok in decision.checks["passed"].items() if not ok]
    if isinstance(answer, bool | np.bool_) and bool(answer) == decision.passed:
        why = "every check passes" if decision.passed else f"failed: {'; '.join(failed)}"
        return _right(ex, f"{version}: {'promote' if decision.passed else 'do not promote'} ({why})", decision.passed)
    return _wrong(
        ex,
        "not the gate's decision",
        f"dp.promotion_gate(report, cfg, {version!r}).passed: read each row of its checks",
        decision.passed,
    )


# ================================================================================================ index

#: Exercise id ("<notebook>.<number>") -> its check.
EXERCISES: dict[str, Callable[..., CheckResult]] = {
    "00.1": check_lookalike_groups,
    "00.2": check_colloquial_recall,
    "00.3": check_unseen_codes,
    "01.1": check_score_table,
    "01.2": check_confusion_by_kind,
    "01.3": check_code_fragmentation,
    "01.4": check_gate_margin,
    "02.1": check_rrf_constant,
    "02.2": check_bm25_params,
    "02.3": check_rerank_depth,
    "02.4": check_gate_flip,
    "03.1": check_random_window,
    "03.2": check_reranker_margin,
    "03.3": check_equivalence_rule,
    "04.1": check_round_trip_retention,
    "04.2": check_endpoint_filters,
    "04.3": check_round_trip_k,
    "04.4": check_contradicting_labels,
    "05.1": check_hard_negative_lift,
    "05.2": check_batch_sampler,
    "05.3": check_lora_rank,
    "05.4": check_both_sources,
    "06.1": check_hybrid_after_tuning,
    "06.2": check_ci_width,
    "06.3": check_merge_crossing,
    "06.4": check_worst_siblings,
    "07.1": check_gate_limits,
    "07.2": check_third_version,
    "07.3": check_reembed_cost,
}


def exercises_of(notebook: str) -> dict[str, Callable[..., CheckResult]]:
    """The checks of one notebook (``"01"`` or ``"01_diagnose_mismatch"``), by exercise id."""
    prefix = notebook[:2]
    return {k: v for k, v in EXERCISES.items() if k.startswith(prefix + ".")}
