# Quick start: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv when absent and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
OUT ?= results/digits

DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: demo test test-all lint docs notebooks notebooks-check leaderboard-fmnist

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# The main job: every built-in explainer on the five digits benchmarks, then the report
# (run writes results/digits/leaderboard.{md,html} and PNG figures). A rerun resumes where it stopped.
demo: $(STAMP)
	$(VENV)/bin/dattr-eval run --benchmark 'digits-*' --explainers all --out $(OUT)

# Fashion-MNIST at paper scale: the five fmnist-* benchmarks (60k training images, 1,000 test
# points each) with the fast explainers, in 2 single-threaded worker processes; writes
# $(FMNIST_OUT)/leaderboard.{md,html} and fmnist_leaderboard.md (results, time, memory profile).
# The data is Debian's dataset-fashion-mnist: installed here when run as root, else named.
FMNIST_DIR := /usr/share/datasets/fashion-mnist
FMNIST_OUT ?= results/fmnist
leaderboard-fmnist: $(STAMP)
	@test -e $(FMNIST_DIR)/train-images-idx3-ubyte.gz || test -e $(FMNIST_DIR)/train-images-idx3-ubyte \
	  || if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y dataset-fashion-mnist; \
	  else echo "Fashion-MNIST is missing from $(FMNIST_DIR); install it with:" >&2; \
	  echo "    sudo apt-get install dataset-fashion-mnist" >&2; exit 1; fi
	$(PY) benchmarks/fmnist_leaderboard.py --out $(FMNIST_OUT)

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
