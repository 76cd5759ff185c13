"""A tiny registered-by-spec benchmark for the fault-injection tests (``tests._fault_grid:Tiny``)."""

from __future__ import annotations

from dattr_eval.benchmarks import BenchmarkSpec
from tests.test_evaluator import _bench


class Tiny(BenchmarkSpec):
    """The evaluator tests' toy digits benchmark (an MLP on 120 training images, 37 test points)."""

    name = "tiny"
    summary = "toy benchmark of the fault-injection tests"
    metrics = ("identical_class", "sparsity", "mislabel_detection")

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def build(self, *, cache_dir=None, data_dir=None, device=None):
        import torch

        return _bench(
            f"tiny-{self.seed}",
            seed=self.seed,
            metrics=self.metrics,
            truth={"mislabeled_indices": torch.arange(0, 120, 9)},
        )


class Tiny1(Tiny):
    """The same toy benchmark with seed 1 (another model, test subset and ground truth)."""

    name = "tiny1"

    def __init__(self, seed: int = 1) -> None:
        super().__init__(seed)
