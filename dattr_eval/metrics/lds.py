"""Linear datamodeling score (LDS): do attribution sums predict what models retrained on subsets output?"""

from __future__ import annotations

import functools

import torch

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
from dattr_eval.ranking import spearman_rows
from dattr_eval.validation import check_fraction, check_positive, check_seed


@functools.lru_cache(maxsize=8)
def subset_masks(n_train: int, n_subsets: int, fraction: float, seed: int) -> torch.Tensor:
    """``(n_subsets, n_train)`` bool: seeded random subsets of ``round(fraction · n_train)`` samples each.

    Cached (the same arguments return the same tensor object: do not modify it in place).
    """
    gen = torch.Generator().manual_seed(seed)
    size = max(1, round(fraction * n_train))
    masks = torch.zeros(n_subsets, n_train, dtype=torch.bool)
    for i in range(n_subsets):
        masks[i, torch.randperm(n_train, generator=gen)[:size]] = True
    return masks


@register("lds", aliases=("fidelity", "linear_datamodeling"))
class LinearDatamodeling(RetrainingMetric):
    """Linear datamodeling score (Park et al. 2023; the DualView v2/v3 and DualXDA protocol).

    ``n_subsets`` seeded random subsets ``S_j`` of ``fraction · n_train`` training samples; each is
    retrained with ``n_seeds`` training seeds (by the evaluator's retraining service, with the
    benchmark's retraining recipe) and the seeds' outputs ``log_softmax(f_S(x))[target]`` are
    averaged, which removes most of the seed noise a single retrained model carries. Per test point
    ``x``: Spearman correlation over the subsets between the attribution sum ``Σ_{i∈S_j} A_i(x)``
    and the averaged output of the models trained on ``S_j``. Score = mean over test points (in
    ``[−1, 1]``; 0 = no relation). A constant row is left out with a warning. Unit: test point.

    ``extras["noise_ceiling"]``: the Spearman between the averaged outputs of two independent halves
    of the seeds (``statistics.noise_ceiling``) — roughly the best LDS any method can reach on this
    ground truth (an estimate for half the seeds; the full average is less noisy). The requests are
    ``n_subsets × n_seeds`` models, subset-major; seed ``s`` of every subset is ``seed · 1000 + s``.

    Args:
        n_subsets: number of random training subsets (>= 3; DualXDA uses 100).
        fraction: subset size as a fraction of the training set.
        n_seeds: training seeds per subset (>= 1; >= 2 for a noise ceiling).
        seed: seeds the subsets and the training seeds.
    """

    summary = (
        "Spearman between attribution sums over random subsets and seed-averaged retrained outputs"
    )
    citation = "Park et al., TRAK: Attributing Model Behavior at Scale, ICML 2023"
    higher_is_better = True

    def __init__(
        self, n_subsets: int = 100, fraction: float = 0.5, n_seeds: int = 3, seed: int = 0
    ) -> None:
        self.n_subsets = check_positive(n_subsets, "n_subsets", integer=True)
        if n_subsets < 3:
            raise ValueError(f"n_subsets must be >= 3 for a rank correlation, got {n_subsets}")
        self.fraction = check_fraction(fraction, "fraction")
        self.n_seeds = check_positive(n_seeds, "n_seeds", integer=True)
        self.seed = check_seed(seed, "seed")
        super().__init__()
        self.add_state("n_train", default=None, reduce="same")
        self.add_state("sums", default=[], reduce="cat")

    def masks(self) -> torch.Tensor:
        """``(n_subsets, n_train)`` bool training subsets (known after the first update)."""
        if self.n_train is None:
            raise RuntimeError(
                f"metric {self.name!r}: the subsets are known after the first update()"
            )
        return subset_masks(self.n_train, self.n_subsets, self.fraction, self.seed)

    def _update(self, attributions: torch.Tensor, truth: GroundTruth) -> None:
        b, n_train = attributions.shape
        self.n_train = same_value(self.n_train, n_train, "n_train")
        self.record_positions(truth, b)
        masks = self.masks().to(attributions.device).double()
        self.sums.append((attributions.detach().double() @ masks.T).cpu())  # (b, n_subsets)

    def retrain_requests(self) -> list[RetrainRequest]:
        masks = self.masks()
        return [
            RetrainRequest(mask.nonzero()[:, 0], seed=self.seed * 1000 + s)
            for mask in masks
            for s in range(self.n_seeds)
        ]

    def compute(self, retrained: torch.Tensor | None = None) -> MetricResult:
        self.check_updated()
        outputs = check_retrained(retrained, self.n_subsets * self.n_seeds, self.name)
        positions = torch.cat(self.positions)
        per_seed = outputs[:, positions].reshape(self.n_subsets, self.n_seeds, -1)  # (m, s, n)
        sums = torch.cat(self.sums)  # (n, m)
        units = spearman_rows(sums, per_seed.mean(1).T).numpy()
        warn_undefined(self, units, "constant attribution sums or outputs")
        extras = {}
        if self.n_seeds >= 2:
            from dattr_eval.statistics import noise_ceiling

            extras["noise_ceiling"] = noise_ceiling(
                per_seed.permute(1, 0, 2).numpy(), seed=self.seed
            )
        return self.result(units, **extras)
