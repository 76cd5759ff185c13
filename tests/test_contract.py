"""The attribution contract: check_attributions errors and topk."""

import numpy as np
import pytest
import torch

from dattr_eval.contract import (
    AttributionContractError,
    TopK,
    check_attributions,
    check_topk,
    merge_topk,
    select_topk,
    topk,
)


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


# ---------------------------------------------------------------- merge_topk / select_topk / check_topk
def _block(values, indices):
    return TopK(torch.tensor(values), torch.tensor(indices))


def test_merge_topk_hand_case():
    first = _block([[3.0, 1.0]], [[1, 0]])
    second = _block([[2.0, 1.0]], [[0, 1]])
    got = merge_topk(first, second, 3, offset=2)
    assert got.indices.tolist() == [[1, 2, 0]] and got.values.tolist() == [[3.0, 2.0, 1.0]]
    # k above the candidates keeps them all (a stream's first chunks hold fewer than k)
    assert merge_topk(first, second, 9, offset=2).indices.tolist() == [[1, 2, 0, 3]]


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_merge_topk_rejects_bad_k(k):
    block = _block([[1.0, 0.0]], [[0, 1]])
    with pytest.raises(ValueError, match="k must be"):
        merge_topk(block, block, k, offset=2)


def test_merge_topk_rejects_overlapping_or_negative_offsets():
    block = _block([[1.0, 0.0]], [[0, 1]])
    with pytest.raises(ValueError, match="offset"):
        merge_topk(block, block, 2, offset=-1)
    with pytest.raises(ValueError, match="offset"):
        merge_topk(block, block, 2, offset=1)  # second's index 0 + 1 = first's index 1
    with pytest.raises(TypeError, match="offset must be an int"):
        merge_topk(block, block, 2, offset=2.0)


def test_merge_topk_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="rows"):
        merge_topk(_block([[1.0]], [[0]]), _block([[1.0], [0.0]], [[0], [0]]), 1, offset=1)
    with pytest.raises(AttributionContractError, match="values and indices"):
        merge_topk(_block([[1.0, 0.0]], [[0]]), _block([[1.0]], [[0]]), 1, offset=1)
    with pytest.raises(AttributionContractError, match="first must be a TopK"):
        merge_topk(torch.zeros(1, 1), _block([[1.0]], [[0]]), 1)


def test_select_topk_validates():
    with pytest.raises(ValueError, match="k"):
        select_topk(torch.zeros(1, 2), torch.tensor([[0, 1]]), 0)
    with pytest.raises(TypeError, match="indices must have an integer dtype"):
        select_topk(torch.zeros(1, 2), torch.zeros(1, 2), 1)
    with pytest.raises(ValueError, match="indices must be non-negative"):
        select_topk(torch.zeros(1, 2), torch.tensor([[0, -1]]), 1)


def test_check_topk_accepts_valid_and_returns_it():
    t = _block([[3.0, 1.0], [2.0, 2.0]], [[4, 0], [1, 2]])
    assert check_topk(t, 2, 5) is t


@pytest.mark.parametrize(
    ("values", "indices", "n_test", "n_train", "match"),
    [
        ([[1.0, 0.0]], [[0, -1]], 1, 5, "negative"),
        ([[1.0, 0.0]], [[0, 5]], 1, 5, "out of range"),
        ([[1.0, 0.0]], [[2, 2]], 1, 5, "repeats"),
        ([[0.0, 1.0]], [[0, 1]], 1, 5, "descending"),
        ([[1.0, 0.0]], [[0, 1]], 2, 5, "rows"),
        ([[float("nan"), 0.0]], [[0, 1]], 1, 5, "NaN"),
        ([1.0, 0.0], [0, 1], 1, 5, "2-dimensional"),
    ],
)
def test_check_topk_rejects(values, indices, n_test, n_train, match):
    with pytest.raises(AttributionContractError, match=match):
        check_topk(_block(values, indices), n_test, n_train)


def test_check_topk_type_errors_are_contract_errors():
    with pytest.raises(AttributionContractError, match="topk must be a TopK"):
        check_topk(torch.zeros(2, 2))
    with pytest.raises(AttributionContractError, match="indices must have an integer dtype"):
        check_topk(TopK(torch.zeros(1, 1), torch.zeros(1, 1)))
    with pytest.raises(AttributionContractError, match="floating dtype"):
        check_topk(TopK(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long)))


def test_topk_of_a_topk_checks_it():
    with pytest.raises(AttributionContractError, match="negative"):
        topk(_block([[1.0, 0.0]], [[0, -1]]), 1)


def test_topk_accepts_numpy_int_k():
    assert topk(torch.tensor([[0.0, 2.0, 1.0]]), np.int64(2)).indices.tolist() == [[1, 2]]


def test_nonfinite_counted_across_row_blocks():
    """check_attributions scans large tensors in row blocks (memory): counts span the blocks."""
    a = torch.zeros(3000, 2000)  # 6M entries: more than one block of 4M
    a[2500, 7] = float("nan")
    a[2999, 1999] = float("inf")
    a[10, 3] = float("nan")
    with pytest.raises(AttributionContractError, match=r"2 NaN and 1 inf.*\[test 10, train 3\]"):
        check_attributions(a)
