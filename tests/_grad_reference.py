"""Independent references for the gradient-based explainers: one autograd ``backward`` per sample."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def loop_gradients(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, output, names: list[str] | None = None
) -> torch.Tensor:
    """``(n, p)`` gradients of ``output(logits, y)`` per sample, one ``backward`` each (no torch.func)."""
    named = dict(model.named_parameters())
    names = names or list(named)
    rows = []
    for i in range(x.shape[0]):
        model.zero_grad()
        output(model(x[i : i + 1]), y[i : i + 1]).sum().backward()
        rows.append(torch.cat([named[n].grad.reshape(-1) for n in names]))
    model.zero_grad()
    return torch.stack(rows)


def hand_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``log(p_y / (1 - p_y))`` written from the softmax directly."""
    p = logits.softmax(1).gather(1, y[:, None]).squeeze(1)
    return torch.log(p / (1 - p))


OUTPUTS = {
    "ce": lambda z, y: F.cross_entropy(z, y, reduction="none"),
    "logit": lambda z, y: z.gather(1, y[:, None]).squeeze(1),
    "margin": hand_margin,
}


def tiny_mlp(seed: int = 0, hidden: int = 4, d_in: int = 64, n_classes: int = 10) -> nn.Sequential:
    """``Linear(d_in, hidden) - Tanh - Linear(hidden, n_classes)``, seeded, in eval mode."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, n_classes)).eval()


def perturbed(model: nn.Module, scale: float, seed: int) -> dict[str, torch.Tensor]:
    """A state dict of ``model`` with seeded Gaussian noise of ``scale`` added (a fake checkpoint)."""
    gen = torch.Generator().manual_seed(seed)
    return {
        k: v + scale * torch.randn(v.shape, generator=gen) for k, v in model.state_dict().items()
    }
