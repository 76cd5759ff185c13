"""Per-sample gradients of ``nn.Linear`` / ``nn.Conv2d`` layers from their inputs and output gradients.

For such a layer with input ``a`` and output ``z = W a (+ b)``, the gradient of a per-sample
output ``f`` with respect to ``W`` is ``sum_t s_t a_t^T``, ``s = df/dz``, ``t`` running over
the positions sharing the weight (a convolution's output positions, with ``a_t`` the unfolded
input patch; a sequence's tokens for a linear layer); that of ``b`` is ``sum_t s_t``. One forward
pass with hooks and one backward pass of ``sum_i f_i`` give every sample's ``s`` at once
(samples of an eval-mode batch are independent), so the per-sample gradients need no
``torch.func`` transform. Shared by the gradient engine (``gradients.py``) and K-FAC
(``kfac.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED = (nn.Linear, nn.Conv2d)


@dataclass(frozen=True)
class HookedLayer:
    """A supported layer and the names of its selected parameters (``bias`` may be ``None``)."""

    name: str
    module: nn.Module
    weight: str
    bias: str | None


def supported_conv(module: nn.Module) -> bool:
    """Whether a convolution unfolds plainly: ``groups=1``, zero padding given as numbers."""
    return (
        module.groups == 1
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    )


def hooked_layers(model: nn.Module, names: Sequence[str]) -> list[HookedLayer] | None:
    """The Linear / Conv2d layers holding exactly the parameters ``names``; ``None`` if any is elsewhere.

    ``None`` also when a chosen bias comes without its weight, a convolution is grouped or
    padded otherwise than with zeros, or a module works in place (``inplace=True`` would
    overwrite a captured layer output): those take the ``torch.func`` path.
    """
    if any(getattr(m, "inplace", False) for m in model.modules()):
        return None
    chosen, covered, layers = set(names), set(), []
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        weight, bias = f"{prefix}weight", f"{prefix}bias"
        if not isinstance(module, SUPPORTED) or weight not in chosen:
            continue
        if isinstance(module, nn.Conv2d) and not supported_conv(module):
            return None
        has_bias = module.bias is not None and bias in chosen
        layers.append(HookedLayer(module_name, module, weight, bias if has_bias else None))
        covered.update({weight, bias} if has_bias else {weight})
    return layers if covered == chosen else None


def layer_inputs(module: nn.Module, x: torch.Tensor, with_bias: bool) -> torch.Tensor:
    """The layer's input as ``(b, T, d_in')``: unfolded patches for a convolution, 1 appended for a bias."""
    if isinstance(module, nn.Conv2d):
        x = F.unfold(
            x,
            module.kernel_size,
            dilation=module.dilation,
            padding=module.padding,
            stride=module.stride,
        )
        x = x.transpose(1, 2)  # (b, T, c_in * k1 * k2), the order of weight.reshape(d_out, -1)
    else:
        x = x.reshape(x.shape[0], -1, x.shape[-1])
    if with_bias:
        x = torch.cat([x, x.new_ones(*x.shape[:2], 1)], 2)
    return x


def output_grads(module: nn.Module, g: torch.Tensor) -> torch.Tensor:
    """Gradient with respect to the layer's output as ``(b, T, d_out)``."""
    if isinstance(module, nn.Conv2d):
        return g.flatten(2).transpose(1, 2)
    return g.reshape(g.shape[0], -1, g.shape[-1])


def layer_gradients(
    model: nn.Module,
    layers: Sequence[HookedLayer],
    weights: Mapping[str, torch.Tensor] | None,
    output: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Per-sample gradients ``{name: (b, numel)}`` of ``output(logits) (b,)`` for the layers' parameters.

    ``weights``: every parameter and buffer to run the model with (``functional_call``), or
    ``None`` for the model's own. A layer called several times in one forward pass sums its
    contributions.
    """
    captured: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {lay.name: [] for lay in layers}

    def hook(name: str):
        def save(_module, args, out):
            captured[name].append((args[0].detach(), out))

        return save

    handles = [lay.module.register_forward_hook(hook(lay.name)) for lay in layers]
    try:
        with torch.enable_grad():
            if weights is None:
                logits = model(x)
            else:
                logits = torch.func.functional_call(model, dict(weights), (x,))
            outs = [out for lay in layers for _, out in captured[lay.name]]
            grads = iter(torch.autograd.grad(output(logits).sum(), outs))
    finally:
        for h in handles:
            h.remove()
    result: dict[str, torch.Tensor] = {}
    for lay in layers:
        gw, gb = 0, 0
        for inp, _ in captured[lay.name]:
            s = output_grads(lay.module, next(grads))
            a = layer_inputs(lay.module, inp, with_bias=False)
            gw = gw + torch.einsum("bto,bti->boi", s, a)
            if lay.bias is not None:
                gb = gb + s.sum(1)
        result[lay.weight] = gw.reshape(x.shape[0], -1)
        if lay.bias is not None:
            result[lay.bias] = gb
    return result
