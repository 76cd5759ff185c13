"""Helpers shared by several metrics: undefined-score warnings, shortcut selection, hubness."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics.base import Metric
from dattr_eval.validation import check_labels


def warn_undefined(metric: Metric, units: np.ndarray, undefined: str) -> None:
    """Warn when some per-unit scores are NaN (left out of the mean), naming why (``undefined``)."""
    n_bad = int(np.isnan(units).sum())
    if n_bad:
        warnings.warn(
            f"metric {metric.name!r}: {n_bad} of {units.size} {metric.unit}(s) left out: {undefined}",
            stacklevel=3,
        )


def index_mask(indices: Any, n: int, name: str) -> torch.Tensor:
    """``(n,)`` bool mask of ``indices`` (a 1-D int tensor of positions in ``[0, n)``)."""
    indices = check_labels(indices, name)
    if indices.numel() and int(indices.max()) >= n:
        raise ValueError(f"{name} must be < n_train={n}, got max {int(indices.max())}")
    mask = torch.zeros(n, dtype=torch.bool)
    mask[indices.cpu()] = True
    return mask


def shortcut_selection(
    truth: GroundTruth, b: int, filter_by_prediction: bool, filter_by_class: bool
) -> torch.Tensor:
    """``(b,)`` bool: the test points a shortcut metric scores.

    Selected: predicted as ``shortcut_class`` (if ``filter_by_prediction``) and with a true label
    other than ``shortcut_class`` (if ``filter_by_class``) — the points the shortcut misleads.
    """
    keep = torch.ones(b, dtype=torch.bool)
    if filter_by_prediction:
        predictions = check_labels(truth.test_predictions, "test_predictions", length=b).cpu()
        keep &= predictions == truth.shortcut_class
    if filter_by_class:
        keep &= (
            check_labels(truth.test_labels, "test_labels", length=b).cpu() != truth.shortcut_class
        )
    return keep


def hubness(top1: np.ndarray) -> float:
    """Share of test points whose top-1 training sample is the most frequent top-1 (NaN if none).

    1 = one training "hub" is everyone's top-1 (the score then rests on one sample).
    """
    top1 = np.asarray(top1, dtype=np.int64)
    if top1.size == 0:
        return float("nan")
    return float(np.bincount(top1).max() / top1.size)
