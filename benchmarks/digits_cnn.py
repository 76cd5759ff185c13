"""The shared setup of the explainer benchmarks: a small CNN trained on scikit-learn digits with SGD.

Plain SGD (constant learning rate, no momentum, no weight decay), so TracIn's checkpoint sum is
the method as defined; a checkpoint (state dict file) is saved every ``epochs // n_checkpoints``
epochs.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

LR = 0.1


def digits_cnn() -> nn.Module:
    """``Conv(1→8) - ReLU - MaxPool - Conv(8→16) - ReLU - Linear(256→64) - ReLU - Linear(64→10)``, 18,346 parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def digits(n_train: int, n_test: int, seed: int = 0):
    """Shuffled digits as ``(1, 8, 8)`` images in ``[0, 1]``: ``(x_train, y_train), (x_test, y_test)``."""
    x, y = load_digits(return_X_y=True)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)[perm]
    y = torch.tensor(y, dtype=torch.long)[perm]
    return (x[:n_train], y[:n_train]), (
        x[n_train : n_train + n_test],
        y[n_train : n_train + n_test],
    )


def train_with_checkpoints(
    train: tuple[torch.Tensor, torch.Tensor],
    directory: str | Path,
    *,
    epochs: int = 12,
    n_checkpoints: int = 3,
    batch_size: int = 32,
    seed: int = 0,
) -> tuple[nn.Module, list[Path], list[float]]:
    """SGD-train :func:`digits_cnn`; returns the final model (eval mode), checkpoint paths and their learning rates."""
    torch.manual_seed(seed)
    model = digits_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed)
    every = max(1, epochs // n_checkpoints)
    paths = []
    for epoch in range(1, epochs + 1):
        model.train()
        for idx in torch.randperm(train[0].shape[0], generator=gen).split(batch_size):
            opt.zero_grad()
            F.cross_entropy(model(train[0][idx]), train[1][idx]).backward()
            opt.step()
        if epoch % every == 0 and len(paths) < n_checkpoints:
            paths.append(Path(directory) / f"digits_cnn_epoch{epoch}.pt")
            torch.save(model.state_dict(), paths[-1])
    return model.eval(), paths, [LR] * len(paths)


def accuracy(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    with torch.no_grad():
        return float((model(data[0]).argmax(1) == data[1]).float().mean())


def machine_line() -> str:
    """Date, cores, GPU and library versions for the results header."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"{now}; machine: {os.cpu_count()} CPU cores ({platform.machine()}), GPU: {gpu}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
