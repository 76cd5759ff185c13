"""``Benchmark`` (a ready model + data + ground truth + metrics) and ``BenchmarkSpec`` (a lazy recipe).

A user builds a ``Benchmark`` from their own model and datasets in a few lines::

    bench = Benchmark.from_datasets("my-bench", model, train_set, test_set,
                                    metrics=("identical_class", "top_k_cardinality"))
    dattr_eval.evaluate([bench], ["random", "dualview"], out_dir="results/mine")

Built-in benchmarks are ``BenchmarkSpec`` subclasses in the registry: constructing one is
free; ``spec.build(cache_dir=..., data_dir=...)`` loads the data, applies the perturbation and
trains (or loads the cached) model.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.data.loading import dataset_labels, subset_inputs
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.models.retraining import RecipeRetrainer, Retrainer
from dattr_eval.models.training import TrainRecipe
from dattr_eval.params import ParamsMixin
from dattr_eval.validation import (
    check_choice,
    check_dataset,
    check_model,
    check_positive,
    check_tensor,
)


@dataclass
class Benchmark:
    """Everything one evaluation needs besides the explainers.

    Attributes:
        name: identifies the benchmark in results.
        model: the trained model, in eval mode.
        train_dataset: the dataset the model was trained on (perturbed where the benchmark
            perturbs it); attribution columns follow its order.
        test_inputs: ``(n_test, ...)`` float, the test samples to explain.
        truth: ground truth with training-level fields and test-level fields for the
            ``n_test`` test inputs; ``truth.test_targets`` ``(n_test,)`` are the explained classes.
        metrics: the metrics this benchmark scores (names, instances or ``(name, kwargs)``).
        checkpoints: checkpoints saved while training ``model`` (objects with ``path``,
            ``epoch``, ``lr``), handed to explainers that use them (TracIn).
        retrain: how to retrain the model on a training subset (retraining metrics): a
            ``models.Retrainer`` or a ``TrainRecipe`` of a built-in architecture (wrapped in a
            ``RecipeRetrainer``); ``None`` if the benchmark cannot retrain.
        seed: the benchmark's seed (perturbation, test subset, training); seeds the randomised model.
        summary: one line for listings; notes: caveats shown in reports (e.g. a test subset).
        cache_dir: where retraining results for this benchmark are cached (``None``: not cached).
    """

    name: str
    model: nn.Module
    train_dataset: Dataset
    test_inputs: torch.Tensor
    truth: GroundTruth
    metrics: tuple[Any, ...] = ("identical_class",)
    checkpoints: Sequence[Any] = ()
    retrain: Retrainer | TrainRecipe | None = None
    seed: int = 0
    summary: str = ""
    notes: str = ""
    cache_dir: Path | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_model(self.model)
        check_dataset(self.train_dataset)
        check_tensor(self.test_inputs, "test_inputs", min_ndim=1, floating=True)
        if not isinstance(self.truth, GroundTruth):
            raise TypeError(f"truth must be a GroundTruth, got {type(self.truth).__name__}")
        if self.truth.test_targets is None:
            raise ValueError("truth.test_targets (n_test,) is required: the classes to explain")
        if self.truth.n_test != self.test_inputs.shape[0]:
            raise ValueError(
                f"truth has {self.truth.n_test} test samples but test_inputs has {self.test_inputs.shape[0]}"
            )
        n_train = len(self.train_dataset)
        if self.truth.n_train is not None and self.truth.n_train != n_train:
            raise ValueError(
                f"truth has {self.truth.n_train} training samples, train_dataset has {n_train}"
            )
        self.metrics = tuple(self.metrics)
        if isinstance(self.retrain, TrainRecipe):
            self.retrain = RecipeRetrainer(self.retrain)
        elif self.retrain is not None and not isinstance(self.retrain, Retrainer):
            raise TypeError(
                "retrain must be a dattr_eval.models.Retrainer, a TrainRecipe or None, got "
                f"{type(self.retrain).__name__}"
            )
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)

    @property
    def n_train(self) -> int:
        return len(self.train_dataset)

    @property
    def n_test(self) -> int:
        return int(self.test_inputs.shape[0])

    @classmethod
    def from_datasets(
        cls,
        name: str,
        model: nn.Module,
        train_dataset: Dataset,
        test_dataset: Dataset,
        *,
        metrics: Sequence[Any] = ("identical_class",),
        n_test: int | None = None,
        targets: str = "prediction",
        seed: int = 0,
        truth: GroundTruth | dict | None = None,
        test_truth: dict[str, torch.Tensor] | None = None,
        batch_size: int = 256,
        **kwargs: Any,
    ) -> Benchmark:
        """A benchmark from a trained model and its train/test datasets.

        Args:
            n_test: explain a seeded random subset of this many test samples (``None``: all).
            targets: explain the model's ``"prediction"`` (default, as the DualView paper) or the
                true ``"label"``.
            truth: extra ground truth (e.g. ``mislabeled_indices``); training labels, test labels,
                predictions and targets are filled in here.
            test_truth: test-level ground-truth fields over the whole ``test_dataset`` (e.g.
                ``{"test_fine_labels": (len(test_dataset),)}``), restricted here to the explained subset.
            kwargs: further ``Benchmark`` fields (``checkpoints``, ``retrain``, ``summary``, ...).
        """
        check_model(model)
        check_dataset(test_dataset, "test_dataset")
        check_choice(targets, "targets", ("prediction", "label"))
        index = select_test_indices(len(test_dataset), n_test, seed)
        test_inputs, test_labels = subset_inputs(test_dataset, index)
        predictions = predict(model, test_inputs, batch_size)
        base = GroundTruth.coerce(truth, **{k: v[index] for k, v in (test_truth or {}).items()})
        truth = replace(
            base,
            train_labels=base.train_labels
            if base.train_labels is not None
            else dataset_labels(train_dataset),
            test_labels=test_labels,
            test_predictions=predictions,
            test_targets=predictions if targets == "prediction" else test_labels,
            test_indices=index,
        )
        if truth.n_classes is None:
            truth = replace(truth, n_classes=int(output_dim(model, test_inputs[:1])))
        return cls(
            name=name,
            model=model.eval(),
            train_dataset=train_dataset,
            test_inputs=test_inputs,
            truth=truth,
            metrics=tuple(metrics),
            seed=seed,
            **kwargs,
        )


def select_test_indices(n_available: int, n_test: int | None, seed: int) -> torch.Tensor:
    """Sorted seeded random ``n_test`` of ``range(n_available)`` (all when ``n_test`` is None or larger)."""
    if n_test is None or n_test >= n_available:
        return torch.arange(n_available)
    check_positive(n_test, "n_test", integer=True)
    perm = torch.randperm(n_available, generator=torch.Generator().manual_seed(seed))
    return perm[:n_test].sort().values


@torch.no_grad()
def model_outputs(model: nn.Module, inputs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits ``(n, n_classes)`` of ``model`` on ``inputs`` (on the model's device, returned on CPU)."""
    device = next(model.parameters()).device
    model.eval()
    out = [
        model(inputs[i : i + batch_size].to(device)).float().cpu()
        for i in range(0, inputs.shape[0], batch_size)
    ]
    return torch.cat(out)


