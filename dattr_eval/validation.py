"""Input-validation helpers shared by explainers, metrics, data and the evaluator.

Each raises an error that names the argument and what was expected: ``TypeError`` for a value of
the wrong kind (a float where an int is needed, a bool where a number is needed), ``ValueError``
for a value of the right kind out of range (NaN, inf, negative, unknown device). Numbers may be
Python or numpy scalars; ``bool`` is never taken as a number. Helpers return the value in a
canonical form (Python ``int`` / ``float``, ``torch.device``, int64 labels).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

#: device types dattr_eval can run on (``meta`` holds no data and is refused)
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def check_model(model: Any, name: str = "model") -> nn.Module:
    """Require a ``torch.nn.Module`` whose parameters hold data (none on the ``meta`` device)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_meta:
            raise ValueError(
                f"{name} has parameters on the 'meta' device (shapes without data); "
                "load its weights first (e.g. model.to_empty(device='cpu') then load_state_dict)"
            )
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


def check_sample(item: Any, name: str) -> tuple[torch.Tensor, int]:
    """Require one dataset item ``(x, y)``: ``x`` a float tensor/array, ``y`` an integer class.

    Returns ``(x as a tensor, y as an int)``. Labels are never rounded: ``1.9`` is an error.
    """
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        got = (
            f"a {type(item).__name__} of length {len(item)}"
            if isinstance(item, (tuple, list))
            else type(item).__name__
        )
        raise TypeError(f"{name} must be a pair (x, y) of an input and its class label, got {got}")
    x, y = item
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        what = x.dtype if isinstance(x, (torch.Tensor, np.ndarray)) else type(x).__name__
        raise TypeError(
            f"{name}: the input must be a float tensor (or float numpy array), got {what}"
        )
    return x, label_value(y, f"{name}: the label")


def label_value(y: Any, name: str) -> int:
    """One class label as an ``int``: a Python/numpy integer or a one-element integer tensor/array."""
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(y)
    if isinstance(y, torch.Tensor):
        if y.numel() != 1 or not _is_integer_dtype(y.dtype):
            raise TypeError(
                f"{name} must be an integer class index, got a {y.dtype} tensor of shape "
                f"{tuple(y.shape)}"
            )
        return int(y.reshape(()).item())
    if isinstance(y, (bool, np.bool_)) or not isinstance(y, numbers.Integral):
        raise TypeError(f"{name} must be an integer class index, got {y!r}")
    return int(y)


