"""Small helpers to stream datasets: loaders, labels, stacking."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset


def make_loader(
    dataset: Dataset, batch_size: int = 256, shuffle: bool = False, seed: int = 0
) -> DataLoader:
    """A single-process ``DataLoader`` (deterministic order unless ``shuffle``, then seeded)."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=0
    )


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    """The labels of a dataset of ``(x, y)`` as an int64 tensor ``(n,)``.

    Reads ``dataset.targets`` when present (our datasets, torchvision's), else ``TensorDataset``'s
    second tensor, else iterates once.
    """
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return torch.as_tensor(targets).long()
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[1].long()
    return torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))]).long()


def stack_dataset(dataset: Dataset, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """All inputs ``(n, ...)`` and labels ``(n,)`` of a (small) dataset as two tensors."""
    xs, ys = [], []
    for x, y in make_loader(dataset, batch_size):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return torch.cat(xs), torch.cat(ys).long()


def subset_inputs(dataset: Dataset, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels of the samples ``indices`` of ``dataset`` as tensors."""
    items = [dataset[int(i)] for i in indices]
    return torch.stack([torch.as_tensor(x) for x, _ in items]), torch.as_tensor(
        [int(y) for _, y in items]
    ).long()
