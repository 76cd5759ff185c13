"""IDX files (MNIST, Fashion-MNIST), gzip-compressed or raw, from a directory."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from dattr_eval.data.datasets import ArrayDataset, DatasetSplit

#: IDX type code → big-endian numpy dtype
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

#: the four files of an MNIST-format directory
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist/"


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) into an array of its stored dtype and shape.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the header is not IDX (bad magic, unknown type code, size mismatch).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic bytes {raw[:4]!r})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">u4"))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: header says shape {shape} ({expected} bytes), file has {len(raw) - header}"
        )
    return np.frombuffer(raw[header:], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str, how_to_get: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"missing data file {root / stem}[.gz]; {how_to_get}")


def _load_dir(root: str | Path, how_to_get: str) -> DatasetSplit:
    root = Path(root)
    arrays = {key: read_idx(_find(root, stem, how_to_get)) for key, stem in MNIST_FILES.items()}

    def part(prefix: str) -> ArrayDataset:
        images = arrays[f"{prefix}_images"].astype(np.float32) / 255.0
        return ArrayDataset(images[:, None], arrays[f"{prefix}_labels"].astype(np.int64))

    return DatasetSplit(part("train"), part("test"))


def load_mnist(root: str | Path) -> DatasetSplit:
    """MNIST from the four IDX files in ``root`` (``train-images-idx3-ubyte[.gz]`` ...), images ``(1, 28, 28)`` in [0, 1]."""
    return _load_dir(
        root, "download the four MNIST IDX files into that directory or pass root=<your directory>"
    )


def load_fashion_mnist(root: str | Path = FASHION_MNIST_DIR) -> DatasetSplit:
    """Fashion-MNIST (60,000 train / 10,000 test), images ``(1, 28, 28)`` in [0, 1].

    The default directory is where Debian's ``dataset-fashion-mnist`` package installs the files
    (``sudo apt-get install dataset-fashion-mnist``); pass ``root`` for another directory.
    """
    return _load_dir(
        root,
        "install them with `sudo apt-get install dataset-fashion-mnist` (into "
        f"{FASHION_MNIST_DIR}) or pass root=<directory with the Fashion-MNIST IDX files>",
    )
