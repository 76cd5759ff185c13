"""One generic registry for explainers and metrics (and benchmarks)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → class mapping with aliases, close-match errors and one-line summaries.

    Args:
        kind: what the registry holds ("explainer", "metric", ...), used in messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type[T]] = {}
        self._aliases: dict[str, str] = {}

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

    def canonical(self, name: str) -> str:
        """Resolve an alias to its registered name; raise ``KeyError`` with close matches."""
        if name in self._classes:
            return name
        if name in self._aliases:
            return self._aliases[name]
        known = sorted([*self._classes, *self._aliases])
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(
            f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._classes))}"
        )

    def get(self, name: str) -> type[T]:
        """The class registered under ``name`` (or an alias)."""
        return self._classes[self.canonical(name)]

    def create(self, name: str, **kwargs: Any) -> T:
        """Instantiate the class registered under ``name`` with ``kwargs`` as hyperparameters."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        """Registered names (without aliases), sorted."""
        return sorted(self._classes)

    def summaries(self) -> dict[str, str]:
        """``{name: one-line summary}`` read from each class's ``summary`` attribute."""
        return {n: getattr(self._classes[n], "summary", "") for n in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._classes or name in self._aliases

    def __len__(self) -> int:
        return len(self._classes)
