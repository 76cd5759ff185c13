"""Benchmarks: a registry of lazily built recipes and the ``Benchmark`` a user can build directly.

``names()`` lists the registered benchmarks, ``summaries()`` their one-line descriptions,
``create(name, **hyper)`` a ``BenchmarkSpec`` (nothing loaded yet) and
``load(name, cache_dir=..., data_dir=...)`` the built ``Benchmark``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dattr_eval.benchmarks.base import Benchmark, BenchmarkSpec
from dattr_eval.registry import Registry

REGISTRY: Registry[BenchmarkSpec] = Registry("benchmark")
register = REGISTRY.register
names = REGISTRY.names
get = REGISTRY.get
summaries = REGISTRY.summaries


def create(name: str, **kwargs: Any) -> BenchmarkSpec:
    """The recipe registered under ``name`` with hyperparameters ``kwargs`` (nothing is built yet)."""
    return REGISTRY.create(name, **kwargs)


def load(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> Benchmark:
    """Build the benchmark registered under ``name`` (trains or loads its cached model)."""
    return create(name, **kwargs).build(cache_dir=cache_dir, data_dir=data_dir, device=device)


__all__ = [
    "REGISTRY",
    "Benchmark",
    "BenchmarkSpec",
    "create",
    "get",
    "load",
    "names",
    "register",
    "summaries",
]

# Built-in benchmarks register on import (kept last: they import ``register`` from here).
from dattr_eval.discovery import import_submodules

import_submodules(__name__, __path__, skip=("base",))
