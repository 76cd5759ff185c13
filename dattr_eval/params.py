"""Hyperparameters of estimator-style classes (scikit-learn's rule: hyperparameters = ``__init__`` args).

:class:`ParamsMixin` gives explainers, metrics and benchmark specs ``get_params``, ``set_params``
and a readable ``repr``; :func:`clone` builds a fresh, unfitted copy with the same hyperparameters.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, TypeVar

from typing_extensions import Self

T = TypeVar("T")


class ParamsMixin:
    """Adds ``get_params()``, ``set_params()`` and a readable ``repr`` from the ``__init__`` signature.

    Subclasses store each ``__init__`` argument, unchanged, under an attribute of the same name
    (and do no other work in ``__init__``), so ``type(est)(**est.get_params())`` rebuilds them.
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters as ``{name: value}``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        """Set hyperparameters by name and return ``self`` (fitted attributes are left as they are:
        refit to apply the new values).

        Raises:
            ValueError: a name that is not an ``__init__`` argument, with the close matches.
        """
        valid = self._param_names()
        for name in params:
            if name not in valid:
                close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
                close += [v for v in valid if v.lower() == name.lower() and v not in close]
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise ValueError(
                    f"invalid parameter {name!r} for {type(self).__name__}{hint} "
                    f"(valid parameters are: {', '.join(sorted(valid))})"
                )
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def clone(estimator: T) -> T:
    """A new, unfitted instance of ``estimator``'s class with equal hyperparameters.

    Hyperparameters that are estimators themselves are cloned; lists, tuples and dicts are copied
    (recursively); any other value (numbers, strings, tensors, paths) is shared, not copied.

    Raises:
        TypeError: ``estimator`` has no ``get_params``.
    """
    if not hasattr(estimator, "get_params") or isinstance(estimator, type):
        raise TypeError(
            f"clone needs an object with get_params (an explainer, metric or benchmark spec), "
            f"got {estimator!r}"
        )
    params = {name: _clone_value(value) for name, value in estimator.get_params().items()}
    return type(estimator)(**params)


def _clone_value(value: Any) -> Any:
    if hasattr(value, "get_params") and not isinstance(value, type):
        return clone(value)
    if isinstance(value, (list, tuple)):
        items = [_clone_value(v) for v in value]
        return type(value)(items) if not hasattr(value, "_fields") else type(value)(*items)
    if isinstance(value, dict):
        return {k: _clone_value(v) for k, v in value.items()}
    return value
