"""Coreset selection: retrain on the training samples the attributions rank highest."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch

from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics import register
from dattr_eval.metrics._common import batch_positions, check_mergeable_positions, retrained_outputs
from dattr_eval.metrics._ranking import descending_order
from dattr_eval.metrics.base import Metric, MetricResult
from dattr_eval.validation import check_choice, check_positive


@register("coreset_selection", aliases=("coreset",))
class CoresetSelection(Metric):
    """Mean test loss of models retrained on the top-ranked ``j/n_steps`` of the training set.

    Global ranking ``g_i = Σ_x |A_i(x)|`` over all test points (``aggregate="abs"``, the DualView
    v2/v3 ``BatchRetraining``) or ``Σ_x A_i(x)`` (``"signed"``), descending; ties to the lower
    index. For ``j = 1..n_steps``: retrain (``retrain_fn``) on the ``round(j·N/n_steps)``
    top-ranked samples and take the test loss ``−mean_x log p(target_x | x)`` over the test points
    seen (``test_positions``; else batches in order) — the cross-entropy against the original
    model's predictions when targets are predictions. Score = mean loss over the ``n_steps``
    models; lower is better (a good ranking puts the useful samples first). ``extras``: ``sizes``
    and ``losses`` per step. ``retrain_fn`` is called ``n_steps`` times, in ``compute``.

    Args:
        n_steps: number of subset sizes (the paper's 10).
        aggregate: ``"abs"`` or ``"signed"`` attribution sum for the global ranking.
    """

    summary = "mean test loss of models retrained on the top-ranked j/10 of the training data (lower = better)"
    citation = "Yolcu et al., DualView: Data Attribution from the Dual Perspective, 2024"
    category = "retraining"
    higher_is_better = False
    requires = ("retrain_fn",)
    #: which end of the descending ranking is kept for retraining
    keep: ClassVar[str] = "top"

    def __init__(self, n_steps: int = 10, aggregate: str = "abs") -> None:
        self.n_steps = check_positive(n_steps, "n_steps", integer=True)
        self.aggregate = check_choice(aggregate, "aggregate", ("abs", "signed"))
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self._global: torch.Tensor | None = None  # (n_train,) float64
        self._positions: list[torch.Tensor] = []
        self._explicit: list[bool] = []
        self._retrain_fn: Callable | None = None

    def merge(self, other: CoresetSelection) -> CoresetSelection:
        check_mergeable_positions(self._explicit + other._explicit, self.name)
        super().merge(other)
        if other._global is not None:
            self._global = (
                other._global.clone() if self._global is None else self._global + other._global
            )
        self._positions.extend(other._positions)
        self._explicit.extend(other._explicit)
        self._retrain_fn = self._retrain_fn or other._retrain_fn
        return self

    def _update(self, attributions: torch.Tensor, truth: GroundTruth) -> None:
        a = attributions.detach().double()
        batch = (a.abs() if self.aggregate == "abs" else a).sum(0).cpu()
        if self._global is not None and self._global.shape != batch.shape:
            raise ValueError(
                f"attributions have n_train={batch.numel()}, earlier batches {self._global.numel()}"
            )
        n_seen = sum(p.numel() for p in self._positions)
        positions, explicit = batch_positions(truth, a.shape[0], n_seen)
        self._global = batch if self._global is None else self._global + batch
        self._positions.append(positions)
        self._explicit.append(explicit)
        self._retrain_fn = truth.retrain_fn

    def compute(self) -> MetricResult:
        if self._global is None:
            raise RuntimeError(f"metric {self.name!r}: compute() called before any update()")
        n = self._global.numel()
        order = descending_order(self._global)
        positions = torch.cat(self._positions)
        truth = GroundTruth(retrain_fn=self._retrain_fn)
        sizes, losses = [], []
        for j in range(1, self.n_steps + 1):
            size = max(1, round(j * n / self.n_steps))
            chosen = order[:size] if self.keep == "top" else order[n - size :]
            losses.append(float(-retrained_outputs(truth, chosen)[positions].mean()))
            sizes.append(size)
        return self._result(sum(losses) / len(losses), sizes=sizes, losses=losses)
