"""Validation helpers name the argument and what was expected."""

import pytest
import torch
from torch import nn

from dattr_eval import validation as v


def test_check_model_and_dataset():
    assert isinstance(v.check_model(nn.Linear(2, 2)), nn.Module)
    with pytest.raises(TypeError, match="net must be a torch.nn.Module"):
        v.check_model("x", "net")
    with pytest.raises(TypeError, match="data must be a map-style dataset"):
        v.check_dataset(3, "data")
    with pytest.raises(ValueError, match="data is empty"):
        v.check_dataset([], "data")


def test_check_tensor():
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        v.check_tensor([1.0], "x")
    with pytest.raises(ValueError, match="x must have ndim=2"):
        v.check_tensor(torch.zeros(3), "x", ndim=2)
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        v.check_tensor(torch.zeros(3, dtype=torch.long), "x", floating=True)
    with pytest.raises(ValueError, match="x must have length 4"):
        v.check_tensor(torch.zeros(3), "x", length=4)
    with pytest.raises(ValueError, match="x contains 1 NaN/inf"):
        v.check_tensor(torch.tensor([1.0, float("nan")]), "x", finite=True)


def test_check_labels():
    assert v.check_labels([0, 2], "y").dtype == torch.long
    with pytest.raises(TypeError, match="y must have an integer dtype"):
        v.check_labels(torch.zeros(2), "y")
    with pytest.raises(ValueError, match="y must be non-negative"):
        v.check_labels(torch.tensor([-1, 0]), "y")
    with pytest.raises(ValueError, match="y must be < n_classes=3"):
        v.check_labels(torch.tensor([0, 3]), "y", n_classes=3)


def test_numbers_and_choices():
    assert v.check_fraction(0.5, "p") == 0.5
    for bad in (0, 1, 1.5):
        with pytest.raises(ValueError, match="p must be in"):
            v.check_fraction(bad, "p")
    with pytest.raises(TypeError, match="p must be a number"):
        v.check_fraction("0.5", "p")
    with pytest.raises(ValueError, match="n must be > 0"):
        v.check_positive(0, "n")
    with pytest.raises(TypeError, match="n must be an int"):
        v.check_positive(1.5, "n", integer=True)
    with pytest.raises(ValueError, match="mode"):
        v.check_choice("c", "mode", ("a", "b"))
