"""Mislabel detection: does ranking training samples by (self-)influence surface the flipped labels first?"""

from __future__ import annotations

import numpy as np
import torch

from dattr_eval.contract import TopK
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics import register
from dattr_eval.metrics._common import index_mask
from dattr_eval.metrics.base import Metric, MetricResult, same_value
from dattr_eval.ranking import detection_curve
from dattr_eval.validation import check_tensor


def normalised_detection_auc(units: np.ndarray) -> float:
    """Normalised area under the flipped-label detection curve of ``units`` ``(n, 2)``.

    Column 0: ranking score (descending = most suspicious first); column 1: 1 for a flipped label.
    ``(Σ_k d_k − (n_c+1)/2) / (n − n_c)`` with ``d_k`` the share of flipped samples in the top k
    (ties at their expectation): 1 = perfect, 0 = inverted, 0.5 expected for random. NaN when no
    or every sample is flipped.
    """
    n = int(units.shape[0])
    flipped = units[:, 1] > 0.5
    n_c = int(flipped.sum())
    if not 0 < n_c < n:
        return float("nan")
    curve = detection_curve(torch.from_numpy(units[:, 0]), torch.from_numpy(flipped))
    return (float(curve.sum()) - (n_c + 1) / 2) / (n - n_c)


class _MislabelScoring(Metric):
    """Shared scoring of the two mislabel-detection metrics (units, statistic, extras)."""

    category = "ground-truth"
    higher_is_better = True
    unit = "training point"

    def __init__(self) -> None:
        super().__init__()
        self.add_state("flipped", default=None, reduce="same")

    def _record_flipped(self, truth: GroundTruth, n_train: int) -> None:
        mask = index_mask(truth.mislabeled_indices, n_train, "mislabeled_indices")
        self.flipped = same_value(self.flipped, mask, "mislabeled_indices")

    def ranking_scores(self) -> torch.Tensor:
        """``(n_train,)`` float64 ranking scores (descending = most suspicious first)."""
        raise NotImplementedError

    def compute(self) -> MetricResult:
        self.check_updated()
        scores = self.ranking_scores()
        n, n_c = scores.numel(), int(self.flipped.sum())
        if not 0 < n_c < n:
            raise ValueError(
                f"mislabeled_indices must name between 1 and n_train-1={n - 1} samples, got {n_c}"
            )
        units = np.stack([scores.numpy(), self.flipped.double().numpy()], axis=1)
        curve = detection_curve(scores, self.flipped)
        total = float(curve.sum())
        raw_auc = float(torch.trapezoid(curve)) / n
        paper_min, paper_max = n_c / (2 * n), ((n_c + 1) / 2 + n - n_c) / n
        paper = (total / n - paper_min) / (paper_max - paper_min)
        return self.result(
            units,
            raw_auc=raw_auc,
            paper_normalised=paper,
            curve=curve.tolist(),
            n_flipped=n_c,
        )

    @staticmethod
    def statistic(units: np.ndarray) -> float:
        """Normalised detection AUC of ``(n, 2)`` units ``[score, flipped]`` (see module)."""
        return normalised_detection_auc(units)


@register("mislabel_detection")
class MislabelDetection(_MislabelScoring):
    """Area under the detection curve of flipped labels when training samples are ranked by self-influence.

    Ranking score ``s``: ``GroundTruth.self_influence`` ``(n_train,)`` (the explainer's
    self-influence, DualView v2/v3 and quanda), descending. Needs no attributions.

    Detection curve ``d_k = |flipped ∩ top-k(s)| / n_c`` for ``k = 1..N`` (``N = n_train``,
    ``n_c = n_flipped``); tied scores count at their expectation under a random order. The score is
    the normalised area ``(Σ_k d_k − (n_c+1)/2) / (N − n_c)``, i.e. ``(AUC − AUC_min) / (AUC_max −
    AUC_min)`` with ``AUC = (1/N) Σ_k d_k``: 1 = perfect, 0 = inverted, exactly 0.5 in expectation
    for a random ranking (and for a constant one).

    Unit: training point (``units`` rows ``[score, flipped]``; the bootstrap resamples training
    points and recomputes the normalised area). ``extras``: ``raw_auc`` = quanda's
    ``trapezoid(d)/N`` (not normalised); ``paper_normalised`` = the DualView v1 code's
    normalisation (``AUC_min = n_c/(2N)``); ``curve``; ``n_flipped``.
    """

    summary = "normalised area under the flipped-label detection curve of a self-influence ranking"
    citation = "Koh & Liang, Understanding Black-box Predictions via Influence Functions, ICML 2017"
    requires = ("mislabeled_indices", "self_influence")
    needs_attributions = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("scores", default=None, reduce="same")

    def _update(self, attributions: None, truth: GroundTruth) -> None:
        scores = check_tensor(
            truth.self_influence, "self_influence", ndim=1, floating=True, finite=True
        )
        self.scores = same_value(self.scores, scores.detach().cpu().double(), "self_influence")
        self._record_flipped(truth, self.scores.numel())

    def ranking_scores(self) -> torch.Tensor:
        return self.scores


@register("mislabel_detection_global")
class MislabelDetectionGlobal(_MislabelScoring):
    """Mislabel detection with a ranking accumulated from the test points' attributions (DualView v1).

    ``s_i = Σ_x |A_i(x)| / max_j |A_j(x)|`` over all test points (rows whose max is 0 add nothing),
    then the same normalised detection area as ``mislabel_detection``. Unit: training point.
    """

    summary = "normalised flipped-label detection area of a ranking summed over test attributions"
    citation = "Yolcu et al., DualView: Data Attribution from the Dual Perspective, 2024 (v1)"
    requires = ("mislabeled_indices",)

    def __init__(self) -> None:
        super().__init__()
        self.add_state("scores", default=None, reduce="sum")

    def _update(self, attributions: torch.Tensor | TopK, truth: GroundTruth) -> None:
        mag = attributions.detach().abs().double()
        top = mag.max(dim=1, keepdim=True).values
        tiny = torch.finfo(mag.dtype).tiny
        batch = torch.where(top > 0, mag / top.clamp_min(tiny), 0.0).sum(0).cpu()
        if self.scores is not None and self.scores.shape != batch.shape:
            raise ValueError(
                f"attributions have n_train={batch.numel()}, earlier batches {self.scores.numel()}"
            )
        self.scores = batch if self.scores is None else self.scores + batch
        self._record_flipped(truth, batch.numel())

    def ranking_scores(self) -> torch.Tensor:
        return self.scores
