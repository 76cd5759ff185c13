"""Validation helpers name the argument and what was expected."""

import numpy as np
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


# ---------------------------------------------------------------- numbers: nan, inf, bool, numpy
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), np.float64("nan")])
def test_check_positive_rejects_nan_and_inf(bad):
    with pytest.raises(ValueError, match="C must be a finite number"):
        v.check_positive(bad, "C")


@pytest.mark.parametrize("bad", [True, False, np.bool_(True), "1", None, torch.tensor(1.0)])
def test_check_positive_rejects_non_numbers(bad):
    with pytest.raises(TypeError, match="C must be a number"):
        v.check_positive(bad, "C")


def test_check_positive_accepts_numpy_scalars_and_returns_python_numbers():
    got = v.check_positive(np.int64(3), "n", integer=True)
    assert got == 3 and type(got) is int
    got = v.check_positive(np.float32(0.5), "C")
    assert got == 0.5 and type(got) is float
    with pytest.raises(TypeError, match="n must be an int"):
        v.check_positive(np.float64(2.0), "n", integer=True)


def test_check_fraction_numpy_and_nan():
    assert v.check_fraction(np.float32(0.25), "p") == 0.25
    with pytest.raises(ValueError, match="p must be in"):
        v.check_fraction(float("nan"), "p")


def test_check_int_and_seed():
    assert v.check_int(np.int32(4), "n", min_value=0) == 4
    with pytest.raises(TypeError, match="seed must be an int"):
        v.check_seed(2.5)
    with pytest.raises(TypeError, match="seed must be an int"):
        v.check_seed(True)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        v.check_seed(-1)
    assert v.check_seed(np.uint32(7)) == 7
    with pytest.raises(ValueError, match="n must be <= 3"):
        v.check_int(4, "n", max_value=3)


def test_check_bool():
    assert v.check_bool(np.bool_(True), "flag") is True
    with pytest.raises(TypeError, match="flag must be a bool"):
        v.check_bool(1, "flag")


# ---------------------------------------------------------------- devices
@pytest.mark.parametrize("bad", ["tpu", "xyz", "cuda:x", 3.5])
def test_check_device_rejects_unknown(bad):
    with pytest.raises((ValueError, TypeError), match="device"):
        v.check_device(bad)


def test_check_device_rejects_meta_and_unavailable():
    with pytest.raises(ValueError, match="meta"):
        v.check_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            v.check_device("cuda")
    assert v.check_device("cpu") == torch.device("cpu")
    assert v.check_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="meta"):
        v.resolve_device("meta")


def test_check_model_rejects_meta_weights():
    with pytest.raises(ValueError, match="meta"):
        v.check_model(nn.Linear(2, 2, device="meta"))


# ---------------------------------------------------------------- labels, samples, tensors
def test_check_labels_accepts_empty_lists_and_numpy():
    assert v.check_labels([], "targets", length=0).dtype == torch.long
    assert v.check_labels(np.array([1, 0]), "targets").tolist() == [1, 0]
    with pytest.raises(TypeError, match="targets must have an integer dtype"):
        v.check_labels(torch.tensor([True, False]), "targets")
    with pytest.raises(TypeError, match="targets must have an integer dtype"):
        v.check_labels([0.5, 1.0], "targets")


def test_check_tensor_length_on_a_scalar_is_a_value_error():
    with pytest.raises(ValueError, match="x must have length 3"):
        v.check_tensor(torch.tensor(1.0), "x", length=3)


def test_check_sample():
    x, y = v.check_sample((np.zeros(3, dtype=np.float32), np.int64(2)), "train_dataset[0]")
    assert isinstance(x, torch.Tensor) and y == 2
    with pytest.raises(TypeError, match=r"train_dataset\[0\] must be a pair \(x, y\)"):
        v.check_sample(torch.zeros(3), "train_dataset[0]")
    with pytest.raises(TypeError, match=r"must be a pair \(x, y\)"):
        v.check_sample((torch.zeros(3), 1, 2), "train_dataset[0]")
    with pytest.raises(TypeError, match="label must be an integer class index"):
        v.check_sample((torch.zeros(3), 1.9), "train_dataset[0]")
    with pytest.raises(TypeError, match="label must be an integer class index"):
        v.check_sample((torch.zeros(3), torch.tensor(1.9)), "train_dataset[0]")
    with pytest.raises(TypeError, match="input must be a float tensor"):
        v.check_sample(("abc", 1), "train_dataset[0]")
