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
    test point (a test-independent ranking). Ties go to the lower index. Needs no ground truth; accepts ``TopK``.

    Args:
        top_k: number of training samples per test point.
    """

    summary = "distinct training samples among all test points' top-k, over n_test*k (higher = more varied)"
    citation = "Hanawa et al., Evaluation of Similarity-based Explanations, ICLR 2021"
    category = "sanity"
    higher_is_better = True
    requires = ()
    accepts_topk = True

    def __init__(self, top_k: int = 1) -> None:
        self.top_k = check_positive(top_k, "top_k", integer=True)
        self.top_k_needed = top_k
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self._distinct = torch.empty(0, dtype=torch.long)
        self._n_test = 0

    def merge(self, other: TopKCardinality) -> TopKCardinality:
        super().merge(other)
        self._distinct = torch.unique(torch.cat([self._distinct, other._distinct]))
        self._n_test += other._n_test
        return self

    def _update(self, attributions: torch.Tensor | TopK, truth: GroundTruth) -> None:
        idx = topk(attributions, self.top_k).indices.cpu()
        self._distinct = torch.unique(torch.cat([self._distinct, idx.reshape(-1)]))
        self._n_test += idx.shape[0]

    def compute(self) -> MetricResult:
        if self._n_test == 0:
            raise RuntimeError(f"metric {self.name!r}: compute() called before any update()")
        n_distinct = int(self._distinct.numel())
        return self._result(
            n_distinct / (self._n_test * self.top_k), n_distinct=n_distinct, n_test=self._n_test
        )
