"""A disk cache of trained models keyed by recipe, tag and training data, whose entries heal.

Layout: ``root/<key>/`` holds ``model.pt`` (the final ``state_dict``), the ``epoch_<e>.pt``
checkpoints and ``manifest.json`` (format 2: recipe, tag, checkpoints and the SHA-256 of every
file). An entry is built in ``root/<key>.partial/`` and renamed into place once complete, under a
lock (``root/<key>.lock``), so a reader sees a whole entry or none, and two processes that need the
same model train it once (the second waits, then loads).

Every load validates the entry: the manifest parses and has the expected fields, its recipe and tag
are the requested ones, every file is present with its recorded checksum (``torch.load`` alone would
load a flipped byte inside a tensor as a silently different weight), and ``model.pt`` loads with
``weights_only=True`` into the recipe's architecture (same keys and shapes). Entries written before
checksums (no ``format`` in the manifest) have each checkpoint loaded and checked the same way. An
entry that fails is removed with a warning naming the problem and trained again; a clean retrain
gives the same weights, because training is seeded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.atomic import FileLock, atomic_write, fsync_dir, sha256_file
from dattr_eval.data.loading import stack_dataset
from dattr_eval.models.architectures import build_model
from dattr_eval.models.training import Checkpoint, TrainedModel, TrainRecipe, train_model

MANIFEST = "manifest.json"
MODEL_FILE = "model.pt"
#: manifest format written now (1: no ``format`` field and no checksums)
MANIFEST_FORMAT = 2
_CHECKPOINT_NAME = re.compile(r"epoch_\d+\.pt")


class CacheEntryError(ValueError):
    """A cache entry that cannot be used: missing, truncated, corrupt or not matching its recipe."""


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


def _checked_state(recipe: TrainRecipe, path: Path) -> nn.Module:
    """The recipe's architecture with the weights of ``path``; CacheEntryError if they do not fit."""
    model = build_model(recipe.arch, recipe.n_classes, recipe.in_channels)
    try:
        return load_checkpoint(model, path)
    except Exception as exc:  # torch.load and load_state_dict raise many types on damaged files
        raise CacheEntryError(
            f"{path.name} cannot be loaded as {recipe.arch} weights ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc


def _read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an entry, with its fields checked; CacheEntryError naming what is wrong."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CacheEntryError(f"{MANIFEST} is missing (an interrupted write)") from None
    except (OSError, ValueError) as exc:
        raise CacheEntryError(f"{MANIFEST} is not readable JSON ({exc})") from None
    checkpoints = manifest.get("checkpoints") if isinstance(manifest, dict) else None
    if not isinstance(checkpoints, list) or not all(
        isinstance(c, dict)
        and isinstance(c.get("file"), str)
        and _CHECKPOINT_NAME.fullmatch(c["file"])
        and isinstance(c.get("epoch"), int)
        and isinstance(c.get("lr"), (int, float))
        for c in checkpoints
    ):
        raise CacheEntryError(
            f"{MANIFEST} lacks a valid 'checkpoints' list of {{file: epoch_<e>.pt, epoch, lr}}"
        )
    if manifest.get("format", 1) not in (1, MANIFEST_FORMAT):
        raise CacheEntryError(f"{MANIFEST} has unknown format {manifest.get('format')!r}")
    files = [MODEL_FILE, *(c["file"] for c in checkpoints)]
    checksums = manifest.get("sha256")
    if manifest.get("format") == MANIFEST_FORMAT and not (
        isinstance(checksums, dict) and all(isinstance(checksums.get(f), str) for f in files)
    ):
        raise CacheEntryError(f"{MANIFEST} lacks the checksum of every file")
    return manifest


def load_entry(folder: str | Path, recipe: TrainRecipe, tag: str = "") -> TrainedModel:
    """Load and validate the cache entry in ``folder`` for ``recipe`` and ``tag``.

    Raises:
        CacheEntryError: the entry is incomplete, damaged or belongs to another recipe or tag.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CacheEntryError(f"{folder} is not a directory")
    manifest = _read_manifest(folder)
    if manifest.get("recipe") != dataclasses.asdict(recipe) or manifest.get("tag") != tag:
        raise CacheEntryError(f"{MANIFEST} describes another recipe or tag")
    checksums = manifest.get("sha256")
    names = [c["file"] for c in manifest["checkpoints"]]
    for name in (MODEL_FILE, *names):
        if not (folder / name).is_file():
            raise CacheEntryError(f"{name} is missing")
        if checksums is not None and sha256_file(folder / name) != checksums[name]:
            raise CacheEntryError(f"{name} does not match its recorded checksum (damaged)")
    model = _checked_state(recipe, folder / MODEL_FILE)
    if checksums is None:  # format 1: no checksums, so load each checkpoint once to check it
        for name in names:
            _checked_state(recipe, folder / name)
    checkpoints = [
        Checkpoint(folder / c["file"], c["epoch"], float(c["lr"])) for c in manifest["checkpoints"]
    ]
    return TrainedModel(model.eval(), checkpoints)


def _remove(path: Path) -> None:
    """Delete a file or a directory tree, if present."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class ModelCache:
    """Trains each (recipe, tag, training data) once and reloads it afterwards; see the module doc."""

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
        """The cached model for this recipe and data, training (and storing) it on a miss.

        A damaged entry is replaced with a warning, never raised.
        """
        key = self.key(recipe, train_dataset, tag)
        folder = self.root / key
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / f"{key}.lock"):
            if folder.exists():
                try:
                    return load_entry(folder, recipe, tag)
                except CacheEntryError as exc:
                    warnings.warn(
                        f"model cache entry {folder} is unusable: {exc}; training it again",
                        stacklevel=2,
                    )
                    _remove(folder)
            return self._train(folder, recipe, train_dataset, tag, progress)

    @staticmethod
    def _train(
        folder: Path, recipe: TrainRecipe, train_dataset: Dataset, tag: str, progress: bool
    ) -> TrainedModel:
        """Train into ``<folder>.partial`` and rename it to ``folder`` when complete."""
        partial = folder.with_name(f"{folder.name}.partial")
        _remove(partial)  # left by a killed run (the caller holds the entry's lock)
        trained = train_model(recipe, train_dataset, checkpoint_dir=partial, progress=progress)
        partial.mkdir(parents=True, exist_ok=True)
        with atomic_write(partial / MODEL_FILE) as fh:
            torch.save(trained.model.state_dict(), fh)
        names = [MODEL_FILE, *(c.path.name for c in trained.checkpoints)]
        manifest = {
            "format": MANIFEST_FORMAT,
            "recipe": dataclasses.asdict(recipe),
            "tag": tag,
            "checkpoints": [
                {"file": c.path.name, "epoch": c.epoch, "lr": c.lr} for c in trained.checkpoints
            ],
            "sha256": {name: sha256_file(partial / name) for name in names},
        }
        with atomic_write(partial / MANIFEST, "w") as fh:
            json.dump(manifest, fh, indent=2)
        os.replace(partial, folder)
        fsync_dir(folder.parent)
        checkpoints = [Checkpoint(folder / c.path.name, c.epoch, c.lr) for c in trained.checkpoints]
        return TrainedModel(trained.model, checkpoints)
