"""explain_topk: streamed over training chunks it equals contract.topk of the dense explain."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from dattr_eval import explainers
from dattr_eval.contract import TopK, fast_topk, select_topk, topk
from dattr_eval.explainers.base import ColumnScorer, Explainer
from dattr_eval.testing import assert_topk_matches
from tests._digits_models import digits_split, single_thread, small_mlp  # noqa: F401

N_TEST = 9
#: chunk sizes: one column, odd sizes splitting the duplicates, one chunk for everything
CHUNKS = (1, 7, 16, 1000)


class MatrixExplainer(Explainer):
    """Test double: fixed attributions ``A (n_test, n_train)`` (row ``i`` for the input ``[i]``).

    ``support`` = the columns its scorer covers (others must be exactly 0 in ``A``); records the
    widths it was asked to score.
    """

    def __init__(self, a: torch.Tensor, support: torch.Tensor | None, batch_size: int = 2) -> None:
        self.a = a
        self.support = support
        self.batch_size = batch_size

    def _fit(self, model: nn.Module, train_dataset: TensorDataset) -> None:
        self.widths_: list[int] = []

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.a[inputs[:, 0].long()]

    def _column_scorer(self, inputs: torch.Tensor, targets: torch.Tensor) -> ColumnScorer:
        rows = self._explain(inputs, targets)
        cols = rows if self.support is None else rows[:, self.support]

        def score(start: int, stop: int) -> torch.Tensor:
            self.widths_.append(stop - start)
            return cols[:, start:stop]

        return ColumnScorer(score, cols.shape[1], self.support)


def fit_matrix(a: torch.Tensor, support: torch.Tensor | None) -> MatrixExplainer:
    n_train = a.shape[1]
    train = TensorDataset(torch.zeros(n_train, 1), torch.zeros(n_train, dtype=torch.long))
    return MatrixExplainer(a, support).fit(nn.Linear(1, 2), train)


def rows(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[[0], [1], ...]`` selecting the rows of a MatrixExplainer, and zero targets."""
    return torch.arange(n, dtype=torch.float32)[:, None], torch.zeros(n, dtype=torch.long)


def test_hand_case_ties_and_zero_columns():
    # row 0: support {1, 3, 5}; zeros elsewhere, a negative support score, a tie 2 = 2
    # row 1: every support score negative, so the implicit zeros win, lowest index first
    a = torch.tensor([[0.0, 2.0, 0.0, -1.0, 0.0, 2.0], [0.0, -3.0, 0.0, -1.0, 0.0, -2.0]])
    xpl = fit_matrix(a, torch.tensor([1, 3, 5]))
    got = xpl.explain_topk(rows(2)[0], 4, chunk_size=2, batch_size=1)
    assert got.indices.tolist() == [[1, 5, 0, 2], [0, 2, 4, 3]]
    assert got.values.tolist() == [[2.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, -1.0]]
    assert xpl.widths_ == [2, 1, 2, 1]  # 3 support columns in chunks of 2, per test batch of 1
    got = xpl.explain_topk(rows(2)[0], 2, chunk_size=2)
    assert got.indices.tolist() == [[1, 5], [0, 2]]  # of the three zeros, the two lowest indices


def sorted_topk(a: torch.Tensor, k: int) -> TopK:
    """Reference: the first ``k`` of a stable descending sort (ties towards the smaller index)."""
    values, indices = torch.sort(a, dim=1, descending=True, stable=True)
    return TopK(values[:, :k], indices[:, :k])


def test_select_topk_orders_ties_by_index_whatever_the_candidate_order():
    values = torch.tensor([[1.0, 3.0, 1.0, 3.0]])
    got = select_topk(values, torch.tensor([[9, 4, 2, 0]]), k=3)
    assert got.indices.tolist() == [[0, 4, 2]] and got.values.tolist() == [[3.0, 3.0, 1.0]]
    with pytest.raises(ValueError, match="k=5"):
        select_topk(values, torch.tensor([[9, 4, 2, 0]]), k=5)


