"""dattr_eval: score training-data attribution methods.

Entry points: ``dattr_eval.explainers`` and ``dattr_eval.metrics`` (registries, open to plugins:
``dattr_eval.plugins``), ``available_explainers()``, ``describe_explainers()``,
``available_metrics()``, and the main job: ``evaluate(benchmarks, explainers, out_dir=...)`` /
``Evaluator`` and ``report(out_dir)``; ``compare(results, a, b)`` for paired differences.
``meta_evaluate(...)`` says which metrics can be trusted.

Everything is imported on first use (PEP 562), so ``import dattr_eval`` imports neither torch nor
any optional backend (numba, zennit, quantus, ray, matplotlib, seaborn).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

#: public name -> module holding it, imported on first access
_LAZY = {
    "explainers": "dattr_eval.explainers",
    "metrics": "dattr_eval.metrics",
    "benchmarks": "dattr_eval.benchmarks",
    "AttributionContractError": "dattr_eval.contract",
    "TopK": "dattr_eval.contract",
    "check_attributions": "dattr_eval.contract",
    "topk": "dattr_eval.contract",
    "GroundTruth": "dattr_eval.ground_truth",
    "evaluate": "dattr_eval.evaluation.evaluator",
    "Evaluator": "dattr_eval.evaluation.evaluator",
    "run_cell": "dattr_eval.evaluation.cell",
    "CellSpec": "dattr_eval.evaluation.cell",
    "report": "dattr_eval.evaluation.report",
    "compare": "dattr_eval.evaluation.compare",
    "meta_evaluate": "dattr_eval.meta.runner",
    "clone": "dattr_eval.params",
}


def available_explainers() -> dict[str, str]:
    """``{name: one-line summary}`` of every registered explainer (plugins included); their
    hyperparameters: ``describe_explainers()``."""
    return importlib.import_module("dattr_eval.explainers").REGISTRY.summaries()


def describe_explainers() -> dict[str, dict[str, Any]]:
    """``{name: {"summary", "citation", "hyperparameters": {name: default}, "plugin"}}`` of every
    registered explainer; ``registry.REQUIRED`` marks a hyperparameter without a default."""
    return importlib.import_module("dattr_eval.explainers").REGISTRY.describe()


def available_metrics() -> dict[str, str]:
    """``{name: one-line summary}`` of every registered metric."""
    return importlib.import_module("dattr_eval.metrics").REGISTRY.summaries()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return module if module.__name__ == f"{__name__}.{name}" else getattr(module, name)
    raise AttributeError(f"module 'dattr_eval' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "AttributionContractError",
    "CellSpec",
    "Evaluator",
    "GroundTruth",
    "TopK",
    "available_explainers",
    "available_metrics",
    "benchmarks",
    "check_attributions",
    "clone",
    "compare",
    "describe_explainers",
    "evaluate",
    "explainers",
    "meta_evaluate",
    "metrics",
    "report",
    "run_cell",
    "topk",
]
