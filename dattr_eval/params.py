"""``get_params`` for estimator-style classes (scikit-learn's rule: hyperparameters = ``__init__`` args)."""

from __future__ import annotations

import difflib
import inspect
from typing import Any


class ParamsMixin:
    """Adds ``get_params()`` and a readable ``repr`` from the ``__init__`` signature.

    Subclasses store each ``__init__`` argument under an attribute of the same name.
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

    def set_params(self, **params: Any) -> ParamsMixin:
        """Set hyperparameters by name (scikit-learn's rule); returns ``self``.

        Raises:
            ValueError: an unknown name (the message lists the known ones and close matches).
        """
        known = self._param_names()
        for name, value in params.items():
            if name not in known:
                close = difflib.get_close_matches(name, known, n=2, cutoff=0.5)
                hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
                raise ValueError(
                    f"{type(self).__name__} has no hyperparameter {name!r}.{hint} Known: {known}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def clone(estimator: ParamsMixin) -> ParamsMixin:
    """A fresh, unfitted copy of ``estimator`` built from its hyperparameters (scikit-learn's ``clone``)."""
    if not isinstance(estimator, ParamsMixin):
        raise TypeError(f"estimator must define get_params(), got {type(estimator).__name__}")
    return type(estimator)(**estimator.get_params())
