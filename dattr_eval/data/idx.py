"""IDX files (MNIST, Fashion-MNIST), gzip-compressed or raw, from a directory."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import BinaryIO

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

    The header is read first; the payload is then read in chunks up to the size the header
    announces, so a header claiming absurd dimensions fails without allocating them.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming ``path``: not IDX (bad magic, unknown type code), header and payload
            sizes disagree, a ``.gz`` name on a file that is not valid gzip (or is truncated).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return _parse_idx(f, path)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        if path.suffix != ".gz":
            raise
        raise ValueError(
            f"{path} is not a valid gzip file ({type(err).__name__}: {err}); the name ends in .gz, "
            "so it must be gzip-compressed (rename it without .gz if it is a raw IDX file)"
        ) from err


def _parse_idx(f: BinaryIO, path: Path) -> np.ndarray:
    magic = f.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic bytes {magic!r})")
    dtype, ndim = np.dtype(_IDX_DTYPES[magic[2]]), magic[3]
    dims = f.read(4 * ndim)
    if len(dims) != 4 * ndim:
        raise ValueError(
            f"{path}: header announces {ndim} dimensions but the file ends after {len(dims) // 4}"
        )
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
    expected = math.prod(shape) * dtype.itemsize
    payload = _read_at_most(f, expected + 1)
    if len(payload) != expected:
        got = f"{len(payload)}" if len(payload) <= expected else "more"
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes), file has {got}")
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _read_at_most(f: BinaryIO, limit: int, chunk: int = 1 << 22) -> bytes:
    """Up to ``limit`` bytes of ``f``, read in chunks (memory bounded by the file's real size)."""
    parts, total = [], 0
    while total < limit:
        part = f.read(min(chunk, limit - total))
        if not part:
            break
        parts.append(part)
        total += len(part)
    return b"".join(parts)


def _find(root: Path, stem: str, how_to_get: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"missing data file {root / stem}[.gz]; {how_to_get}")


def _load_dir(root: str | Path, how_to_get: str) -> DatasetSplit:
    root = Path(root)
    files = {key: _find(root, stem, how_to_get) for key, stem in MNIST_FILES.items()}
    arrays = {key: read_idx(path) for key, path in files.items()}

    def part(prefix: str) -> ArrayDataset:
        images, labels = arrays[f"{prefix}_images"], arrays[f"{prefix}_labels"]
        image_file, label_file = files[f"{prefix}_images"], files[f"{prefix}_labels"]
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(
                f"{image_file} must hold (n, rows, cols) uint8 images, got dtype {images.dtype} "
                f"and shape {images.shape}"
            )
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise ValueError(
                f"{label_file} must hold (n,) integer labels, got dtype {labels.dtype} and "
                f"shape {labels.shape}"
            )
        if len(images) != len(labels):
            raise ValueError(
                f"{image_file} has {len(images)} images but {label_file} has {len(labels)} labels"
            )
        return ArrayDataset(images[:, None].astype(np.float32) / 255.0, labels.astype(np.int64))

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
