"""Vectorised ensemble training equals one-at-a-time ``train_model`` with the same seeds and subsets."""

import dataclasses

import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from dattr_eval.data import ArrayDataset
from dattr_eval.data.loading import make_loader
from dattr_eval.models import TrainRecipe, train_model
from dattr_eval.models.ensemble import (
    ensemble_outputs,
    epoch_order,
    member_bytes,
    train_chunks,
    train_ensemble,
)

# Tolerance of the vmap strategy. Members see the same data order, initialisation and optimizer
# arithmetic as train_model; only the batched kernels (grouped convolution, bmm) sum in another
# order, a float32 rounding difference (~6e-8 relative) per operation, which training carries
# along. Measured here: max |dw| <= 8e-8 for every member, chunking and optimizer (weights ~0.3).
# 1e-6 leaves a 10x margin and still fails on any real mistake: a wrong batch order, seed or
# update moves the weights by >= 1e-3 after these steps (checked below). The lockstep strategy
# runs train_model's own kernels and must match bitwise.
ATOL = 1e-6


@pytest.fixture(scope="module")
def tiny():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.rand(60, 1, 8, 8, generator=g) * 0.3
    x[y == 0, :, :4] += 0.7
    x[y == 1, :, 4:] += 0.7
    return ArrayDataset(x, y)


def index_sets(n: int, sizes: list[int], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(n, generator=g)[:k].sort().values for k in sizes]


def one_at_a_time(recipe, dataset, sets, seeds):
    return [
        train_model(dataclasses.replace(recipe, seed=s), Subset(dataset, idx.tolist())).model
        for idx, s in zip(sets, seeds)
    ]


def max_weight_difference(a, b) -> float:
    return max((pa - pb).abs().max().item() for pa, pb in zip(a.parameters(), b.parameters()))


def test_epoch_order_is_make_loaders_order():
    dataset = TensorDataset(torch.arange(50))
    for seed in (0, 7, 100_004):
        visited = torch.cat([b[0] for b in make_loader(dataset, 8, shuffle=True, seed=seed)])
        assert torch.equal(visited, epoch_order(50, seed))


@pytest.mark.parametrize("strategy", ["lockstep", "vmap"])
@pytest.mark.parametrize(
    ("arch", "optimizer", "lr"),
    [("digits_cnn", "sgd", 0.05), ("digits_mlp", "sgd", 0.1), ("digits_cnn", "adam", 0.01)],
)
def test_ensemble_equals_one_at_a_time(tiny, arch, optimizer, lr, strategy):
    recipe = TrainRecipe(
        arch=arch,
        n_classes=3,
        epochs=3,
        lr=lr,
        batch_size=8,
        optimizer=optimizer,
        weight_decay=1e-2,
        momentum=0.9,
        n_checkpoints=0,
    )
    sets = index_sets(len(tiny), [30, 21, 30, 17, 21])  # unequal sizes: three groups
    seeds = [3, 1, 4, 1, 5]  # a repeated seed on different subsets
    ensemble = train_ensemble(recipe, tiny, sets, seeds, strategy=strategy, max_members=2)
    reference = one_at_a_time(recipe, tiny, sets, seeds)
    for member, expected in zip(ensemble, reference):
        assert not member.training
        for (name, p), q in zip(member.named_parameters(), expected.parameters()):
            if strategy == "lockstep":
                assert torch.equal(p, q), (name, (p - q).abs().max().item())
            else:
                assert torch.allclose(p, q, rtol=0, atol=ATOL), (name, (p - q).abs().max().item())
    # the test can fail: members did move, and differ from each other
    untrained = one_at_a_time(dataclasses.replace(recipe, epochs=1), tiny, sets[:1], seeds[:1])
    assert max_weight_difference(ensemble[0], untrained[0]) > 1e-3
    assert max_weight_difference(ensemble[1], ensemble[3]) > 1e-3


