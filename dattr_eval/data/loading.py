"""Small helpers to stream datasets: loaders, labels, stacking, dtype casting."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from dattr_eval.validation import check_indices, check_labels, check_sample, label_value


def make_loader(
    dataset: Dataset, batch_size: int = 256, shuffle: bool = False, seed: int = 0
) -> DataLoader:
    """A single-process ``DataLoader`` (deterministic order unless ``shuffle``, then seeded)."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=0
    )


def dataset_labels(dataset: Dataset, name: str = "dataset") -> torch.Tensor:
    """The labels of a dataset of ``(x, y)`` as an int64 tensor ``(n,)``.

    Reads ``dataset.targets`` when present (our datasets, torchvision's), else ``TensorDataset``'s
    second tensor, else iterates once.

    Raises:
        TypeError: labels that are not integers (floats are refused, never truncated).
        ValueError: labels that are not 1-D, or fewer/more than ``len(dataset)``.
    """
    targets = getattr(dataset, "targets", None)
    if targets is None and isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        targets = dataset.tensors[1]
    if targets is None:
        return torch.as_tensor(
            [label_value(dataset[i][1], f"{name}[{i}]: the label") for i in range(len(dataset))],
            dtype=torch.long,
        )
    labels = torch.as_tensor(targets) if not isinstance(targets, torch.Tensor) else targets
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(
            f"{name} labels must be integer class indices, got dtype {labels.dtype} "
            "(labels are never rounded or truncated; convert them with .long() if intended)"
        )
    if labels.ndim != 1:
        raise ValueError(f"{name} labels must be 1-D (n,), got shape {tuple(labels.shape)}")
    return check_labels(labels, f"{name} labels", length=len(dataset))


def stack_dataset(dataset: Dataset, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """All inputs ``(n, ...)`` and labels ``(n,)`` of a (small) dataset as two tensors."""
    xs, ys = [], []
    for x, y in make_loader(dataset, batch_size):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return torch.cat(xs), torch.cat(ys).long()


def subset_inputs(dataset: Dataset, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(k, ...)`` and labels ``(k,)`` int64 of the samples ``indices`` of ``dataset``.

    Raises:
        ValueError: an index outside ``[0, len(dataset))`` (negative indices do not wrap).
    """
    positions = check_indices(indices, "indices", len(dataset)).tolist()
    items = [check_sample(dataset[i], f"dataset[{i}]") for i in positions]
    if not items:  # keep the sample shape: (0, *input_shape)
        shape = check_sample(dataset[0], "dataset[0]")[0].shape if len(dataset) else ()
        return torch.zeros(0, *shape), torch.zeros(0, dtype=torch.long)
    return torch.stack([x for x, _ in items]), torch.as_tensor(
        [y for _, y in items], dtype=torch.long
    )


class CastInputs(Dataset):
    """A view of a dataset of ``(x, y)`` whose inputs are cast to ``dtype`` (labels unchanged).

    Used by ``Explainer.fit`` when the training inputs' dtype (float64, float16) differs from
    the model's. Keeps ``targets`` when the wrapped dataset has them.
    """

    def __init__(self, dataset: Dataset, dtype: torch.dtype) -> None:
        self.dataset = dataset
        self.dtype = dtype
        if hasattr(dataset, "targets"):
            self.targets = dataset.targets

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        x, y = self.dataset[index]
        return torch.as_tensor(x).to(self.dtype), y
