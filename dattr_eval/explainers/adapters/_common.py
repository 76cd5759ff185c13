"""Helpers shared by the peer adapters: lazy imports, tensors of a dataset, checkpoint files."""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Sequence
from types import ModuleType

import torch
from torch.utils.data import Dataset, TensorDataset

from dattr_eval.data.loading import stack_dataset
from dattr_eval.explainers.gradients import Checkpoint, load_checkpoint, resolve_checkpoints

INSTALL_HINT = 'pip install "dattr-eval[peers]"'


def import_peer(module: str, explainer: str) -> ModuleType:
    """Import the peer module ``module`` for the explainer ``explainer``.

    Raises:
        ImportError: the peer package is missing; the message names the extra to install.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"explainer {explainer!r} needs the optional peer package providing {module!r}: "
            f"{INSTALL_HINT}"
        ) from exc


def tensor_dataset(dataset: Dataset) -> TensorDataset:
    """``dataset`` as a ``TensorDataset(inputs, labels)`` (what the peers iterate over)."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return dataset
    return TensorDataset(*stack_dataset(dataset))


def checkpoint_files(
    checkpoints: Sequence[Checkpoint] | None,
    learning_rates: float | Sequence[float],
    model: torch.nn.Module,
    directory: str,
) -> list[tuple[str, float]]:
    """Each checkpoint saved as a state-dict file in ``directory``, with its learning rate.

    Captum loads checkpoints by path; ``None`` (the fitted model itself) is saved too.
    """
    files = []
    for i, (ckpt, lr) in enumerate(resolve_checkpoints(checkpoints, learning_rates)):
        path = os.path.join(directory, f"checkpoint_{i}.pt")
        state = model.state_dict() if ckpt is None else load_checkpoint(ckpt)
        torch.save(state, path)
        files.append((path, float(lr)))
    return files


def workdir(prefix: str) -> tempfile.TemporaryDirectory:
    """A temporary directory for a peer's files, removed when the explainer is garbage-collected."""
    return tempfile.TemporaryDirectory(prefix=f"dattr_eval_{prefix}_")
