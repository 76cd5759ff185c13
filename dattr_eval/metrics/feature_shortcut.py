"""Feature shortcut: do the attributions of shortcut-misled test points single out the marked training samples?"""

from __future__ import annotations

import torch

from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics import register
from dattr_eval.metrics._common import index_mask, selected_mean_result, shortcut_selection
from dattr_eval.metrics._ranking import average_precision_rows
from dattr_eval.metrics.base import Metric, MetricResult


@register("feature_shortcut", aliases=("shortcut_detection",))
class FeatureShortcut(Metric):
    """Mean AUPRC of the attributions of shortcut-misled test points against the marked training samples.

    Part of ``shortcut_class``'s training images carry a mark (``marked_train_indices``) and every
    test image does. Selected test points (filters on by default): predicted as ``shortcut_class``
    and with a true label other than it. Per selected point ``x``: average precision (step-wise area
    under the precision-recall curve, scikit-learn's / torcheval's ``binary_auprc``; tied scores
    form one threshold) of the ranking ``A(x)`` against the indicator ``1[i marked]``. Score = mean
    over selected points (random ≈ share of marked samples, 1 = all marked samples first). No
    selected point: score NaN with a warning.

    Args:
        filter_by_prediction: keep only test points predicted as ``shortcut_class``.
        filter_by_class: keep only test points whose true label is not ``shortcut_class``.
    """

    summary = "mean AUPRC of shortcut-misled test points' attributions against the marked training samples"
    citation = (
        "Yolcu et al., DualView: Data Attribution from the Dual Perspective, 2024 (domain mismatch)"
    )
    category = "ground-truth"
    higher_is_better = True
    requires = ("marked_train_indices", "shortcut_class", "test_predictions", "test_labels")

    def __init__(self, filter_by_prediction: bool = True, filter_by_class: bool = True) -> None:
        self.filter_by_prediction = filter_by_prediction
        self.filter_by_class = filter_by_class
        super().__init__()

    def score_batch(self, attributions: torch.Tensor, truth: GroundTruth) -> torch.Tensor:
        keep = shortcut_selection(
            truth, attributions.shape[0], self.filter_by_prediction, self.filter_by_class
        )
        marked = index_mask(
            truth.marked_train_indices, attributions.shape[1], "marked_train_indices"
        )
        if not bool(marked.any()):
            raise ValueError("marked_train_indices is empty: no marked training sample to detect")
        return average_precision_rows(
            attributions.detach()[keep.to(attributions.device)].double(), marked
        )

    def compute(self) -> MetricResult:
        return selected_mean_result(self)
