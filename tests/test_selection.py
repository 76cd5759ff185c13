"""Coreset / pruning selections: tie-broken orders, class-stratified selection, the curve grid."""

import pytest
import torch

from dattr_eval.metrics._selection import (
    class_quotas,
    curve_area,
    fraction_grid,
    random_selection,
    selection_sizes,
    stratified_selection,
    tie_broken_orders,
)

#            index: 0    1    2    3    4    5    6    7
TIED = torch.tensor([0.0, 3.0, 1.0, 3.0, 1.0, 1.0, 2.0, 1.0])
TIE_GROUP = {2, 4, 5, 7}  # score 1.0


# --------------------------------------------------------------------------- tie-breaking
def test_every_order_is_a_valid_descending_order():
    orders = tie_broken_orders(TIED, n_orders=20, seed=0)
    assert orders.shape == (20, 8) and orders.dtype == torch.int64
    for order in orders:
        assert sorted(order.tolist()) == list(range(8))
        assert bool((TIED[order].diff() <= 0).all())
        # distinct scores keep their place: {1, 3} first, 6 third, the 1.0 group, 0 last
        assert set(order[:2].tolist()) == {1, 3} and order[2] == 6
        assert set(order[3:7].tolist()) == TIE_GROUP and order[7] == 0


def test_ties_are_permuted_differently_across_orders():
    orders = tie_broken_orders(TIED, n_orders=20, seed=0)
    tie_orders = {tuple(o[3:7].tolist()) for o in orders}
    assert len(tie_orders) >= 10  # 24 possible orders of the group, 20 draws
    assert {tuple(o[:2].tolist()) for o in orders} == {(1, 3), (3, 1)}


def test_tie_order_is_uniform():
    orders = tie_broken_orders(TIED, n_orders=4000, seed=1)
    firsts = orders[:, 3]
    for i in TIE_GROUP:
        share = float((firsts == i).double().mean())
        assert 0.22 <= share <= 0.28, (i, share)


def test_tie_broken_orders_are_reproducible_by_seed():
    a = tie_broken_orders(TIED, n_orders=5, seed=3)
    assert torch.equal(a, tie_broken_orders(TIED, n_orders=5, seed=3))
    assert not torch.equal(a, tie_broken_orders(TIED, n_orders=5, seed=4))


def test_without_ties_every_order_is_the_sort():
    scores = torch.tensor([0.3, -1.0, 2.0, 0.5])
    orders = tie_broken_orders(scores, n_orders=3, seed=0)
    assert orders.tolist() == [[2, 3, 0, 1]] * 3


def test_tie_broken_orders_reject_bad_scores():
    with pytest.raises(ValueError, match="scores"):
        tie_broken_orders(torch.tensor([1.0, float("nan")]), n_orders=2, seed=0)
    with pytest.raises(ValueError, match="scores"):
        tie_broken_orders(torch.ones(2, 2), n_orders=2, seed=0)


# --------------------------------------------------------------------------- stratification
#                   index: 0  1  2  3  4  5  6  7  8  9
LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])  # shares 3/10, 2/10, 5/10


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (5, [2, 1, 2]),  # exact 1.5, 1.0, 2.5: one left over, equal remainders -> class 0
        (7, [2, 1, 4]),  # exact 2.1, 1.4, 3.5: the left-over sample goes to class 2 (0.5)
        (10, [3, 2, 5]),
        (0, [0, 0, 0]),
        (1, [0, 0, 1]),  # exact 0.3, 0.2, 0.5
    ],
)
def test_class_quotas_by_hand(size, expected):
    assert class_quotas(LABELS, size).tolist() == expected


def test_class_quotas_sum_to_size_within_one_of_the_share():
    labels = torch.tensor([0] * 7 + [1] * 13 + [2] * 1 + [3] * 29)
    counts = torch.bincount(labels)
    for size in range(labels.numel() + 1):
        quotas = class_quotas(labels, size)
        assert int(quotas.sum()) == size
        share = size * counts.double() / labels.numel()
        assert bool(((quotas - share).abs() < 1).all()) and bool((quotas <= counts).all())


