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
    A property of the method, not a quality ranking. Unit: test point.

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
        self.add_state("other", default=[], reduce="cat")

    def _update(self, attributions: torch.Tensor, truth: GroundTruth) -> None:
        n = attributions.shape[1]
        if n < 2:
            raise ValueError(
                f"sparsity needs n_train >= 2 columns, got attributions of shape {tuple(attributions.shape)}"
            )
        mag = attributions.detach().abs().double()
        l1, l2, top = mag.sum(1), mag.norm(dim=1), mag.max(1).values
        zero = top == 0
        hoyer = torch.where(
            zero, 1.0, (math.sqrt(n) - l1 / torch.where(zero, 1.0, l2)) / (math.sqrt(n) - 1)
        )
        near = torch.where(zero, 1.0, (mag < self.eps * top[:, None]).double().mean(1))
        chosen, other = (hoyer, near) if self.measure == "hoyer" else (near, hoyer)
        self.per_unit.append(chosen.cpu())
        self.other.append(other.cpu())

    def compute(self) -> MetricResult:
        self.check_updated()
        chosen, other = self.concatenated("per_unit"), self.concatenated("other")
        hoyer, near = (chosen, other) if self.measure == "hoyer" else (other, chosen)
        return self.result(chosen, hoyer=float(hoyer.mean()), near_zero=float(near.mean()))
