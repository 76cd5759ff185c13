"""Evaluation: the grid of cells, their executors, the results store and the report."""

from __future__ import annotations

from dattr_eval.evaluation.cell import CellError, CellResult, CellSpec, run_cell
from dattr_eval.evaluation.evaluator import Evaluator, evaluate
from dattr_eval.evaluation.executor import Executor, LocalExecutor
from dattr_eval.evaluation.store import COLUMNS, RESULTS_FILE, ResultStore, read_results

__all__ = [
    "COLUMNS",
    "RESULTS_FILE",
    "CellError",
    "CellResult",
    "CellSpec",
    "Evaluator",
    "Executor",
    "LocalExecutor",
    "ResultStore",
    "evaluate",
    "read_results",
    "run_cell",
]
