"""The notebooks' pipeline run headless on any BEIR-layout dataset, as resumable steps, ending in a report.

Steps (each writes ``RUN_DIR/<NN_step>/``: its files, ``result.json`` and a ``manifest.json``):

1. ``01_validate`` — load and validate the dataset (every problem with file, line, field), a test split, no
   train/eval leakage, mineable training pairs. A dataset without a dev split gets one carved out of train
   (:func:`carve_dev_split`): every choice (the gate, the best tuned variant, the in-training evaluator) is made on
   dev, never on test.
2. ``02_baselines`` — dense base model (and the comparator when asked), BM25, hybrid RRF and a reranker over the
   hybrid's top candidates (trained on train, as in notebook 02) on dev and test.
3. ``03_synthetic`` — LLM-written queries for a corpus sample, filtered (:mod:`workbook.synth`), when there is no
   train split or when asked; the case study reads its committed set instead.
4. ``04_negatives`` — hard negatives mined and audited for the training pairs (:mod:`workbook.negatives`).
5. ``05_finetune`` — fine-tune the base model (:func:`workbook.train.load_or_train`), then a short stage on lookalike
   siblings when the dataset has groups (:func:`workbook.train.sibling_stage`).
6. ``06_evaluate`` — test metrics with bootstrap CIs, paired tests, slices, truncation, lookalike collapse + UMAP.
7. ``07_forgetting`` — base vs tuned on SciFact (the general set).
8. ``08_decision`` — the should-you-fine-tune gate on dev (the prior, :func:`workbook.diagnose.should_fine_tune`,
   the same gate as notebook 02) beside the measured result on test (the posterior: did tuning beat the best cheap
   method, paired CI), and what it means when the two disagree.

A step is skipped ("cached") when its manifest's inputs — the dataset files' SHA-256, the settings it uses, the
upstream steps' output hashes and the step's version — equal the current ones and its outputs are intact. A step
runs in a temporary folder renamed into place when it is done, so a crash never leaves a step looking complete.
The report (:mod:`workbook.pipeline.report`) is then written from the steps' JSON outputs.

Modules, each importing only those above it (every public name is re-exported here):

- ``settings``: :class:`PipelineSettings` and settings files (TOML/JSON), checked with file and key in each error
- ``store``: the run folder's file names, DataFrames as JSON, the SHA-256 of the files a run reads
- ``devsplit``: :func:`carve_dev_split`, a dev split held out of train for datasets without one
- ``context``: :class:`RunContext` (what the steps share), :class:`Step`, :class:`RunLog`, :class:`PipelineError`
- ``steps_check`` (01-02), ``steps_train`` (03-05), ``steps_eval`` (06-08): the steps
- ``steps``: :data:`STEPS`, the steps in order with the settings each depends on, and :func:`preflight`
- ``render``, ``figures``, ``report``: the report, from the run folder's JSON files only (never the steps' code)
- ``runner``: the manifest runner (:func:`run_step`) and :func:`run_pipeline`
- ``casestudy``: :func:`run_casestudy`, the pipeline on the ICD-10-CM case study
"""

from __future__ import annotations

from workbook.files import file_sha256 as sha256_file
from workbook.files import read_json, write_json
from workbook.pipeline.casestudy import casestudy_settings, default_casestudy_dir, run_casestudy
from workbook.pipeline.context import PipelineError, RunContext, RunLog, Step
from workbook.pipeline.devsplit import MIN_CARVED_DEV, carve_dev_split, carved_dev_size, dev_note, selection_note
from workbook.pipeline.report import build_report, write_report
from workbook.pipeline.runner import (
    RunSummary,
    StepRecord,
    read_manifest,
    run_pipeline,
    run_step,
    step_inputs,
    team_config,
)
from workbook.pipeline.settings import (
    UNHASHED,
    PipelineSettings,
    SettingsError,
    read_settings_file,
    settings_values,
)
from workbook.pipeline.steps import STEPS, preflight
from workbook.pipeline.steps_check import (
    CI_METRICS,
    GATE_METRIC,
    METRICS,
    RERANKER_METHOD,
    baseline_reranker,
    baseline_retrievers,
    eval_splits,
    model_label,
    step_baselines,
    step_validate,
)
from workbook.pipeline.steps_eval import (
    gate_vs_measurement,
    lookalikes_before_after,
    pick_umap_groups,
    step_decision,
    step_evaluate,
    step_forgetting,
    truncation_curve,
    tuned_runs,
)
from workbook.pipeline.steps_train import (
    GENERIC_INSTRUCTION,
    generic_template,
    resolve_negatives,
    resolve_source,
    step_finetune,
    step_negatives,
    step_synthetic,
)
from workbook.pipeline.store import LOG_FILE, MANIFEST, RESULT, RUN_FILE, dataset_files, frame_from_json, frame_to_json

__all__ = [
    "CI_METRICS",
    "GATE_METRIC",
    "GENERIC_INSTRUCTION",
    "LOG_FILE",
    "MANIFEST",
    "METRICS",
    "MIN_CARVED_DEV",
    "RERANKER_METHOD",
    "RESULT",
    "RUN_FILE",
    "STEPS",
    "UNHASHED",
    "PipelineError",
    "PipelineSettings",
    "RunContext",
    "RunLog",
    "RunSummary",
    "SettingsError",
    "Step",
    "StepRecord",
    "baseline_reranker",
    "baseline_retrievers",
    "build_report",
    "carve_dev_split",
    "carved_dev_size",
    "casestudy_settings",
    "dataset_files",
    "default_casestudy_dir",
    "dev_note",
    "eval_splits",
    "frame_from_json",
    "frame_to_json",
    "gate_vs_measurement",
    "generic_template",
    "model_label",
    "pick_umap_groups",
    "preflight",
    "read_json",
    "read_manifest",
    "read_settings_file",
    "resolve_negatives",
    "resolve_source",
    "run_casestudy",
    "run_pipeline",
    "run_step",
    "selection_note",
    "settings_values",
    "sha256_file",
    "step_baselines",
    "step_decision",
    "step_evaluate",
    "step_finetune",
    "step_forgetting",
    "step_inputs",
    "step_negatives",
    "step_synthetic",
    "step_validate",
    "team_config",
    "truncation_curve",
    "tuned_runs",
    "lookalikes_before_after",
    "write_json",
    "write_report",
]
