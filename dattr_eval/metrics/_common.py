"""Helpers shared by several metrics: NaN-aware means, shortcut test-point selection, retraining calls."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics.base import Metric, MetricResult
from dattr_eval.validation import check_labels, check_tensor


def finite_mean_result(
    metric: Metric, per_sample: torch.Tensor, undefined: str, **extras: Any
) -> MetricResult:
    """``MetricResult`` whose score is the mean of the finite entries of ``per_sample``.

    Entries that are NaN (undefined for that test point, e.g. a constant attribution row has no
    rank correlation) are left out with a warning naming ``undefined``; with none left the score is
    NaN. ``per_sample`` keeps the NaNs so rows stay aligned with the test points.
    """
    finite = torch.isfinite(per_sample)
    n_bad = int((~finite).sum())
    if n_bad:
        warnings.warn(
            f"metric {metric.name!r}: {n_bad} of {per_sample.numel()} test point(s) left out: {undefined}"
        )
    score = float(per_sample[finite].double().mean()) if bool(finite.any()) else float("nan")
    return metric._result(score, per_sample=per_sample, n_scored=int(finite.sum()), **extras)


def selected_mean_result(metric: Metric) -> MetricResult:
    """Mean of a shortcut metric's per-sample scores over the selected test points (NaN + warning if none)."""
    if not metric._per_sample:
        raise RuntimeError(f"metric {metric.name!r}: compute() called before any update()")
    per_sample = torch.cat(metric._per_sample)
    if per_sample.numel() == 0:
        warnings.warn(
            f"metric {metric.name!r}: no test point was selected (predicted as shortcut_class "
            "with another true label); score is NaN"
        )
        return metric._result(float("nan"), per_sample=per_sample, n_scored=0)
    return metric._result(
        float(per_sample.mean()), per_sample=per_sample, n_scored=per_sample.numel()
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
        keep &= (
            check_labels(truth.test_predictions, "test_predictions", length=b).cpu()
            == truth.shortcut_class
        )
    if filter_by_class:
        keep &= (
            check_labels(truth.test_labels, "test_labels", length=b).cpu() != truth.shortcut_class
        )
    return keep


def batch_positions(truth: GroundTruth, b: int, n_seen: int) -> tuple[torch.Tensor, bool]:
    """Rows of this batch in the benchmark's test set and whether they were given explicitly.

    ``truth.test_positions`` when set; else ``n_seen .. n_seen + b - 1`` (batches in order).
    """
    if truth.test_positions is not None:
        return check_labels(truth.test_positions, "test_positions", length=b).cpu(), True
    return torch.arange(n_seen, n_seen + b), False


def check_mergeable_positions(explicit: list[bool], name: str) -> None:
    """Refuse merging states whose test rows were numbered by arrival order (they would collide)."""
    if not all(explicit):
        raise ValueError(
            f"metric {name!r}: merging needs test_positions in the ground truth of every batch "
            "(without them rows are numbered by arrival order, which differs between workers)"
        )


def retrained_outputs(truth: GroundTruth, train_indices: torch.Tensor) -> torch.Tensor:
    """Call ``truth.retrain_fn`` on sorted ``train_indices`` and validate its ``(n_test,)`` output.

    The protocol (GroundTruth.retrain_fn): train from scratch on exactly ``train_indices``; return
    ``log_softmax(f(x_t))[target_t]`` for every test point of the benchmark, in benchmark order.
    """
    train_indices = torch.sort(train_indices.long().cpu()).values
    out = truth.retrain_fn(train_indices)
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            "retrain_fn must return a (n_test,) float tensor of target log-probabilities on the whole "
            f"test set (see GroundTruth.retrain_fn), got {type(out).__name__}"
        )
    return check_tensor(
        out.detach().cpu(), "retrain_fn output", ndim=1, floating=True, finite=True
    ).double()
