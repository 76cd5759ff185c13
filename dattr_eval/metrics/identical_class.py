"""Identical class: do the most relevant training samples share the test point's class?"""

from __future__ import annotations

from typing import ClassVar

import torch

from dattr_eval.contract import TopK, topk
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics import register
from dattr_eval.metrics.base import Metric
from dattr_eval.validation import check_labels, check_positive


@register("identical_class", aliases=("class_detection",))
class IdenticalClass(Metric):
    """Share of the ``top_k`` highest-attributed training samples whose label equals the test target.

    Per test point ``x`` with explained class ``t(x)`` (``test_targets``: the prediction or the true
    label, as the benchmark chose): ``(1/k) Σ_{i ∈ top-k(A(x))} 1[train_labels[i] = t(x)]``; score =
    mean over test points, in ``[0, 1]``. ``top_k=1`` is Hanawa et al.'s identical-class test; the
    DualView v2/v3 paper and quanda's default use ``top_k=5``. Ties in the attributions go to the
    lower training index (``contract.topk``). Unit: test point.

    Args:
        top_k: number of training samples inspected per test point.
    """

    summary = "share of the top-k training samples whose label equals the test target"
    citation = "Hanawa et al., Evaluation of Similarity-based Explanations, ICLR 2021"
    category = "ground-truth"
    higher_is_better = True
    requires = ("train_labels", "test_targets")
    accepts_topk = True
    #: the ground-truth fields compared: (training-sample labels, test-point labels)
    label_fields: ClassVar[tuple[str, str]] = ("train_labels", "test_targets")

    def __init__(self, top_k: int = 1) -> None:
        self.top_k = check_positive(top_k, "top_k", integer=True)
        super().__init__()

    def score_batch(self, attributions: torch.Tensor | TopK, truth: GroundTruth) -> torch.Tensor:
        train_field, test_field = self.label_fields
        idx = topk(attributions, self.top_k).indices.cpu()  # (b, k)
        train = check_labels(getattr(truth, train_field), train_field)
        test = check_labels(getattr(truth, test_field), test_field, length=idx.shape[0])
        return (train.cpu()[idx] == test.cpu()[:, None]).double().mean(1)
