"""``workbook run`` end to end on a tiny BEIR dataset made here from the fast case study, in fast mode with tiny
budgets and the real models (MiniLM, the local gemma-270m generator): every step's outputs, the report's numbers
against the run's JSON, caching on rerun, selective reruns after a settings change, and fail-fast errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from tests.test_data import tiny
from workbook import pipeline
from workbook.browser import find_chromium, open_page
from workbook.cli import main
from workbook.config import Config, get_config
from workbook.data import load_dataset, save_dataset, subset
from workbook.evaluate import evaluate_ranking
from workbook.icd10cm import load_icd10cm
from workbook.retrieval import rrf
from workbook.train import final_training

STEP_NAMES = [s.name for s in pipeline.STEPS]
#: Tiny budgets: 3 documents generated, 16 training rows in batches of 8 (2 steps), a small SciFact subset.
SETTINGS = """
synthetic = "always"
synthetic_docs = 3
generator = "local"
generator_max_tokens = 24
max_rows = 16
train_batch_size = 8
n_resamples = 200
umap_groups = 2
scifact_fast_queries = 30
scifact_fast_extra_docs = 0
"""


def make_tiny_dataset(folder: Path) -> Path:
    """145 docs (ICD-10-CM I10-I2x, hypertension and ischaemic heart disease) with their 161 queries in
    train/dev/test, the queries' slices, and the lookalike groups restricted to those docs."""
    ds = load_icd10cm(get_config(fast=True))
    docs = [d for d in ds.corpus if d.startswith(("I1", "I2"))]
    small = subset(ds, doc_ids=docs, name="icd-tiny")
    save_dataset(small, folder)
    groups = [
        {**g, "codes": [c for c in g["codes"] if c in small.corpus]}
        for g in ds.extras["lookalikes"]
        if len(set(g["codes"]) & small.corpus.keys()) >= 2
    ]
    (folder / "lookalikes.jsonl").write_text("".join(json.dumps(g) + "\n" for g in groups))
    return folder


def run_cli(args: list[str], run_dir: Path) -> tuple[int, str]:
    """Run ``workbook`` in this process; return its exit code and the lines it added to ``run.log``."""
    log = run_dir / pipeline.LOG_FILE
    before = log.stat().st_size if log.is_file() else 0
    rc = main(args)
    text = log.read_text(encoding="utf-8")[before:] if log.is_file() else ""
    return rc, text


def step_status(log: str) -> dict[str, str]:
    """Step name -> "cached" or "ran", from a run's log lines."""
    out = {}
    for name in STEP_NAMES:
        if re.search(rf"{name}: cached", log):
            out[name] = "cached"
        elif re.search(rf"{name}: done in", log):
            out[name] = "ran"
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory, local_llm):
    root = tmp_path_factory.mktemp("pipeline")
    data = make_tiny_dataset(root / "data")
    settings = root / "settings.toml"
    settings.write_text(SETTINGS)
    out = root / "run"
    rc, log = run_cli(["run", str(data), "--out", str(out), "--fast", "--config", str(settings)], out)
    return SimpleNamespace(root=root, data=data, settings=settings, out=out, rc=rc, log=log)


def result(run_dir: Path, step: str) -> dict:
    return json.loads((run_dir / step / pipeline.RESULT).read_text())


def md_tables(text: str) -> dict[str, pd.DataFrame]:
    """Every table of a markdown report, keyed by its caption (the italic line above it), as text cells."""
    tables, lines = {}, text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            caption = lines[i - 2].strip("*") if i >= 2 and lines[i - 2].startswith("*") else f"table {len(tables)}"
            head = [c.strip() for c in lines[i].strip("|").split(" | ")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("| "):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split(" | ")])
                i += 1
            frame = pd.DataFrame([r[1:] for r in rows], index=[r[0] for r in rows], columns=head[1:])
            tables[caption] = frame
        i += 1
    return tables


