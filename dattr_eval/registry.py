"""One generic registry for explainers and metrics (and benchmarks), open to plugins.

Besides the classes that register themselves (``@explainers.register("name")``), a registry finds
third-party classes through the entry points of its group (``dattr_eval.explainers``,
``dattr_eval.metrics``, ``dattr_eval.benchmarks``; see :mod:`dattr_eval.plugins`), imported lazily:
a lookup of an unknown name loads the entry point of that name, a listing loads them all. A
``"package.module:ClassName"`` spec is accepted wherever a name is.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from dattr_eval.plugins import (
    distribution_name,
    entry_point_group,
    is_class_spec,
    load_class_spec,
    plugin_entry_points,
)

T = TypeVar("T")

#: the default shown for a hyperparameter without one
REQUIRED = "<required>"


class Registry(Generic[T]):
    """A name → class mapping with aliases, close-match errors, summaries and plugins.

    Args:
        kind: what the registry holds ("explainer", "metric", ...), used in messages.
        group: the entry-point group of its plugins (default ``"dattr_eval.<kind>s"``).
    """

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group or entry_point_group(kind)
        self._classes: dict[str, type[T]] = {}
        self._aliases: dict[str, str] = {}
        self._plugins: set[str] = set()  # names registered by loading plugin code
        self._seen_entry_points: set[tuple[str, str]] = set()  # (name, value) tried already

    def register(self, name: str, aliases: tuple[str, ...] = ()) -> Callable[[type[T]], type[T]]:
        """Class decorator adding a class under ``name`` (and ``aliases``); sets ``cls.name``.

        Raises:
            ValueError: if ``name`` or an alias is already registered.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty str, got {name!r}")

        def decorator(cls: type[T]) -> type[T]:
            for key in (name, *aliases):
                if key in self._classes or key in self._aliases:
                    raise ValueError(
                        f"{self.kind} name {key!r} is already registered "
                        f"(by {self.get(key).__qualname__}); pick another name"
                    )
            self._classes[name] = cls
            for alias in aliases:
                self._aliases[alias] = name
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return decorator

    # ------------------------------------------------------------------ plugins
    def load_plugins(self, name: str | None = None) -> None:
        """Register the entry points of :attr:`group` not loaded yet (only ``name``'s when given).

        An entry point whose module fails to import, or whose object is not a class, is skipped
        with a warning naming its distribution; so is one whose name a built-in class holds.
        """
        for ep in plugin_entry_points(self.group):
            seen = (ep.name, ep.value)
            if (name is not None and ep.name != name) or seen in self._seen_entry_points:
                continue
            self._seen_entry_points.add(seen)
            where = f"{self.kind} plugin {ep.name!r} = {ep.value!r} (from {distribution_name(ep)})"
            holder = self._classes.get(ep.name)
            if holder is not None and ep.name not in self._plugins:
                if holder.__module__ == ep.module:  # its module was imported directly
                    self._plugins.add(ep.name)
                else:
                    warnings.warn(
                        f"{where} ignored: the name is taken by "
                        f"{holder.__module__}.{holder.__qualname__}",
                        stacklevel=3,
                    )
                continue
            before = set(self._classes)
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 (a broken plugin must not break the registry)
                warnings.warn(f"{where} failed to load: {type(exc).__name__}: {exc}", stacklevel=3)
                continue
            self._plugins |= set(self._classes) - before
            if not isinstance(obj, type):
                warnings.warn(f"{where} is a {type(obj).__name__}, not a class", stacklevel=3)
                continue
            self._add_plugin(ep.name, obj)

    def _add_plugin(self, name: str, cls: type[T]) -> None:
        """Make ``cls`` reachable under ``name`` (an alias when it registered itself elsewhere)."""
        if name in self._classes or name in self._aliases:
            return
        own = [n for n, c in self._classes.items() if c is cls]
        if own:
            self._aliases[name] = own[0]
        else:
            self.register(name)(cls)
            self._plugins.add(name)

    def is_plugin(self, name: str) -> bool:
        """Whether ``name`` was registered by plugin code (an entry point or a ``module:Class`` spec)."""
        return self.canonical(name) in self._plugins

    # ------------------------------------------------------------------ lookups
    def canonical(self, name: str) -> str:
        """Resolve an alias to its registered name; raise ``KeyError`` with close matches.

        An unknown name first loads the plugin entry point of that name, if one is installed.
        """
        for attempt in range(2):
            if name in self._classes:
                return name
            if name in self._aliases:
                return self._aliases[name]
            if attempt == 0 and isinstance(name, str):
                self.load_plugins(name)
        known = sorted([*self._classes, *self._aliases])
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(
            f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._classes))} "
            "(or 'package.module:ClassName')"
        )

    def get(self, name: str) -> type[T]:
        """The class registered under ``name`` (or an alias), or named by a ``module:Class`` spec."""
        if isinstance(name, str) and is_class_spec(name):
            before = set(self._classes)
            cls = load_class_spec(name, self.kind)
            self._plugins |= set(self._classes) - before
            return cls
        return self._classes[self.canonical(name)]

    def create(self, name: str, **kwargs: Any) -> T:
        """Instantiate the class registered under ``name`` with ``kwargs`` as hyperparameters."""
        return self.get(name)(**kwargs)

    def names(self, plugins: bool = True) -> list[str]:
        """Registered names (without aliases), sorted.

        Args:
            plugins: include (and first load) the installed plugins; ``False``: only the classes
                registered without plugin code, and nothing is loaded.
        """
        if plugins:
            self.load_plugins()
            return sorted(self._classes)
        return sorted(n for n in self._classes if n not in self._plugins)

    def summaries(self) -> dict[str, str]:
        """``{name: one-line summary}`` read from each class's ``summary`` attribute."""
        return {n: getattr(self._classes[n], "summary", "") for n in self.names()}

    def hyperparameters(self, name: str) -> dict[str, Any]:
        """``{hyperparameter: default}`` of the class's ``__init__`` (:data:`REQUIRED` without one)."""
        return {
            p.name: REQUIRED if p.default is p.empty else p.default
            for p in inspect.signature(self.get(name).__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    def describe(self) -> dict[str, dict[str, Any]]:
        """``{name: {"summary", "citation", "hyperparameters": {name: default}, "plugin"}}``."""
        return {
            n: {
                "summary": getattr(self._classes[n], "summary", ""),
                "citation": getattr(self._classes[n], "citation", ""),
                "hyperparameters": self.hyperparameters(n),
                "plugin": n in self._plugins,
            }
            for n in self.names()
        }

    def __contains__(self, name: object) -> bool:
        if name in self._classes or name in self._aliases:
            return True
        if isinstance(name, str) and not is_class_spec(name):
            self.load_plugins(name)
        return name in self._classes or name in self._aliases

    def __len__(self) -> int:
        return len(self._classes)
