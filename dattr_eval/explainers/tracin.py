"""TracInCP (Pruthi et al. 2020): learning-rate-weighted gradient inner products over checkpoints."""

from __future__ import annotations

from collections.abc import Sequence

from dattr_eval.explainers import register
from dattr_eval.explainers.gradient_kernel import GradientKernelExplainer
from dattr_eval.explainers.gradients import Checkpoint, resolve_checkpoints
from dattr_eval.explainers.memory import TRACIN_MEMORY_BUDGET


@register("tracin")
class TracIn(GradientKernelExplainer):
    """TracInCP (Pruthi et al., NeurIPS 2020).

    With checkpoints ``theta_1..theta_T`` saved during training and their learning rates
    ``lr_t``,

        A[i, j] = sum_t lr_t * <grad_theta L(x_j, y_j; theta_t), grad_theta L(x_i, c_i; theta_t)>,

    ``L`` the per-sample ``loss`` (cross-entropy by default), ``c_i`` the explained class.
    Positive = a gradient step on ``x_j`` lowered the test loss (a proponent). With
    ``projection_dim`` the gradients are randomly projected first (inner products preserved in
    expectation). ``self_influence`` is ``sum_t lr_t ||grad L(x_j, y_j; theta_t)||^2``.

    Hyperparameters: ``checkpoints`` (state dicts, ``torch.save``'d paths or modules of the fitted
    model's architecture; ``None`` = the fitted model alone), ``learning_rates`` (one or one per
    checkpoint), ``loss`` (``"ce"``, ``"logit"``, ``"margin"`` or a callable, see
    :func:`~dattr_eval.explainers.gradients.per_sample_gradients`), ``params`` (parameter
    selection), ``projection_dim`` / ``projection_kind`` / ``seed`` (random projection),
    ``memory_budget`` (bytes, default ``memory.TRACIN_MEMORY_BUDGET`` = 128 MiB; see
    :mod:`~dattr_eval.explainers.gradient_kernel`).

    Cost: ``T`` per-sample-gradient passes over the training set at ``fit`` and ``T`` over each
    test batch; memory ``T x n_train x d`` for the stored training gradients (``d`` = parameter
    count, or ``projection_dim``) when that fits ``memory_budget``, else ``T`` passes over the
    training set per ``explain`` call in bounded blocks. ``explain_topk`` streams over training
    chunks. Fitted: see :class:`~dattr_eval.explainers.gradient_kernel.GradientKernelExplainer`
    (``weights_`` are the learning rates).
    """

    summary = "TracInCP: sum over checkpoints of lr * <grad loss(train), grad loss(test)>"
    citation = (
        "Pruthi et al., Estimating Training Data Influence by Tracing Gradient Descent, "
        "NeurIPS 2020"
    )

    def __init__(
        self,
        checkpoints: Sequence[Checkpoint] | None = None,
        learning_rates: float | Sequence[float] = 1.0,
        loss: str = "ce",
        params: str | Sequence[str] | None = None,
        projection_dim: int | None = None,
        projection_kind: str = "gaussian",
        seed: int = 0,
        batch_size: int = 64,
        memory_budget: int = TRACIN_MEMORY_BUDGET,
        device: str | None = None,
        progress: bool = False,
    ) -> None:
        self.checkpoints = checkpoints
        self.learning_rates = learning_rates
        self.loss = loss
        self.params = params
        self.projection_dim = projection_dim
        self.projection_kind = projection_kind
        self.seed = seed
        self.batch_size = batch_size
        self.memory_budget = memory_budget
        self.device = device
        self.progress = progress

    def _members(self) -> list[tuple[Checkpoint | None, float]]:
        return resolve_checkpoints(self.checkpoints, self.learning_rates)
