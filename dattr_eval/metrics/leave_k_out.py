"""Leave-top-k-out: does retraining without a test point's top-k training samples hurt it more than random removal?"""

from __future__ import annotations

import torch

from dattr_eval.contract import TopK, topk
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics import register
from dattr_eval.metrics._common import warn_undefined
from dattr_eval.metrics.base import (
    MetricResult,
    RetrainingMetric,
    RetrainRequest,
    check_retrained,
    same_value,
)
from dattr_eval.validation import check_positive, check_seed


@register("leave_k_out")
class LeaveKOut(RetrainingMetric):
    """Drop of the target log-probability when a test point's ``top_k`` training samples are removed.

    Per test point ``x``: retrain without its ``top_k`` highest-attributed samples (ties to the
    lower index) and without ``top_k`` random samples (one seeded set shared by all test points);
    score ``= out_random(x) − out_top(x)``, the drop beyond that of removing random samples (higher =
    the top samples matter more; ≈ 0 for random attributions). Requests: the full training set, the
    random removal, and one removal per distinct top-k set (``n_test + 2`` models at most); all
    retrained with training seed ``seed``. ``extras``: mean ``drop_top`` and ``drop_random`` relative
    to the model retrained on all samples. Accepts ``TopK``. Unit: test point.

    Args:
        top_k: samples removed per test point.
        seed: seed of the random removal set and of the retrained models.
    """

    summary = (
        "retraining without each test point's top-k samples vs without random ones (drop of log p)"
    )
    citation = "Hammoudeh & Lowd, Training Data Influence Analysis and Estimation: A Survey, 2024"
    higher_is_better = True
    requires = ("train_labels", "retrained_outputs")
    accepts_topk = True

    def __init__(self, top_k: int = 10, seed: int = 0) -> None:
        self.top_k = check_positive(top_k, "top_k", integer=True)
        self.seed = check_seed(seed, "seed")
        super().__init__()
        self.add_state("n_train", default=None, reduce="same")
        self.add_state("removed", default=[], reduce="cat")  # (b, top_k) per batch

    def _update(self, attributions: torch.Tensor | TopK, truth: GroundTruth) -> None:
        n_train = attributions.shape[1] if isinstance(attributions, torch.Tensor) else truth.n_train
        self.n_train = same_value(self.n_train, n_train, "n_train")
        if self.top_k >= n_train:
            raise ValueError(f"top_k={self.top_k} must be < n_train={n_train}")
        top = topk(attributions, self.top_k).indices.cpu()
        self.record_positions(truth, top.shape[0])
        self.removed.append(torch.sort(top, dim=1).values)

    def _random_removed(self) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        return torch.sort(torch.randperm(self.n_train, generator=gen)[: self.top_k]).values

    def _removal_sets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(distinct removed sets (r, top_k), inverse (n_test,))`` of the test points' top-k sets."""
        return torch.unique(torch.cat(self.removed), dim=0, return_inverse=True)

    def _keep(self, removed: torch.Tensor) -> torch.Tensor:
        keep = torch.ones(self.n_train, dtype=torch.bool)
        keep[removed] = False
        return keep.nonzero()[:, 0]

    def retrain_requests(self) -> list[RetrainRequest]:
        self.check_updated()
        distinct, _ = self._removal_sets()
        sets = [torch.arange(self.n_train), self._keep(self._random_removed())]
        sets += [self._keep(row) for row in distinct]
        return [RetrainRequest(s, seed=self.seed) for s in sets]

    def compute(self, retrained: torch.Tensor | None = None) -> MetricResult:
        self.check_updated()
        distinct, inverse = self._removal_sets()
        outputs = check_retrained(retrained, 2 + distinct.shape[0], self.name)
        positions = torch.cat(self.positions)
        full, random_out = outputs[0, positions], outputs[1, positions]
        top_out = outputs[2 + inverse, positions]
        units = (random_out - top_out).numpy()
        warn_undefined(self, units, "undefined output")
        return self.result(
            units,
            drop_top=float((full - top_out).mean()),
            drop_random=float((full - random_out).mean()),
        )
