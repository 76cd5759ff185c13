"""Data pruning: retrain on the training samples the attributions rank lowest, against random picks."""

from __future__ import annotations

from dattr_eval.metrics import register
from dattr_eval.metrics.coreset_selection import CoresetSelection


@register("data_pruning", aliases=("pruning",))
class DataPruning(CoresetSelection):
    """Test loss of models retrained on the *bottom*-ranked training samples, relative to random subsets.

    As ``coreset_selection`` (global ranking ``Σ_x |A_i(x)|``, tie orders, class-stratified subsets,
    the same random baseline, curve area over the fractions), but each model is trained on the
    lowest-ranked samples (the DualView code's ``neg_cum`` mode). Orientation: higher is better — if
    the attributions rank the useful samples on top, the samples left at the bottom teach the model
    less than random ones and its loss is higher than the baseline's. Unit: test point.

    Args:
        n_fractions: points of the curve.
        n_orders: tie-breaking orders and random baseline subsets per fraction.
        aggregate: ``"abs"`` or ``"signed"`` attribution sum for the global ranking.
        seed: seeds the tie orders, the random subsets and the retrained models.
    """

    summary = "test loss of models retrained on the bottom-ranked samples minus random subsets (higher = better)"
    higher_is_better = True
    keep = "bottom"
