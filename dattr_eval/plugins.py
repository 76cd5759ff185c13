"""Third-party explainers, metrics and benchmarks: entry points and ``module:Class`` specs.

A package adds its classes to dattr_eval's registries without dattr_eval importing it, through
entry points in its ``pyproject.toml``::

    [project.entry-points."dattr_eval.explainers"]
    my_method = "mypkg.attribution:MyExplainer"

    [project.entry-points."dattr_eval.metrics"]
    my_metric = "mypkg.scores:MyMetric"

(``"dattr_eval.benchmarks"`` for benchmark recipes). The registry imports an entry point's module
only when it is needed: when a name it does not know is looked up (``explainers.create("my_method")``,
``--explainers my_method``), or when every name is listed (``names()``, ``dattr-eval list``).
Without registering anything, ``"package.module:ClassName"`` names a class directly wherever a
registry name is accepted (``--explainers mypkg.attribution:MyExplainer``).
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import EntryPoint, entry_points

#: the entry-point group of a registry of ``kind`` ("explainer" -> "dattr_eval.explainers")
GROUP_FORMAT = "dattr_eval.{kind}s"


class PluginError(KeyError):
    """A ``module:Class`` spec or an entry point that cannot be loaded (the message says why)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def entry_point_group(kind: str) -> str:
    """The entry-point group holding plugins of a registry of ``kind``."""
    return GROUP_FORMAT.format(kind=kind)


def plugin_entry_points(group: str) -> list[EntryPoint]:
    """The entry points installed in ``group`` (every distribution on ``sys.path``), by name."""
    return sorted(entry_points(group=group), key=lambda ep: ep.name)


def distribution_name(ep: EntryPoint) -> str:
    """The name of the distribution declaring ``ep`` (``"?"`` when unknown)."""
    dist = getattr(ep, "dist", None)
    return str(dist.name) if dist is not None else "?"


def is_class_spec(name: str) -> bool:
    """Whether ``name`` is a ``"package.module:ClassName"`` spec rather than a registry name."""
    return ":" in name


def load_class_spec(spec: str, kind: str) -> type:
    """The class named by ``"package.module:ClassName"`` (``ClassName`` may be dotted: ``Outer.Inner``).

    Imports the module (which may register its classes as a side effect).

    Raises:
        PluginError: a malformed spec, a module that cannot be imported, a missing attribute (with
            close matches) or an attribute that is not a class; the message names the spec.
    """
    module_name, _, qualname = spec.partition(":")
    if not module_name.strip() or not qualname.strip():
        raise PluginError(f"{kind} {spec!r}: expected 'package.module:ClassName'")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(
            f"{kind} {spec!r}: cannot import module {module_name!r} ({type(exc).__name__}: {exc}); "
            "is its package installed in this environment?"
        ) from exc
    for part in qualname.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, public, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise PluginError(f"{kind} {spec!r}: {obj.__name__!r} has no attribute {part!r}{hint}")
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise PluginError(f"{kind} {spec!r} is a {type(obj).__name__}, not a class")
    return obj


__all__ = [
    "GROUP_FORMAT",
    "PluginError",
    "distribution_name",
    "entry_point_group",
    "is_class_spec",
    "load_class_spec",
    "plugin_entry_points",
]
