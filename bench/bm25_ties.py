"""Benchmark: how much of BM25's reported score is the order of its tied scores (issue 21's reproduction audit).

Usage (from the repository root, after ``make setup``)::

    WORKBOOK_FAST=0 .venv/bin/python bench/bm25_ties.py --machine "..."   # writes bench/results/bm25_ties.json

ICD-10-CM documents are short and share words, so BM25 gives many documents exactly the same score (an exact-code
query such as ``A52.12`` scores A52.02, A52.03, A52.11, A52.17, A52.2 and A52.3 all 4.2634). bm25s orders tied
documents with numpy's ``argpartition``/``argsort``, whose order among equal values is not defined and differs
with the sort kernels the CPU gets: notebook 01 run cold on an AVX-512 machine read BM25 Recall@10 0.570 where its
committed outputs (AVX2) read 0.571. Per split, on every query of the case study, this records:

- the metrics of four orders of the same scores: bm25s' own (as the notebooks rank, on this CPU), ties broken by
  corpus position, by reverse corpus position, and by a seeded hash of (query id, document id) (the fix planned);
- the metrics' expected value when tied documents are ordered at random (exact, not sampled: a document that ties
  with ``t`` others just below ``a`` better ones takes each position ``a+1 .. a+t`` with probability ``1/t``, as in
  McSherry and Najork, "Computing information retrieval performance measures efficiently in the presence of tied
  scores", ECIR 2008);
- how many queries have a tie across the 10th position (where Recall@10 cuts).

Nothing here changes what the notebooks report; it measures how far their BM25 numbers depend on the tie order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "bm25_ties.json"
K = 10
ORDERS = ("bm25s (this CPU)", "ties by corpus position", "ties by reverse position", "ties by a seeded hash")
SEED = 42
METRICS = ["recall@10", "ndcg@10", "recall@100"]


def hash_keys(seed: int, qid: str, doc_ids) -> np.ndarray:
    """A tie-break key per document for query ``qid``: the same on every CPU, and as good as random for ranking."""
    return np.array([int.from_bytes(hashlib.blake2b(f"{seed}|{qid}|{d}".encode(), digest_size=8).digest(), "big")
                     for d in doc_ids], dtype=np.uint64)  # fmt: skip


def _dcg_discounts(n: int) -> np.ndarray:
    """1 / log2(rank + 1) for ranks 1..n (trec_eval's nDCG discount)."""
    return 1.0 / np.log2(np.arange(2, n + 2))


def expected_metrics(scores: np.ndarray, relevant: dict[int, float]) -> dict[str, float]:
    """Recall@10, Recall@100 and nDCG@10 of one query, expected under a random order of tied scores (exact).

    Args:
        scores: BM25 score of every document (0: shares no term with the query, never retrieved).
        relevant: document position -> graded relevance (> 0).
    """
    disc = _dcg_discounts(K)
    ideal = np.sort(np.fromiter(relevant.values(), float))[::-1][:K]
    idcg = float((ideal * disc[: len(ideal)]).sum())
    exp = {f"recall@{k}": 0.0 for k in (K, 100)} | {"ndcg@10": 0.0}
    for doc, gain in relevant.items():
        s = scores[doc]
        if s <= 0:
            continue
        above, tied = int((scores > s).sum()), int((scores == s).sum())
        for k in (K, 100):
            exp[f"recall@{k}"] += min(max(k - above, 0), tied) / tied / len(relevant)
        positions = np.arange(above, min(above + tied, K))  # 0-based positions inside the top 10
        exp["ndcg@10"] += gain * disc[positions].sum() / tied / idcg
    return exp


def measure(ds, index, split: str) -> dict:
    """Every query of ``split``: the mean of each metric per order, and how many queries tie across the cut.

    Args:
        ds: the case study; ``index``: its :class:`~workbook.retrieval.BM25Index`.
    """
    import bm25s

    from workbook.evaluate import evaluate_ranking
    from workbook.retrieval import TOKEN_PATTERN

    position = {d: i for i, d in enumerate(index.ids)}
    queries = ds.split_queries(split)
    tokens = bm25s.tokenize(list(queries.values()), token_pattern=TOKEN_PATTERN, stopwords="en", return_ids=False,
                            show_progress=False)  # fmt: skip
    runs: dict[str, dict[str, list[str]]] = {ORDERS[0]: index.ranked(list(queries), list(queries.values()), 100)}
    expected: dict[str, float] = {}
    cut_ties = 0
    for qid, toks in zip(queries, tokens, strict=True):
        scores = index.retriever.get_scores(toks)
        top = np.flatnonzero(scores >= np.partition(scores, len(scores) - 101)[len(scores) - 101])
        by_pos = top[np.lexsort((top, -scores[top]))]
        by_rev = top[np.lexsort((-top, -scores[top]))]
        by_hash = top[np.lexsort((hash_keys(SEED, qid, [index.ids[i] for i in top]), -scores[top]))]
        for name, order in zip(ORDERS[1:], (by_pos, by_rev, by_hash), strict=True):
            runs.setdefault(name, {})[qid] = [index.ids[i] for i in order if scores[i] > 0][:100]
        cut_ties += bool(scores[by_pos[K - 1]] > 0 and scores[by_pos[K - 1]] == scores[by_pos[K]])
        relevant = {position[d]: float(g) for d, g in ds.qrels[split][qid].items() if g > 0}
        for metric, value in expected_metrics(scores, relevant).items():
            expected[metric] = expected.get(metric, 0.0) + value
    n = len(queries)
    table = {name: {m: round(float(v), 4) for m, v in evaluate_ranking(run, ds.qrels[split], METRICS).summary().items()}
             for name, run in runs.items()}  # fmt: skip
    table["random tie order (expected)"] = {m: round(v / n, 4) for m, v in expected.items()}
    return {"queries": n, "queries with a tie across the 10th position": cut_ties, "metrics": table}


def table(result: dict) -> str:
    """The bench as markdown (bench/README.md)."""
    lines = [f"{result['machine']} ({result['cpu']}), the full case study, every query of each split:", "",
             "| split | order of tied scores | Recall@10 | nDCG@10 | Recall@100 |", "|---|---|---:|---:|---:|"]
    for split, res in result["splits"].items():
        for order, m in res["metrics"].items():
            lines.append(f"| {split} | {order} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f} | {m['recall@100']:.4f} |")
    lines.append("")
    for split, res in result["splits"].items():
        r10 = [m["recall@10"] for m in res["metrics"].values()]
        lines.append(f"- {split}: {res['queries with a tie across the 10th position']:,} of {res['queries']:,} "
                     f"queries have a tie across the 10th position; Recall@10 spans {100 * (max(r10) - min(r10)):.2f} "
                     "points over these orders.")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--machine", default="2 CPU cores", help="the machine and how busy it was")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT / "bench"))
    from e2e import cpu_name

    from workbook.config import default_config
    from workbook.icd10cm import load_icd10cm
    from workbook.retrieval import BM25Index

    ds = load_icd10cm(default_config(fast=False))
    index = BM25Index.from_dataset(ds)
    splits = {split: measure(ds, index, split) for split in ("dev", "test")}
    result = {"machine": args.machine, "cpu": cpu_name(), "splits": splits}
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
