"""Domain mismatch: is the top training sample of a shortcut-misled test point a marked one?"""

from __future__ import annotations

import numpy as np
import torch

from dattr_eval.contract import TopK, topk
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics import register
from dattr_eval.metrics._common import hubness, shortcut_selection
from dattr_eval.metrics.base import Metric, MetricResult, warn_empty
from dattr_eval.validation import check_labels


@register("domain_mismatch")
class DomainMismatch(Metric):
    """Share of shortcut-misled test points whose top-1 attributed training sample is marked.

    Selection as in ``feature_shortcut`` (predicted ``shortcut_class``, true label different;
    the DualView v1 ``eval_ids``). Per selected point: ``1[argmax_i A_i(x) ∈ marked]`` (ties to the
    lower index); score = mean. Unit: selected test point. No selected point: NaN with a warning.
    ``extras["hubness"]``: the share of selected points whose top-1 is the same training sample
    (near 1 means one "hub" decides the score; read ``feature_shortcut`` then).

    Args:
        filter_by_prediction: keep only test points predicted as ``shortcut_class``.
        filter_by_class: keep only test points whose true label is not ``shortcut_class``.
    """

    summary = "share of shortcut-misled test points whose top-1 training sample carries the mark"
    citation = "Yolcu et al., DualView: Data Attribution from the Dual Perspective, 2024"
    category = "ground-truth"
    higher_is_better = True
    requires = ("marked_train_indices", "shortcut_class", "test_predictions", "test_labels")
    accepts_topk = True
    unit = "selected test point"
    top_k_needed = 1

    def __init__(self, filter_by_prediction: bool = True, filter_by_class: bool = True) -> None:
        self.filter_by_prediction = filter_by_prediction
        self.filter_by_class = filter_by_class
        super().__init__()
        self.add_state("top1", default=[], reduce="cat")

    def _update(self, attributions: torch.Tensor | TopK, truth: GroundTruth) -> None:
        top1 = topk(attributions, 1).indices[:, 0].cpu()
        keep = shortcut_selection(
            truth, top1.shape[0], self.filter_by_prediction, self.filter_by_class
        )
        marked = check_labels(truth.marked_train_indices, "marked_train_indices").cpu()
        self.top1.append(top1[keep])
        self.per_unit.append(torch.isin(top1[keep], marked).double())

    def compute(self) -> MetricResult:
        self.check_updated()
        units = self.concatenated("per_unit")
        if units.size == 0:
            warn_empty(self)
        return self.result(units, hubness=hubness(self.concatenated("top1").astype(np.int64)))
