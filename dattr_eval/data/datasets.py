"""In-memory datasets of ``(x: float32, y: int64)`` and the train/test split type."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from dattr_eval.validation import check_fraction, check_int, check_labels


class ArrayDataset(Dataset):
    """A map-style dataset over two in-memory arrays.

    Args:
        inputs: ``(n, ...)`` array or tensor, stored as float32 (e.g. ``(n, 1, 8, 8)`` in [0, 1]).
        targets: ``(n,)`` integer class labels, stored as int64.

    Attributes:
        inputs: ``(n, ...)`` float32 tensor.
        targets: ``(n,)`` int64 tensor.
    """

    def __init__(self, inputs: Any, targets: Any) -> None:
        x, y = _numeric_tensor(inputs, "inputs"), _numeric_tensor(targets, "targets")
        if x.ndim < 1:
            raise ValueError(f"inputs must have shape (n, ...), got shape {tuple(x.shape)}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"targets must have shape ({x.shape[0]},) to match inputs, got shape {tuple(y.shape)}"
            )
        if y.is_floating_point() or y.dtype == torch.bool:
            raise TypeError(f"targets must be integer class labels, got dtype {y.dtype}")
        self.inputs = x.to(torch.float32)
        self.targets = check_labels(y, "targets")

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.targets[index]

    def __repr__(self) -> str:
        return f"ArrayDataset(n={len(self)}, input_shape={tuple(self.inputs.shape[1:])})"


def _numeric_tensor(values: Any, name: str) -> torch.Tensor:
    """``values`` (array-like or tensor) as a real-valued tensor; ``TypeError`` naming ``name`` otherwise."""
    if not isinstance(values, torch.Tensor):
        array = np.asarray(values)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
        if array.dtype.kind == "u" and array.dtype.itemsize > 1:  # torch lacks most uint ops
            array = array.astype(np.int64)
        values = torch.as_tensor(array)
    if values.is_complex():
        raise TypeError(f"{name} must be real-valued, got dtype {values.dtype}")
    return values


class DatasetSplit(NamedTuple):
    """A fixed train/test split."""

    train: ArrayDataset
    test: ArrayDataset


def stratified_split(inputs: Any, targets: Any, test_fraction: float, seed: int) -> DatasetSplit:
    """A seeded stratified split of ``(inputs, targets)`` into ``DatasetSplit`` (scikit-learn)."""
    from sklearn.model_selection import train_test_split

    check_fraction(test_fraction, "test_fraction")
    seed = check_int(seed, "seed", min_value=0, max_value=2**32 - 1)  # scikit-learn's range
    if len(inputs) != len(targets):
        raise ValueError(
            f"inputs and targets must have the same length, got {len(inputs)} and {len(targets)}"
        )
    idx = np.arange(len(targets))
    train_idx, test_idx = train_test_split(
        idx, test_size=test_fraction, random_state=seed, stratify=np.asarray(targets)
    )
    train_idx.sort()
    test_idx.sort()
    x, y = np.asarray(inputs), np.asarray(targets)
    return DatasetSplit(
        ArrayDataset(x[train_idx], y[train_idx]), ArrayDataset(x[test_idx], y[test_idx])
    )
