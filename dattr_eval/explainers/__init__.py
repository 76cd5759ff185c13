"""Explainers: registry and built-in training-data attribution methods.

``register`` adds a class under a name, ``create(name, **hyper)`` builds one, ``names()``
lists them. Built-in modules are imported at the bottom so they register themselves.
"""

from __future__ import annotations

from typing import Any

from dattr_eval.explainers.base import Explainer, NotFittedError
from dattr_eval.registry import Registry

REGISTRY: Registry[Explainer] = Registry("explainer")
register = REGISTRY.register
names = REGISTRY.names
get = REGISTRY.get


class NotApplicableError(RuntimeError):
    """Raised by ``explain`` / ``explain_topk`` of an explainer that has no per-test attributions.

    Reference rows such as ``loss`` define only ``self_influence``; an evaluator catches this to
    mark per-test metrics "not applicable" for them instead of failing.
    """


def create(name: str, **kwargs: Any) -> Explainer:
    """Build the explainer registered under ``name`` with hyperparameters ``kwargs``."""
    return REGISTRY.create(name, **kwargs)


__all__ = [
    "REGISTRY",
    "Explainer",
    "NotApplicableError",
    "NotFittedError",
    "create",
    "get",
    "names",
    "register",
]

# Built-in explainers register on import (kept last: they import ``register`` from here).
from dattr_eval.discovery import import_submodules

import_submodules(__name__, __path__, skip=("base",))
# Peer adapters (captum.*, traker.*, ...): cheap to import, the peer packages load inside ``fit``.
import dattr_eval.explainers.adapters  # noqa: F401
