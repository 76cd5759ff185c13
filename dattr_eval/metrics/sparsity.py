"""Sparsity of attribution rows: Hoyer's measure and the share of near-zero entries."""

from __future__ import annotations

import math

import torch

from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics import register
from dattr_eval.metrics.base import Metric, MetricResult
from dattr_eval.validation import check_choice, check_fraction


@register("sparsity")
class Sparsity(Metric):
    """How concentrated each test point's attributions are on few training samples.

    Per row ``a = A(x)`` over ``N = n_train`` entries (``N ≥ 2``):

    - Hoyer: ``(√N − ‖a‖₁/‖a‖₂) / (√N − 1)`` in ``[0, 1]``: 1 = one non-zero entry, 0 = all equal
      magnitudes.
    - near-zero share (ℓ0^ε of the DualView sparsity table): ``#{i : |a_i| / max_j |a_j| < eps} / N``.

    An all-zero row counts as fully sparse (both 1). Score = mean over test points of the measure
    chosen by ``measure``; ``extras`` holds both means. Higher = sparser; no ground truth needed.

    Args:
        measure: ``"hoyer"`` or ``"near_zero"``, the one reported as ``score``.
        eps: threshold on ``|a_i| / max|a|`` for near-zero entries (the paper's 1e-6).
    """

    summary = (
        "Hoyer sparsity and share of near-zero entries of each attribution row (higher = sparser)"
    )
    citation = "Hoyer, Non-negative Matrix Factorization with Sparseness Constraints, JMLR 2004"
    category = "property"
    higher_is_better = True
    requires = ()

    def __init__(self, measure: str = "hoyer", eps: float = 1e-6) -> None:
        self.measure = check_choice(measure, "measure", ("hoyer", "near_zero"))
        self.eps = check_fraction(eps, "eps")
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self._near_zero: list[torch.Tensor] = []

    def merge(self, other: Sparsity) -> Sparsity:
        super().merge(other)
        self._near_zero.extend(other._near_zero)
        return self

    def _update(self, attributions: torch.Tensor, truth: GroundTruth) -> None:
        n = attributions.shape[1]
        if n < 2:
            raise ValueError(
                f"sparsity needs n_train >= 2 columns, got attributions of shape {tuple(attributions.shape)}"
            )
        mag = attributions.detach().abs().double()
        l1, l2, top = mag.sum(1), mag.norm(dim=1), mag.max(1).values
        zero = top == 0
        hoyer = (math.sqrt(n) - l1 / torch.where(zero, 1.0, l2)) / (math.sqrt(n) - 1)
        near = (mag < self.eps * top[:, None]).double().mean(1)
        self._per_sample.append(torch.where(zero, 1.0, hoyer).cpu())
        self._near_zero.append(torch.where(zero, 1.0, near).cpu())

    def compute(self) -> MetricResult:
        if not self._per_sample:
            raise RuntimeError(f"metric {self.name!r}: compute() called before any update()")
        hoyer, near = torch.cat(self._per_sample), torch.cat(self._near_zero)
        per_sample = hoyer if self.measure == "hoyer" else near
        return self._result(
            float(per_sample.mean()),
            per_sample=per_sample,
            hoyer=float(hoyer.mean()),
            near_zero=float(near.mean()),
        )