def assert_table_matches(shown: pd.DataFrame, stored: dict) -> None:
    """Every number of a stored result table (``frame_to_json``) appears, at the decimals the report prints it with
    (4 for metrics), in the shown table."""
    frame = pipeline.frame_from_json(stored)
    assert list(shown.index) == [str(i) for i in frame.index]
    assert list(shown.columns) == [str(c) for c in frame.columns]
    for idx in frame.index:
        for col in frame.columns:
            text = shown.loc[str(idx), str(col)]
            digits = len(text.split(".")[1]) if "." in text else 0
            if frame[col].abs().max() <= 1 and not frame[col].apply(float.is_integer).all():
                assert digits == 4, (idx, col, text)
            assert float(text) == pytest.approx(round(float(frame.loc[idx, col]), digits), abs=0)


# ------------------------------------------------------------------------------------------------ the full run


def test_run_writes_every_step_and_the_report(run):
    assert run.rc == 0, run.log
    assert step_status(run.log) == dict.fromkeys(STEP_NAMES, "ran")
    for name in STEP_NAMES:
        manifest = json.loads((run.out / name / pipeline.MANIFEST).read_text())
        assert manifest["step"] == name and manifest["seconds"] >= 0
        assert (run.out / name / pipeline.RESULT).is_file()
        assert re.search(rf"{name}: start .*\n(?:.*\n)*?.*{name}: done in [\d.]+ s", run.log)
    for rel in ("02_baselines/rankings_dev.json", "02_baselines/rankings_test.json", "03_synthetic/pairs.json",
                "03_synthetic/candidates.jsonl", "03_synthetic/template.json", "05_finetune/log_history.json",
                "06_evaluate/rankings_test.json", "06_evaluate/lookalike_map.json", "report.md", "report.html",
                "run.log", "run.json"):  # fmt: skip
        assert (run.out / rel).is_file(), rel
    for fig in ("methods", "slices", "truncation", "lookalikes_before_after", "lookalike_distributions"):
        assert (run.out / "figures" / f"{fig}.png").stat().st_size > 10_000, fig
    assert not list(run.out.glob(".*partial")), "a finished run leaves no partial step folder"
    html = (run.out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "<table" in html


def test_report_opens_in_a_browser_with_every_figure_and_nothing_cut_off(run):
    if find_chromium() is None:
        pytest.skip("no Chromium on this machine: install Debian's `chromium` package to open the report")
    seen = open_page(run.out / "report.html", screenshot=run.root / "report.png")
    assert seen.title.startswith("Fine-tuning report"), seen.summary()
    assert len(seen.images) == 5 and not seen.broken_images, seen.summary()
    assert all(img["right"] <= 1280 for img in seen.images), "a figure reaches past a laptop screen's width"
    assert not seen.cut_off and not seen.console_errors and not seen.failed_requests, seen.summary()
    assert (run.root / "report.png").stat().st_size > 50_000


def test_steps_did_the_real_work(run):
    syn = result(run.out, "03_synthetic")
    assert syn["status"] == "generated" and syn["generator"].startswith("llama.cpp/gemma")
    assert syn["docs"] == 3 and syn["candidates"] >= 3 and syn["generated_now"] == 3
    neg = result(run.out, "04_negatives")
    assert neg["source"] == ("both" if syn["pairs"] else "real")
    assert all(Path(p).is_file() for p in json.loads((run.out / "04_negatives" / "manifest.json").read_text())
               ["external"])  # fmt: skip
    tune = result(run.out, "05_finetune")
    first, card = tune["first_card"], tune["card"]
    assert first["data"]["rows"] == 16 and first["steps"] == 2 and first["recipe"]["batch_size"] == 8
    # the dataset has lookalikes.jsonl: the final training's negatives and columns, as notebook 05 trains (its pick)
    recipe, negatives = final_training(has_lookalikes=True)
    assert neg["negatives"] == first["data"]["negatives"] == negatives
    assert first["recipe"]["num_negatives"] == recipe.num_negatives
    assert first["model_fingerprint"] != first["base_model_fingerprint"]
    # ... then the sibling stage from that model, as notebook 05's final model (workbook.train.final_model)
    assert tune["sibling_stage"].startswith("trained on") and card["started_from"] == first["name"]
    assert card["start_model_fingerprint"] == first["model_fingerprint"] != card["model_fingerprint"]
    assert card["data"]["negatives"] == "sibling + mined" and card["dev_metrics"]
    assert (run.out / "05_finetune" / "log_history_sibling_stage.json").is_file()
    model_path = Path(tune["model_path"])
    assert model_path.is_relative_to(run.out / "artifacts"), "a team's run keeps its models in RUN_DIR/artifacts"
    base = result(run.out, "02_baselines")
    assert base["methods"][-1] == pipeline.RERANKER_METHOD and base["reranker"].startswith("trained on")
    # the baselines are one list of retrievers: the hybrid's run is the fusion of the dense and BM25 runs beside it
    ranks = json.loads((run.out / "02_baselines" / "rankings_dev.json").read_text())
    hybrid = next(m for m in base["methods"] if m.startswith("hybrid"))
    assert ranks[hybrid] == rrf([ranks[base["base_method"]], ranks["BM25"]], k=100)
    dec = result(run.out, "08_decision")
    ev = result(run.out, "06_evaluate")
    # one rule for the best cheap method: the gate (dev, per-query values) and the evaluation pick the same one
    assert dec["gate"]["split"] == "dev" and dec["gate"]["best_cheap"] == ev["best_cheap"]
    assert ev["selected_on"] == "dev" and ev["selection"] == "picked on the dev split"
    gap = dec["gate"]["numbers"]["gap remains after the cheap wins"]
    assert gap["ci_low"] < gap["value"] < gap["ci_high"] and gap["queries"] == len(load_dataset(run.data).qrels["dev"])
    # The stored metrics are those of the stored rankings: recompute them independently.
    ds = load_dataset(run.data)
    rankings = json.loads((run.out / "06_evaluate" / "rankings_test.json").read_text())
    metrics = pipeline.frame_from_json(ev["metrics"])
    recomputed = evaluate_ranking(rankings["fine-tuned"], ds.qrels["test"])
    assert metrics.loc["fine-tuned", "ndcg@10"] == pytest.approx(recomputed["ndcg@10"], abs=1e-12)
    assert set(pipeline.frame_from_json(ev["slices"]).columns) >= {"all", "lookalike", "colloquial"}
    drawn = ev["lookalike_map"]
    assert drawn["points"] > 10 and len(drawn["groups"]) == 2 and set(drawn["separation"]) == {"base", "fine-tuned"}
    assert all(0 <= v <= 1 for sep in drawn["separation"].values() for v in sep.values())
    assert list(pipeline.frame_from_json(ev["truncation"]).index) == [384, 256, 128, 64]
    forget = result(run.out, "07_forgetting")
    assert forget["status"] == "done" and forget["queries"] == 30


def test_report_numbers_come_from_the_runs_json(run):
    text = (run.out / "report.md").read_text()
    tables = md_tables(text)
    ev, dec = result(run.out, "06_evaluate"), result(run.out, "08_decision")
    assert_table_matches(tables["test split, mean over queries"], ev["metrics"])
    assert_table_matches(tables["test split, mean and 95% bootstrap CI"], ev["ci"])
    assert_table_matches(tables["last row: queries per slice"], ev["slices"])
    base = result(run.out, "02_baselines")
    assert_table_matches(tables["dev split, mean over queries"], base["metrics"]["dev"])
    assert_table_matches(tables["lookalike collapse on the test queries"], ev["collapse"])
    paired = tables["B − A per query: mean difference, 95% bootstrap CI, paired randomisation p-value"]
    for row in ev["paired"]:
        shown = paired.loc[f"{row['metric']}: {row['b']} − {row['a']}"]
        assert float(shown["delta"]) == round(row["delta"], 4)
        assert float(shown["CI low"]) == round(row["ci_low"], 4) and float(shown["CI high"]) == round(row["ci_high"], 4)
    assert f"**{dec['verdict']}**" in text
    assert f"Should you fine-tune? {dec['gate']['verdict']} (the gate, from the baselines)" in text
    for reason in dec["gate"]["reasons"]:
        assert f"- {reason}" in text
    # the gate (prior, dev) beside the measurement (posterior, test), and what they say together
    side = next(t for caption, t in tables.items() if caption.startswith("the gate is the prior (dev"))
    assert list(side["split"]) == ["dev", "test"] and list(side["says"])[0] == dec["gate"]["verdict"]
    assert float(side.loc["the measurement (posterior)", "value"]) == round(dec["payoff"]["delta"], 4)
    assert dec["agreement"]["text"] in text
    assert dec["agreement"]["agree"] == (dec["gate"]["go"] == dec["tuned_beats_best_cheap"])
    shown = tables["the gate's checks: value, threshold, 95% bootstrap CI, queries"]
    gap = dec["gate"]["numbers"]["gap remains after the cheap wins"]
    assert float(shown.loc["gap remains after the cheap wins", "ci_low"]) == round(gap["ci_low"], 4)
    forget = result(run.out, "07_forgetting")["paired"]
    assert f"nDCG@10 {forget['mean_a']:.4f} base → {forget['mean_b']:.4f} fine-tuned" in text


# ------------------------------------------------------------------------------------------------ resuming


def test_second_run_skips_every_step(run):
    manifests = {n: (run.out / n / pipeline.MANIFEST).read_text() for n in STEP_NAMES}
    rc, log = run_cli(["run", str(run.data), "--out", str(run.out), "--fast", "--config", str(run.settings)], run.out)
    assert rc == 0
    assert step_status(log) == dict.fromkeys(STEP_NAMES, "cached")
    assert " start " not in log and "done in" in log.splitlines()[-1]
    assert {n: (run.out / n / pipeline.MANIFEST).read_text() for n in STEP_NAMES} == manifests
    run_info = json.loads((run.out / pipeline.RUN_FILE).read_text())
    assert [s["status"] for s in run_info["steps"]] == ["cached"] * len(STEP_NAMES)
    # Each step's own peak RSS from the run in which it ran (reset per step on Linux), carried into run.json.
    peaks = {s["name"]: s["peak_rss_mb"] for s in run_info["steps"]}
    assert all(s["peak_rss_per_step"] for s in run_info["steps"])
    assert all(100 < peaks[n] == json.loads(manifests[n])["peak_rss_mb"] for n in STEP_NAMES), peaks
    assert "peak RSS (GiB)" in (run.out / "report.md").read_text()


def test_changing_a_setting_reruns_only_the_affected_steps(run):
    copy = run.root / "run-umap1"
    shutil.copytree(run.out, copy, ignore=shutil.ignore_patterns("artifacts", "cache", "report.*", "figures"))
    settings = run.root / "settings-umap1.toml"
    settings.write_text(SETTINGS.replace("umap_groups = 2", "umap_groups = 1"))
    rc, log = run_cli(["run", str(run.data), "--out", str(copy), "--fast", "--config", str(settings)], copy)
    assert rc == 0
    status = step_status(log)
    assert status == {**dict.fromkeys(STEP_NAMES, "cached"), "06_evaluate": "ran", "08_decision": "ran"}
    assert "06_evaluate: start (inputs changed: settings.umap_groups)" in log
    assert "08_decision: start (inputs changed: upstream.06_evaluate)" in log
    assert len(result(copy, "06_evaluate")["lookalike_map"]["groups"]) == 1


def test_a_failing_step_never_looks_complete(tmp_path):
    ctx = pipeline.RunContext(get_config(fast=True), pipeline.PipelineSettings(), tmp_path, tmp_path / "run",
                              log=lambda _: None)  # fmt: skip

    def crash(ctx, out):
        (out / "half.json").write_text("{}")
        raise RuntimeError("interrupted")

    def work(ctx, out):
        (out / "whole.json").write_text('{"ok": true}')
        return {"rows": 3}

    with pytest.raises(RuntimeError, match="interrupted"):
        pipeline.run_step(ctx, pipeline.Step("01_demo", crash, dataset=False, uses=("seed",)), {})
    assert not (ctx.run_dir / "01_demo").exists()
    step = pipeline.Step("01_demo", work, dataset=False, uses=("seed",))
    assert pipeline.run_step(ctx, step, {}).status == "ran"
    assert not list(ctx.run_dir.glob(".*")), "the partial folder is gone"
    assert pipeline.run_step(ctx, step, {}).status == "cached"
    (ctx.run_dir / "01_demo" / "whole.json").write_text('{"ok": false}')  # an output changed behind its back
    assert pipeline.run_step(ctx, step, {}).status == "ran"
    ctx.cfg = ctx.cfg.replace(seed=7)
    assert pipeline.run_step(ctx, step, {}).status == "ran"


# ------------------------------------------------------------------------------------------------ errors


def test_bad_dataset_fails_fast_with_file_line_field(tmp_path, capsys):
    folder = save_dataset(tiny(), tmp_path / "bad")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td2\thigh\n")
    out = tmp_path / "out"
    assert main(["run", str(folder), "--out", str(out), "--fast"]) == 1
    err = capsys.readouterr().err
    assert "qrels/test.tsv:2: field 'score': relevance must be an integer, got 'high'" in err
    assert not any((out / name).exists() for name in STEP_NAMES)


def test_missing_files_and_test_split_are_named(tmp_path, capsys):
    folder = save_dataset(tiny(), tmp_path / "nocorpus")
    (folder / "corpus.jsonl").unlink()
    assert main(["run", str(folder), "--out", str(tmp_path / "o1"), "--fast"]) == 1
    assert "corpus.jsonl: missing file" in capsys.readouterr().err
    ds = tiny()
    del ds.qrels["test"]
    folder = save_dataset(ds, tmp_path / "notest")
    assert main(["run", str(folder), "--out", str(tmp_path / "o2"), "--fast"]) == 1
    assert "qrels/test.tsv: missing file: a test split is required" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o3"), "--fast"]) == 1
    assert "no such dataset folder" in capsys.readouterr().err


def test_leakage_is_refused_unless_allowed(tmp_path, capsys):
    ds = tiny()
    ds.queries["q3"] = ds.queries["q1"]
    folder = save_dataset(ds, tmp_path / "leak")
    assert main(["run", str(folder), "--out", str(tmp_path / "o"), "--fast"]) == 1
    assert "queries.jsonl: field 'text': test query q3 repeats train query q1" in capsys.readouterr().err


def test_settings_file_errors_name_file_and_key(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = 3\nmax_row = 10\n")
    with pytest.raises(pipeline.SettingsError, match=r"bad\.toml: unknown key 'max_row'; known keys: .*max_rows"):
        pipeline.read_settings_file(bad)
    folder = save_dataset(tiny(), tmp_path / "ok")
    assert main(["run", str(folder), "--out", str(tmp_path / "o"), "--config", str(bad)]) == 1
    assert "unknown key 'max_row'" in capsys.readouterr().err
    for text, match in (('seed = "x"', "key 'seed': expected int"),
                        ('max_rows = "lots"', "'max_rows' must be an integer, 'auto' or 'all'"),
                        ('recipe = "sgd"', "'recipe' must be one of"),
                        ('negatives = "curated"', "'negatives' must be one of"),
                        ("generator_parallel = 8", "'generator_parallel' must be between 1 and 4"),
                        ("truncate_dims = [64, true]", r"key 'truncate_dims'\[1\]: expected int"),
                        ("seed = ", "not valid TOML"),
                        ("fast = true", "key 'fast': set the mode with --fast")):  # fmt: skip
        bad.write_text(text + "\n")
        with pytest.raises(pipeline.SettingsError, match=match):
            pipeline.read_settings_file(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"seed": 7, "cache_dir": "c", "max_rows": "all", "truncate_dims": [128, 64]}))
    config, settings = pipeline.read_settings_file(good)
    assert config == {"seed": 7, "cache_dir": (tmp_path / "c").resolve()}
    assert settings == {"max_rows": "all", "truncate_dims": (128, 64)}
    assert pipeline.PipelineSettings(**settings).rows(get_config(fast=True)) is None


