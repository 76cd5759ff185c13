"""Gradient similarity: dot product and cosine of per-sample gradients at the final model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dattr_eval.explainers import register
from dattr_eval.explainers.base import ColumnScorer
from dattr_eval.explainers.tracin import TracIn


@register("grad_dot")
class GradDot(TracIn):
    """Dot product of per-sample gradients at the fitted model (TracIn with one checkpoint, lr 1).

        A[i, j] = <grad_theta f(x_j, y_j), grad_theta f(x_i, c_i)>,

    ``f`` the per-sample ``loss``: by default the target's **logit**, as in the DualXDA
    experiments (Yolcu et al. 2025), or ``"ce"`` for the loss gradient (Charpiat et al. 2019),
    ``"margin"``, or a callable ``(logits, targets) -> (b,)``. ``c_i`` is the explained class
    (default: the prediction), ``y_j`` the training label. DualXDA projects the gradients to 128
    dimensions (``projection_dim=128``); the default here keeps them exact.
    ``self_influence`` is ``||grad f(x_j, y_j)||^2``.

    Cost: one per-sample-gradient pass over the training set at ``fit``, one per test batch;
    memory ``n_train x d`` (``d`` = parameter count, or ``projection_dim``). ``explain_topk``
    streams over training chunks (test gradients computed once per test batch).
    Fitted: ``train_grads_`` (a one-element list of ``(n_train, d)``).
    """

    summary = "dot product of per-sample gradients (logit by default)"
    citation = "Charpiat et al., Input Similarity from the Neural Network Perspective, NeurIPS 2019"

    #: gradient similarity uses the fitted model only
    checkpoints = None
    learning_rates = 1.0

    def __init__(
        self,
        loss: str = "logit",
        params: str | Sequence[str] | None = None,
        projection_dim: int | None = None,
        projection_kind: str = "gaussian",
        seed: int = 0,
        batch_size: int = 64,
        device: str | None = None,
        progress: bool = False,
    ) -> None:
        self.loss = loss
        self.params = params
        self.projection_dim = projection_dim
        self.projection_kind = projection_kind
        self.seed = seed
        self.batch_size = batch_size
        self.device = device
        self.progress = progress

    def _column_scorer(self, inputs: torch.Tensor, targets: torch.Tensor) -> ColumnScorer:
        """Columns ``start..stop-1``: ``sum_t lr_t * test_t @ train_t[start:stop].T``, ``(b, stop - start)``."""
        terms = [
            (float(lr), self._features(self._gradients((inputs, targets), state)), train)
            for state, lr, train in zip(self.states_, self.learning_rates_, self.train_grads_)
        ]

        def score(start: int, stop: int) -> torch.Tensor:
            out = torch.zeros(inputs.shape[0], stop - start, device=self.device_)
            for lr, test, train in terms:
                out += lr * (test @ train[start:stop].T)
            return out

        return ColumnScorer(score, self.n_train_)


@register("grad_cos")
class GradCos(GradDot):
    """Cosine of per-sample gradients at the fitted model.

        A[i, j] = cos(grad_theta f(x_j, y_j), grad_theta f(x_i, c_i)),

    with ``f`` as in ``grad_dot`` (the logit by default, as in DualXDA). A zero gradient has
    cosine 0 with everything. ``self_influence`` is 1 for every sample with a nonzero gradient
    (0 otherwise) and therefore carries no ranking information.

    Cost: as ``grad_dot``.
    """

    summary = "cosine similarity of per-sample gradients (logit by default)"

    def _features(self, grads: torch.Tensor) -> torch.Tensor:
        return F.normalize(grads, dim=1)
