"""The generation loop: queries for many documents, seeded per document and resumable through the cache."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from tqdm.auto import tqdm

from workbook import worklog
from workbook.files import text_sha256
from workbook.synth.cache import GenerationCache
from workbook.synth.generators import Generator
from workbook.synth.prompts import QUERIES_PER_DOC, PromptTemplate, _sha, parse_queries


def doc_seed(seed: int, doc_id: str) -> int:
    """A per-document seed: the same document gets the same sample whatever else is generated, in any order."""
    return int(text_sha256(f"{seed}:{doc_id}", 8), 16) % (2**31 - 1)


def _stop(template: PromptTemplate, n: int) -> list[str]:
    """The stop sequences: the template's, and the end of the first line when one query per call is asked."""
    return [*template.stop, "\n"] if n == 1 else template.stop


def prompt_for(generator: Generator, template: PromptTemplate, passage: str):
    """The prompt in the form the generator takes: text for completion models, messages for chat models."""
    return template.messages(passage) if generator.kind == "chat" else template.render(passage)


@dataclass
class GenerationRun:
    """What :func:`generate_queries` did.

    Attributes:
        records: one cache record per document, in the order asked.
        new: documents generated in this call.
        reused: documents read from the cache.
        seconds: generation time of the new ones.
    """

    records: list[dict]
    new: int
    reused: int
    seconds: float

    @property
    def seconds_per_query(self) -> float:
        """Mean generation time per parsed query of the new documents (``nan`` when nothing was generated)."""
        produced = sum(len(r["queries"]) for r in self.records if r.get("_new"))
        return self.seconds / produced if produced else float("nan")

    def candidates(self) -> pd.DataFrame:
        """One row per parsed query: ``doc_id``, ``query``, ``position``, ``cut_off`` (last item of a completion
        that hit the token limit), ``template``, ``key``."""
        rows = []
        for rec in self.records:
            qs = rec["queries"]
            for i, q in enumerate(qs):
                cut = rec.get("finish_reason") == "length" and i == len(qs) - 1
                rows.append(
                    {"doc_id": rec["doc_id"], "query": q, "position": i, "cut_off": cut, "template": rec["template"],
                     "key": rec["key"]}
                )  # fmt: skip
        return pd.DataFrame(rows, columns=["doc_id", "query", "position", "cut_off", "template", "key"])


def generate_queries(
    generator: Generator,
    template: PromptTemplate,
    passages: Mapping[str, str],
    cache: GenerationCache,
    n: int = QUERIES_PER_DOC,
    seed: int = 42,
    show_progress: bool = True,
    desc: str = "generating",
) -> GenerationRun:
    """Generate up to ``n`` queries for every passage, reusing the cache and appending each new document to it.

    Args:
        generator: the backend.
        template: the prompt template.
        passages: doc id -> passage text (generated in this order; pass sorted ids for a reproducible log).
        cache: the resumable cache.
        n: queries kept per document; 1 asks one query per call (generation stops at the end of its first line).
        seed: the run seed (each document gets :func:`doc_seed`).
        show_progress: a tqdm bar over documents.

    Returns:
        The records and what was new or reused.
    """
    template_hash = cache.register("template", template.to_dict())
    stop = _stop(template, n)
    settings = {**generator.settings(), "n": n, "stop": stop}
    settings_hash = cache.register("settings", {"generator": generator.name, **settings})
    jobs = []
    for doc_id, passage in passages.items():
        prompt = prompt_for(generator, template, passage)
        prompt_sha = _sha(prompt)
        dseed = doc_seed(seed, doc_id)
        key = _sha({"doc": doc_id, "prompt": prompt_sha, "generator": generator.name, "settings": settings_hash,
                    "seed": dseed})  # fmt: skip
        jobs.append((doc_id, key, prompt, prompt_sha, dseed))
    todo = [j for j in jobs if j[1] not in cache]
    fresh: set[str] = set()
    seconds = 0.0
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=desc, disable=not show_progress) as bar:
        for start in range(0, len(todo), generator.batch_size):
            batch = todo[start : start + generator.batch_size]
            t0 = time.perf_counter()
            outs = generator.complete([j[2] for j in batch], [j[4] for j in batch], stop)
            spent = time.perf_counter() - t0
            seconds += spent
            for (doc_id, key, _, prompt_sha, dseed), out in zip(batch, outs, strict=True):
                cache.add(
                    {"key": key, "doc_id": doc_id, "template": template_hash, "prompt_sha": prompt_sha,
                     "generator": generator.name, "settings": settings_hash, "seed": dseed, "text": out.text,
                     "finish_reason": out.finish_reason, "queries": parse_queries(out.text, n),
                     "seconds": round(spent / len(batch), 3)}
                )  # fmt: skip
                fresh.add(key)
            bar.update(len(batch))
    if fresh:
        worklog.record("generate", seconds, docs=len(fresh), what=_sha(sorted(fresh)))
    records = [{**cache.get(j[1]), "_new": j[1] in fresh} for j in jobs]
    return GenerationRun(records, new=len(fresh), reused=len(jobs) - len(fresh), seconds=seconds)


def generate(
    generator: Generator, template: PromptTemplate, passages: Sequence[str], n: int = QUERIES_PER_DOC, seed: int = 42
) -> list[list[str]]:
    """The plain interface, without a cache: up to ``n`` queries for each passage (seeded per passage)."""
    prompts = [prompt_for(generator, template, p) for p in passages]
    seeds = [doc_seed(seed, _sha(p)) for p in passages]
    out: list[list[str]] = []
    stop, size = _stop(template, n), generator.batch_size
    for start in range(0, len(prompts), size):
        outs = generator.complete(prompts[start : start + size], seeds[start : start + size], stop)
        out += [parse_queries(o.text, n) for o in outs]
    return out