def predict(model: nn.Module, inputs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted classes ``(n,)`` int64."""
    return model_outputs(model, inputs, batch_size).argmax(-1)


def output_dim(model: nn.Module, example: torch.Tensor) -> int:
    return int(model_outputs(model, example).shape[-1])


class BenchmarkSpec(ParamsMixin):
    """A registered, lazily built benchmark recipe.

    Subclasses set ``summary`` (one line) and implement ``build``. Hyperparameters (test subset
    size, noise fraction, seed, ...) go in ``__init__`` and are stored under the same names.
    """

    name: ClassVar[str] = "benchmark"
    summary: ClassVar[str] = ""
    #: the metrics the built benchmark scores (known before building, so reruns can skip it)
    metrics: ClassVar[tuple[Any, ...]] = ()

    @property
    def label(self) -> str:
        """The built benchmark's name: the registry name, plus hyperparameters that differ from the defaults."""
        signature = inspect.signature(type(self).__init__).parameters
        changed = {k: v for k, v in self.get_params().items() if v != signature[k].default}
        return (
            self.name
            if not changed
            else f"{self.name}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"
        )

    def build(
        self,
        *,
        cache_dir: str | Path | None = None,
        data_dir: str | Path | None = None,
        device: str | torch.device | None = None,
    ) -> Benchmark:
        """Load the data, apply the perturbation, train or load the cached model.

        Args:
            cache_dir: where trained models and retraining results are cached.
            data_dir: where dataset files live (datasets that are not bundled).
            device: where to train and keep the model.
        """
        raise NotImplementedError


__all__ = ["Benchmark", "BenchmarkSpec", "model_outputs", "predict", "select_test_indices"]
