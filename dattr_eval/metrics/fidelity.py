"""Fidelity: do the attributions predict what retraining without (or with only some) samples does?"""

from __future__ import annotations

from typing import Any

import torch

from dattr_eval.contract import TopK, check_attributions, topk
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics import register
from dattr_eval.metrics._common import (
    batch_positions,
    check_mergeable_positions,
    finite_mean_result,
    retrained_outputs,
)
from dattr_eval.metrics._ranking import spearman_rows
from dattr_eval.metrics.base import Metric, MetricResult
from dattr_eval.validation import check_choice, check_positive, check_tensor


@register("fidelity", aliases=("lds",))
class Fidelity(Metric):
    """Retraining-based faithfulness: linear datamodeling score (default) or leave-top-k-out.

    ``mode="lds"`` (Park et al. 2023; the DualView v2/v3 protocol). Ground truth from the evaluator:
    ``subset_masks`` ``(m, n_train)`` bool, the training subsets of ``m`` retrained models, and
    ``subset_outputs`` ``(m, b)``, each retrained model's output on the batch's test points (the
    evaluator uses the target's log-softmax as in the DualView paper; quanda uses the margin
    ``z_y − logsumexp(z_≠y)``). Per test point ``x``: Spearman correlation over the ``m`` subsets
    ``S`` between ``Σ_{i∈S} A_i(x)`` and the output of the model trained on ``S``. Score = mean
    (in ``[−1, 1]``; 0 = no relation). A constant row is left out with a warning.

    ``mode="leave_k_out"``: uses ``retrain_fn`` (see ``GroundTruth.retrain_fn``: train indices ->
    ``(n_test,)`` target log-probabilities on the whole test set) and ``test_positions`` (else
    batches are taken to arrive in order). Per test point ``x``: retrain without its ``top_k``
    highest-attributed samples (ties to the lower index) and without ``top_k`` random samples (one
    seeded set shared by all test points); score ``= out_random(x) − out_top(x)``, the drop of the
    target log-probability beyond that of removing random samples (higher = the top samples
    matter more; ≈ 0 for random attributions). Calls ``retrain_fn`` ``n_test + 2`` times at most
    (repeated index sets are asked once per metric instance). ``extras``: mean ``drop_top`` and
    ``drop_random`` relative to the model retrained on all samples. Accepts ``TopK``.

    Args:
        mode: ``"lds"`` or ``"leave_k_out"``.
        top_k: samples removed per test point (leave-k-out only).
        seed: seed of the random removal set (leave-k-out only).
    """

    summary = (
        "linear datamodeling score over retrained subset models (or leave-top-k-out retraining)"
    )
    citation = "Park et al., TRAK: Attributing Model Behavior at Scale, ICML 2023"
    category = "retraining"
    higher_is_better = True
    requires = ("subset_masks", "subset_outputs")

    def __init__(self, mode: str = "lds", top_k: int = 10, seed: int = 0) -> None:
        self.mode = check_choice(mode, "mode", ("lds", "leave_k_out"))
        self.top_k = check_positive(top_k, "top_k", integer=True)
        self.seed = seed
        if mode == "leave_k_out":
            self.requires = ("retrain_fn",)
            self.accepts_topk = True
            self.top_k_needed = top_k
        super().__init__()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        super().reset()
        self._drops: list[torch.Tensor] = []  # (b, 2): drop_top, drop_random per test point
        self._explicit: list[bool] = []
        self._n_seen = 0
        self._outputs: dict[tuple[int, ...], torch.Tensor] = {}  # removed set -> (n_test,) outputs

    def merge(self, other: Fidelity) -> Fidelity:
        if self.mode == "leave_k_out":
            check_mergeable_positions(self._explicit + other._explicit, self.name)
        super().merge(other)
        self._drops.extend(other._drops)
        self._explicit.extend(other._explicit)
        self._n_seen += other._n_seen
        self._outputs.update(other._outputs)
        return self

    # ------------------------------------------------------------------ update / compute
    def score_batch(self, attributions: torch.Tensor | TopK, truth: GroundTruth) -> torch.Tensor:
        if self.mode == "lds":
            return self._lds(attributions, truth)
        return self._leave_k_out(attributions, truth)

    def _lds(self, attributions: torch.Tensor, truth: GroundTruth) -> torch.Tensor:
        b, n_train = attributions.shape
        masks = check_tensor(truth.subset_masks, "subset_masks", ndim=2)
        if masks.shape[1] != n_train:
            raise ValueError(
                f"subset_masks must have shape (m, n_train={n_train}), got {tuple(masks.shape)}"
            )
        m = masks.shape[0]
        if m < 3:
            raise ValueError(
                f"subset_masks holds m={m} subsets; a rank correlation needs at least 3"
            )
        outputs = check_attributions(truth.subset_outputs, m, b, name="subset_outputs (m, b)")
        a = attributions.detach().double()
        sums = a @ masks.to(a.device).double().T  # (b, m)
        return spearman_rows(sums, outputs.detach().to(a.device).double().T)

    def _leave_k_out(self, attributions: torch.Tensor | TopK, truth: GroundTruth) -> torch.Tensor:
        n_train = attributions.shape[1] if isinstance(attributions, torch.Tensor) else truth.n_train
        if n_train is None:
            raise ValueError(
                "leave_k_out with TopK attributions needs train_labels in the ground truth (for n_train)"
            )
        if self.top_k >= n_train:
            raise ValueError(f"top_k={self.top_k} must be < n_train={n_train}")
        top = topk(attributions, self.top_k).indices.cpu()  # (b, k)
        positions, explicit = batch_positions(truth, top.shape[0], self._n_seen)
        self._explicit.append(explicit)
        self._n_seen += top.shape[0]
        gen = torch.Generator().manual_seed(self.seed)
        random_removed = torch.randperm(n_train, generator=gen)[: self.top_k]
        full = self._retrained(truth, torch.empty(0, dtype=torch.long), n_train)[positions]
        out_random = self._retrained(truth, random_removed, n_train)[positions]
        out_top = torch.stack(
            [self._retrained(truth, row, n_train)[p] for row, p in zip(top, positions)]
        )
        self._drops.append(torch.stack([full - out_top, full - out_random], dim=1))
        return out_random - out_top

    def _retrained(self, truth: GroundTruth, removed: torch.Tensor, n_train: int) -> torch.Tensor:
        key = tuple(sorted(removed.tolist()))
        if key not in self._outputs:
            keep = torch.ones(n_train, dtype=torch.bool)
            keep[removed] = False
            self._outputs[key] = retrained_outputs(truth, keep.nonzero()[:, 0])
        return self._outputs[key]

    def compute(self) -> MetricResult:
        if not self._per_sample:
            raise RuntimeError(f"metric {self.name!r}: compute() called before any update()")
        per_sample = torch.cat(self._per_sample).double()
        extras: dict[str, Any] = {}
        if self.mode == "leave_k_out":
            drops = torch.cat(self._drops)
            extras = {
                "drop_top": float(drops[:, 0].mean()),
                "drop_random": float(drops[:, 1].mean()),
            }
        return finite_mean_result(
            self, per_sample, "constant attribution sums or outputs", **extras
        )
