"""Seeded, deterministic training with checkpoints (for TracIn-style explainers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from dattr_eval.data.loading import make_loader
from dattr_eval.models.architectures import build_model
from dattr_eval.validation import check_choice, check_dataset, check_positive


@dataclass(frozen=True)
class TrainRecipe:
    """Everything that determines a trained model (with the training data).

    Attributes:
        arch: ``build_model`` architecture name.
        n_classes: output classes.
        in_channels: input channels.
        epochs: passes over the training data.
        lr: learning rate (constant).
        batch_size: minibatch size.
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``.
        weight_decay: L2 coefficient passed to the optimizer.
        momentum: SGD momentum.
        seed: seeds the initialisation and the shuffling.
        n_checkpoints: checkpoints saved at evenly spaced epochs (the last one is the final model).
    """

    arch: str = "digits_cnn"
    n_classes: int = 10
    in_channels: int = 1
    epochs: int = 30
    lr: float = 0.05
    batch_size: int = 64
    optimizer: str = "sgd"
    weight_decay: float = 5e-4
    momentum: float = 0.9
    seed: int = 0
    n_checkpoints: int = 3

    def checkpoint_epochs(self) -> list[int]:
        """The (1-based) epochs after which a checkpoint is saved."""
        n = min(self.n_checkpoints, self.epochs)
        return sorted({round((k + 1) * self.epochs / n) for k in range(n)}) if n > 0 else []


class Checkpoint(NamedTuple):
    """A saved ``state_dict``: its file, the epoch after which it was saved, the learning rate then."""

    path: Path
    epoch: int
    lr: float


class TrainedModel(NamedTuple):
    """A trained model (eval mode) and its checkpoints (empty when none were saved)."""

    model: nn.Module
    checkpoints: list[Checkpoint]


def _optimizer(recipe: TrainRecipe, model: nn.Module) -> torch.optim.Optimizer:
    check_choice(recipe.optimizer, "optimizer", ("sgd", "adam"))
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=recipe.lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
        )
    return torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)


def train_model(
    recipe: TrainRecipe,
    train_dataset: Dataset,
    checkpoint_dir: str | Path | None = None,
    progress: bool = False,
) -> TrainedModel:
    """Train ``recipe`` on ``train_dataset`` with cross-entropy; same inputs give the same weights.

    Args:
        checkpoint_dir: where ``epoch_<e>.pt`` state_dicts are written; ``None`` saves none.
        progress: show a tqdm bar over epochs.
    """
    check_dataset(train_dataset, "train_dataset")
    check_positive(recipe.epochs, "epochs", integer=True)
    check_positive(recipe.lr, "lr")
    check_positive(recipe.batch_size, "batch_size", integer=True)
    torch.manual_seed(recipe.seed)
    model = build_model(recipe.arch, recipe.n_classes, recipe.in_channels)
    opt = _optimizer(recipe, model)
    save_at = set(recipe.checkpoint_epochs()) if checkpoint_dir is not None else set()
    if save_at:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    checkpoints: list[Checkpoint] = []
    model.train()
    for epoch in tqdm(range(1, recipe.epochs + 1), desc="train", disable=not progress):
        for x, y in make_loader(
            train_dataset, recipe.batch_size, shuffle=True, seed=recipe.seed * 100_003 + epoch
        ):
            opt.zero_grad()
            F.cross_entropy(model(x), torch.as_tensor(y).long()).backward()
            opt.step()
        if epoch in save_at:
            path = Path(checkpoint_dir) / f"epoch_{epoch}.pt"
            torch.save(model.state_dict(), path)
            checkpoints.append(Checkpoint(path, epoch, float(opt.param_groups[0]["lr"])))
    return TrainedModel(model.eval(), checkpoints)


@torch.no_grad()
def accuracy(model: nn.Module, dataset: Dataset, batch_size: int = 512) -> float:
    """Share of ``dataset`` that ``model`` classifies correctly (model in eval mode, on its device)."""
    check_dataset(dataset, "dataset")
    device = next(model.parameters()).device
    model.eval()
    correct = 0
    for x, y in make_loader(dataset, batch_size):
        correct += int((model(x.to(device)).argmax(1).cpu() == torch.as_tensor(y)).sum())
    return correct / len(dataset)
