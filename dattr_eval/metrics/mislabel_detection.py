"""Mislabel detection: does ranking training samples by (self-)influence surface the flipped labels first?"""

from __future__ import annotations

import torch

from dattr_eval.contract import TopK
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics import register
from dattr_eval.metrics._common import index_mask
from dattr_eval.metrics._ranking import detection_curve
from dattr_eval.metrics.base import Metric, MetricResult
from dattr_eval.validation import check_choice, check_tensor


@register("mislabel_detection")
class MislabelDetection(Metric):
    """Area under the detection curve of flipped labels when training samples are ranked by a score.

    Ranking score ``s`` (descending), chosen by ``ranking``:

    - ``"self_influence"`` (default; DualView v2/v3, quanda): ``GroundTruth.self_influence`` ``(n_train,)``,
      the explainer's self-influence. Needs no attributions (``needs_attributions = False``).
    - ``"global"`` (DualView v1): accumulated from the attributions of all test points,
      ``s_i = Σ_x |A_i(x)| / max_j |A_j(x)|`` (rows whose max is 0 add nothing).

    Detection curve ``d_k = |flipped ∩ top-k(s)| / n_c`` for ``k = 1..N`` (``N = n_train``,
    ``n_c = n_flipped``); tied scores count at their expectation under a random order. The score is
    the normalised area

        ``(Σ_k d_k − (n_c+1)/2) / (N − n_c)``

    i.e. ``(AUC − AUC_min) / (AUC_max − AUC_min)`` with ``AUC = (1/N) Σ_k d_k``, ``AUC_max =
    ((n_c+1)/2 + N − n_c)/N`` (flipped all first) and ``AUC_min = (n_c+1)/(2N)`` (all last): 1 =
    perfect, 0 = inverted, exactly 0.5 in expectation for a random ranking (and for a constant one).

    ``extras``: ``raw_auc`` = quanda's ``trapezoid(d)/N`` (≈ 0.5 random, at most ≈ ``1 − n_c/(2N)``:
    not normalised); ``paper_normalised`` = the DualView v1 code's normalisation,
    which uses ``AUC_min = n_c/(2N)`` (so an inverted ranking gives ``≈ 1/(2N)``, not 0);
    ``curve`` (list of ``d_k``).

    Args:
        ranking: ``"self_influence"`` or ``"global"``.
    """

    summary = (
        "normalised area under the flipped-label detection curve of a (self-)influence ranking"
    )
    citation = "Koh & Liang, Understanding Black-box Predictions via Influence Functions, ICML 2017"
    category = "ground-truth"
    higher_is_better = True
    requires = ("mislabeled_indices", "self_influence")
    needs_attributions = False

    def __init__(self, ranking: str = "self_influence") -> None:
        self.ranking = check_choice(ranking, "ranking", ("self_influence", "global"))
        if ranking == "global":
            self.requires = ("mislabeled_indices",)
            self.needs_attributions = True
        super().__init__()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        super().reset()
        self._scores: torch.Tensor | None = None  # (n_train,) float64
        self._flipped: torch.Tensor | None = None  # (n_train,) bool

    def merge(self, other: MislabelDetection) -> MislabelDetection:
        super().merge(other)
        self._flipped = self._same(self._flipped, other._flipped, "mislabeled_indices")
        if self.ranking == "global":
            if self._scores is None or other._scores is None:
                self._scores = other._scores if self._scores is None else self._scores
            else:
                self._scores = self._scores + other._scores
        else:
            self._scores = self._same(self._scores, other._scores, "self_influence")
        return self

    @staticmethod
    def _same(
        mine: torch.Tensor | None, theirs: torch.Tensor | None, field: str
    ) -> torch.Tensor | None:
        if mine is None or theirs is None:
            return theirs if mine is None else mine
        if mine.shape != theirs.shape or not torch.equal(mine, theirs):
            raise ValueError(f"cannot merge: the two states were given different {field}")
        return mine

    # ------------------------------------------------------------------ update / compute
    def _update(self, attributions: torch.Tensor | TopK | None, truth: GroundTruth) -> None:
        if self.ranking == "self_influence":
            scores = check_tensor(
                truth.self_influence, "self_influence", ndim=1, floating=True, finite=True
            )
            scores = scores.detach().cpu().double()
            self._scores = self._same(self._scores, scores, "self_influence")
        else:
            mag = attributions.detach().abs().double()
            top = mag.max(dim=1, keepdim=True).values
            batch = (
                torch.where(top > 0, mag / top.clamp_min(torch.finfo(mag.dtype).tiny), 0.0)
                .sum(0)
                .cpu()
            )
            if self._scores is not None and self._scores.shape != batch.shape:
                raise ValueError(
                    f"attributions have n_train={batch.numel()}, earlier batches {self._scores.numel()}"
                )
            self._scores = batch if self._scores is None else self._scores + batch
        flipped = index_mask(truth.mislabeled_indices, self._scores.numel(), "mislabeled_indices")
        self._flipped = self._same(self._flipped, flipped, "mislabeled_indices")

    def compute(self) -> MetricResult:
        if self._scores is None:
            raise RuntimeError(f"metric {self.name!r}: compute() called before any update()")
        n, n_c = self._scores.numel(), int(self._flipped.sum())
        if not 0 < n_c < n:
            raise ValueError(
                f"mislabeled_indices must name between 1 and n_train-1={n - 1} samples, got {n_c}"
            )
        curve = detection_curve(self._scores, self._flipped)
        total = float(curve.sum())
        score = (total - (n_c + 1) / 2) / (n - n_c)
        raw_auc = float(torch.trapezoid(curve)) / n
        paper_min, paper_max = n_c / (2 * n), ((n_c + 1) / 2 + n - n_c) / n
        paper = (total / n - paper_min) / (paper_max - paper_min)
        return self._result(
            score, raw_auc=raw_auc, paper_normalised=paper, curve=curve.tolist(), n_flipped=n_c
        )
