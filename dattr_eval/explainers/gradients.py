"""Per-sample gradients with ``torch.func``, optionally randomly projected, and checkpoint inputs.

The one gradient engine behind TracIn, TRAK, gradient similarity and influence functions.

- :func:`per_sample_gradients`: ``(n, p)`` gradients of a per-sample output (cross-entropy, the
  target logit, TRAK's margin, or any callable) with respect to chosen parameters, streamed in
  batches sized by a memory budget: from one forward + backward pass per batch when every chosen
  parameter belongs to an ``nn.Linear`` / ``nn.Conv2d`` (:mod:`.layer_grads`), else with
  ``functional_call`` + ``vmap(grad(...))``; with a projector each batch
  is projected parameter tensor by parameter tensor, so only ``(batch, k)`` results accumulate
  and the ``(n, p)`` matrix is never formed. Under the Ray backend (:mod:`dattr_eval.parallel`)
  a dataset pass runs as one task per contiguous shard.
- :class:`RandomProjector`: a seeded Gaussian or Rademacher ``(p, k)`` matrix scaled by
  ``1/sqrt(k)``, generated block by block (rows) on the fly, never held whole.
- :func:`param_names`, :func:`grad_dim`, :func:`flat_params`: the parameter selection.
- :func:`resolve_checkpoints`, :func:`load_checkpoint`: the ``checkpoints`` / ``learning_rates``
  convention of TracIn and TRAK.

Parameter selection ``params`` (everywhere): ``None`` = every trainable parameter;
``"last_layer"`` = those of the classifier layer (the last ``nn.Linear``); another string = every
parameter of that submodule (e.g. ``"fc2"``); a list = exactly those parameter names. The
gradient vector concatenates the flattened parameters in the model's ``named_parameters`` order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from dattr_eval.data.loading import make_loader
from dattr_eval.explainers.features import classifier_layer
from dattr_eval.explainers.layer_grads import hooked_layers, layer_gradients
from dattr_eval.explainers.memory import (
    FLOAT32,
    activation_floats,
    parameter_count,
    parameter_modules,
    sample_batch,
)
from dattr_eval.parallel import cat_shards, current_backend, map_shards
from dattr_eval.validation import check_choice, check_positive

#: per-sample-gradient working memory per sample, in units of the gradient size and of the
#: activations (see :func:`gradient_row_bytes`)
HOOK_GRADIENT_COPIES = 2
VMAP_GRADIENT_COPIES = 4
ACTIVATION_COPIES = 4
#: :func:`make_projector` caches the projection matrix when it takes at most this many bytes
PROJECTOR_CACHE_BYTES = 256 * 2**20

#: a per-sample output: ``(logits (b, C), targets (b,)) -> (b,)``
OutputFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: the data argument: a map-style dataset of ``(x, y)`` or a pair of tensors ``(inputs, targets)``
Data = Dataset | tuple[torch.Tensor, torch.Tensor]
#: one checkpoint: a state dict, a file written by ``torch.save(state_dict)``, or a module
Checkpoint = Mapping[str, torch.Tensor] | str | os.PathLike | nn.Module


# ---------------------------------------------------------------------- per-sample outputs
def cross_entropy_output(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy loss of the target class, ``(b,)``."""
    return F.cross_entropy(logits, targets, reduction="none")


