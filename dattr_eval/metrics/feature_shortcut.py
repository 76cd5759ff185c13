"""Feature shortcut: do the attributions of shortcut-misled test points single out the marked training samples?"""

from __future__ import annotations

import numpy as np
import torch

from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics import register
from dattr_eval.metrics._common import hubness, index_mask, shortcut_selection
from dattr_eval.metrics.base import Metric, MetricResult, warn_empty
from dattr_eval.ranking import average_precision_rows


@register("feature_shortcut", aliases=("shortcut_detection",))
class FeatureShortcut(Metric):
    """Mean AUPRC of the attributions of shortcut-misled test points against the marked training samples.

    Part of ``shortcut_class``'s training images carry a mark (``marked_train_indices``) and every
    test image does. Selected test points (filters on by default): predicted as ``shortcut_class``
    and with a true label other than it. Per selected point ``x``: average precision (step-wise area
    under the precision-recall curve, scikit-learn's / torcheval's ``binary_auprc``; tied scores
    form one threshold) of the ranking ``A(x)`` against the indicator ``1[i marked]``. Score = mean
    over selected points (random ≈ share of marked samples, 1 = all marked samples first); the
    primary shortcut score (it reads the whole ranking, unlike ``domain_mismatch``). Unit: selected
    test point. No selected point: NaN with a warning. ``extras["hubness"]``: share of selected
    points sharing the most frequent top-1 training sample.

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
    unit = "selected test point"

    def __init__(self, filter_by_prediction: bool = True, filter_by_class: bool = True) -> None:
        self.filter_by_prediction = filter_by_prediction
        self.filter_by_class = filter_by_class
        super().__init__()
        self.add_state("top1", default=[], reduce="cat")

    def _update(self, attributions: torch.Tensor, truth: GroundTruth) -> None:
        keep = shortcut_selection(
            truth, attributions.shape[0], self.filter_by_prediction, self.filter_by_class
        )
        marked = index_mask(
            truth.marked_train_indices, attributions.shape[1], "marked_train_indices"
        )
        if not bool(marked.any()):
            raise ValueError("marked_train_indices is empty: no marked training sample to detect")
        selected = attributions.detach()[keep.to(attributions.device)]  # AP reads the order only
        self.top1.append(selected.argmax(1).cpu())
        self.per_unit.append(average_precision_rows(selected, marked).cpu())

    def compute(self) -> MetricResult:
        self.check_updated()
        units = self.concatenated("per_unit")
        if units.size == 0:
            warn_empty(self)
        return self.result(units, hubness=hubness(self.concatenated("top1").astype(np.int64)))
