"""Feature similarity: dot product or cosine of penultimate features (a class-blind baseline)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from dattr_eval.explainers import register
from dattr_eval.explainers.base import ColumnScorer, Explainer
from dattr_eval.explainers.features import extract_features
from dattr_eval.explainers.memory import block_bytes, feature_shape, sample_batch
from dattr_eval.validation import check_choice

METRICS = ("cos", "dot")


@register("feature_similarity")
class FeatureSimilarity(Explainer):
    """Similarity of penultimate features (the input of the classifier layer, or of ``layer``).

    ``A[i, j] = <phi(x_i), phi(x_j)>`` (``metric="dot"``) or the cosine of the two
    (``metric="cos"``; a zero feature vector has cosine 0 with everything). The explained class
    does not enter: every target gets the same row. ``self_influence`` is ``||phi_j||^2`` (dot)
    or 1 (cos; 0 for a zero feature vector), the diagonal in closed form.

    Cost: one forward pass over the training set at ``fit``; one forward pass and an
    ``(n_test, d) x (d, n_train)`` product per ``explain``. Memory: ``n_train x d``.
    ``explain_topk`` streams over training chunks.
    Fitted: ``features_ (n_train, d)`` (unit rows for ``cos``).
    """

    summary = "dot product or cosine of penultimate features"
    citation = "Hanawa et al., Evaluation of Similarity-based Explanations, ICLR 2021"

    def __init__(
        self,
        metric: str = "cos",
        layer: str | None = None,
        batch_size: int = 256,
        device: str | None = None,
    ) -> None:
        self.metric = metric
        self.layer = layer
        self.batch_size = batch_size
        self.device = device

    def _features(self, model: nn.Module, dataset: Dataset, parallel: bool = False) -> torch.Tensor:
        phi, _ = extract_features(
            model,
            dataset,
            layer=self.layer,
            batch_size=self.batch_size,
            device=self.device_,
            parallel=parallel,
        )
        return F.normalize(phi, dim=1) if self.metric == "cos" else phi

    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        check_choice(self.metric, "metric", METRICS)
        self.features_ = self._features(model, train_dataset, parallel=True)

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self._column_scorer(inputs, targets).score(0, self.n_train_)

    def _column_scorer(self, inputs: torch.Tensor, targets: torch.Tensor) -> ColumnScorer:
        """Columns ``start..stop-1``: ``phi(inputs) @ features_[start:stop].T``, ``(b, stop - start)``."""
        phi = self._features(self.model_, TensorDataset(inputs, targets))
        return ColumnScorer(lambda start, stop: phi @ self.features_[start:stop].T, self.n_train_)

    def _self_influence(self) -> torch.Tensor:
        return (self.features_ * self.features_).sum(1)

    def estimate_memory(
        self, model: nn.Module, train_dataset: Dataset, n_test: int, batch_size: int
    ) -> int:
        """Estimated peak extra bytes: the features ``n_train x d`` (gathered then concatenated,
        and normalised for ``cos``: three copies at most) and the ``(b, n_train)`` scores."""
        n, b = len(train_dataset), min(batch_size, max(1, n_test))
        d, k = feature_shape(model, sample_batch(train_dataset), self.layer)
        return int(3 * block_bytes(n, d) + 2 * block_bytes(n, k) + 2 * block_bytes(b, n))
