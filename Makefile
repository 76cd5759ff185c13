# Quick start: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv when absent and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
OUT ?= results/digits
# influence's default solver (CG over all parameters) is the exact-but-slow choice; the leaderboard
# uses Arnoldi on the last layer so the whole digits grid fits in minutes on 2 CPU cores.
LEADERBOARD_SETTINGS := --set influence.solver=arnoldi --set influence.arnoldi_iter=30 --set influence.params=last_layer

DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: demo test test-all lint docs notebooks notebooks-check

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# The main job: every built-in explainer on the five digits benchmarks, then the report
# (results/digits/leaderboard.{md,html} and PNG figures). A rerun resumes where it stopped.
demo: $(STAMP)
	$(VENV)/bin/dattr-eval run --benchmark 'digits-*' --explainers all $(LEADERBOARD_SETTINGS) --out $(OUT)
	$(VENV)/bin/dattr-eval report $(OUT)

test: $(STAMP)
	$(PY) -m pytest -q
	$(PY) -m pytest -q --nbmake notebooks/

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check dattr_eval tests benchmarks

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[dev,docs]"
	touch $(DOCS_STAMP)

# The documentation site (site/): API reference from the docstrings, the notebooks executed at
# build time. Strict: any warning fails the build.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# notebooks/*.py (jupytext percent format) are the sources; this regenerates notebooks/*.ipynb
# from them, without outputs. notebooks-check fails when the two disagree.
notebooks: $(STAMP)
	$(VENV)/bin/jupytext --to ipynb notebooks/*.py

notebooks-check: $(STAMP)
	$(PY) -m pytest -q tests/test_notebooks.py
