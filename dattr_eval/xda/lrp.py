"""LRP through zennit: composites, canonizers, and relevance started at the classifier's input.

Two entry points share one attributor:

- :func:`feature_relevance_heatmaps` starts LRP with a given relevance ``R (b, d)`` on the
  *input of the classifier layer* (the penultimate features ``phi``) and propagates it down
  through everything before that layer (the feature extractor) to the pixels.
- :func:`decision_heatmaps` is plain LRP of the decision: output relevance ``onehot(c)``.

The initial relevance is placed by an :class:`InitRelevance` hook on the classifier layer, which
replaces whatever reaches it from above (the pip ``dualxda`` package's ``InitRelevanceRule``); the
rest of the model gets the chosen composite's rules.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import (
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonPlus,
    EpsilonPlusFlat,
    LayerMapComposite,
    MixedComposite,
    NameMapComposite,
    layer_map_base,
)
from zennit.core import Composite, Hook
from zennit.rules import Epsilon
from zennit.torchvision import ResNetCanonizer
from zennit.types import Convolution

from dattr_eval.explainers.features import FeatureExtractor, classifier_layer
from dattr_eval.validation import check_choice, check_tensor


def _epsilon_composite(
    epsilon: float = 1e-6, zero_params=None, canonizers=None
) -> LayerMapComposite:
    """LRP-epsilon on every convolution and dense layer (LRP-0 as ``epsilon -> 0``)."""
    rule = Epsilon(epsilon=epsilon, zero_params=zero_params)
    return LayerMapComposite(
        layer_map=layer_map_base() + [(Convolution, rule), (nn.Linear, rule)], canonizers=canonizers
    )


#: composite names accepted by ``make_composite`` (all built with ``zero_params="bias"``, as the
#: DualXDA reference does); ``"epsilon"`` is LRP-epsilon everywhere, the conserving reference.
COMPOSITES: dict[str, Callable[..., Composite]] = {
    "epsilon_plus": EpsilonPlus,
    "epsilon_plus_flat": EpsilonPlusFlat,
    "epsilon_alpha2_beta1": EpsilonAlpha2Beta1,
    "epsilon_alpha2_beta1_flat": EpsilonAlpha2Beta1Flat,
    "epsilon": _epsilon_composite,
}


def default_canonizers(model: nn.Module) -> list:
    """``ResNetCanonizer`` (BatchNorm merge + residual ``Sum``) for torchvision ResNets, else
    ``SequentialMergeBatchNorm`` (a no-op without BatchNorm)."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    if any(isinstance(m, (BasicBlock, Bottleneck)) for m in model.modules()):
        return [ResNetCanonizer()]
    return [SequentialMergeBatchNorm()]


def make_composite(
    composite: str | Composite, model: nn.Module, *, canonizers: list | None = None
) -> Composite:
    """A zennit composite by name (see ``COMPOSITES``) with the model's canonizers.

    Args:
        composite: a name in ``COMPOSITES`` or a ready zennit ``Composite`` (used as is).
        model: the model the composite will be registered to (chooses the canonizers).
        canonizers: zennit canonizers; ``None`` = :func:`default_canonizers`.
    """
    if isinstance(composite, Composite):
        return composite
    check_choice(composite, "composite", COMPOSITES)
    if canonizers is None:
        canonizers = default_canonizers(model)
    return COMPOSITES[composite](zero_params="bias", canonizers=canonizers)


class _RelevanceSlot:
    """Holds the initial relevance ``(b, d)`` of the next backward pass (shared by hook copies)."""

    relevance: torch.Tensor | None = None


class InitRelevance(Hook):
    """zennit hook for the classifier layer: the relevance leaving it downwards is ``slot.relevance``.

    Whatever reaches the classifier from above is ignored, so the LRP pass starts with exactly the
    given relevance on the classifier's input (reshaped to that input's shape).
    """

    def __init__(self, slot: _RelevanceSlot) -> None:
        super().__init__()
        self.slot = slot

    def backward(self, module, grad_input, grad_output):
        relevance = self.slot.relevance
        return (relevance.reshape(grad_input[0].shape).to(grad_input[0]),) + tuple(grad_input[1:])

    def copy(self) -> InitRelevance:
        return InitRelevance(self.slot)


def _channel_sum(relevance: torch.Tensor) -> torch.Tensor:
    """``(b, C, H, W) -> (b, H, W)`` (summed over channels); other layouts are kept as they are."""
    return relevance.sum(1) if relevance.ndim == 4 else relevance


def feature_relevance_heatmaps(
    model: nn.Module,
    inputs: torch.Tensor,
    relevance: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
    composite: str | Composite = "epsilon_plus",
    *,
    layer: str | None = None,
    canonizers: list | None = None,
) -> torch.Tensor:
    """LRP heatmaps of ``inputs`` for a relevance started on the classifier's input features.

    Args:
        model: the network; its classifier is ``layer`` (default: the last ``nn.Linear``).
        inputs: ``(b, ...)`` float inputs.
        relevance: the initial relevance ``(b, d)`` on the flattened classifier input ``phi``, or a
            function ``phi (b, d) -> (b, d)`` computing it from the features of ``inputs``.
        composite: LRP rules, a name in ``COMPOSITES`` or a zennit ``Composite``.

    Returns:
        ``(b, H, W)`` for image batches ``(b, C, H, W)`` (summed over channels), else the
        relevance in the inputs' shape ``(b, ...)``; float32, on the inputs' device.
    """
    inputs = check_tensor(inputs, "inputs", min_ndim=2, floating=True, finite=True)
    name, _ = classifier_layer(model, layer)
    if callable(relevance):
        features, _ = FeatureExtractor(model, name)(inputs)
        relevance = relevance(features)
    check_tensor(relevance, "relevance", ndim=2, floating=True, length=inputs.shape[0])
    slot = _RelevanceSlot()
    slot.relevance = relevance.detach()
    rules = make_composite(composite, model, canonizers=canonizers)
    mixed = MixedComposite([NameMapComposite([([name], InitRelevance(slot))]), rules])
    with Gradient(model=model, composite=mixed) as attributor:
        _, heat = attributor(inputs.detach().clone(), torch.zeros_like)
    return _channel_sum(heat.detach()).float()


def decision_heatmaps(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    composite: str | Composite = "epsilon_plus",
    *,
    canonizers: list | None = None,
) -> torch.Tensor:
    """Plain LRP of the decision: output relevance ``onehot(targets)`` (default: the predicted class).

    Returns heatmaps shaped like :func:`feature_relevance_heatmaps`'s; for a bias-free network with
    the ``"epsilon"`` composite each sums to about 1 (the output relevance).
    """
    inputs = check_tensor(inputs, "inputs", min_ndim=2, floating=True, finite=True)
    rules = make_composite(composite, model, canonizers=canonizers)

    def onehot(output: torch.Tensor) -> torch.Tensor:
        c = output.argmax(1) if targets is None else targets.to(output.device)
        return torch.nn.functional.one_hot(c, output.shape[1]).to(output)

    with Gradient(model=model, composite=rules) as attributor:
        _, heat = attributor(inputs.detach().clone(), onehot)
    return _channel_sum(heat.detach()).float()
