"""scikit-learn's bundled 8×8 digits (1,797 images): the default, offline dataset."""

from __future__ import annotations

from dattr_eval.data.datasets import DatasetSplit, stratified_split


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> DatasetSplit:
    """The 1,797 digits as images ``(1, 8, 8)`` in [0, 1] (pixels / 16), stratified split.

    Args:
        test_fraction: share of the images in the test split (0.25 → 1,347 train / 450 test).
        seed: seeds the split (fixed by default, so every run sees the same split).
    """
    from sklearn.datasets import load_digits as sk_load_digits

    x, y = sk_load_digits(return_X_y=True)
    x = (x / 16.0).reshape(-1, 1, 8, 8)
    return stratified_split(x, y, test_fraction, seed)
