"""Seeded, pure dataset perturbations that return ``(dataset, ground_truth)``.

None of them modifies its input dataset; each returns a new ``ArrayDataset``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dattr_eval.data.datasets import ArrayDataset
from dattr_eval.data.loading import stack_dataset
from dattr_eval.validation import (
    check_dataset,
    check_fraction,
    check_int,
    check_seed,
    check_tensor,
)


def _pick(candidates: np.ndarray, fraction: float, seed: int) -> torch.Tensor:
    """A seeded sorted subset of ``round(fraction * len(candidates))`` of ``candidates`` (int64)."""
    k = round(fraction * len(candidates))
    chosen = np.random.default_rng(seed).choice(candidates, size=k, replace=False)
    return torch.as_tensor(np.sort(chosen), dtype=torch.long)


def flip_labels(
    dataset: Dataset, fraction: float, seed: int = 0, n_classes: int | None = None
) -> tuple[ArrayDataset, torch.Tensor]:
    """Flip a ``fraction`` of the labels to a different, uniformly random class.

    Args:
        dataset: map-style dataset of ``(x, y)``.
        fraction: share of samples flipped, in (0, 1).
        seed: seeds which samples and which new labels.
        n_classes: number of classes (default: ``max label + 1``).

    Returns:
        ``(noisy dataset, flipped indices (k,) int64 sorted)``.
    """
    check_dataset(dataset, "dataset")
    check_fraction(fraction, "fraction")
    seed = check_int(seed, "seed", min_value=0, max_value=2**63 - 2)  # seed + 1 seeds the shifts
    x, y = stack_dataset(dataset)
    n_classes = int(y.max()) + 1 if n_classes is None else check_int(n_classes, "n_classes")
    if n_classes < 2 or n_classes <= int(y.max()):
        raise ValueError(
            f"n_classes must be >= 2 and exceed every label (max {int(y.max())}), got {n_classes}"
        )
    flipped = _pick(np.arange(len(y)), fraction, seed)
    shift = np.random.default_rng(seed + 1).integers(1, n_classes, size=len(flipped))
    noisy = y.clone()
    noisy[flipped] = (y[flipped] + torch.as_tensor(shift)) % n_classes
    return ArrayDataset(x, noisy), flipped


def mark_inputs(x: torch.Tensor) -> torch.Tensor:
    """Stamp the shortcut mark on every image of ``x`` ``(n, C, H, W)``; returns a new tensor.

    The mark (DualView paper): a border frame and a centre square set to the maximum value
    (1.0). On 28×28 the frame is 2 px and the square 4×4 px; it scales with the image
    (8×8 digits: 1 px frame, 2×2 square).
    """
    check_tensor(x, "x", ndim=4, floating=True)
    h, w = x.shape[-2:]
    border = max(1, round(2 * min(h, w) / 28))
    side = max(2, round(4 * min(h, w) / 28))
    out = x.clone()
    out[..., :border, :] = 1.0
    out[..., -border:, :] = 1.0
    out[..., :, :border] = 1.0
    out[..., :, -border:] = 1.0
    top, left = (h - side) // 2, (w - side) // 2
    out[..., top : top + side, left : left + side] = 1.0
    return out


def mark_dataset(dataset: Dataset) -> ArrayDataset:
    """``dataset`` with the shortcut mark stamped on every image (e.g. the test set of the shortcut task)."""
    check_dataset(dataset, "dataset")
    x, y = stack_dataset(dataset)
    return ArrayDataset(mark_inputs(x), y)


def add_shortcut(
    dataset: Dataset,
    target_class: int,
    fraction: float,
    seed: int = 0,
    mark: Callable[[torch.Tensor], torch.Tensor] = mark_inputs,
) -> tuple[ArrayDataset, torch.Tensor]:
    """Stamp the shortcut mark on a ``fraction`` of ``target_class``'s images.

    Args:
        mark: maps images ``(k, C, H, W)`` to marked copies (default ``mark_inputs``); stamp the
            test images with the same function.

    Returns:
        ``(dataset with marks, marked indices (k,) int64 sorted)``; labels are unchanged.
    """
    check_dataset(dataset, "dataset")
    check_fraction(fraction, "fraction")
    target_class = check_int(target_class, "target_class")
    seed = check_seed(seed)
    x, y = stack_dataset(dataset)
    members = torch.nonzero(y == target_class).flatten().numpy()
    if members.size == 0:
        raise ValueError(f"target_class {target_class} has no samples in dataset")
    marked = _pick(members, fraction, seed)
    x = x.clone()
    x[marked] = mark(x[marked])
    return ArrayDataset(x, y), marked


def group_labels(
    dataset: Dataset, groups: Sequence[Sequence[int]]
) -> tuple[ArrayDataset, torch.Tensor]:
    """Relabel each sample with the index of its class's group (superclass).

    Args:
        groups: disjoint class groups, e.g. ``[(0, 1), (2, 3), ...]``; every label must be in one.

    Returns:
        ``(dataset with group labels, fine labels (n,) int64)``.
    """
    check_dataset(dataset, "dataset")
    x, y = stack_dataset(dataset)
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence):
        raise TypeError(f"groups must be a sequence of class groups, got {groups!r}")
    mapping: dict[int, int] = {}
    for g, classes in enumerate(groups):
        if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
            raise TypeError(f"groups[{g}] must be a sequence of class indices, got {classes!r}")
        for c in classes:
            c = check_int(c, f"groups[{g}] class")
            if c in mapping:
                raise ValueError(
                    f"groups must be disjoint; class {c} is in groups {mapping[c]} and {g}"
                )
            mapping[c] = g
    missing = sorted(set(y.unique().tolist()) - set(mapping))
    if missing:
        raise ValueError(f"groups must cover every label; classes {missing} are in no group")
    coarse = torch.as_tensor([mapping[int(c)] for c in y.tolist()], dtype=torch.long)
    return ArrayDataset(x, coarse), y.clone()
