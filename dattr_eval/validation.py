"""Input-validation helpers shared by explainers, metrics, data and the evaluator.

Each raises an error that names the argument and what was expected.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def check_model(model: Any, name: str = "model") -> nn.Module:
    """Require a ``torch.nn.Module``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_dataset(dataset: Any, name: str = "train_dataset") -> Any:
    """Require a non-empty map-style dataset (``__len__`` and ``__getitem__`` yielding ``(x, y)``)."""
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(
            f"{name} must be a map-style dataset with __len__ and __getitem__ returning (x, y), "
            f"got {type(dataset).__name__}"
        )
    if len(dataset) == 0:
        raise ValueError(f"{name} is empty")
    return dataset


def check_tensor(
    x: Any,
    name: str,
    *,
    ndim: int | None = None,
    min_ndim: int | None = None,
    floating: bool | None = None,
    finite: bool = False,
    length: int | None = None,
) -> torch.Tensor:
    """Require a tensor with the given ndim / dtype kind / length, optionally all finite."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have ndim={ndim}, got shape {tuple(x.shape)}")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions, got shape {tuple(x.shape)}"
        )
    if floating is True and not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    if floating is False and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise TypeError(f"{name} must have an integer dtype, got {x.dtype}")
    if length is not None and x.shape[0] != length:
        raise ValueError(
            f"{name} must have length {length} along dim 0, got shape {tuple(x.shape)}"
        )
    if finite and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN/inf value(s)")
    return x


def check_labels(
    y: Any, name: str, *, length: int | None = None, n_classes: int | None = None
) -> torch.Tensor:
    """Require a 1-D integer label tensor with values in ``[0, n_classes)``; lists are converted."""
    if isinstance(y, (list, tuple)):
        y = torch.as_tensor(y)
    y = check_tensor(y, name, ndim=1, floating=False, length=length)
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"{name} must be non-negative class indices, got min {int(y.min())}")
    if n_classes is not None and y.numel() and int(y.max()) >= n_classes:
        raise ValueError(f"{name} must be < n_classes={n_classes}, got max {int(y.max())}")
    return y.long()


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """Require ``value`` to be one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_positive(
    value: Any, name: str, *, allow_zero: bool = False, integer: bool = False
) -> Any:
    """Require a positive (or non-negative) number, optionally an int."""
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


def check_fraction(value: Any, name: str, *, inclusive: bool = False) -> float:
    """Require a float in ``(0, 1)`` (or ``[0, 1]`` if ``inclusive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in (0, 1), got {value!r}")
    ok = 0 <= value <= 1 if inclusive else 0 < value < 1
    if not ok:
        raise ValueError(f"{name} must be in {'[0, 1]' if inclusive else '(0, 1)'}, got {value!r}")
    return float(value)


def resolve_device(
    device: str | torch.device | None, model: nn.Module | None = None
) -> torch.device:
    """``device`` if given, else the device of ``model``'s first parameter, else CPU."""
    if device is not None:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={device!r} requested but CUDA is not available")
        return dev
    if model is not None:
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def check_seed(value: Any, name: str = "seed") -> int:
    """Require a non-negative integer seed (Python or NumPy int, not bool); returns it as ``int``."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative int, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return int(value)
