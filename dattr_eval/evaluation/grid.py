"""The evaluation grid's axes: explainers and metrics given as names, instances or mappings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dattr_eval import explainers as explainer_registry
from dattr_eval import metrics as metric_registry
from dattr_eval.explainers.base import Explainer
from dattr_eval.metrics.base import Metric


def as_list(value: Any, scalar_types: tuple[type, ...]) -> list[Any]:
    """``[value]`` for a scalar of ``scalar_types``, else ``list(value)``."""
    if isinstance(value, scalar_types):
        return [value]
    return list(value)


def builtin_explainers() -> list[str]:
    """Registered explainers implemented in dattr_eval (``"all"``); peer adapters and plugins are
    left out (no plugin is loaded)."""
    adapters = f"{explainer_registry.__name__}.adapters"
    return [
        n
        for n in explainer_registry.names(plugins=False)
        if not explainer_registry.get(n).__module__.startswith(adapters)
    ]


def resolve_explainers(explainers: Any) -> dict[str, Explainer]:
    """``{label: unfitted explainer template}`` from names / instances / ``"all"`` / a mapping."""
    if isinstance(explainers, str) and explainers == "all":
        explainers = builtin_explainers()
    if isinstance(explainers, Mapping):
        items = list(explainers.items())
    else:
        items = [(None, e) for e in as_list(explainers, (str, Explainer))]
    out: dict[str, Explainer] = {}
    for label, spec in items:
        if isinstance(spec, str):
            instance = explainer_registry.create(spec)
        elif isinstance(spec, Explainer):
            instance = spec
        else:
            raise TypeError(
                f"explainers must be registry names or Explainer instances, got {type(spec).__name__}"
            )
        label = label or (spec if isinstance(spec, str) else type(spec).name)
        if label in out:
            raise ValueError(
                f"explainer label {label!r} appears twice; pass a mapping {{label: explainer}}"
            )
        out[label] = instance
    if not out:
        raise ValueError("explainers is empty: name at least one explainer")
    return out


def is_named_spec(spec: Any) -> bool:
    """Whether ``spec`` is a ``(name, kwargs)`` metric spec."""
    return (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], str)
        and isinstance(spec[1], dict)
    )


def resolve_metrics(metrics: Any) -> dict[str, Metric]:
    """``{label: metric template}`` from names / instances / ``(name, kwargs)`` / a mapping."""
    if isinstance(metrics, Mapping):
        items = list(metrics.items())
    else:
        single = isinstance(metrics, (str, Metric)) or is_named_spec(metrics)
        items = [(None, m) for m in ([metrics] if single else list(metrics))]
    out: dict[str, Metric] = {}
    for label, spec in items:
        if isinstance(spec, str):
            instance = metric_registry.create(spec)
        elif is_named_spec(spec):
            instance = metric_registry.create(spec[0], **spec[1])
        elif isinstance(spec, Metric):
            instance = spec
        else:
            raise TypeError(
                f"metrics must be registry names, Metric instances or (name, kwargs), got {spec!r}"
            )
        label = label or type(instance).name
        if label in out:
            raise ValueError(
                f"metric label {label!r} appears twice; pass a mapping {{label: metric}}"
            )
        out[label] = instance
    return out
