"""``GroundTruth``: everything a metric may need besides the attributions, in one record.

Benchmarks build it; the evaluator slices its test-level fields per test batch and adds what
its providers produce (self-influence, attributions of a randomised model). Retrained models'
outputs are not ground-truth fields: retraining metrics receive them in ``compute`` (see
``metrics.base.RetrainingMetric``). Metrics declare the fields they ``require``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch

#: test-level fields: their first dimension indexes the test samples
TEST_FIELDS: tuple[str, ...] = (
    "test_labels",
    "test_targets",
    "test_predictions",
    "test_fine_labels",
    "randomized_attributions",
    "test_indices",
    "test_positions",
)


@dataclass(frozen=True)
class GroundTruth:
    """Ground truth for one benchmark, or for one test batch of it.

    Training-set fields (shapes over ``n_train``):
        train_labels: ``(n_train,)`` int64, the labels the model was trained with (noisy or
            superclass labels where the benchmark perturbs them).
        train_fine_labels: ``(n_train,)`` int64, original fine labels (subclass benchmarks).
        mislabeled_indices: ``(n_flipped,)`` int64, training indices whose label was flipped.
        marked_train_indices: ``(n_marked,)`` int64, training indices carrying the shortcut mark.
        shortcut_class: the class whose training images carry the mark.
        self_influence: ``(n_train,)`` float, the explainer's self-influence scores (provided by
            the evaluator from the fitted explainer).
        n_classes: number of classes the model predicts.

    Test-level fields (first dimension = test samples of the batch):
        test_labels: ``(b,)`` true labels; test_targets: ``(b,)`` explained classes;
        test_predictions: ``(b,)`` model predictions; test_fine_labels: ``(b,)`` fine labels;
        test_indices: ``(b,)`` indices of the batch's samples in the source test dataset;
        test_positions: ``(b,)`` int64 rows of the batch in the benchmark's test set (``0..n_test-1``),
            indexing retrained outputs; when absent, metrics assume batches arrive in order;
        randomized_attributions: ``(b, n_train)`` attributions of a randomised model (provided
            by the evaluator).
    """

    train_labels: torch.Tensor | None = None
    train_fine_labels: torch.Tensor | None = None
    mislabeled_indices: torch.Tensor | None = None
    marked_train_indices: torch.Tensor | None = None
    shortcut_class: int | None = None
    self_influence: torch.Tensor | None = None
    n_classes: int | None = None
    test_labels: torch.Tensor | None = None
    test_targets: torch.Tensor | None = None
    test_predictions: torch.Tensor | None = None
    test_fine_labels: torch.Tensor | None = None
    test_indices: torch.Tensor | None = None
    test_positions: torch.Tensor | None = None
    randomized_attributions: torch.Tensor | None = None

    @classmethod
    def coerce(cls, truth: GroundTruth | dict | None = None, **extra: Any) -> GroundTruth:
        """Build a record from a ``GroundTruth``, a dict and/or keyword fields (keywords win)."""
        if truth is None:
            truth = cls()
        elif isinstance(truth, dict):
            truth = cls(**truth)
        elif not isinstance(truth, cls):
            raise TypeError(f"truth must be a GroundTruth or dict, got {type(truth).__name__}")
        unknown = set(extra) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(
                f"unknown ground-truth field(s) {sorted(unknown)}; known: {sorted(f.name for f in fields(cls))}"
            )
        return replace(truth, **extra) if extra else truth

    def missing(self, required: tuple[str, ...]) -> list[str]:
        """Names in ``required`` whose value is ``None``."""
        return [name for name in required if getattr(self, name) is None]

    @property
    def n_test(self) -> int | None:
        """Number of test samples in the record (from the first test-level field present)."""
        for name in TEST_FIELDS:
            value = getattr(self, name)
            if value is not None:
                return int(value.shape[0])
        return None

    @property
    def n_train(self) -> int | None:
        """Number of training samples (from ``train_labels`` or ``self_influence``)."""
        for name in ("train_labels", "self_influence", "train_fine_labels"):
            value = getattr(self, name)
            if value is not None:
                return int(value.shape[0])
        return None

    def select(self, index: torch.Tensor | slice) -> GroundTruth:
        """The record restricted to the test samples ``index`` (training fields unchanged)."""
        changes = {}
        for name in TEST_FIELDS:
            value = getattr(self, name)
            if value is not None:
                changes[name] = value[index]
        return replace(self, **changes)
