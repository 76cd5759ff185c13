"""Penultimate (or named-layer) features by forward hook, streamed over a dataset.

Shared by DualView, representer points and feature similarity.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.data.loading import make_loader
from dattr_eval.parallel import cat_shards, current_backend, map_shards


def classifier_layer(model: nn.Module, layer: str | None = None) -> tuple[str, nn.Module]:
    """The layer whose *input* is the feature map: ``layer`` by name, else the last ``nn.Linear``.

    Raises:
        ValueError: no ``nn.Linear`` in the model, or ``layer`` is not a submodule name.
    """
    modules = dict(model.named_modules())
    if layer is not None:
        if layer not in modules:
            raise ValueError(
                f"layer={layer!r} is not a submodule of the model; known: {list(modules)[1:]}"
            )
        return layer, modules[layer]
    linears = [(name, m) for name, m in modules.items() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no nn.Linear layer; pass layer='name' of the classifier layer")
    return linears[-1]


class FeatureExtractor:
    """Captures the flattened input of ``layer`` (default: the last ``nn.Linear``).

    Call it on a batch: ``(features (b, d), logits (b, n_classes))``.
    """

    def __init__(self, model: nn.Module, layer: str | None = None) -> None:
        self.model = model
        self.layer_name, self.layer = classifier_layer(model, layer)

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        captured: list[torch.Tensor] = []
        handle = self.layer.register_forward_hook(lambda _m, inp, _out: captured.append(inp[0]))
        try:
            logits = self.model(inputs)
        finally:
            handle.remove()
        return captured[0].flatten(1).detach(), logits.detach()


def extract_features(
    model: nn.Module,
    dataset: Dataset,
    *,
    layer: str | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    parallel: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One streamed forward pass over ``dataset``.

    With ``parallel`` and the Ray backend active (:mod:`dattr_eval.parallel`), the pass runs as
    one Ray task per contiguous shard of ``dataset`` (each task holds a copy of the model and
    computes on the model's device) and the shards are concatenated in order; the result is the
    same as in-process. Pass ``parallel=False`` for small passes (test batches).

    Returns:
        features ``(n, d)`` float32 and logits ``(n, n_classes)``, on ``device`` (default: the model's).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if parallel and current_backend().is_ray:
        shared = {"model": model, "layer": layer, "batch_size": batch_size}
        return cat_shards(map_shards(_shard_features, dataset, shared=shared), device)
    extractor = FeatureExtractor(model, layer)
    feats, logits = [], []
    for x, _ in make_loader(dataset, batch_size):
        f, z = extractor(x.to(device))
        feats.append(f.float())
        logits.append(z.float())
    return torch.cat(feats), torch.cat(logits)


def _shard_features(
    shard: Dataset, model: nn.Module, layer: str | None, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`extract_features` of one shard, in this process (a :func:`map_shards` task)."""
    return extract_features(model, shard, layer=layer, batch_size=batch_size, parallel=False)
