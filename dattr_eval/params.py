"""``get_params`` for estimator-style classes (scikit-learn's rule: hyperparameters = ``__init__`` args)."""

from __future__ import annotations

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

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
