"""A disk cache of trained models keyed by recipe, tag and training data."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.data.loading import stack_dataset
from dattr_eval.models.architectures import build_model
from dattr_eval.models.training import Checkpoint, TrainedModel, TrainRecipe, train_model

MANIFEST = "manifest.json"


def default_cache_dir() -> Path:
    """``$DATTR_EVAL_CACHE`` if set, else ``~/.cache/dattr_eval`` (trained models, retraining outputs)."""
    return Path(os.environ.get("DATTR_EVAL_CACHE", Path.home() / ".cache" / "dattr_eval"))


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a saved ``state_dict`` into ``model`` (``torch.load(weights_only=True)``, on CPU); returns it."""
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def data_fingerprint(dataset: Dataset) -> str:
    """SHA-256 of the dataset's inputs and labels (shapes, dtypes, bytes)."""
    x, y = stack_dataset(dataset)
    h = hashlib.sha256()
    for t in (x.contiguous(), y.contiguous()):
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


class ModelCache:
    """Trains each (recipe, tag, training data) once and reloads it afterwards.

    Layout: ``root/<key>/model.pt`` (final ``state_dict``), ``epoch_<e>.pt`` checkpoints and
    ``manifest.json`` (recipe, tag, checkpoints), written last so an interrupted run retrains.
    """

    def __init__(self, root: str | Path = ".dattr_cache/models") -> None:
        self.root = Path(root)

    def key(self, recipe: TrainRecipe, train_dataset: Dataset, tag: str = "") -> str:
        """The cache key: hash of the recipe fields, ``tag`` and ``data_fingerprint(train_dataset)``."""
        payload = json.dumps(
            {
                "recipe": dataclasses.asdict(recipe),
                "tag": tag,
                "data": data_fingerprint(train_dataset),
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:20]

    def get_or_train(
        self, recipe: TrainRecipe, train_dataset: Dataset, tag: str = "", progress: bool = False
    ) -> TrainedModel:
        """The cached model for this recipe and data, training (and storing) it on a miss."""
        folder = self.root / self.key(recipe, train_dataset, tag)
        if (folder / MANIFEST).is_file():
            return self._load(folder, recipe)
        trained = train_model(recipe, train_dataset, checkpoint_dir=folder, progress=progress)
        torch.save(trained.model.state_dict(), folder / "model.pt")
        manifest = {
            "recipe": dataclasses.asdict(recipe),
            "tag": tag,
            "checkpoints": [
                {"file": c.path.name, "epoch": c.epoch, "lr": c.lr} for c in trained.checkpoints
            ],
        }
        tmp = folder / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, folder / MANIFEST)
        return trained

    @staticmethod
    def _load(folder: Path, recipe: TrainRecipe) -> TrainedModel:
        manifest = json.loads((folder / MANIFEST).read_text())
        model = load_checkpoint(
            build_model(recipe.arch, recipe.n_classes, recipe.in_channels), folder / "model.pt"
        )
        checkpoints = [
            Checkpoint(folder / c["file"], int(c["epoch"]), float(c["lr"]))
            for c in manifest["checkpoints"]
        ]
        return TrainedModel(model.eval(), checkpoints)