@pytest.mark.parametrize("strategy", ["lockstep", "vmap"])
def test_outputs_are_members_target_log_probs(tiny, strategy):
    recipe = TrainRecipe(arch="digits_cnn", n_classes=3, epochs=2, lr=0.05, batch_size=8)
    sets = index_sets(len(tiny), [25, 25, 40])
    test_x, targets = tiny.inputs[:13], torch.tensor([0, 1, 2, 2, 1, 0, 0, 1, 2, 0, 1, 2, 2])
    members = train_ensemble(recipe, tiny, sets, [0, 1, 2], strategy=strategy)
    outputs = ensemble_outputs(
        recipe, tiny, sets, [0, 1, 2], test_x, targets, strategy=strategy, batch_size=5
    )
    assert outputs.shape == (3, 13) and outputs.dtype == torch.float32
    with torch.no_grad():
        expected = torch.stack(
            [m(test_x).log_softmax(-1)[torch.arange(13), targets] for m in members]
        )
    assert torch.allclose(outputs, expected, rtol=0, atol=1e-5)
    assert (outputs <= 0).all()
    # the same request gives bitwise the same outputs (the service caches by content)
    again = ensemble_outputs(
        recipe, tiny, sets, [0, 1, 2], test_x, targets, strategy=strategy, batch_size=5
    )
    assert torch.equal(outputs, again)


def test_chunks_respect_max_members_and_memory_budget(tiny):
    recipe = TrainRecipe(arch="digits_mlp", n_classes=3, epochs=1, batch_size=8)
    sets = index_sets(len(tiny), [20, 20, 20, 20, 20, 10])
    chunks = list(train_chunks(recipe, tiny, sets, range(6), max_members=3))
    assert [c.positions.tolist() for c in chunks] == [[5], [0, 1, 2], [3, 4]]
    chunks = list(train_chunks(recipe, tiny, sets, range(6)))  # lockstep: whole size groups
    assert [c.positions.tolist() for c in chunks] == [[5], [0, 1, 2, 3, 4]]
    model = train_model(recipe, tiny).model
    per_member = member_bytes(model, tiny.inputs[:1], recipe.batch_size, recipe.optimizer)
    n_params = sum(p.numel() for p in model.parameters())
    activations = 8 * (
        64 + 128 + 128 + 64 + 64 + 3
    )  # batch × outputs of Flatten, Linear, ReLU, ...
    assert per_member == 4 * (3 * n_params + 3 * activations)  # param, grad, momentum; 3 × acts
    budget = 2 * per_member + 1
    chunks = list(train_chunks(recipe, tiny, sets, range(6), strategy="vmap", memory_budget=budget))
    assert max(len(c.positions) for c in chunks) == 2


def test_bad_requests_name_the_argument(tiny):
    recipe = TrainRecipe(arch="digits_mlp", n_classes=3, epochs=1)
    with pytest.raises(ValueError, match="index_sets and seeds must have the same length"):
        train_ensemble(recipe, tiny, index_sets(60, [5, 5]), [0])
    with pytest.raises(
        ValueError, match=r"index_sets\[1\] must hold training indices in \[0, 60\)"
    ):
        train_ensemble(recipe, tiny, [torch.arange(5), torch.tensor([3, 60])], [0, 1])
    with pytest.raises(TypeError, match=r"index_sets\[0\] must have an integer dtype"):
        train_ensemble(recipe, tiny, [torch.rand(4)], [0])
    with pytest.raises(ValueError, match="BatchNorm"):
        train_ensemble(
            TrainRecipe(arch="resnet18", n_classes=3, in_channels=1, epochs=1),
            tiny,
            [torch.arange(4)],
            [0],
        )
    with pytest.raises(ValueError, match="strategy"):
        train_ensemble(recipe, tiny, [torch.arange(4)], [0], strategy="threads")
    with pytest.raises(ValueError, match="targets must have length 2"):
        ensemble_outputs(recipe, tiny, [torch.arange(4)], [0], tiny.inputs[:2], torch.tensor([0]))