def test_negatives_follow_the_dataset_and_the_default_pick():
    from workbook.pipeline.steps_train import resolve_negatives
    from workbook.train import DEFAULT_NEGATIVES

    assert resolve_negatives("auto", True) == DEFAULT_NEGATIVES and resolve_negatives("auto", False) == "mined"
    assert resolve_negatives("lookalike", True) == "lookalike" and resolve_negatives("mined", False) == "mined"
    with pytest.raises(pipeline.PipelineError, match="needs lookalike groups: add lookalikes.jsonl"):
        resolve_negatives("both", False)


def test_every_setting_is_an_input_of_some_step_or_declared_unused():
    import dataclasses

    fields = {f.name for f in dataclasses.fields(Config)} | {
        f.name for f in dataclasses.fields(pipeline.PipelineSettings)
    }
    used = {k for s in pipeline.STEPS for k in s.uses}
    assert used <= fields, used - fields
    assert fields - used == set(pipeline.UNHASHED), "a new setting must be listed in a step's uses or in UNHASHED"


def test_training_source_follows_what_exists():
    assert pipeline.resolve_source("auto", has_train=True, n_synthetic=0) == "real"
    assert pipeline.resolve_source("auto", has_train=True, n_synthetic=5) == "both"
    assert pipeline.resolve_source("auto", has_train=False, n_synthetic=5) == "synthetic"
    assert pipeline.resolve_source("real", has_train=True, n_synthetic=5) == "real"
    with pytest.raises(pipeline.PipelineError, match="no training data"):
        pipeline.resolve_source("auto", has_train=False, n_synthetic=0)


