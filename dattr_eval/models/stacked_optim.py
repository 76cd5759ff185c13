"""SGD and Adam on stacked parameters ``(n_members, ...)``: ``torch.optim``'s updates, elementwise.

Each update repeats, operation for operation, the single-tensor (``foreach=False``) code path of
``torch.optim.SGD`` / ``torch.optim.Adam`` (the path PyTorch takes for CPU tensors), applied to
tensors that carry a leading member dimension. Every operation is elementwise, so member ``i`` of
the stacked update is bitwise the update ``torch.optim`` would make on member ``i`` alone, given
the same gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dattr_eval.validation import check_choice


class StackedSGD:
    """``torch.optim.SGD`` (momentum, L2 weight decay; no dampening, no Nesterov) on stacked tensors.

    Args:
        params: the stacked parameters, updated in place by ``step``.
    """

    def __init__(
        self, params: Sequence[Tensor], lr: float, momentum: float, weight_decay: float
    ) -> None:
        self.params = list(params)
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.momentum_buffers: list[Tensor | None] = [None] * len(self.params)

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        """One update from ``grads`` (same shapes as ``params``)."""
        for i, (param, grad) in enumerate(zip(self.params, grads)):
            if self.weight_decay != 0:
                grad = grad.add(param, alpha=self.weight_decay)
            if self.momentum != 0:
                buf = self.momentum_buffers[i]
                if buf is None:
                    buf = grad.detach().clone()
                    self.momentum_buffers[i] = buf
                else:
                    buf.mul_(self.momentum).add_(grad, alpha=1)
                grad = buf
            param.add_(grad, alpha=-self.lr)


class StackedAdam:
    """``torch.optim.Adam`` (L2 weight decay added to the gradient; no AMSGrad) on stacked tensors.

    Args:
        params: the stacked parameters, updated in place by ``step``.
        betas, eps: as in ``torch.optim.Adam`` (its defaults).
    """

    def __init__(
        self,
        params: Sequence[Tensor],
        lr: float,
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.lr = lr
        self.weight_decay = weight_decay
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.steps = 0
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        """One update from ``grads`` (same shapes as ``params``)."""
        self.steps += 1
        # torch keeps the step count in a float tensor and reads it back as a Python float
        step = float(self.steps)
        bias_correction1 = 1 - self.beta1**step
        bias_correction2 = 1 - self.beta2**step
        step_size = self.lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        for param, grad, exp_avg, exp_avg_sq in zip(
            self.params, grads, self.exp_avgs, self.exp_avg_sqs
        ):
            if self.weight_decay != 0:
                grad = grad.add(param, alpha=self.weight_decay)
            exp_avg.lerp_(grad, 1 - self.beta1)
            exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)


def stacked_optimizer(
    name: str, params: Sequence[Tensor], lr: float, momentum: float, weight_decay: float
) -> StackedSGD | StackedAdam:
    """The stacked counterpart of the optimizer ``TrainRecipe.optimizer`` names (``"sgd"``/``"adam"``)."""
    check_choice(name, "optimizer", ("sgd", "adam"))
    if name == "sgd":
        return StackedSGD(params, lr, momentum, weight_decay)
    return StackedAdam(params, lr, weight_decay)
