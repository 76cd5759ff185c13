"""Metrics: registry and the literature's evaluation criteria for training-data attribution."""

from __future__ import annotations

from typing import Any

from dattr_eval.metrics.base import Metric, MetricResult, MissingGroundTruthError
from dattr_eval.registry import Registry

REGISTRY: Registry[Metric] = Registry("metric")
register = REGISTRY.register
names = REGISTRY.names
get = REGISTRY.get


def create(name: str, **kwargs: Any) -> Metric:
    """Build the metric registered under ``name`` (or an alias) with hyperparameters ``kwargs``."""
    return REGISTRY.create(name, **kwargs)


__all__ = [
    "REGISTRY",
    "Metric",
    "MetricResult",
    "MissingGroundTruthError",
    "create",
    "get",
    "names",
    "register",
]

# Built-in metrics register on import (kept last: they import ``register`` from here).
from dattr_eval.discovery import import_submodules

import_submodules(__name__, __path__, skip=("base",))