def _is_integer_dtype(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


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
    if floating is False and not _is_integer_dtype(x.dtype):
        raise TypeError(f"{name} must have an integer dtype, got {x.dtype}")
    if length is not None and (x.ndim == 0 or x.shape[0] != length):
        raise ValueError(
            f"{name} must have length {length} along dim 0, got shape {tuple(x.shape)}"
        )
    if finite and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN/inf value(s)")
    return x


def _as_tensor(values: Any, name: str) -> Any:
    """Lists, tuples, ranges and numpy arrays as tensors (an empty sequence is int64); others as is."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, got dtype {values.dtype}")
        if values.dtype.kind == "u" and values.dtype.itemsize > 1:
            values = values.astype(np.int64)  # torch lacks most unsigned ops
        return torch.from_numpy(np.ascontiguousarray(values))
    if not isinstance(values, (list, tuple, range)):
        return values
    if len(values) == 0:
        return torch.zeros(0, dtype=torch.long)
    try:
        return torch.as_tensor(list(values))
    except (OverflowError, RuntimeError, ValueError) as err:
        raise ValueError(f"{name} must hold numbers within int64 / float64: {err}") from err
    except TypeError as err:
        raise TypeError(f"{name} must be a sequence of numbers: {err}") from err


def check_labels(
    y: Any, name: str, *, length: int | None = None, n_classes: int | None = None
) -> torch.Tensor:
    """Require 1-D integer labels with values in ``[0, n_classes)``; returns an int64 tensor.

    Lists, tuples and numpy arrays are converted (an empty list is an empty label vector).
    Float labels are refused, never rounded or truncated.
    """
    y = check_tensor(_as_tensor(y, name), name, ndim=1, floating=False, length=length)
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"{name} must be non-negative class indices, got min {int(y.min())}")
    if n_classes is not None and y.numel() and int(y.max()) >= n_classes:
        raise ValueError(
            f"{name} must be < n_classes={n_classes} (the model's number of outputs), "
            f"got max {int(y.max())}"
        )
    return y.long()


def check_indices(indices: Any, name: str, n: int) -> torch.Tensor:
    """Require 1-D integer positions into a sequence of length ``n``, each in ``[0, n)``.

    Lists, tuples, ranges and numpy arrays are converted; negative positions are refused (they
    do not wrap). Returns an int64 tensor.
    """
    indices = check_tensor(_as_tensor(indices, name), name, ndim=1, floating=False)
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= n):
        bad = indices[(indices < 0) | (indices >= n)][0]
        raise ValueError(f"{name} must be in [0, {n}), got {int(bad)}")
    return indices.long()


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """Require ``value`` to be one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """Require a bool (Python or numpy); ``0``/``1`` are not taken as flags."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def check_int(
    value: Any, name: str, *, min_value: int | None = None, max_value: int | None = None
) -> int:
    """Require an integer (Python or numpy, not bool) in ``[min_value, max_value]``; returns an int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if min_value is not None and value < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {value}")
    if max_value is not None and value > max_value:
        raise ValueError(f"{name} must be <= {max_value}, got {value}")
    return value


def check_seed(value: Any, name: str = "seed") -> int:
    """Require a random seed: an int in ``[0, 2**63 - 1]``."""
    return check_int(value, name, min_value=0, max_value=2**63 - 1)


def check_number(value: Any, name: str) -> float:
    """Require a finite real number (Python or numpy, not bool); returns a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_positive(
    value: Any, name: str, *, allow_zero: bool = False, integer: bool = False
) -> int | float:
    """Require a finite positive (or non-negative) number, optionally an int.

    Returns a Python ``int`` (``integer=True``) or the number unchanged as int/float.
    """
    if integer:
        value = check_int(value, name)
    else:
        number = check_number(value, name)
        value = int(value) if isinstance(value, numbers.Integral) else number
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


def check_fraction(value: Any, name: str, *, inclusive: bool = False) -> float:
    """Require a float in ``(0, 1)`` (or ``[0, 1]`` if ``inclusive``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in (0, 1), got {value!r}")
    ok = 0 <= value <= 1 if inclusive else 0 < value < 1
    if not ok:  # NaN fails both comparisons
        raise ValueError(f"{name} must be in {'[0, 1]' if inclusive else '(0, 1)'}, got {value!r}")
    return float(value)


def check_device(device: Any, name: str = "device") -> torch.device:
    """Require a usable device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``torch.device``...).

    Refuses unknown device types, ``meta`` (no data: it would erase a model's weights) and
    accelerators this machine does not have. ``"cuda"`` resolves to the current CUDA device.
    """
    if not isinstance(device, (str, torch.device)):
        raise TypeError(
            f"{name} must be a str or torch.device such as 'cpu' or 'cuda', got {device!r}"
        )
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"{name}={device!r} is not a device; expected one of {list(DEVICE_TYPES)} "
            "with an optional index, e.g. 'cuda:0'"
        ) from err
    if dev.type == "meta":
        raise ValueError(
            f"{name}='meta' holds shapes without data: moving a model there erases its weights; "
            f"use one of {list(DEVICE_TYPES)}"
        )
    if dev.type not in DEVICE_TYPES:
        raise ValueError(
            f"{name}={device!r}: device type {dev.type!r} is not one of {list(DEVICE_TYPES)}"
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}={device!r} requested but CUDA is not available")
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"{name}={device!r}: only {torch.cuda.device_count()} CUDA device(s) available"
            )
        return torch.device("cuda", index)
    backend = getattr(torch, dev.type, None) if dev.type != "cpu" else None
    if backend is not None and not backend.is_available():
        raise ValueError(f"{name}={device!r} requested but {dev.type} is not available")
    return dev


def resolve_device(
    device: str | torch.device | None, model: nn.Module | None = None
) -> torch.device:
    """``device`` if given (checked by :func:`check_device`), else the device of ``model``'s
    first parameter or buffer, else CPU."""
    if device is not None:
        return check_device(device)
    if model is not None:
        for tensor in (*model.parameters(), *model.buffers()):
            return tensor.device
    return torch.device("cpu")
