"""Data pruning: retrain on the training samples the attributions rank lowest."""

from __future__ import annotations

from dattr_eval.metrics import register
from dattr_eval.metrics.coreset_selection import CoresetSelection


@register("data_pruning", aliases=("pruning",))
class DataPruning(CoresetSelection):
    """Mean test loss of models retrained on the *bottom*-ranked ``j/n_steps`` of the training set.

    As ``coreset_selection`` (global ranking ``Σ_x |A_i(x)|``, ``retrain_fn``, loss
    ``−mean log p(target)``), but each model is trained on the ``round(j·N/n_steps)`` lowest-ranked
    samples (the DualView code's ``neg_cum`` mode). Orientation: higher is better — if the
    attributions rank the useful samples on top, the samples left at the bottom teach the model
    little and its loss is high. (The paper's code does not state it; this follows from the
    definition.) The last step (``j = n_steps``) trains on all samples in both metrics.

    Args:
        n_steps: number of subset sizes (the paper's 10).
        aggregate: ``"abs"`` or ``"signed"`` attribution sum for the global ranking.
    """

    summary = "mean test loss of models retrained on the bottom-ranked j/10 of the training data (higher = better)"
    higher_is_better = True
    keep = "bottom"
