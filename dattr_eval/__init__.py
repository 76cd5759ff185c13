"""dattr_eval: score training-data attribution methods.

Entry points: ``dattr_eval.explainers`` and ``dattr_eval.metrics`` (registries),
``available_explainers()``, ``available_metrics()``, and the main job:
``evaluate(benchmarks, explainers, out_dir=...)`` / ``Evaluator`` and ``report(out_dir)``
(imported on first use, so ``import dattr_eval`` stays light).
"""

from __future__ import annotations

from dattr_eval import explainers, metrics
from dattr_eval.contract import AttributionContractError, TopK, check_attributions, topk
from dattr_eval.ground_truth import GroundTruth

__version__ = "0.1.0"


def available_explainers() -> dict[str, str]:
    """``{name: one-line summary}`` of every registered explainer."""
    return explainers.REGISTRY.summaries()


def available_metrics() -> dict[str, str]:
    """``{name: one-line summary}`` of every registered metric."""
    return metrics.REGISTRY.summaries()


#: names imported on first access (PEP 562): the evaluation stack pulls in pandas and tqdm
_LAZY = {
    "evaluate": "dattr_eval.evaluation.evaluator",
    "Evaluator": "dattr_eval.evaluation.evaluator",
    "report": "dattr_eval.evaluation.report",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dattr_eval' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "AttributionContractError",
    "Evaluator",
    "GroundTruth",
    "TopK",
    "available_explainers",
    "available_metrics",
    "check_attributions",
    "evaluate",
    "explainers",
    "metrics",
    "report",
    "topk",
]
