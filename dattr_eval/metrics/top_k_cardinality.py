"""Top-k cardinality: how many distinct training samples appear among all test points' top-k?"""

from __future__ import annotations

import torch

from dattr_eval.contract import TopK, topk
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics import register
from dattr_eval.metrics.base import Metric, MetricResult
from dattr_eval.validation import check_positive


@register("top_k_cardinality")
class TopKCardinality(Metric):
    """``|⋃_x top-k(A(x))| / (n_test · k)``: share of distinct training samples among all top-k lists.

    1 = no training sample in two test points' top-k; ``1 / n_test`` = the same k samples for every
    test point (a test-independent ranking). Ties go to the lower index. Needs no ground truth;
    accepts ``TopK``. A sanity check (passes above ``sanity_threshold``), not a quality ranking.

    Unit: test point. The score decomposes exactly into per-test-point shares
    ``u(x) = (1/k) Σ_{i ∈ top-k(A(x))} 1 / c_i`` (``c_i``: the number of test points whose top-k
    holds ``i``), since ``Σ_x k·u(x) = #distinct``; ``units`` are these shares, so the score is
    their mean and the bootstrap interval resamples test points with the counts held fixed.

    Args:
        top_k: number of training samples per test point.
    """

    summary = "distinct training samples among all test points' top-k, over n_test*k (higher = more varied)"
    citation = "Hanawa et al., Evaluation of Similarity-based Explanations, ICLR 2021"
    category = "sanity"
    higher_is_better = True
    requires = ()
    accepts_topk = True
    #: at most 10 test points per distinct top-k sample on average
    sanity_threshold = 0.1

    def __init__(self, top_k: int = 1) -> None:
        self.top_k = check_positive(top_k, "top_k", integer=True)
        super().__init__()

    def _update(self, attributions: torch.Tensor | TopK, truth: GroundTruth) -> None:
        self.per_unit.append(topk(attributions, self.top_k).indices.cpu())

    def compute(self) -> MetricResult:
        self.check_updated()
        idx = (
            torch.cat(self.per_unit)
            if self.per_unit
            else torch.zeros(0, self.top_k, dtype=torch.long)
        )
        distinct, inverse, counts = torch.unique(idx, return_inverse=True, return_counts=True)
        shares = (1.0 / counts.double())[inverse].mean(1).numpy()  # (n_test,)
        return self.result(shares, n_distinct=int(distinct.numel()), n_test=int(idx.shape[0]))
