"""dattr_eval: score training-data attribution methods.

Entry points: ``dattr_eval.explainers`` and ``dattr_eval.metrics`` (registries),
``available_explainers()``, ``available_metrics()``.
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


__all__ = [
    "AttributionContractError",
    "GroundTruth",
    "TopK",
    "available_explainers",
    "available_metrics",
    "check_attributions",
    "explainers",
    "metrics",
    "topk",
]
