"""Gradient similarity: dot product and cosine of per-sample gradients at the final model."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dattr_eval.explainers import register
from dattr_eval.explainers.gradient_kernel import GradientKernelExplainer
from dattr_eval.explainers.memory import DEFAULT_MEMORY_BUDGET


@register("grad_dot")
class GradDot(GradientKernelExplainer):
    """Dot product of per-sample gradients at the fitted model.

        A[i, j] = <grad_theta f(x_j, y_j), grad_theta f(x_i, c_i)>,

    ``f`` the per-sample ``loss``: by default the target's **logit**, as in the DualXDA
    experiments (Yolcu et al. 2025), or ``"ce"`` for the loss gradient (Charpiat et al. 2019),
    ``"margin"``, or a callable ``(logits, targets) -> (b,)``. ``c_i`` is the explained class
    (default: the prediction), ``y_j`` the training label. DualXDA projects the gradients to 128
    dimensions (``projection_dim=128``); the default here keeps them exact.
    ``self_influence`` is ``||grad f(x_j, y_j)||^2``.

    Cost: one per-sample-gradient pass over the training set at ``fit``, one per test batch;
    memory ``n_train x d`` (``d`` = parameter count, or ``projection_dim``) when that fits
    ``memory_budget``, else one training pass per ``explain`` call in bounded blocks (see
    :mod:`~dattr_eval.explainers.gradient_kernel`). ``explain_topk`` streams over training chunks
    (test gradients computed once per test batch).
    """

    summary = "dot product of per-sample gradients (logit by default)"
    citation = "Charpiat et al., Input Similarity from the Neural Network Perspective, NeurIPS 2019"

    def __init__(
        self,
        loss: str = "logit",
        params: str | Sequence[str] | None = None,
        projection_dim: int | None = None,
        projection_kind: str = "gaussian",
        seed: int = 0,
        batch_size: int = 64,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        device: str | None = None,
        progress: bool = False,
    ) -> None:
        self.loss = loss
        self.params = params
        self.projection_dim = projection_dim
        self.projection_kind = projection_kind
        self.seed = seed
        self.batch_size = batch_size
        self.memory_budget = memory_budget
        self.device = device
        self.progress = progress


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

    def _train_features(self, grads: torch.Tensor, member: int) -> torch.Tensor:
        """Unit rows, in place (``F.normalize``'s arithmetic: ``g / max(||g||, 1e-12)``)."""
        return grads.div_(grads.norm(dim=1, keepdim=True).clamp_min(1e-12))
