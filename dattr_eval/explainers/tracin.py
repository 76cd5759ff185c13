"""TracInCP (Pruthi et al. 2020): learning-rate-weighted gradient inner products over checkpoints."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.explainers import register
from dattr_eval.explainers.base import Explainer
from dattr_eval.explainers.gradients import (
    Checkpoint,
    Data,
    load_checkpoint,
    make_projector,
    per_sample_gradients,
    resolve_checkpoints,
)
from dattr_eval.validation import check_choice


@register("tracin")
class TracIn(Explainer):
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
    selection), ``projection_dim`` / ``projection_kind`` / ``seed`` (random projection).

    Cost: ``T`` per-sample-gradient passes over the training set at ``fit`` and ``T`` over each
    test batch; memory ``T x n_train x d`` for the stored training gradients (``d`` = parameter
    count, or ``projection_dim``).
    Fitted: ``train_grads_`` (list of ``T`` tensors ``(n_train, d)``), ``learning_rates_`` ``(T,)``.
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
        self.device = device
        self.progress = progress

    # ------------------------------------------------------------------ gradient features
    def _gradients(self, data: Data, state: dict[str, torch.Tensor] | None) -> torch.Tensor:
        """Per-sample gradients ``(n, d)`` at the weights ``state`` (``None``: the model's)."""
        return per_sample_gradients(
            self.model_,
            data,
            loss=self.loss,
            params=self.params,
            projector=self.projector_,
            state_dict=state,
            batch_size=self.batch_size,
            device=self.device_,
            progress=self.progress,
        )

    def _features(self, grads: torch.Tensor) -> torch.Tensor:
        """The vectors whose inner products are the attributions (subclasses normalise here)."""
        return grads

    # ------------------------------------------------------------------ explainer hooks
    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        check_choice(self.projection_kind, "projection_kind", ("gaussian", "rademacher"))
        pairs = resolve_checkpoints(self.checkpoints, self.learning_rates)
        self.projector_ = make_projector(
            model, self.params, self.projection_dim, self.projection_kind, self.seed
        )
        self.states_ = [None if c is None else load_checkpoint(c) for c, _ in pairs]
        self.learning_rates_ = torch.tensor([lr for _, lr in pairs])
        self.train_grads_ = [
            self._features(self._gradients(train_dataset, state)) for state in self.states_
        ]

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(inputs.shape[0], self.n_train_, device=self.device_)
        for state, lr, train in zip(self.states_, self.learning_rates_, self.train_grads_):
            test = self._features(self._gradients((inputs, targets), state))
            scores += float(lr) * (test @ train.T)
        return scores

    def _self_influence(self) -> torch.Tensor:
        return sum(
            float(lr) * (g * g).sum(1) for lr, g in zip(self.learning_rates_, self.train_grads_)
        )
