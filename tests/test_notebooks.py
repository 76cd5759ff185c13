"""Notebook sources (jupytext percent format, notebooks/*.py) and notebooks/*.ipynb agree.

The .py files are what people edit; ``make notebooks`` regenerates the .ipynb files from them
(without outputs: the docs site and ``pytest --nbmake`` execute them fresh).
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.py"))


def test_every_notebook_has_a_source():
    assert SOURCES, f"no notebook sources in {NOTEBOOKS}"
    orphans = [p.name for p in NOTEBOOKS.glob("*.ipynb") if not p.with_suffix(".py").exists()]
    assert not orphans, f"notebooks without a jupytext source: {orphans}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_notebook_matches_its_source_and_holds_no_outputs(source):
    notebook = source.with_suffix(".ipynb")
    assert notebook.exists(), f"{notebook.name} is missing: run `make notebooks`"
    expected = [(c.cell_type, c.source) for c in jupytext.read(source).cells]
    actual_nb = nbformat.read(notebook, as_version=4)
    actual = [(c.cell_type, c.source) for c in actual_nb.cells]
    assert actual == expected, f"{notebook.name} differs from {source.name}: run `make notebooks`"
    stale = [
        i
        for i, c in enumerate(actual_nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not stale, f"{notebook.name}: cells {stale} hold outputs; run `make notebooks`"