def logit_output(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The target class's logit, ``(b,)``."""
    return logits.gather(1, targets[:, None]).squeeze(1)


def margin_output(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """TRAK's margin ``log(p / (1 - p))`` = ``z_y - logsumexp_{c != y} z_c``, ``(b,)``."""
    own = logit_output(logits, targets)
    classes = torch.arange(logits.shape[1], device=logits.device)
    others = logits.masked_fill(classes == targets[:, None], float("-inf"))
    return own - others.logsumexp(1)


OUTPUTS: dict[str, OutputFn] = {
    "ce": cross_entropy_output,
    "logit": logit_output,
    "margin": margin_output,
}


def resolve_output(loss: str | OutputFn) -> OutputFn:
    """The per-sample output function named by ``loss`` (or ``loss`` itself if callable)."""
    if callable(loss):
        return loss
    return OUTPUTS[check_choice(loss, "loss", [*OUTPUTS, "<callable (logits, targets) -> (b,)>"])]


# ---------------------------------------------------------------------- parameters
def param_names(model: nn.Module, params: str | Sequence[str] | None = None) -> list[str]:
    """Names of the parameters to differentiate, in the model's ``named_parameters`` order.

    Args:
        params: ``None`` = every trainable parameter; ``"last_layer"`` = those of the classifier
            layer (the last ``nn.Linear``); another string = every parameter of that submodule;
            a list = exactly those parameter names.

    Raises:
        ValueError: an unknown name, or nothing trainable selected.
    """
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if params is None:
        chosen = trainable
    elif isinstance(params, str):
        prefix = classifier_layer(model)[0] if params == "last_layer" else params
        # prefix "": the model itself is the classifier layer (e.g. a bare nn.Linear)
        chosen = [n for n in trainable if not prefix or n == prefix or n.startswith(prefix + ".")]
        if not chosen:
            raise ValueError(
                f"params={params!r} selects no trainable parameter; use None, 'last_layer', a "
                f"submodule name or a list of parameter names from {trainable}"
            )
    else:
        unknown = [n for n in params if n not in trainable]
        if unknown:
            raise ValueError(
                f"params names {unknown} are not trainable parameters; known: {trainable}"
            )
        wanted = set(params)
        chosen = [n for n in trainable if n in wanted]
    if not chosen:
        raise ValueError("the model has no trainable parameters to differentiate")
    return chosen


def grad_dim(model: nn.Module, params: str | Sequence[str] | None = None) -> int:
    """``p``: the number of entries of the gradient over the selected parameters."""
    named = dict(model.named_parameters())
    return sum(named[n].numel() for n in param_names(model, params))


def flat_params(
    model: nn.Module,
    params: str | Sequence[str] | None = None,
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The selected parameters flattened and concatenated, ``(p,)`` (from ``state_dict`` if given)."""
    source = state_dict if state_dict is not None else dict(model.named_parameters())
    return torch.cat([source[n].detach().reshape(-1) for n in param_names(model, params)])


# ---------------------------------------------------------------------- checkpoints
def load_checkpoint(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """A state dict from a mapping, a module, or a file (``torch.load(weights_only=True)``, on CPU).

    Raises:
        TypeError: the checkpoint (or the file's content) is not a mapping of tensors.
    """
    if isinstance(checkpoint, nn.Module):
        return checkpoint.state_dict()
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in checkpoint.values()
    ):
        raise TypeError(
            "each checkpoint must be a state dict (name -> tensor), a path to one saved with "
            f"torch.save(model.state_dict(), path), or an nn.Module; got {type(checkpoint).__name__}"
        )
    return dict(checkpoint)


def resolve_checkpoints(
    checkpoints: Sequence[Checkpoint] | None, learning_rates: float | Sequence[float] = 1.0
) -> list[tuple[Checkpoint | None, float]]:
    """Pair each checkpoint with its learning rate; ``None`` = the fitted model itself.

    Checkpoints are not loaded here (see :func:`load_checkpoint`), so a long list of paths costs
    no memory until each is used.

    Args:
        checkpoints: a list of state dicts, paths or modules with the fitted model's architecture,
            or ``None``.
        learning_rates: one number for all, or one per checkpoint (``lr_t`` of TracIn).

    Raises:
        ValueError: an empty list, or a learning-rate list of another length.
    """
    if checkpoints is None:
        items: list[Checkpoint | None] = [None]
    elif isinstance(checkpoints, (str, os.PathLike, Mapping, nn.Module)):
        raise TypeError("checkpoints must be a list (of state dicts, paths or modules), or None")
    else:
        items = list(checkpoints)
        if not items:
            raise ValueError("checkpoints is empty; pass None to use the fitted model itself")
    if isinstance(learning_rates, (int, float)) and not isinstance(learning_rates, bool):
        rates = [float(learning_rates)] * len(items)
    else:
        rates = [float(r) for r in learning_rates]
        if len(rates) != len(items):
            raise ValueError(
                f"learning_rates has {len(rates)} entries but there are {len(items)} checkpoints"
            )
    return list(zip(items, rates))


# ---------------------------------------------------------------------- projection
class RandomProjector:
    """A seeded random ``(dim_in, dim_out)`` matrix ``P / sqrt(dim_out)``, applied as ``g -> g P``.

    Entries are i.i.d. standard normal (``kind="gaussian"``) or ``+-1`` (``"rademacher"``), so
    ``E ||g P||^2 = ||g||^2`` (Johnson–Lindenstrauss). ``P`` is defined in units of
    ``SEED_ROWS`` rows, unit ``u`` drawn from a generator seeded by ``(seed, u)`` on the device of
    the input; it is generated on the fly ``chunk_size`` rows at a time and dropped after use
    (memory ``chunk_size x dim_out``). The matrix depends only on ``(dim_in, dim_out, kind,
    seed)`` and the device type, not on ``chunk_size`` nor on how the input's columns are split
    (see :meth:`project`); CPU and CUDA generators give different (equally valid) matrices.

    Cost per call: ``dim_in x dim_out`` random numbers and a ``(b, dim_in) x (dim_in, dim_out)``
    product. With ``cache=True`` the whole matrix is generated at the first call and kept (memory
    ``dim_in x dim_out``), so later calls cost only the product; :func:`make_projector` turns this
    on when the matrix fits in ``PROJECTOR_CACHE_BYTES``.
    """

    #: rows drawn from one seeded generator (the unit of reproducibility)
    SEED_ROWS = 256

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        kind: str = "gaussian",
        seed: int = 0,
        chunk_size: int | None = None,
        cache: bool = False,
    ) -> None:
        self.dim_in = check_positive(dim_in, "dim_in", integer=True)
        self.dim_out = check_positive(dim_out, "dim_out", integer=True)
        self.kind = check_choice(kind, "kind", ("gaussian", "rademacher"))
        self.seed = int(seed)
        # default: chunks of about 4M entries (16 MB in float32)
        self.chunk_size = check_positive(
            chunk_size if chunk_size is not None else max(self.SEED_ROWS, 2**22 // dim_out),
            "chunk_size",
            integer=True,
        )
        self.cache = bool(cache)
        self._cached: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def _unit(self, index: int, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
        """Rows ``[index * SEED_ROWS, ...)`` of the scaled matrix, from the generator of ``(seed, index)``."""
        rows = min(self.SEED_ROWS, self.dim_in - index * self.SEED_ROWS)
        state = np.random.SeedSequence([self.seed, index]).generate_state(1, np.uint64)[0]
        gen = torch.Generator(device=device).manual_seed(int(state >> 1))
        if self.kind == "gaussian":
            unit = torch.randn(rows, self.dim_out, generator=gen, device=device, dtype=dtype)
        else:
            bits = torch.randint(0, 2, (rows, self.dim_out), generator=gen, device=device)
            unit = (2 * bits - 1).to(dtype)
        return unit / math.sqrt(self.dim_out)

    def _generate(
        self, start: int, stop: int, device: torch.device | str, dtype: torch.dtype
    ) -> torch.Tensor:
        """Rows ``start..stop-1``, written unit by unit into one preallocated block."""
        size = self.SEED_ROWS
        out = torch.empty(stop - start, self.dim_out, device=device, dtype=dtype)
        for index in range(start // size, -(-stop // size)):
            lo = index * size
            unit = self._unit(index, device, dtype)
            first, last = max(start, lo), min(stop, lo + size)
            out[first - start : last - start] = unit[first - lo : last - lo]
        return out

    def rows(
        self,
        start: int,
        stop: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Rows ``start..stop-1`` of the scaled matrix, ``(stop - start, dim_out)``.

        With ``cache`` the whole matrix is generated at the first call (per device and dtype) and
        slices of it are returned; otherwise the rows are generated now.
        """
        if not 0 <= start <= stop <= self.dim_in:
            raise ValueError(f"rows [{start}, {stop}) fall outside dim_in={self.dim_in}")
        if not self.cache:
            return self._generate(start, stop, device, dtype)
        key = (str(device), dtype)
        if key not in self._cached:
            self._cached[key] = self._generate(0, self.dim_in, device, dtype)
        return self._cached[key][start:stop]

    def project(self, g: torch.Tensor, start: int = 0) -> torch.Tensor:
        """``g (b, m) @ P[start : start + m]``: the contribution of columns ``start..start+m-1``.

        Summing ``project(g[:, a:b], a)`` over a split of the columns gives ``self(g)`` (up to
        floating-point summation order).
        """
        stop = start + g.shape[1]
        if start < 0 or stop > self.dim_in:
            raise ValueError(f"columns [{start}, {stop}) fall outside dim_in={self.dim_in}")
        out = g.new_zeros(g.shape[0], self.dim_out)
        for lo in range(start, stop, self.chunk_size):
            hi = min(lo + self.chunk_size, stop)
            out += g[:, lo - start : hi - start] @ self.rows(lo, hi, g.device, g.dtype)
        return out

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        """Project ``g (b, dim_in)`` to ``(b, dim_out)``."""
        if g.ndim != 2 or g.shape[1] != self.dim_in:
            raise ValueError(f"g must have shape (b, {self.dim_in}), got {tuple(g.shape)}")
        return self.project(g, 0)

    def matrix(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The whole scaled matrix ``(dim_in, dim_out)`` (for small cases and tests)."""
        return self.rows(0, self.dim_in, device)

    def __repr__(self) -> str:
        return (
            f"RandomProjector(dim_in={self.dim_in}, dim_out={self.dim_out}, kind={self.kind!r}, "
            f"seed={self.seed}, chunk_size={self.chunk_size}, cache={self.cache})"
        )


def make_projector(
    model: nn.Module,
    params: str | Sequence[str] | None,
    projection_dim: int | None,
    kind: str = "gaussian",
    seed: int = 0,
) -> RandomProjector | None:
    """A :class:`RandomProjector` from the selected gradient size to ``projection_dim`` (``None``: none).

    Cached (see :class:`RandomProjector`) when the float32 matrix fits in ``PROJECTOR_CACHE_BYTES``;
    streamed block by block otherwise.
    """
    if projection_dim is None:
        return None
    check_positive(projection_dim, "projection_dim", integer=True)
    dim_in = grad_dim(model, params)
    cache = 4 * dim_in * projection_dim <= PROJECTOR_CACHE_BYTES
    return RandomProjector(dim_in, projection_dim, kind=kind, seed=seed, cache=cache)


# ---------------------------------------------------------------------- per-sample gradients
def _batches(data: Data, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, tuple):
        if len(data) != 2 or not all(isinstance(t, torch.Tensor) for t in data):
            raise TypeError(
                "data must be a Dataset of (x, y) or a tuple (inputs, targets) of tensors"
            )
        inputs, targets = data
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(
                f"inputs and targets differ in length: {inputs.shape[0]} vs {targets.shape[0]}"
            )
        for i in range(0, inputs.shape[0], batch_size):
            yield inputs[i : i + batch_size], targets[i : i + batch_size]
    else:
        yield from make_loader(data, batch_size)


def _num_samples(data: Data) -> int:
    return data[0].shape[0] if isinstance(data, tuple) else len(data)


def gradient_row_bytes(
    model: nn.Module, names: Sequence[str], sample: torch.Tensor, width: int | None = None
) -> int:
    """Working bytes per sample of one per-sample-gradient batch (the chunk's cost model).

    ``c x p`` float32 entries (``c = HOOK_GRADIENT_COPIES`` on the layer-hook path: the
    per-layer gradients and their copy into the result; ``VMAP_GRADIENT_COPIES`` under
    ``vmap``, whose backward keeps per-sample weight-gradient temporaries) plus
    ``ACTIVATION_COPIES x`` the activations from the first selected layer onward (kept for the
    backward, and their gradients) plus the ``width`` entries of its output row (``p`` when
    ``None``). Calibrated on the benchmarks' CNNs; ``tests/test_memory_estimate.py`` checks the
    estimates built on it against measured peaks.

    Args:
        names: the selected parameter names (``param_names``).
        sample: one input as a batch of one, ``(1, ...)``.
    """
    p = parameter_count(model, names)
    acts = activation_floats(model, sample, parameter_modules(model, names))
    copies = (
        HOOK_GRADIENT_COPIES if hooked_layers(model, names) is not None else VMAP_GRADIENT_COPIES
    )
    return FLOAT32 * (copies * p + ACTIVATION_COPIES * acts + (p if width is None else width))


def chunk_rows(row_bytes: int, memory_budget: int | None, cap: int) -> int:
    """Samples per vmapped call: as many as ``memory_budget`` bytes hold, in ``[1, cap]``."""
    if memory_budget is None:
        return cap
    return max(1, min(cap, int(memory_budget) // max(1, row_bytes)))


def per_sample_gradients(
    model: nn.Module,
    data: Data,
    *,
    loss: str | OutputFn = "ce",
    params: str | Sequence[str] | None = None,
    projector: Callable[[torch.Tensor], torch.Tensor] | None = None,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    batch_size: int = 64,
    memory_budget: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Gradient of each sample's output with respect to the selected parameters.

    Uses the model in its current mode (call ``model.eval()`` first for batch norm / dropout
    models: per-sample gradients of a train-mode batch norm are not defined).

    When ``data`` is a dataset (a training-set pass) and the Ray backend is active
    (:mod:`dattr_eval.parallel`), the dataset is split into contiguous shards, each computed by a
    Ray task holding a copy of the model, ``state_dict`` and ``projector`` (shipped once, computing
    on ``device``), and the rows are concatenated in order: the same result as in-process. A
    tuple of tensors (a test batch) is always computed here.

    Args:
        model: the network; used functionally, its parameters are never modified.
        data: a map-style dataset of ``(x, y)``, or a tuple ``(inputs (n, ...), targets (n,))``.
        loss: the per-sample output differentiated: ``"ce"`` (cross-entropy of the target),
            ``"logit"`` (the target's logit), ``"margin"`` (TRAK: ``z_y - logsumexp_{c != y} z_c``),
            or a callable ``(logits (b, C), targets (b,)) -> (b,)``.
        params: the parameter selection (see the module docstring).
        projector: ``None`` or a map ``(b, p) -> (b, k)``; a :class:`RandomProjector` is applied
            parameter tensor by parameter tensor (its :meth:`RandomProjector.project`), any other
            callable to each batch's ``(b, p)`` gradients.
        state_dict: weights to use instead of the model's own (a checkpoint); must hold every
            parameter, and may hold buffers.
        batch_size: samples per ``vmap`` call at most.
        memory_budget: bytes one ``vmap`` call may use (:func:`gradient_row_bytes` per sample);
            lowers the samples per call below ``batch_size`` where needed. ``None``: ``batch_size``.
        device: where to compute (default: the model's device); the result lives there.
        progress: show a tqdm bar over batches.

    Returns:
        float ``(n, p)`` gradients, or ``(n, k)`` projected ones, rows in the data's order. The
        result is allocated once and filled batch by batch (no concatenation copy).
    """
    check_positive(batch_size, "batch_size", integer=True)
    if memory_budget is not None:
        check_positive(memory_budget, "memory_budget", integer=True)
    output_fn = resolve_output(loss)
    names = param_names(model, params)
    first = next(model.parameters())
    device = torch.device(device) if device is not None else first.device
    n = _num_samples(data)
    if memory_budget is not None and n > 0:
        width = projector.dim_out if isinstance(projector, RandomProjector) else None
        sample = data[0][:1] if isinstance(data, tuple) else sample_batch(data)
        row_bytes = gradient_row_bytes(model, names, sample.to(device), width)
        batch_size = chunk_rows(row_bytes, memory_budget, batch_size)
    if not isinstance(data, tuple) and current_backend().is_ray:
        shared = {
            "model": model,
            "loss": loss,
            "params": params,
            "projector": projector,
            "state_dict": state_dict,
            "batch_size": batch_size,
            "device": device,
        }
        return cat_shards(map_shards(_shard_gradients, data, shared=shared), device)
    source = dict(model.named_parameters())
    source.update(dict(model.named_buffers()))
    if state_dict is not None:
        missing = [n for n, _ in model.named_parameters() if n not in state_dict]
        if missing:
            raise KeyError(f"state_dict lacks the parameters {missing}")
        source.update({n: t for n, t in state_dict.items() if n in source})
    weights = {n: t.detach().to(device) for n, t in source.items()}
    theta = {n: weights.pop(n) for n in names}
    sizes = [theta[n].numel() for n in names]
    offsets = np.cumsum([0, *sizes[:-1]]).tolist()

    layers = hooked_layers(model, names)
    if layers is not None:  # Linear / Conv2d only: one forward + backward per batch, no vmap
        run_with = {**weights, **{n: t.requires_grad_(True) for n, t in theta.items()}}

        def batch_gradients(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
            return layer_gradients(model, layers, run_with, lambda z: output_fn(z, y), x)

    else:

        def sample_output(
            th: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
        ) -> torch.Tensor:
            logits = functional_call(model, {**weights, **th}, (x[None],))
            return output_fn(logits, y[None])[0]

        grad_fn = vmap(grad(sample_output), in_dims=(None, 0, 0))

        def batch_gradients(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
            return grad_fn(theta, x, y)

    out: torch.Tensor | None = None
    if projector is None or isinstance(projector, RandomProjector):
        width = sum(sizes) if projector is None else projector.dim_out
        out = torch.empty(n, width, device=device)
    start = 0
    for x, y in tqdm(
        _batches(data, batch_size),
        total=-(-n // batch_size),
        desc="per-sample gradients",
        disable=not progress,
        leave=False,
    ):
        x = x.to(device)
        y = torch.as_tensor(y).long().to(device)
        stop = start + x.shape[0]
        grads = batch_gradients(x, y)
        if projector is None:
            for name, offset, size in zip(names, offsets, sizes):
                out[start:stop, offset : offset + size] = grads.pop(name).reshape(x.shape[0], -1)
        elif isinstance(projector, RandomProjector):
            out[start:stop] = 0
            for name, offset in zip(names, offsets):
                out[start:stop] += projector.project(
                    grads.pop(name).reshape(x.shape[0], -1), offset
                )
        else:
            rows = projector(torch.cat([grads.pop(m).reshape(x.shape[0], -1) for m in names], 1))
            if out is None:
                out = torch.empty(n, rows.shape[1], device=device, dtype=rows.dtype)
            out[start:stop] = rows
        start = stop
    if out is None:  # a callable projector and no sample: its width is unknown
        return torch.zeros(0, 0, device=device)
    return out


def _shard_gradients(shard: Dataset, model: nn.Module, **kwargs) -> torch.Tensor:
    """:func:`per_sample_gradients` of one shard (a :func:`map_shards` task, local backend)."""
    return per_sample_gradients(model, shard, **kwargs)