def test_impossible_source_is_refused_before_any_step(tmp_path, capsys):
    ds = tiny()
    del ds.qrels["train"]
    folder = save_dataset(ds, tmp_path / "notrain")
    settings = tmp_path / "s.toml"
    settings.write_text('source = "real"\n')
    assert main(["run", str(folder), "--out", str(tmp_path / "o"), "--fast", "--config", str(settings)]) == 1
    assert "source = 'real' needs a train split" in capsys.readouterr().err
    assert not (tmp_path / "o" / "01_validate").exists()


@pytest.mark.slow
def test_dataset_without_train_split_trains_on_synthetic_queries(tmp_path):
    """No train split: queries are generated for a corpus sample (always), in the style of the team's example
    questions (examples.jsonl), and the model trains on them only."""
    full = load_dataset(make_tiny_dataset(tmp_path / "src"))
    folder = save_dataset(subset(full, splits=["dev", "test"]), tmp_path / "data")
    examples = [{"text": "bp way too high for years, no known cause", "doc_id": "I10"},
                {"text": "crushing chest pain last week, heart attack?"}, {"text": "heart skipping beats"}]  # fmt: skip
    (folder / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    settings = tmp_path / "s.toml"
    settings.write_text(
        SETTINGS.replace('synthetic = "always"', "").replace("synthetic_docs = 3", "synthetic_docs = 40")
    )
    out = tmp_path / "run"
    rc, log = run_cli(["run", str(folder), "--out", str(out), "--fast", "--config", str(settings)], out)
    assert rc == 0, log
    syn = result(out, "03_synthetic")
    assert syn["status"] == "generated" and syn["template"] == "generic-examples" and syn["pairs"] > 0
    assert syn["examples"] == {"examples": 3, "with_doc": 1}
    template = json.loads((out / "03_synthetic" / "template.json").read_text())
    assert [s["doc_id"] for s in template["shots"]] == ["I10"] and len(template["style"]) == 2
    candidates = [json.loads(line) for line in (out / "03_synthetic" / "candidates.jsonl").open()]
    assert "I10" not in {c["source_doc"] for c in candidates}, "an example's document is not generated for"
    assert result(out, "04_negatives")["source"] == "synthetic"
    assert "example questions (`examples.jsonl`, 1 of them with their document)" in (out / "report.md").read_text()


# ------------------------------------------------------------------------------------------------ no dev split


def test_carve_dev_split_holds_out_train_queries_seeded():
    from workbook.data import find_leakage

    full = load_icd10cm(get_config(fast=True))
    ds = subset(full, splits=["train", "test"])
    train_before = dict(ds.qrels["train"])
    record = pipeline.carve_dev_split(ds, seed=7)
    held = record["query_ids"]
    n = len(train_before)
    assert record["source"] == "carved from train" and record["seed"] == 7 and held == sorted(held)
    assert pipeline.carved_dev_size(n) <= len(held) < pipeline.carved_dev_size(n) + 5  # same wordings move together
    assert len(held) >= 50 and set(ds.qrels["dev"]) == set(held) and not set(held) & set(ds.qrels["train"])
    assert set(ds.qrels["dev"]) | set(ds.qrels["train"]) == set(train_before)
    assert not find_leakage(ds), "a carved dev query never repeats a train query's wording"
    again = subset(full, splits=["train", "test"])
    assert pipeline.carve_dev_split(again, seed=7)["query_ids"] == held  # seeded
    assert pipeline.carve_dev_split(subset(full, splits=["train", "test"]), seed=8)["query_ids"] != held
    # a dataset with a dev split is left alone; a tiny train split gives none (choices fall back to defaults)
    assert pipeline.carve_dev_split(ds, seed=7) == {"source": "dataset", "queries": len(held)}
    tiny_train = subset(full, query_ids=sorted(full.qrels["train"])[:30] + sorted(full.qrels["test"]),
                        splits=["train", "test"])  # fmt: skip
    none = {"source": "none", "queries": 0, "why": "only 30 train queries"}
    assert pipeline.carve_dev_split(tiny_train, seed=7) == none
    assert "dev" not in tiny_train.qrels and len(tiny_train.qrels["train"]) == 30
    assert [pipeline.carved_dev_size(k) for k in (30, 40, 101, 200, 1000)] == [0, 10, 25, 50, 150]


def _small_run(folder, tmp_path):
    """``workbook run`` on ``folder``, fast mode, smallest budgets (no synthetic data, no SciFact, no UMAP, no
    reranker: training one on each dataset took most of each run, and the module's full run covers it)."""
    settings = tmp_path / "s.toml"
    settings.write_text('synthetic = "never"\nforgetting = false\numap_groups = 0\nmax_rows = 16\n'
                        "train_batch_size = 8\nn_resamples = 200\nrerank_baseline = false\n")  # fmt: skip
    out = tmp_path / "run"
    rc, log = run_cli(["run", str(folder), "--out", str(out), "--fast", "--config", str(settings)], out)
    assert rc == 0, log
    return out


def test_run_without_dev_split_chooses_on_a_carved_dev_never_on_test(tmp_path):
    """A team's corpus with train and test only: dev is held out of train, and every choice is made on it."""
    from workbook.negatives import load_training_set, training_set_path

    full = load_dataset(make_tiny_dataset(tmp_path / "src"))
    folder = save_dataset(subset(full, splits=["train", "test"]), tmp_path / "data")
    shutil.copy(tmp_path / "src" / "lookalikes.jsonl", folder / "lookalikes.jsonl")
    out = _small_run(folder, tmp_path)
    valid = result(out, "01_validate")
    carved, n_train = valid["dev"], len(load_dataset(folder).qrels["train"])
    assert carved["source"] == "carved from train" and carved["seed"] == 42
    assert pipeline.carved_dev_size(n_train) <= carved["queries"] <= pipeline.carved_dev_size(n_train) + 3
    assert valid["splits"] == ["train", "dev", "test"]
    assert valid["split_queries"]["train"] == n_train - carved["queries"]
    ev, dec = result(out, "06_evaluate"), result(out, "08_decision")
    assert ev["selected_on"] == "dev" and dec["gate"]["split"] == "dev"
    assert dec["gate"]["numbers"]["gap remains after the cheap wins"]["queries"] == carved["queries"]
    assert "dev" in result(out, "02_baselines")["metrics"]
    rows = load_training_set(training_set_path(pipeline.team_config(out, fast=True)), with_ids=True)
    assert rows["query_id"] and not set(rows["query_id"]) & set(carved["query_ids"]), "dev is left out of training"
    card = result(out, "05_finetune")["card"]
    assert card.get("dev_metrics"), "the in-training evaluator reads the carved dev split"
    text = (out / "report.md").read_text()
    assert f"o dev split: {carved['queries']} train queries held out as dev (seed 42)" in text
    assert "picked on the dev split" in text
    for name in STEP_NAMES:  # no result anywhere says something was chosen on test
        assert "picked on the test" not in (out / name / pipeline.RESULT).read_text()
    assert "picked on the test" not in text and "selected_on: test" not in text


def test_run_with_too_few_train_queries_for_a_dev_split_falls_back_to_defaults(tmp_path):
    """No dev split and too few train queries to hold one out: nothing is picked, and nothing is read from test."""
    full = load_dataset(make_tiny_dataset(tmp_path / "src"))
    keep = sorted(full.qrels["train"])[:30] + sorted(full.qrels["test"])
    folder = save_dataset(subset(full, query_ids=keep, splits=["train", "test"]), tmp_path / "data")
    out = _small_run(folder, tmp_path)
    assert result(out, "01_validate")["dev"] == {"source": "none", "queries": 0, "why": "only 30 train queries"}
    ev, dec = result(out, "06_evaluate"), result(out, "08_decision")
    assert ev["selected_on"] is None and ev["selection"].startswith("not picked (no dev split")
    assert (ev["best_cheap"], ev["best_tuned"]) == ("hybrid all-MiniLM-L6-v2+BM25", "fine-tuned")
    gate = dec["gate"]
    assert gate["split"] is None and gate["checks"]["gap remains after the cheap wins"] is None
    assert gate["checks"]["errors cluster in domain slices"] is None
    assert not (out / "02_baselines" / "gate_dev.json").exists()
    text = (out / "report.md").read_text()
    assert "choices fall back to fixed defaults, never to test" in text and "picked on the test" not in text


def test_run_on_a_dataset_without_slices_reports_the_cluster_check_as_not_measured(tmp_path):
    """A team's corpus has no query slices: the gate's third check is "not measured", never a failure (issue 19: the
    old gate said NO-GO on every such dataset, whatever the measured result)."""
    full = load_dataset(make_tiny_dataset(tmp_path / "src"))
    for meta in full.query_meta.values():
        meta.pop("slices", None)
        meta.pop("codes", None)
    folder = save_dataset(full, tmp_path / "data")
    out = _small_run(folder, tmp_path)
    gate = result(out, "08_decision")["gate"]
    cluster = "errors cluster in domain slices"
    assert gate["split"] == "dev" and gate["checks"][cluster] is None and gate["status"][cluster] == "not measured"
    measured = [ok for name, ok in gate["checks"].items() if ok is not None]
    assert gate["go"] == all(measured)  # the verdict rests on the measured checks only
    assert "[-] errors cluster in domain slices" in (out / "report.md").read_text()


def test_gate_vs_measurement_explains_a_disagreement_and_names_the_setting_to_revisit():
    from workbook.diagnose import should_fine_tune

    gate = should_fine_tune(best_cheap=0.6, target=0.9, n_pairs=5000, slice_metrics={"lookalike": 0.6},
                            overall=0.6).to_dict()  # fmt: skip
    gate["split"] = "dev"
    assert gate["verdict"] == "NO-GO"  # no domain slice has extra errors
    payoff = {"delta": 0.1, "ci_low": 0.05, "ci_high": 0.15, "significant": True}
    out = pipeline.gate_vs_measurement(gate, payoff, "BM25", "fine-tuned")
    assert not out["agree"] and out["measured"] == "better"
    assert "Trust the measurement" in out["text"] and "(cluster_margin / domain_slices)" in out["text"]
    same = pipeline.gate_vs_measurement(gate, {**payoff, "delta": 0.0, "ci_low": -0.01, "significant": False}, "a", "b")
    assert same["agree"] and same["measured"] == "no difference"
