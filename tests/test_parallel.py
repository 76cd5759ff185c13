"""Backends: shard bounds, map_shards in order, and Ray-sharded passes equal to the in-process ones."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from dattr_eval import explainers
from dattr_eval.explainers.features import extract_features
from dattr_eval.explainers.gradients import RandomProjector, grad_dim, per_sample_gradients
from dattr_eval.parallel import cat_shards, current_backend, map_shards, shard_bounds, use_backend
from tests._digits_models import digits_split, single_thread, small_mlp  # noqa: F401
from tests._grad_reference import OUTPUTS, loop_gradients

N_TRAIN, N_TEST = 37, 6  # 37 is prime: shards of unequal size


@pytest.fixture(scope="module")
def setup() -> tuple[torch.nn.Module, TensorDataset, torch.Tensor]:
    train, x_test, _ = digits_split(N_TRAIN, N_TEST)
    return small_mlp(train, weight_decay=1e-2, hidden=8), train, x_test


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A local Ray cluster of 2 CPUs for this module."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def rows_of(shard: Subset, scale: float = 1.0) -> torch.Tensor:
    """The inputs of a shard, stacked and scaled, ``(len(shard), 64)``."""
    return torch.stack([shard[i][0] for i in range(len(shard))]) * scale


# ---------------------------------------------------------------------- local
def test_shard_bounds_cover_in_order_with_sizes_within_one():
    assert shard_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert shard_bounds(2, 5) == [(0, 1), (1, 2)]  # never an empty shard
    assert shard_bounds(0, 4) == []
    bounds = shard_bounds(37, 4)
    assert bounds[0][0] == 0 and bounds[-1][1] == 37
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert {hi - lo for lo, hi in bounds} == {9, 10}
    with pytest.raises(ValueError, match="n_shards"):
        shard_bounds(5, 0)


def test_local_map_shards_runs_in_order_and_is_the_default(setup):
    _, train, _ = setup
    assert current_backend().name == "local" and not current_backend().is_ray
    parts = map_shards(rows_of, train, n_shards=4, shared={"scale": 2.0})
    assert [p.shape[0] for p in parts] == [9, 9, 9, 10]
    torch.testing.assert_close(cat_shards(parts), 2 * train.tensors[0], rtol=0, atol=0)
    with use_backend("local", n_shards=3):
        assert len(map_shards(rows_of, train)) == 3
    assert current_backend().n_shards is None  # restored after the block


def test_use_backend_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="name must be one of"), use_backend("dask"):
        pass
    with pytest.raises(ValueError, match="num_gpus"), use_backend("local", num_gpus=1):
        pass
    with pytest.raises(ValueError, match="n_shards"), use_backend("local", n_shards=0):
        pass


# ---------------------------------------------------------------------- Ray
def test_ray_map_shards_returns_shard_order(ray_cluster, setup):
    _, train, _ = setup
    with use_backend("ray", n_shards=3) as backend:
        assert current_backend() is backend and backend.task_options() == {
            "num_cpus": 1,
            "num_gpus": 0,
        }
        parts = map_shards(rows_of, train, shared={"scale": 3.0})
    assert [p.shape[0] for p in parts] == [12, 12, 13]
    torch.testing.assert_close(cat_shards(parts), 3 * train.tensors[0], rtol=0, atol=0)
    assert current_backend().name == "local"


def test_ray_sharded_features_equal_local(ray_cluster, setup):
    model, train, _ = setup
    local = extract_features(model, train, batch_size=8)
    with use_backend("ray", n_shards=3):
        sharded = extract_features(model, train, batch_size=8)
    hidden = model[1](model[0](train.tensors[0])).detach()  # independent: the penultimate layer
    torch.testing.assert_close(local[0], hidden)
    for got, want in zip(sharded, local):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("projected", [False, True])
def test_ray_sharded_per_sample_gradients_equal_local(ray_cluster, setup, projected):
    model, train, _ = setup
    projector = RandomProjector(grad_dim(model), 16, seed=3) if projected else None
    kwargs = {"loss": "ce", "projector": projector, "batch_size": 5}
    local = per_sample_gradients(model, train, **kwargs)
    with use_backend("ray", n_shards=3):
        sharded = per_sample_gradients(model, train, **kwargs)
    reference = loop_gradients(model, *train.tensors, OUTPUTS["ce"])
    if projected:
        reference = reference @ projector.matrix()
    assert sharded.shape == (N_TRAIN, 16 if projected else grad_dim(model))
    torch.testing.assert_close(local, reference, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(sharded, local, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "name, params",
    [("dualview", {"C": 1e-2, "tol": 1e-5, "max_iter": 5000}), ("grad_dot", {"batch_size": 8})],
)
def test_fit_under_ray_gives_the_local_attributions(ray_cluster, setup, name, params):
    model, train, x_test = setup
    local = explainers.create(name, **params).fit(model, train).explain(x_test)
    with use_backend("ray"):
        xpl = explainers.create(name, **params).fit(model, train)
    assert float(local.abs().max()) > 0
    torch.testing.assert_close(xpl.explain(x_test), local, rtol=1e-5, atol=1e-6)
