"""K-FAC and EK-FAC approximations of the training-loss curvature, layer by layer, and their inverse.

For every supported layer (``nn.Linear``, ``nn.Conv2d``) the curvature of its parameters
``W`` (``d_out x d_in``, the bias appended as a last column on a constant-1 input) is
approximated by a Kronecker product ``A ⊗ S`` (Martens & Grosse 2015; Grosse & Martens 2016 for
convolutions), the other blocks being zero:

- ``A = (1/n) sum_i sum_t a_it a_it^T``: covariance of the layer's inputs ``a`` (``d_in (+1)``;
  for a convolution the unfolded input patches, summed over the ``T`` output positions ``t``);
- ``S = (1/(n T)) sum_i sum_t s_it s_it^T``: covariance of the loss gradient ``s`` with respect
  to the layer's outputs (pre-activations), averaged over positions.

The loss is the cross-entropy of labels sampled from the model's predictive distribution
(``labels="sampled"``, seeded; so ``A ⊗ S`` approximates the Fisher = Gauss-Newton matrix, as
kronfluence does by default) or of the true labels (``labels="true"``: the empirical Fisher).
With the eigendecompositions ``A = Q_A diag(a) Q_A^T`` and ``S = Q_S diag(s) Q_S^T``:

- K-FAC (``kind="kfac"``): eigenvalues ``Lambda[o, k] = s_o a_k``;
- EK-FAC (``kind="ekfac"``, George et al. 2018; Grosse et al. 2023): the same eigenbasis with the
  eigenvalues refitted to the per-sample gradients ``G_i = sum_t s_it a_it^T`` of the same loss,
  ``Lambda = (1/n) sum_i (Q_S^T G_i Q_A)^2`` (elementwise square).

The inverse applied to a gradient ``G`` of the layer is
``Q_S ((Q_S^T G Q_A) / (Lambda + damping)) Q_A^T``; ``damping=None`` uses kronfluence's heuristic
``0.1 x mean(Lambda)`` per layer. Cost: two forward + backward passes over the data (one for
K-FAC) and one eigendecomposition per factor (``O(d_in^3 + d_out^3)``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.data.loading import make_loader
from dattr_eval.explainers.layer_grads import SUPPORTED, layer_inputs, output_grads, supported_conv

KINDS = ("kfac", "ekfac")
LABELS = ("sampled", "true")
#: kronfluence's ``HEURISTIC_DAMPING_SCALE``: ``damping=None`` means this times the mean eigenvalue
HEURISTIC_DAMPING_SCALE = 0.1
#: samples whose rotated per-sample gradients ``(b, d_out, d_in')`` (float64) EK-FAC forms at once
EIGENVALUE_CHUNK = 32


@dataclass
class KroneckerLayer:
    """One layer's slice of the flat parameter vector and its fitted factors.

    ``start``/``stop`` bound its weight (and bias, right after it) in the flat vector;
    ``q_a (d_in', d_in')``, ``q_s (d_out, d_out)`` eigenvectors (columns), ``inverse (d_out, d_in')``
    the reciprocal damped eigenvalues ``1 / (Lambda + damping)``; ``d_in' = d_in + 1`` with a bias.
    """

    name: str
    module: nn.Module
    has_bias: bool
    start: int = 0
    stop: int = 0
    q_a: torch.Tensor | None = None
    q_s: torch.Tensor | None = None
    eigenvalues: torch.Tensor | None = None
    inverse: torch.Tensor | None = None

    @property
    def d_out(self) -> int:
        return self.module.weight.shape[0]


def kronecker_layers(model: nn.Module, names: Sequence[str]) -> list[KroneckerLayer]:
    """The supported layers covering exactly the parameters ``names`` (flat order), with their slices.

    Raises:
        ValueError: a chosen parameter belongs to an unsupported module, a bias is chosen without
            its weight, or a convolution is grouped / non-zero-padded / padded by a string.
    """
    chosen = set(names)
    sizes = dict(model.named_parameters())
    offsets, position = {}, 0
    for n in names:
        offsets[n] = position
        position += sizes[n].numel()
    layers, covered = [], set()
    for module_name, module in model.named_modules():
        weight = f"{module_name}.weight" if module_name else "weight"
        bias = f"{module_name}.bias" if module_name else "bias"
        if not isinstance(module, SUPPORTED) or weight not in chosen:
            continue
        if isinstance(module, nn.Conv2d) and not supported_conv(module):
            raise ValueError(
                f"solver='kfac'/'ekfac' supports nn.Conv2d with groups=1, padding_mode='zeros' and "
                f"numeric padding; layer {module_name!r} has groups={module.groups}, "
                f"padding_mode={module.padding_mode!r}, padding={module.padding!r}"
            )
        has_bias = bias in chosen
        layer = KroneckerLayer(module_name, module, has_bias, start=offsets[weight])
        layer.stop = layer.start + module.weight.numel() + (module.bias.numel() if has_bias else 0)
        if has_bias and offsets[bias] != layer.start + module.weight.numel():
            raise ValueError(f"parameter {bias!r} does not follow {weight!r} in the model's order")
        layers.append(layer)
        covered.update({weight, bias} if has_bias else {weight})
    missing = [n for n in names if n not in covered]
    if missing:
        raise ValueError(
            f"solver='kfac'/'ekfac' supports the weights (and biases) of nn.Linear and nn.Conv2d "
            f"layers only; params {missing} belong to other modules (or are biases without their "
            "weight): restrict params, e.g. to a list of Linear/Conv2d parameter names"
        )
    return layers


def sample_labels(
    model: nn.Module, dataset: Dataset, *, batch_size: int, seed: int, device: torch.device
) -> torch.Tensor:
    """One label per sample drawn from the model's softmax, seeded, ``(n,)`` int64 on ``device``."""
    gen = torch.Generator(device=device).manual_seed(seed)
    labels = []
    with torch.no_grad():
        for x, _ in make_loader(dataset, batch_size):
            probs = model(x.to(device)).softmax(-1)
            labels.append(torch.multinomial(probs, 1, generator=gen).squeeze(1))
    return torch.cat(labels)


def _layer_batches(
    model: nn.Module,
    layers: list[KroneckerLayer],
    dataset: Dataset,
    labels: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Per batch, each layer's inputs ``(b, T, d_in')`` and output gradients ``(b, T, d_out)``
    of the summed cross-entropy of ``labels`` (forward hooks; no parameter gradient is stored)."""
    captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(name: str):
        def save(_module, args, output):
            captured[name] = (args[0].detach(), output)

        return save

    handles = [layer.module.register_forward_hook(hook(layer.name)) for layer in layers]
    try:
        start = 0
        for x, _ in make_loader(dataset, batch_size):
            x = x.to(device)
            y = labels[start : start + x.shape[0]]
            start += x.shape[0]
            loss = F.cross_entropy(model(x), y, reduction="sum")
            outputs = [captured[layer.name][1] for layer in layers]
            grads = torch.autograd.grad(loss, outputs)
            yield [
                (
                    layer_inputs(layer.module, captured[layer.name][0], layer.has_bias),
                    output_grads(layer.module, g).detach(),
                )
                for layer, g in zip(layers, grads)
            ]
            captured.clear()
    finally:
        for h in handles:
            h.remove()


class KroneckerInverse:
    """``(K + damping I)^{-1}`` for the block-diagonal K-FAC / EK-FAC approximation ``K``.

    Args:
        model: the network (its parameters are not modified).
        dataset: the ``(x, y)`` samples whose loss curvature is approximated.
        names: parameter names defining ``theta`` (flat order), all in supported layers.
        kind: ``"kfac"`` or ``"ekfac"``.
        labels: ``"sampled"`` (from the model's predictive distribution, seeded by ``seed``)
            or ``"true"`` (the dataset's labels).
        damping: added to every eigenvalue; ``None``: ``0.1 x`` the layer's mean eigenvalue.

    Fitted: ``layers`` (:class:`KroneckerLayer`, with eigenbases and damped inverse eigenvalues),
    ``labels`` ``(n,)`` the labels of the loss whose curvature was fitted.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: Dataset,
        names: Sequence[str],
        *,
        kind: str = "ekfac",
        labels: str = "sampled",
        damping: float | None = None,
        batch_size: int = 256,
        seed: int = 0,
        device: torch.device | str | None = None,
    ) -> None:
        device = torch.device(device) if device is not None else next(model.parameters()).device
        self.layers = kronecker_layers(model, names)
        if labels == "sampled":
            self.labels = sample_labels(
                model, dataset, batch_size=batch_size, seed=seed, device=device
            )
        else:
            self.labels = torch.cat(
                [torch.as_tensor(y).long() for _, y in make_loader(dataset, batch_size)]
            ).to(device)
        passes = (model, self.layers, dataset, self.labels, batch_size, device)
        self._fit_eigenbases(_layer_batches(*passes), len(dataset))
        if kind == "ekfac":
            self._fit_eigenvalues(_layer_batches(*passes), len(dataset))
        for layer in self.layers:
            lam = layer.eigenvalues
            shift = HEURISTIC_DAMPING_SCALE * lam.mean() if damping is None else damping
            layer.inverse = (1.0 / (lam + shift)).float()
            layer.q_a, layer.q_s = layer.q_a.float(), layer.q_s.float()

    def _fit_eigenbases(self, batches: Iterator, n: int) -> None:
        """``A``, ``S`` (float64) over one pass, their eigenvectors, and K-FAC's ``s_o a_k``."""
        a_cov: list[torch.Tensor | float] = [0.0] * len(self.layers)
        s_cov: list[torch.Tensor | float] = [0.0] * len(self.layers)
        for batch in batches:
            for k, (a, s) in enumerate(batch):
                a64, s64 = a.flatten(0, 1).double(), s.flatten(0, 1).double()
                a_cov[k] = a_cov[k] + a64.T @ a64 / n
                s_cov[k] = s_cov[k] + s64.T @ s64 / (n * s.shape[1])
        for layer, a, s in zip(self.layers, a_cov, s_cov):
            a_vals, layer.q_a = torch.linalg.eigh(a)
            s_vals, layer.q_s = torch.linalg.eigh(s)
            layer.eigenvalues = s_vals[:, None] * a_vals[None, :]

    def _fit_eigenvalues(self, batches: Iterator, n: int) -> None:
        """EK-FAC: ``Lambda = mean_i (Q_S^T G_i Q_A)^2``, ``G_i = sum_t s_it a_it^T``, over one pass."""
        for layer in self.layers:
            layer.eigenvalues = torch.zeros_like(layer.eigenvalues)
        for batch in batches:
            for layer, (a, s) in zip(self.layers, batch):
                for lo in range(0, a.shape[0], EIGENVALUE_CHUNK):  # bounds the float64 blocks
                    hi = lo + EIGENVALUE_CHUNK
                    rotated = torch.einsum(
                        "bto,bti->boi", s[lo:hi].double() @ layer.q_s, a[lo:hi].double() @ layer.q_a
                    )
                    layer.eigenvalues += (rotated**2).sum(0) / n

    def precondition(self, G: torch.Tensor) -> torch.Tensor:
        """``G (m, p)`` times ``(K + damping I)^{-1}`` (``K`` is symmetric), ``(m, p)``, ``G``'s dtype."""
        out = torch.empty_like(G)
        for layer in self.layers:
            q_s, q_a = layer.q_s.to(G), layer.q_a.to(G)
            block = _to_matrix(layer, G[:, layer.start : layer.stop])
            rotated = q_s.T @ block @ q_a * layer.inverse.to(G)
            out[:, layer.start : layer.stop] = _from_matrix(layer, q_s @ rotated @ q_a.T)
        return out


def _to_matrix(layer: KroneckerLayer, flat: torch.Tensor) -> torch.Tensor:
    """The layer's flat gradients ``(m, numel)`` (weight, then bias) as matrices ``(m, d_out, d_in')``."""
    n_weight = layer.module.weight.numel()
    matrix = flat[:, :n_weight].reshape(flat.shape[0], layer.d_out, -1)
    if layer.has_bias:
        matrix = torch.cat([matrix, flat[:, n_weight:, None]], 2)
    return matrix


def _from_matrix(layer: KroneckerLayer, matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_to_matrix`: ``(m, d_out, d_in')`` to ``(m, numel)``."""
    if layer.has_bias:
        return torch.cat([matrix[:, :, :-1].flatten(1), matrix[:, :, -1]], 1)
    return matrix.flatten(1)