def test_fast_topk_and_topk_equal_a_stable_sort_with_ties_and_signed_zeros():
    gen = torch.Generator().manual_seed(1)
    for trial in range(60):
        n, m = trial % 4 + 1, 1 + trial % 23 * 2
        a = (
            torch.randint(-2, 3, (n, m), generator=gen).float()
            if trial % 3
            else torch.randn(n, m, generator=gen)
        )
        a[a == 0] = torch.where(torch.rand(int((a == 0).sum()), generator=gen) < 0.5, -0.0, 0.0)
        for k in range(1, m + 1):
            want = sorted_topk(a, k)
            for got in (fast_topk(a, k), topk(a, k)):
                assert torch.equal(got.indices, want.indices) and torch.equal(
                    got.values, want.values
                )
    assert fast_topk(torch.zeros(2, 5), 3).indices.tolist() == [[0, 1, 2], [0, 1, 2]]
    with pytest.raises(ValueError, match="k=6"):
        fast_topk(torch.zeros(2, 5), 6)


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("support", [None, "half"])
def test_random_matrix_with_ties_streams_to_dense_topk(chunk_size, support):
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(-3, 4, (5, 40), generator=gen).float()  # many ties
    cols = None
    if support == "half":
        cols = torch.arange(0, 40, 2)
        a[:, 1::2] = 0
    xpl = fit_matrix(a, cols)
    for k in (1, 6, 40):
        got = xpl.explain_topk(rows(5)[0], k, chunk_size=chunk_size)
        want = sorted_topk(a, k)
        assert torch.equal(got.indices, want.indices) and torch.equal(got.values, want.values)
    assert max(xpl.widths_) <= chunk_size


# ---------------------------------------------------------------------- real explainers
@pytest.fixture(scope="module")
def setup() -> tuple[nn.Module, TensorDataset, torch.Tensor]:
    """Digits with exact duplicates of training samples 3 and 10 at 20, 21, 40 (ties across chunks)."""
    train, x_test, _ = digits_split(45, N_TEST)
    x, y = train.tensors
    x, y = x.clone(), y.clone()
    x[[20, 21, 40]], y[[20, 21, 40]] = x[[3, 3, 10]], y[[3, 3, 10]]
    train = TensorDataset(x, y)
    return small_mlp(train, weight_decay=1e-2, hidden=8), train, x_test


EXPLAINERS = [
    ("grad_dot", {"batch_size": 4}),
    ("grad_cos", {"batch_size": 4, "projection_dim": 8}),
    ("feature_similarity", {"metric": "cos", "batch_size": 4}),
    ("feature_similarity", {"metric": "dot", "batch_size": 4}),
    ("dualview", {"C": 1e-1, "tol": 1e-4, "max_iter": 5000, "batch_size": 4}),
    ("representer", {"batch_size": 4}),  # no column scorer: the dense fallback
]


@pytest.mark.parametrize("name, params", EXPLAINERS, ids=lambda v: v if isinstance(v, str) else "")
def test_explain_topk_equals_topk_of_explain(setup, name, params):
    model, train, x_test = setup
    xpl = explainers.create(name, **params).fit(model, train)
    targets = torch.arange(N_TEST) % 10
    for tgt in (None, targets):
        dense = xpl.explain(x_test, tgt)
        for chunk_size in CHUNKS:
            for k in (1, 5, len(train)):
                assert_topk_matches(
                    xpl.explain_topk(x_test, k, tgt, chunk_size=chunk_size), dense, k
                )


def test_explain_topk_validates_k_and_handles_empty_input(setup):
    model, train, x_test = setup
    xpl = explainers.create("grad_dot").fit(model, train)
    with pytest.raises(ValueError, match="k must be"):
        xpl.explain_topk(x_test, 0)
    with pytest.raises(ValueError, match="k must be"):
        xpl.explain_topk(x_test, len(train) + 1)
    with pytest.raises(ValueError, match="chunk_size"):
        xpl.explain_topk(x_test, 2, chunk_size=0)
    empty = xpl.explain_topk(x_test[:0], 2)
    assert empty.values.shape == (0, 2) and empty.indices.dtype == torch.long
