"""Memory estimates of explainers from shapes alone, before any work is done.

An explainer that can say how much memory it will need implements

    ``estimate_memory(model, train_dataset, n_test, batch_size) -> int``

the estimated peak *extra* bytes (beyond the model and the datasets, which the caller holds
anyway) of ``fit`` + explaining one test batch of ``batch_size`` + ``self_influence`` where the
method has one. :func:`estimate_explainer_memory` calls it for any explainer (DualView's
``estimate_memory(n_train, n_test, batch_size, feature_dim=None)`` is adapted), so an evaluator
can refuse a cell that would not fit before running it.

The helpers here are the shared formulas: bytes of a float block, parameter counts, the size of
one sample's activations and of the classifier layer's input (by forward hooks on one sample).
Estimates are of tensors the method allocates; the allocator's own overhead (a few MiB) and
lazily loaded code are not included.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.explainers.features import FeatureExtractor

#: bytes of one float32 / float64 entry
FLOAT32 = 4
FLOAT64 = 8
MIB = 2**20

#: default ``memory_budget`` of the gradient explainers: stored training gradients up to this size
DEFAULT_MEMORY_BUDGET = 2**30
#: TracIn's default ``memory_budget``: its ``T`` checkpoints multiply the stored gradients by ``T``,
#: so beyond this it recomputes the training gradients per ``explain`` call in bounded blocks, as
#: Captum's TracInCP does (the same scores; on the digits comparison 0.60x Captum's peak memory
#: where storing them took 1.68x, ``benchmarks/results/explainers_speed.md``)
TRACIN_MEMORY_BUDGET = 128 * MIB


def block_bytes(rows: int, cols: int = 1, itemsize: int = FLOAT32) -> int:
    """Bytes of a dense ``(rows, cols)`` block of ``itemsize``-byte entries."""
    return int(rows) * int(cols) * int(itemsize)


def parameter_count(model: nn.Module, names: Sequence[str] | None = None) -> int:
    """Entries of the parameters ``names`` (``None``: all parameters) of ``model``."""
    named = dict(model.named_parameters())
    return sum(named[n].numel() for n in (names if names is not None else named))


def sample_batch(dataset: Dataset) -> torch.Tensor:
    """The first sample's input of ``dataset`` as a batch of one, ``(1, ...)``.

    Raises:
        ValueError: ``dataset`` is empty.
    """
    if len(dataset) == 0:
        raise ValueError("train_dataset is empty: no sample to measure shapes on")
    return torch.as_tensor(dataset[0][0])[None]


def _model_device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def activation_floats(
    model: nn.Module, sample: torch.Tensor, from_modules: Sequence[nn.Module] | None = None
) -> int:
    """Entries of the leaf modules' outputs for the batch ``sample`` (forward hooks), per sample.

    With ``from_modules``, only the outputs from the first call of one of them onward: what a
    backward pass to those modules' parameters keeps (earlier outputs need no gradient).
    """
    total, started = [0], [from_modules is None]
    starts = {id(m) for m in from_modules or ()}

    def count(module, _args, output) -> None:
        started[0] = started[0] or id(module) in starts
        if started[0] and isinstance(output, torch.Tensor):
            total[0] += output.numel()

    leaves = [m for m in model.modules() if not list(m.children()) or id(m) in starts]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        model(sample.to(_model_device(model)))
    finally:
        for h in handles:
            h.remove()
    return total[0] // max(1, sample.shape[0])


def parameter_modules(model: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    """The modules that directly hold the parameters ``names``."""
    chosen, found = set(names), []
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        if any(prefix + n in chosen for n, _ in module.named_parameters(recurse=False)):
            found.append(module)
    return found


def feature_shape(
    model: nn.Module, sample: torch.Tensor, layer: str | None = None
) -> tuple[int, int]:
    """``(d, K)``: the size of the classifier layer's (or ``layer``'s) input and of the output."""
    features, logits = FeatureExtractor(model, layer)(sample.to(_model_device(model)))
    return features.shape[1], logits.shape[1]


def estimate_explainer_memory(
    explainer: Any, model: nn.Module, train_dataset: Dataset, n_test: int, batch_size: int
) -> int | None:
    """Estimated peak extra bytes of fitting ``explainer`` and explaining one batch; ``None``: unknown.

    Calls ``explainer.estimate_memory(model, train_dataset, n_test, batch_size)``; an
    ``estimate_memory(n_train, n_test, batch_size, feature_dim=None)`` (DualView's) gets
    ``n_train = len(train_dataset)`` and the classifier layer's input size measured by a forward
    hook on one sample. Explainers without ``estimate_memory`` give ``None``.
    """
    method = getattr(explainer, "estimate_memory", None)
    if method is None:
        return None
    params = list(inspect.signature(method).parameters)
    if params[:1] == ["model"]:
        return int(method(model, train_dataset, n_test, batch_size))
    if params[:1] == ["n_train"]:
        dim = None
        if "feature_dim" in params:
            was_training = model.training
            model.eval()
            try:
                dim = feature_shape(
                    model, sample_batch(train_dataset), getattr(explainer, "layer", None)
                )[0]
            finally:
                model.train(was_training)
        return int(method(len(train_dataset), n_test, batch_size, feature_dim=dim))
    return None
