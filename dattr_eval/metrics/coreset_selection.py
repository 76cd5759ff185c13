"""Coreset selection: retrain on the training samples the attributions rank highest, against random picks."""

from __future__ import annotations

from typing import ClassVar

import torch

from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics import register
from dattr_eval.metrics._selection import (
    curve_area,
    fraction_grid,
    random_selection,
    selection_sizes,
    stratified_selection,
    tie_broken_orders,
)
from dattr_eval.metrics.base import (
    MetricResult,
    RetrainingMetric,
    RetrainRequest,
    check_retrained,
    same_value,
)
from dattr_eval.validation import check_choice, check_labels, check_positive, check_seed


@register("coreset_selection", aliases=("coreset",))
class CoresetSelection(RetrainingMetric):
    """Test loss of models retrained on the top-ranked training samples, relative to random subsets.

    Global ranking ``g_i = Σ_x |A_i(x)|`` over all test points (``aggregate="abs"``, the DualView
    v2/v3 ``BatchRetraining``) or ``Σ_x A_i(x)`` (``"signed"``), descending. The protocol measures
    the ranking, not its tie order or its class balance:

    - ties are broken by ``n_orders`` seeded random permutations and the losses averaged over them
      (a ranking without ties gives one order: identical requests are trained once);
    - selection is class-stratified: each class keeps its share of every subset;
    - for each fraction ``f`` of ``fraction_grid(n_fractions)`` the model is retrained on the
      ``round(f · N)`` selected samples, and on ``n_orders`` stratified random subsets of the same
      size (the baseline, shared by all explainers);
    - per test point, the loss ``−log p(target | x)`` of the ranking's models minus that of the random
      models, averaged over orders, is integrated over the fractions (``curve_area``).

    Score = mean over test points of that area: negative = the top-ranked samples teach the model
    more than random ones; lower is better. Unit: test point (the bootstrap resamples test points,
    so the random baseline is on the same units). ``extras``: ``baseline`` (the random subsets'
    mean loss area), ``ranking`` (the ranking's), ``fractions``, ``curve`` and ``baseline_curve``
    (mean loss per fraction). All models train with training seed ``seed``.

    Args:
        n_fractions: points of the curve (``metrics._selection.fraction_grid``: 0.05 to 0.5 of
            the training set; at 1.0 both protocols train on everything).
        n_orders: tie-breaking orders and random baseline subsets per fraction (>= 5 recommended).
        aggregate: ``"abs"`` or ``"signed"`` attribution sum for the global ranking.
        seed: seeds the tie orders, the random subsets and the retrained models.
    """

    summary = "test loss of models retrained on the top-ranked samples minus random subsets (lower = better)"
    citation = "Yolcu et al., DualView: Data Attribution from the Dual Perspective, 2024"
    higher_is_better = False
    requires = ("train_labels", "retrained_outputs")
    #: which end of the descending ranking is kept for retraining
    keep: ClassVar[str] = "top"

    def __init__(
        self, n_fractions: int = 10, n_orders: int = 5, aggregate: str = "abs", seed: int = 0
    ) -> None:
        self.n_fractions = check_positive(n_fractions, "n_fractions", integer=True)
        self.n_orders = check_positive(n_orders, "n_orders", integer=True)
        self.aggregate = check_choice(aggregate, "aggregate", ("abs", "signed"))
        self.seed = check_seed(seed, "seed")
        super().__init__()
        self.add_state("global_scores", default=None, reduce="sum")  # (n_train,) float64
        self.add_state("train_labels", default=None, reduce="same")

    def _update(self, attributions: torch.Tensor, truth: GroundTruth) -> None:
        a = attributions.detach().double()
        batch = (a.abs() if self.aggregate == "abs" else a).sum(0).cpu()
        if self.global_scores is not None and self.global_scores.shape != batch.shape:
            raise ValueError(
                f"attributions have n_train={batch.numel()}, earlier batches {self.global_scores.numel()}"
            )
        labels = check_labels(truth.train_labels, "train_labels", length=batch.numel()).cpu()
        self.train_labels = same_value(self.train_labels, labels, "train_labels")
        self.record_positions(truth, a.shape[0])
        self.global_scores = batch if self.global_scores is None else self.global_scores + batch

    def _sizes(self) -> list[int]:
        return selection_sizes(fraction_grid(self.n_fractions), self.train_labels.numel())

    def retrain_requests(self) -> list[RetrainRequest]:
        """``n_fractions × n_orders`` ranking subsets, then as many random subsets (fraction-major)."""
        self.check_updated()
        orders = tie_broken_orders(self.global_scores, self.n_orders, self.seed)
        ranked = [
            stratified_selection(order, self.train_labels, size, keep=self.keep)
            for size in self._sizes()
            for order in orders
        ]
        random = [
            random_selection(self.train_labels, size, seed=self.seed * 1000 + o, stratified=True)
            for size in self._sizes()
            for o in range(self.n_orders)
        ]
        return [RetrainRequest(indices, seed=self.seed) for indices in ranked + random]

    def compute(self, retrained: torch.Tensor | None = None) -> MetricResult:
        self.check_updated()
        n_curve = self.n_fractions * self.n_orders
        outputs = check_retrained(retrained, 2 * n_curve, self.name)
        positions = torch.cat(self.positions)
        loss = -outputs[:, positions].reshape(2, self.n_fractions, self.n_orders, -1).mean(2)
        ranking, baseline = loss[0].T, loss[1].T  # (n_test, n_fractions)
        fractions = fraction_grid(self.n_fractions)
        units = curve_area(fractions, ranking - baseline).numpy()  # (n_test,)
        return self.result(
            units,
            ranking=float(curve_area(fractions, ranking).mean()),
            baseline=float(curve_area(fractions, baseline).mean()),
            fractions=fractions.tolist(),
            curve=ranking.mean(0).tolist(),
            baseline_curve=baseline.mean(0).tolist(),
        )