def test_stratified_top_and_bottom_by_hand():
    # best first; by class in this order: class 0: 0, 1, 2; class 1: 3, 4; class 2: 9, 5, 6, 7, 8
    order = torch.tensor([9, 0, 5, 3, 1, 6, 2, 7, 4, 8])
    top = stratified_selection(order, LABELS, size=5, keep="top")
    # quotas (2, 1, 2): class 0 -> 0, 1; class 1 -> 3; class 2 -> 9, 5
    assert top.tolist() == [9, 0, 5, 3, 1]
    bottom = stratified_selection(order, LABELS, size=5, keep="bottom")
    # class 0 -> last two of 0, 1, 2 = 1, 2; class 1 -> 4; class 2 -> last two of 9,5,6,7,8 = 7, 8
    assert bottom.tolist() == [1, 2, 7, 4, 8]


def test_stratified_counts_equal_each_class_share():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (101,), generator=g)
    order = torch.randperm(101, generator=g)
    for keep in ("top", "bottom"):
        for size in (1, 10, 33, 101):
            chosen = stratified_selection(order, labels, size=size, keep=keep)
            assert chosen.numel() == size and chosen.unique().numel() == size
            counts = torch.bincount(labels[chosen], minlength=4)
            assert counts.tolist() == class_quotas(labels, size).tolist()


def test_stratified_selection_rejects_bad_input():
    with pytest.raises(ValueError, match="permutation"):
        stratified_selection(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), size=1)
    with pytest.raises(ValueError, match="size"):
        stratified_selection(torch.arange(3), torch.tensor([0, 1, 1]), size=4)
    with pytest.raises(ValueError, match="keep"):
        stratified_selection(torch.arange(3), torch.tensor([0, 1, 1]), size=1, keep="middle")


def test_random_selection_baseline():
    stratified = random_selection(LABELS, size=5, seed=0)
    assert torch.bincount(LABELS[stratified], minlength=3).tolist() == [2, 1, 2]
    assert stratified.unique().numel() == 5
    assert torch.equal(stratified, random_selection(LABELS, size=5, seed=0))
    draws = {tuple(sorted(random_selection(LABELS, 5, seed=s).tolist())) for s in range(10)}
    assert len(draws) > 1
    plain = random_selection(LABELS, size=6, seed=1, stratified=False)
    assert plain.numel() == 6 and plain.unique().numel() == 6


# --------------------------------------------------------------------------- curve
def test_fraction_grid_leaves_out_the_full_training_set():
    grid = fraction_grid()
    expected = torch.tensor([0.05 * k for k in range(1, 11)], dtype=torch.float64)
    torch.testing.assert_close(grid, expected)
    assert fraction_grid(4, low=0.1, high=1.0).tolist() == pytest.approx([0.1, 0.4, 0.7, 1.0])
    with pytest.raises(ValueError, match="n_fractions"):
        fraction_grid(1)
    with pytest.raises(ValueError, match="low"):
        fraction_grid(low=0.6, high=0.5)


def test_selection_sizes_by_hand():
    fractions = torch.tensor([0.001, 0.25, 0.5, 1.0], dtype=torch.float64)
    # round(2.5) = 2: Python's round (half to even); a tiny fraction still selects one sample
    assert selection_sizes(fractions, 10) == [1, 2, 5, 10]


def test_curve_area_by_hand():
    fractions = torch.tensor([0.1, 0.2, 0.4], dtype=torch.float64)
    values = torch.tensor([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]], dtype=torch.float64)
    # trapezoids 0.1 * (1 + 3) / 2 + 0.2 * (3 + 2) / 2 = 0.7 over a span of 0.3
    torch.testing.assert_close(
        curve_area(fractions, values), torch.tensor([0.7 / 0.3, 5.0]).double()
    )
    with pytest.raises(ValueError, match="values"):
        curve_area(fractions, torch.ones(2))
    with pytest.raises(ValueError, match="increasing"):
        curve_area(fractions.flip(0), values)
