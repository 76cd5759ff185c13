"""CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``) from a user directory.

The batches are Python pickles. They are read with a restricted unpickler that only rebuilds
dicts, lists, bytes/str, numbers and numpy arrays, so a file cannot run arbitrary code; still,
read only files you obtained yourself.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from dattr_eval.data.datasets import ArrayDataset, DatasetSplit

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"

#: the only globals a CIFAR batch may reference (numpy array reconstruction)
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"CIFAR batch references {module}.{name}, which is not allowed"
            )
        return super().find_class(module, name)


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file → images ``(n, 3, 32, 32)`` uint8 and labels ``(n,)`` int64."""
    with open(path, "rb") as f:
        batch = _SafeUnpickler(f, encoding="bytes").load()
    if not isinstance(batch, dict):
        raise ValueError(  # noqa: TRY004 - a malformed file, not a wrong argument type
            f"{path} is not a CIFAR-10 batch (expected a dict, got {type(batch).__name__})"
        )
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(
            f"{path} is not a CIFAR-10 batch (keys {sorted(batch)}; need 'data' and 'labels')"
        )
    data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return data, np.asarray(batch["labels"], dtype=np.int64)


def _batch_path(root: Path, name: str) -> Path:
    for candidate in (root / name, root / "cifar-10-batches-py" / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"missing CIFAR-10 file {root / name}; extract cifar-10-python.tar.gz "
        "(https://www.cs.toronto.edu/~kriz/cifar.html) into that directory or pass root=<directory>"
    )


def load_cifar10(root: str | Path) -> DatasetSplit:
    """CIFAR-10 from ``root`` (or ``root/cifar-10-batches-py``): images ``(3, 32, 32)`` in [0, 1]."""
    root = Path(root)

    def part(names: tuple[str, ...]) -> ArrayDataset:
        xs, ys = zip(*(read_cifar_batch(_batch_path(root, n)) for n in names))
        return ArrayDataset(np.concatenate(xs).astype(np.float32) / 255.0, np.concatenate(ys))

    return DatasetSplit(part(TRAIN_BATCHES), part((TEST_BATCH,)))
