"""Evaluation: the explainer × benchmark × metric grid, its results file and profiles."""

from __future__ import annotations

from dattr_eval.evaluation.evaluator import Evaluator, evaluate
from dattr_eval.evaluation.store import COLUMNS, RESULTS_FILE, ResultStore, read_results

__all__ = ["COLUMNS", "RESULTS_FILE", "Evaluator", "ResultStore", "evaluate", "read_results"]
