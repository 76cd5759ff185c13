"""The attribution contract: check_attributions errors and topk."""

import pytest
import torch

from dattr_eval.contract import AttributionContractError, check_attributions, topk


def test_valid_tensor_is_returned_unchanged():
    a = torch.randn(3, 5)
    assert check_attributions(a, 3, 5) is a


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ([[1.0, 2.0]], "must be a torch.Tensor"),
        (torch.zeros(3), "2-dimensional"),
        (torch.zeros(3, 4, 1), "2-dimensional"),
        (torch.zeros(3, 4), "shape \\(3, 4\\), expected"),
        (torch.zeros(3, 5, dtype=torch.long), "floating dtype"),
    ],
)
def test_contract_errors(value, match):
    with pytest.raises(AttributionContractError, match=match):
        check_attributions(value, 3, 5)


def test_transposed_is_named():
    with pytest.raises(AttributionContractError, match="transposed"):
        check_attributions(torch.zeros(5, 3), 3, 5)


def test_nan_inf_counted_and_first_position():
    a = torch.zeros(3, 5)
    a[1, 2] = float("nan")
    a[2, 0] = float("inf")
    a[2, 4] = float("nan")
    with pytest.raises(AttributionContractError, match=r"2 NaN and 1 inf.*\[test 1, train 2\]"):
        check_attributions(a, 3, 5)


def test_contract_error_is_value_error():
    assert issubclass(AttributionContractError, ValueError)


def test_topk_values_indices_and_ties():
    a = torch.tensor([[0.1, 0.9, 0.5, 0.9], [3.0, -1.0, 2.0, 0.0]])
    values, indices = topk(a, 2)
    assert indices.tolist() == [[1, 3], [0, 2]]  # tie 0.9 broken towards the smaller index
    assert torch.equal(values, torch.tensor([[0.9, 0.9], [3.0, 2.0]]))


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_topk_bad_k(k):
    with pytest.raises(ValueError, match="k must be a positive int"):
        topk(torch.zeros(2, 3), k)


def test_topk_k_too_large():
    with pytest.raises(ValueError, match="exceeds n_train=3"):
        topk(torch.zeros(2, 3), 4)
