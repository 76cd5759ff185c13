"""Model randomisation: attributions should change when the model's weights are randomised."""

from __future__ import annotations

import torch

from dattr_eval.contract import check_attributions
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics import register
from dattr_eval.metrics._common import warn_undefined
from dattr_eval.metrics.base import Metric, MetricResult
from dattr_eval.ranking import spearman_rows


@register("model_randomization")
class ModelRandomization(Metric):
    """Mean Spearman correlation between the attributions of the trained and of a randomised model.

    Per test point: Spearman rank correlation (ties share their mean rank) over the ``n_train``
    entries of ``A(x)`` and ``randomized_attributions(x)`` — the same explainer fitted on a copy of
    the model with re-initialised weights, provided by the evaluator. Score = mean; lower is better
    (a method that ignores the model keeps ~1). A sanity check: it passes below
    ``sanity_threshold``; it does not rank quality (a random explainer fails it by construction,
    noise scores near 0 pass). A constant row has no rank correlation: it is left out with a
    warning (NaN unit). Unit: test point.
    """

    summary = "Spearman correlation with a randomised model's attributions (lower is better)"
    citation = "Hanawa et al., Evaluation of Similarity-based Explanations, ICLR 2021"
    category = "sanity"
    higher_is_better = False
    requires = ("randomized_attributions",)
    #: passes when the attributions keep less than half their rank order under randomisation
    sanity_threshold = 0.5

    def __init__(self) -> None:
        super().__init__()

    def score_batch(self, attributions: torch.Tensor, truth: GroundTruth) -> torch.Tensor:
        randomized = check_attributions(
            truth.randomized_attributions, *attributions.shape, name="randomized_attributions"
        )
        # ranks of the scores as given (float32): the same as of a float64 copy, sorted faster
        return spearman_rows(attributions.detach(), randomized.detach().to(attributions.device))

    def compute(self) -> MetricResult:
        result = super().compute()
        warn_undefined(self, result.units, "constant attribution row")
        return result
