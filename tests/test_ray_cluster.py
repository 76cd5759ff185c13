"""Several Ray nodes that share nothing but Ray: each node's workers have their own empty cache.

The driver's cache directory (trained model, training checkpoints) is deleted before any cell
runs, so a worker that read a file the driver wrote would fail; the scores must equal a local run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

from dattr_eval.benchmarks import Benchmark, BenchmarkSpec
from dattr_eval.evaluation import evaluate
from dattr_eval.evaluation.ray_executor import RayExecutor
from dattr_eval.models import ModelCache, TrainRecipe
from tests._digits_models import digits_split

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

ROOT = Path(__file__).resolve().parents[1]
RECIPE = TrainRecipe(arch="digits_mlp", epochs=3, batch_size=32, n_checkpoints=2)
METRICS = ("identical_class", ("lds", {"n_subsets": 4, "n_seeds": 2}))


class ClusterSpec(BenchmarkSpec):
    """A small digits benchmark whose model and checkpoints live in the driver's cache."""

    name = "cluster-toy"
    summary = "digits MLP trained with checkpoints (Ray cluster test)"
    metrics = METRICS

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def build(self, *, cache_dir=None, data_dir=None, device=None):
        train, x_test, y_test = digits_split(150, 30)
        x, y = train.tensors
        train = TensorDataset(x.reshape(-1, 1, 8, 8), y)
        trained = ModelCache(Path(cache_dir) / "models").get_or_train(RECIPE, train)
        return Benchmark.from_datasets(
            self.name,
            trained.model,
            train,
            TensorDataset(x_test.reshape(-1, 1, 8, 8), y_test),
            metrics=self.metrics,
            checkpoints=trained.checkpoints,
            retrain=RECIPE,
            seed=self.seed,
        )


class DeletesDriverCache(RayExecutor):
    """Deletes the driver's cache directory before each cell is submitted."""

    def __init__(self, driver_cache: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.driver_cache = driver_cache

    def run(self, cells):
        def without_driver_files():
            for spec in cells:
                shutil.rmtree(self.driver_cache, ignore_errors=True)
                yield spec

        return super().run(without_driver_files())


def _scores(df: pd.DataFrame) -> pd.DataFrame:
    rows = df[df.kind == "metric"][["explainer", "metric", "status", "score", "ci_low", "ci_high"]]
    return rows.sort_values(["explainer", "metric"]).reset_index(drop=True)


def test_two_nodes_with_their_own_caches_give_the_local_scores(tmp_path):
    explainers = {"tracin": "tracin", "random": "random"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a Ray worker of num_cpus=1
    try:
        local = evaluate(
            [ClusterSpec()],
            explainers,
            out_dir=tmp_path / "local",
            cache_dir=tmp_path / "local-cache",
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    nodes = [tmp_path / "node-0", tmp_path / "node-1"]
    cluster = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "env_vars": {"DATTR_EVAL_CACHE": str(nodes[0])}},
    )
    cluster.add_node(num_cpus=1, env_vars={"DATTR_EVAL_CACHE": str(nodes[1])})
    try:
        ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
        driver_cache = tmp_path / "driver-cache"
        got = evaluate(
            [ClusterSpec()],
            explainers,
            out_dir=tmp_path / "ray",
            cache_dir=driver_cache,
            executor=DeletesDriverCache(driver_cache),
            progress=False,
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
    pd.testing.assert_frame_equal(_scores(got), _scores(local), check_exact=False, rtol=1e-6)
    assert (_scores(got).status == "ok").all()
    assert not driver_cache.exists()  # no worker wrote (or needed) the driver's files
    retrained = [list((node / "retrain").rglob("*.pt")) for node in nodes]
    assert sum(map(len, retrained)) >= 8  # the LDS models were trained into the nodes' own caches
