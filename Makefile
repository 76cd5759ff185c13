# Quick start: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv when absent and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
OUT ?= results/digits

DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: demo test test-all lint docs notebooks notebooks-check

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# The main job: every built-in explainer on the five digits benchmarks, then the report
# (run writes results/digits/leaderboard.{md,html} and PNG figures). A rerun resumes where it stopped.
demo: $(STAMP)
	$(VENV)/bin/dattr-eval run --benchmark 'digits-*' --explainers all --out $(OUT)

# lint (ruff check + format check), the test suite (notebook sources in sync included), the notebooks
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q
	$(PY) -m pytest -q --nbmake notebooks/

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

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
