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
    ("builtins", "bytes"),  # protocol 2 from Python 3 pickles empty array data as bytes()
    ("__builtin__", "bytes"),
}


#: CIFAR-10 image size (3 x 32 x 32 bytes per row of ``data``) and class count
IMAGE_SHAPE = (3, 32, 32)
N_CLASSES = 10


class ForbiddenGlobalError(pickle.UnpicklingError):
    """A pickle asked for a global outside the numpy reconstruction allow-list."""


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise ForbiddenGlobalError(
                f"CIFAR batch references {module}.{name}, which is not allowed"
            )
        return super().find_class(module, name)


def _unpickle(path: Path) -> Any:
    """The object in ``path``, rebuilt by the restricted unpickler.

    Raises:
        ForbiddenGlobalError: the file references a global outside the allow-list.
        ValueError: an empty, truncated or otherwise unreadable file (named in the message).
    """
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes): not a CIFAR-10 batch; re-extract the archive")
    with open(path, "rb") as f:
        try:
            return _SafeUnpickler(f, encoding="bytes").load()
        except ForbiddenGlobalError as err:
            raise ForbiddenGlobalError(f"{path}: {err}") from None
        except Exception as err:  # a corrupt pickle can raise almost anything; name the file
            raise ValueError(
                f"{path} is not a readable CIFAR-10 batch ({type(err).__name__}: {err}); "
                "re-extract cifar-10-python.tar.gz"
            ) from err


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file → images ``(n, 3, 32, 32)`` uint8 and labels ``(n,)`` int64 in ``[0, 9]``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        pickle.UnpicklingError: the file references code outside numpy array reconstruction.
        ValueError: naming ``path``: empty or corrupt file, missing keys, pixel values outside
            ``[0, 255]`` (never wrapped), rows not of 3072 bytes, label count different from the
            image count, labels that are not integers in ``[0, 9]``.
    """
    path = Path(path)
    batch = _unpickle(path)
    if not isinstance(batch, dict):
        raise ValueError(  # noqa: TRY004 - a malformed file, not a wrong argument type
            f"{path} is not a CIFAR-10 batch (expected a dict, got {type(batch).__name__})"
        )
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(
            f"{path} is not a CIFAR-10 batch (keys {sorted(map(str, batch))}; need 'data' and 'labels')"
        )
    images, labels = _images(batch["data"], path), _labels(batch["labels"], path)
    if len(images) != len(labels):
        raise ValueError(f"{path}: {len(images)} images but {len(labels)} labels")
    return images, labels


def _images(data: Any, path: Path) -> np.ndarray:
    """``data`` rows of 3072 pixel values in ``[0, 255]`` as ``(n, 3, 32, 32)`` uint8."""
    try:
        raw = np.asarray(data)
    except Exception as err:
        raise ValueError(f"{path}: 'data' is not an array ({err})") from err
    row = int(np.prod(IMAGE_SHAPE))
    if (
        raw.dtype.kind not in "iu"
        or raw.ndim not in (1, 2)
        or raw.size % row
        or (raw.ndim == 2 and raw.shape[1] != row)
    ):
        raise ValueError(
            f"{path}: 'data' must hold integer pixel rows of {row} values (3 x 32 x 32), "
            f"got dtype {raw.dtype} and shape {raw.shape}"
        )
    if raw.size and (int(raw.min()) < 0 or int(raw.max()) > 255):
        raise ValueError(
            f"{path}: pixel values must be in [0, 255], got {int(raw.min())}..{int(raw.max())}"
        )
    return raw.astype(np.uint8).reshape(-1, *IMAGE_SHAPE)


def _labels(labels: Any, path: Path) -> np.ndarray:
    """``labels`` as ``(n,)`` int64 in ``[0, N_CLASSES)``; ``n`` checked by the caller."""
    try:
        values = np.asarray(labels)
    except Exception as err:
        raise ValueError(f"{path}: 'labels' is not a list of integers ({err})") from err
    if values.shape == (0,):  # an empty list reads as float64
        return np.zeros(0, dtype=np.int64)
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise ValueError(
            f"{path}: labels must be integers in a 1-D list, got dtype {values.dtype} and "
            f"shape {values.shape}"
        )
    if values.size and (int(values.min()) < 0 or int(values.max()) >= N_CLASSES):
        raise ValueError(
            f"{path}: labels must be in [0, {N_CLASSES - 1}], got {int(values.min())}..{int(values.max())}"
        )
    return values.astype(np.int64)


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
