"""Offline datasets (torch Datasets of ``(x: float32, y: int64)``) and seeded perturbations."""

from dattr_eval.data.cifar import load_cifar10, read_cifar_batch
from dattr_eval.data.datasets import ArrayDataset, DatasetSplit, stratified_split
from dattr_eval.data.digits import load_digits
from dattr_eval.data.idx import load_fashion_mnist, load_mnist, read_idx
from dattr_eval.data.mnist import load_mnist_subset
from dattr_eval.data.perturbations import (
    add_shortcut,
    flip_labels,
    group_labels,
    mark_dataset,
    mark_inputs,
)

__all__ = [
    "ArrayDataset",
    "DatasetSplit",
    "add_shortcut",
    "flip_labels",
    "group_labels",
    "load_cifar10",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "load_mnist_subset",
    "mark_dataset",
    "mark_inputs",
    "read_cifar_batch",
    "read_idx",
    "stratified_split",
]
