"""Ensemble training: many models of one recipe, each on its own training subset, trained together.

Member ``i`` is the model ``train_model(replace(recipe, seed=seeds[i]), Subset(train_dataset,
index_sets[i]))`` would give — same initialisation (``torch.manual_seed(seed)`` then
``build_model``), same minibatch order (``make_loader(shuffle=True, seed=seed * 100_003 + epoch)``),
same optimizer update — but the members step together: one gather fetches every member's
minibatch from the stacked training set, and one stacked optimizer step (``stacked_optim``,
``torch.optim``'s arithmetic) updates every member. Two ways to compute the members' gradients:

- ``"vmap"``: the members' parameters are stacked along a leading dimension
  (``torch.func.stack_module_state``) and one ``vmap`` of ``functional_call`` computes every
  member's loss, one backward pass every gradient. A vmapped convolution runs as one grouped
  convolution, whose kernels sum in another order than the per-model ones: members equal
  one-at-a-time training up to float32 rounding, which training carries along (tests: weights
  within 1e-6 after a few steps). One kernel launch for all members is what an accelerator needs.
- ``"lockstep"``: each member runs its own module on its own minibatch and backpropagates at
  once (activations of one member at a time), so every kernel is the one ``train_model`` runs:
  members equal one-at-a-time training bitwise. On CPU the per-model kernels are already large
  GEMMs and stacking the members only grows the working set: measured on 2 shared CPU cores
  (``benchmarks/results/retraining.md``), lockstep is faster than vmap at every chunk size, and
  faster than ``train_model`` one at a time (no ``DataLoader``, one optimizer step for all).

``strategy="auto"`` takes lockstep on CPU and vmap elsewhere. The same request, chunking and
thread count give bitwise the same members. Members with different subset sizes take minibatches
of different sizes at the same step, so they are grouped by subset size; each group trains in
chunks of at most ``max_members`` members (vmap: from a memory budget when not given).
Architectures with buffers (BatchNorm) are not supported.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from dattr_eval.data.loading import stack_dataset
from dattr_eval.models.architectures import build_model
from dattr_eval.models.stacked_optim import stacked_optimizer
from dattr_eval.models.training import TrainRecipe
from dattr_eval.validation import check_choice, check_dataset, check_positive, check_tensor

#: default memory budget for one vmap chunk (bytes), used when ``max_members`` is not given
DEFAULT_MEMORY_BUDGET = 1024**3
#: ways to compute the members' gradients (module docstring)
STRATEGIES = ("auto", "lockstep", "vmap")


def epoch_order(n: int, seed: int) -> Tensor:
    """The order ``make_loader(dataset, shuffle=True, seed=seed)`` visits a dataset of ``n`` samples.

    Returns:
        ``(n,)`` int64, a permutation of ``range(n)``. The ``DataLoader`` iterator draws one
        int64 from its generator (its worker base seed) before the sampler's ``randperm``.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    return torch.randperm(n, generator=generator)


