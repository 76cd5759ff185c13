"""model_randomization, top_k_cardinality, sparsity on hand-built attributions."""

import math

import pytest
import torch
from scipy.stats import spearmanr

from dattr_eval import metrics
from dattr_eval.contract import AttributionContractError, topk
from dattr_eval.metrics import MissingGroundTruthError


# ---------------------------------------------------------------- model randomization
def test_randomization_identical_reversed_monotone():
    a = torch.tensor([[0.1, 0.5, 0.3, 0.9, 0.2], [1.0, 2.0, 3.0, 4.0, 5.0]])
    m = metrics.create("model_randomization")
    assert not m.higher_is_better
    assert m(a, randomized_attributions=a.clone()).score == pytest.approx(1.0)
    assert m(a, randomized_attributions=-a).score == pytest.approx(-1.0)
    assert m(a, randomized_attributions=torch.exp(3 * a)).score == pytest.approx(1.0)


def test_randomization_with_ties_by_hand():
    # ranks of a: [1, 2.5, 2.5, 4]; of r: [1, 2, 3, 4]; centred: [-1.5, 0, 0, 1.5] . [-1.5, -.5, .5, 1.5]
    # = 4.5 over sqrt(4.5 * 5) -> 0.9487
    a = torch.tensor([[0.0, 1.0, 1.0, 2.0]])
    r = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    s = metrics.create("model_randomization")(a, randomized_attributions=r).score
    assert s == pytest.approx(4.5 / math.sqrt(4.5 * 5)) and s == pytest.approx(
        spearmanr(a[0], r[0]).statistic
    )


def test_randomization_random_band_and_constant_row():
    g = torch.Generator().manual_seed(0)
    a, r = torch.rand(20, 100, generator=g), torch.rand(20, 100, generator=g)
    assert abs(metrics.create("model_randomization")(a, randomized_attributions=r).score) < 0.1
    a[0] = 0.0
    with pytest.warns(UserWarning, match="constant"):
        res = metrics.create("model_randomization")(a, randomized_attributions=r)
    assert torch.isnan(res.per_sample[0]) and res.n_scored == 19


def test_randomization_bad_input():
    a = torch.rand(2, 5)
    with pytest.raises(MissingGroundTruthError, match="randomized_attributions"):
        metrics.create("model_randomization")(a)
    with pytest.raises(AttributionContractError, match="randomized_attributions"):
        metrics.create("model_randomization")(a, randomized_attributions=torch.rand(2, 4))


# ---------------------------------------------------------------- top-k cardinality
def test_cardinality_by_hand():
    same = torch.tensor([[3.0, 2.0, 1.0, 0.0]]).repeat(3, 1)
    assert metrics.create("top_k_cardinality", top_k=2)(same).score == pytest.approx(2 / 6)
    distinct = torch.eye(3, 5)  # top-1 of row i is i
    assert metrics.create("top_k_cardinality")(distinct).score == 1.0
    # top-2 of eye rows with ties -> row i: {i, lowest other index}: {0,1}, {1,0}, {2,0} -> 3 distinct / 6
    r = metrics.create("top_k_cardinality", top_k=2)(distinct)
    assert r.score == pytest.approx(3 / 6) and r.extras["n_distinct"] == 3
    assert metrics.create("top_k_cardinality", top_k=2)(topk(distinct, 2)).score == r.score


def test_cardinality_random_band():
    # 50 random top-1 picks among 1000 samples: expected distinct 1000 (1 - (1 - 1/1000)^50) ~ 48.8
    g = torch.Generator().manual_seed(0)
    assert metrics.create("top_k_cardinality")(torch.rand(50, 1000, generator=g)).score > 0.9


# ---------------------------------------------------------------- sparsity
def test_sparsity_by_hand():
    a = torch.tensor(
        [[0.0, 0.0, 5.0, 0.0], [1.0, -1.0, 1.0, 1.0], [3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    )
    r = metrics.create("sparsity", eps=0.5)(a)
    # Hoyer: one-hot 1; equal magnitudes 0; [3,4,0,0]: (2 - 7/5) / (2 - 1) = 0.6; zero row counted 1
    assert r.per_sample.tolist() == pytest.approx([1.0, 0.0, 0.6, 1.0])
    # near-zero share (|a|/max|a| < 0.5): 3/4, 0, [.75, 1, 0, 0] -> 1/2, zero row 1
    assert r.extras["near_zero"] == pytest.approx((0.75 + 0 + 0.5 + 1) / 4)
    near = metrics.create("sparsity", measure="near_zero", eps=0.5)(a)
    assert near.per_sample.tolist() == pytest.approx([0.75, 0.0, 0.5, 1.0])


def test_sparsity_random_band_and_bad_input():
    # |N(0,1)| rows: E|a| / sqrt(E a^2) = sqrt(2/pi), Hoyer ~ (sqrt(N) - sqrt(N) sqrt(2/pi)) / (sqrt(N) - 1) ~ 0.21
    g = torch.Generator().manual_seed(0)
    s = metrics.create("sparsity")(torch.randn(10, 1000, generator=g)).score
    assert abs(s - (1 - math.sqrt(2 / math.pi)) * math.sqrt(1000) / (math.sqrt(1000) - 1)) < 0.02
    with pytest.raises(ValueError, match="n_train >= 2"):
        metrics.create("sparsity")(torch.rand(3, 1))
    with pytest.raises(ValueError, match="measure"):
        metrics.create("sparsity", measure="gini")
    with pytest.raises(AttributionContractError, match="NaN"):
        metrics.create("sparsity")(torch.tensor([[float("nan"), 1.0]]))