def member_bytes(model: nn.Module, example: Tensor, batch_size: int, optimizer: str) -> int:
    """A rough estimate of the memory one member needs while training (bytes).

    Parameters with their gradient and optimizer state, plus three times the float32 outputs of
    every leaf module for one minibatch (the saved activations, their gradients, workspace).

    Args:
        model: the member's architecture (any initialisation).
        example: one input ``(1, ...)``.
        batch_size: training minibatch size.
        optimizer: ``"sgd"`` (one state tensor per parameter) or ``"adam"`` (two).
    """
    activations = 0

    def count(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        nonlocal activations
        activations += output.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model.eval()(example)
    for hook in hooks:
        hook.remove()
    n_params = sum(p.numel() for p in model.parameters())
    states = 1 if optimizer == "sgd" else 2
    return 4 * ((2 + states) * n_params + 3 * activations * batch_size)


class TrainedChunk(NamedTuple):
    """Members trained together: their positions in the request and their stacked parameters.

    Attributes:
        positions: ``(m,)`` int64, the members' positions in ``index_sets`` / ``seeds``.
        params: parameter name → ``(m, ...)`` stacked trained parameters.
        base: a parameter-free (meta-device) copy of the architecture for ``functional_call``.
    """

    positions: Tensor
    params: dict[str, Tensor]
    base: nn.Module


def train_chunks(
    recipe: TrainRecipe,
    train_dataset: Dataset,
    index_sets: Sequence[Tensor],
    seeds: Sequence[int],
    *,
    strategy: str = "auto",
    max_members: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> Iterator[TrainedChunk]:
    """Train the ensemble chunk by chunk; yields each chunk's stacked parameters when it is done.

    Args:
        recipe: the training recipe of every member (its ``seed`` is ignored: ``seeds`` rule).
        train_dataset: the full training set; members see subsets of it.
        index_sets: one ``(k_i,)`` integer tensor of training indices per member (the order is
            the ``Subset`` order; sorted in the usual use).
        seeds: one seed per member (initialisation and shuffling, as ``recipe.seed``).
        strategy: ``"lockstep"``, ``"vmap"`` or ``"auto"`` (lockstep on CPU, vmap elsewhere).
        max_members: most members trained at once; ``None`` = a whole size group (lockstep) or
            as many as ``memory_budget`` allows (vmap).
        memory_budget: bytes one vmap chunk may use (``member_bytes`` estimate).
        device: where to train (default CPU); members initialise on CPU as in ``train_model``.
        progress: show a tqdm bar over chunk epochs.
    """
    check_dataset(train_dataset, "train_dataset")
    check_positive(recipe.epochs, "epochs", integer=True)
    check_positive(recipe.lr, "lr")
    check_positive(recipe.batch_size, "batch_size", integer=True)
    check_choice(recipe.optimizer, "optimizer", ("sgd", "adam"))
    check_choice(strategy, "strategy", STRATEGIES)
    device = torch.device(device) if device is not None else torch.device("cpu")
    if strategy == "auto":
        strategy = "lockstep" if device.type == "cpu" else "vmap"
    inputs, labels = stack_dataset(train_dataset)
    index_sets = check_index_sets(index_sets, seeds, len(labels))
    probe = build_model(recipe.arch, recipe.n_classes, recipe.in_channels)
    if any(True for _ in probe.buffers()):
        raise ValueError(
            f"train_ensemble does not support architectures with buffers (BatchNorm), "
            f"got arch={recipe.arch!r}; use train_model"
        )
    if max_members is None:
        per_member = member_bytes(probe, inputs[:1], recipe.batch_size, recipe.optimizer)
        max_members = len(index_sets) if strategy == "lockstep" else memory_budget // per_member
        max_members = max(1, max_members)
    check_positive(max_members, "max_members", integer=True)
    inputs, labels = inputs.to(device), labels.to(device)
    chunks = [
        group[start : start + max_members]
        for group in size_groups(index_sets)
        for start in range(0, len(group), max_members)
    ]
    train = train_lockstep if strategy == "lockstep" else train_vmap
    base = copy.deepcopy(probe).to("meta").train()
    bar = tqdm(total=len(chunks) * recipe.epochs, desc="ensemble", disable=not progress)
    for positions in chunks:
        chunk_seeds = [int(seeds[p]) for p in positions]
        members = init_members(recipe, chunk_seeds, device)
        rows = torch.stack([index_sets[p] for p in positions]).to(device)
        params = train(
            recipe, members, chunk_seeds, inputs, labels, rows, on_epoch=lambda: bar.update(1)
        )
        yield TrainedChunk(positions, params, base)
    bar.close()


def check_index_sets(
    index_sets: Sequence[Tensor], seeds: Sequence[int], n_train: int
) -> list[Tensor]:
    """Validate ``index_sets`` against ``seeds`` and ``n_train``; returns them as int64 tensors."""
    if len(index_sets) != len(seeds):
        raise ValueError(
            f"index_sets and seeds must have the same length, got {len(index_sets)} and {len(seeds)}"
        )
    if len(index_sets) == 0:
        raise ValueError("index_sets is empty: nothing to train")
    checked = []
    for i, indices in enumerate(index_sets):
        indices = check_tensor(torch.as_tensor(indices), f"index_sets[{i}]", ndim=1, floating=False)
        if indices.numel() == 0:
            raise ValueError(f"index_sets[{i}] is empty")
        if int(indices.min()) < 0 or int(indices.max()) >= n_train:
            raise ValueError(
                f"index_sets[{i}] must hold training indices in [0, {n_train}), "
                f"got values in [{int(indices.min())}, {int(indices.max())}]"
            )
        checked.append(indices.long().cpu())
    return checked


def size_groups(index_sets: Sequence[Tensor]) -> list[Tensor]:
    """Positions of the members grouped by subset size (groups by increasing size; positions sorted)."""
    sizes = torch.as_tensor([len(s) for s in index_sets])
    return [torch.nonzero(sizes == size).flatten() for size in sizes.unique()]


def init_members(
    recipe: TrainRecipe, seeds: Sequence[int], device: torch.device
) -> list[nn.Module]:
    """Freshly initialised members (``torch.manual_seed(seed)`` then ``build_model``, as ``train_model``)."""
    members = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = build_model(recipe.arch, recipe.n_classes, recipe.in_channels)
        members.append(model.to(device).train())
    return members


def member_batches(
    index_sets: Tensor, seeds: Sequence[int], epoch: int, batch_size: int
) -> Iterator[Tensor]:
    """Every member's minibatch for each step of ``epoch``: ``(m, b)`` training indices.

    Args:
        index_sets: ``(m, k)`` int64, member ``i``'s training indices in ``Subset`` order.
        seeds: the members' seeds (the shuffling seed is ``seed * 100_003 + epoch``).
    """
    subset_size = index_sets.shape[1]
    orders = torch.stack([epoch_order(subset_size, s * 100_003 + epoch) for s in seeds])
    rows = index_sets.gather(1, orders.to(index_sets.device))  # visiting order
    for start in range(0, subset_size, batch_size):
        yield rows[:, start : start + batch_size]


def stacked_parameters(members: Sequence[nn.Module]) -> dict[str, Tensor]:
    """Parameter name → ``(m, ...)`` the members' parameters stacked (detached copies)."""
    names = [name for name, _ in members[0].named_parameters()]
    per_member = [dict(m.named_parameters()) for m in members]
    return {name: torch.stack([p[name].detach() for p in per_member]) for name in names}


def train_lockstep(
    recipe: TrainRecipe,
    members: list[nn.Module],
    seeds: Sequence[int],
    inputs: Tensor,
    labels: Tensor,
    index_sets: Tensor,
    on_epoch=None,
) -> dict[str, Tensor]:
    """Train ``members`` (equal subset sizes) step by step together, each with its own module.

    Args:
        members: freshly initialised members (``init_members``), trained in place.
        seeds: the members' seeds (shuffling).
        inputs: ``(n_train, ...)`` float, the whole training set (on the training device).
        labels: ``(n_train,)`` int64.
        index_sets: ``(m, k)`` int64, member ``i``'s training indices in ``Subset`` order.
        on_epoch: called after every epoch (progress).

    Returns:
        Parameter name → ``(m, ...)`` trained parameters.
    """
    member_params = [list(m.parameters()) for m in members]
    optimizer = stacked_optimizer(
        recipe.optimizer,
        [p for params in member_params for p in params],
        recipe.lr,
        recipe.momentum,
        recipe.weight_decay,
    )
    for epoch in range(1, recipe.epochs + 1):
        for batch in member_batches(index_sets, seeds, epoch, recipe.batch_size):
            x, y = inputs[batch], labels[batch]
            grads = []
            for i, (model, params) in enumerate(zip(members, member_params)):
                loss = F.cross_entropy(model(x[i]), y[i])
                grads.extend(torch.autograd.grad(loss, params))
            optimizer.step(grads)
        if on_epoch is not None:
            on_epoch()
    return stacked_parameters(members)


def train_vmap(
    recipe: TrainRecipe,
    members: list[nn.Module],
    seeds: Sequence[int],
    inputs: Tensor,
    labels: Tensor,
    index_sets: Tensor,
    on_epoch=None,
) -> dict[str, Tensor]:
    """Train ``members`` (equal subset sizes) together as one vmapped model on stacked parameters.

    Arguments as in ``train_lockstep``. Returns parameter name → ``(m, ...)`` trained parameters.
    """
    params, _ = stack_module_state(members)
    base = copy.deepcopy(members[0]).to("meta")
    optimizer = stacked_optimizer(
        recipe.optimizer, list(params.values()), recipe.lr, recipe.momentum, recipe.weight_decay
    )

    def member_loss(member_params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(base, member_params, (x,)), y)

    batched_loss = vmap(member_loss)
    for epoch in range(1, recipe.epochs + 1):
        for batch in member_batches(index_sets, seeds, epoch, recipe.batch_size):
            loss = batched_loss(params, inputs[batch], labels[batch]).sum()
            optimizer.step(torch.autograd.grad(loss, list(params.values())))
        if on_epoch is not None:
            on_epoch()
    return {name: p.detach() for name, p in params.items()}


def train_ensemble(
    recipe: TrainRecipe,
    train_dataset: Dataset,
    index_sets: Sequence[Tensor],
    seeds: Sequence[int],
    *,
    strategy: str = "auto",
    max_members: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> list[nn.Module]:
    """Train one model per ``(index_sets[i], seeds[i])`` together; member ``i`` is
    ``train_model(replace(recipe, seed=seeds[i]), Subset(train_dataset, index_sets[i])).model``
    (bitwise with ``"lockstep"``, up to float32 rounding with ``"vmap"``).

    Arguments as in ``train_chunks``. Returns the members in request order, in eval mode, on
    ``device``. To score the members on test inputs without building ``n`` modules, use
    ``ensemble_outputs``.
    """
    members: list[nn.Module | None] = [None] * len(index_sets)
    for chunk in train_chunks(
        recipe,
        train_dataset,
        index_sets,
        seeds,
        strategy=strategy,
        max_members=max_members,
        memory_budget=memory_budget,
        device=device,
        progress=progress,
    ):
        target_device = next(iter(chunk.params.values())).device
        for row, position in enumerate(chunk.positions.tolist()):
            member = copy.deepcopy(chunk.base).to_empty(device=target_device)
            member.load_state_dict({name: p[row] for name, p in chunk.params.items()})
            members[position] = member.eval()
    return members


@torch.no_grad()
def stacked_logits(chunk: TrainedChunk, inputs: Tensor, batch_size: int = 512) -> Tensor:
    """Every member's logits on ``inputs``: ``(m, n, n_classes)`` float32 on CPU (eval mode).

    Members run one after the other (``functional_call`` with their slice of the stacked
    parameters): the logits are bitwise those of the member's module.

    Args:
        inputs: ``(n, ...)`` float.
        batch_size: inputs per forward pass.
    """
    base = copy.deepcopy(chunk.base).eval()
    device = next(iter(chunk.params.values())).device
    out = []
    for row in range(len(chunk.positions)):
        params = {name: p[row] for name, p in chunk.params.items()}
        out.append(
            torch.cat(
                [
                    functional_call(base, params, (inputs[start : start + batch_size].to(device),))
                    .float()
                    .cpu()
                    for start in range(0, inputs.shape[0], batch_size)
                ]
            )
        )
    return torch.stack(out)


def target_log_probs(logits: Tensor, targets: Tensor) -> Tensor:
    """``log_softmax(logits)[..., targets]``: ``(m, n)`` from logits ``(m, n, c)`` and targets ``(n,)``."""
    log_probs = torch.log_softmax(logits, dim=-1)
    index = targets.view(1, -1, 1).expand(log_probs.shape[0], -1, 1)
    return log_probs.gather(2, index)[..., 0]


def ensemble_outputs(
    recipe: TrainRecipe,
    train_dataset: Dataset,
    index_sets: Sequence[Tensor],
    seeds: Sequence[int],
    test_inputs: Tensor,
    targets: Tensor,
    *,
    strategy: str = "auto",
    max_members: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    device: str | torch.device | None = None,
    progress: bool = False,
    batch_size: int = 512,
) -> Tensor:
    """Train the ensemble of ``train_ensemble`` and return each member's target log-probabilities.

    Only one chunk's parameters are held at a time; no per-member module is built.

    Args:
        test_inputs: ``(n_test, ...)`` float.
        targets: ``(n_test,)`` int64, the class whose log-probability is returned per test point.
        batch_size: test inputs per forward pass.
        Others as in ``train_chunks``.

    Returns:
        ``(n_members, n_test)`` float32 on CPU: ``log_softmax(member_i(x_t))[targets[t]]``.
    """
    check_tensor(test_inputs, "test_inputs", min_ndim=1, floating=True)
    targets = check_tensor(
        torch.as_tensor(targets), "targets", ndim=1, floating=False, length=test_inputs.shape[0]
    ).long()
    out = torch.empty(len(index_sets), test_inputs.shape[0])
    for chunk in train_chunks(
        recipe,
        train_dataset,
        index_sets,
        seeds,
        strategy=strategy,
        max_members=max_members,
        memory_budget=memory_budget,
        device=device,
        progress=progress,
    ):
        logits = stacked_logits(chunk, test_inputs, batch_size)
        out[chunk.positions] = target_log_probs(logits, targets)
    return out


__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "STRATEGIES",
    "TrainedChunk",
    "ensemble_outputs",
    "epoch_order",
    "member_bytes",
    "stacked_logits",
    "target_log_probs",
    "train_chunks",
    "train_ensemble",
]
