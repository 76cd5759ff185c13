"""fidelity (LDS, leave-k-out), coreset_selection, data_pruning: synthetic datamodels and real digits retraining."""

import time

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from dattr_eval import metrics
from dattr_eval.contract import topk
from dattr_eval.evaluation.auxiliary import lds_subsets
from dattr_eval.metrics import MissingGroundTruthError
from tests._digits_models import digits_split, fit_full_batch, single_thread  # noqa: F401


def additive_retrain_fn(weights: torch.Tensor, calls: list | None = None):
    """A linear datamodel: the model trained on S outputs ``Σ_{i∈S} weights[t, i]`` on test point t."""

    def retrain_fn(train_indices: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append(train_indices.tolist())
        return weights[:, train_indices].sum(1)

    return retrain_fn


# ---------------------------------------------------------------- LDS
def test_lds_perfect_inverted_and_by_hand():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 12, generator=g)
    masks = lds_subsets(12, 6, 0.5, seed=0)
    outputs = masks.float() @ w.T  # (m, b): the exact linear datamodel
    m = metrics.create("fidelity")
    assert m.requires == ("subset_masks", "subset_outputs") and m.higher_is_better
    assert m(w, subset_masks=masks, subset_outputs=outputs).score == pytest.approx(1.0)
    assert m(-w, subset_masks=masks, subset_outputs=outputs).score == pytest.approx(-1.0)
    noisy = outputs + torch.randn(outputs.shape, generator=g)
    expected = [
        spearmanr((masks.float() @ w[t]).numpy(), noisy[:, t].numpy()).statistic for t in range(3)
    ]
    assert m(w, subset_masks=masks, subset_outputs=noisy).per_sample.tolist() == pytest.approx(
        expected
    )
    assert metrics.get("lds") is metrics.get("fidelity")


def test_lds_random_band():
    g = torch.Generator().manual_seed(1)
    masks = lds_subsets(50, 100, 0.5, seed=1)
    outputs = masks.float() @ torch.randn(50, 40, generator=g)
    s = metrics.create("fidelity")(
        torch.randn(40, 50, generator=g), subset_masks=masks, subset_outputs=outputs
    ).score
    assert abs(s) < 0.1  # mean of 40 correlations with sd ~ 0.1 each


def test_lds_bad_input():
    masks = lds_subsets(5, 4, 0.5, seed=0)
    a = torch.rand(2, 5)
    with pytest.raises(MissingGroundTruthError, match="subset_outputs"):
        metrics.create("fidelity")(a, subset_masks=masks, test_targets=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="subset_outputs"):
        metrics.create("fidelity")(
            a,
            subset_masks=masks,
            subset_outputs=torch.rand(4, 3),
            test_targets=torch.tensor([0, 1]),
        )
    with pytest.raises(ValueError, match="subset_masks"):
        metrics.create("fidelity")(a, subset_masks=masks[:, :4], subset_outputs=torch.rand(4, 2))
    with pytest.raises(ValueError, match="at least 3"):
        metrics.create("fidelity")(a, subset_masks=masks[:2], subset_outputs=torch.rand(2, 2))
    with pytest.raises(ValueError, match="NaN"):
        metrics.create("fidelity")(
            a, subset_masks=masks, subset_outputs=torch.full((4, 2), float("nan"))
        )


# ---------------------------------------------------------------- leave-top-k-out
def test_leave_k_out_by_hand():
    w = torch.tensor([[3.0, 1.0, 0.0, 0.5, 0.0], [0.0, 0.0, 2.0, 0.0, 1.0]])
    calls = []
    m = metrics.create("fidelity", mode="leave_k_out", top_k=1, seed=0)
    assert m.requires == ("retrain_fn",) and m.accepts_topk and m.top_k_needed == 1
    r = m(w, retrain_fn=additive_retrain_fn(w, calls))
    random_removed = int(torch.randperm(5, generator=torch.Generator().manual_seed(0))[0])
    # removing the top sample drops output by w[t, top] = 3 and 2; random removal drops w[t, r]
    assert r.extras["drop_top"] == pytest.approx(2.5)
    assert r.per_sample.tolist() == pytest.approx(
        [3.0 - float(w[0, random_removed]), 2.0 - float(w[1, random_removed])]
    )
    assert len(calls) == 4 and all(
        c == sorted(c) for c in calls
    )  # full, random, one per test point
    inverted = metrics.create("fidelity", mode="leave_k_out", top_k=1)(
        -w, retrain_fn=additive_retrain_fn(w)
    )
    assert inverted.score < r.score
    streamed = metrics.create("fidelity", mode="leave_k_out", top_k=1)(
        topk(w, 2), retrain_fn=additive_retrain_fn(w), train_labels=torch.zeros(5, dtype=torch.long)
    )
    assert torch.equal(streamed.per_sample, r.per_sample)


def test_leave_k_out_uses_test_positions():
    w = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 2.0], [1.0, 5.0, 0.0]])
    fn = additive_retrain_fn(w)
    full = metrics.create("fidelity", mode="leave_k_out", top_k=1)(w, retrain_fn=fn)
    m = metrics.create("fidelity", mode="leave_k_out", top_k=1)
    m.update(w[2:], retrain_fn=fn, test_positions=torch.tensor([2]))
    m.update(w[:2], retrain_fn=fn, test_positions=torch.tensor([0, 1]))
    assert m.compute().per_sample.tolist() == pytest.approx(full.per_sample[[2, 0, 1]].tolist())


def test_leave_k_out_bad_input():
    w = torch.rand(2, 4)
    with pytest.raises(MissingGroundTruthError, match="retrain_fn"):
        metrics.create("fidelity", mode="leave_k_out")(w)
    with pytest.raises(ValueError, match="top_k"):
        metrics.create("fidelity", mode="leave_k_out", top_k=4)(
            w, retrain_fn=additive_retrain_fn(w)
        )
    with pytest.raises(TypeError, match="retrain_fn must return"):
        metrics.create("fidelity", mode="leave_k_out", top_k=1)(
            w, retrain_fn=lambda idx: nn.Linear(2, 2)
        )
    with pytest.raises(ValueError, match="mode"):
        metrics.create("fidelity", mode="loo")


# ---------------------------------------------------------------- coreset / pruning
def useful_retrain_fn(useful: list[int], n_test: int):
    """Target log-prob = -(share of ``useful`` samples missing from the training set), for every test point."""

    def retrain_fn(train_indices: torch.Tensor) -> torch.Tensor:
        missing = len(set(useful) - set(train_indices.tolist()))
        return torch.full((n_test,), -missing / len(useful))

    return retrain_fn


def test_coreset_and_pruning_by_hand():
    # N = 10, useful {7, 8, 9}; coreset on the top j: loss (3 - min(j, 3)) / 3 -> mean (2/3 + 1/3) / 10 = 0.1;
    # on the bottom j of a perfect ranking: loss 1 for j <= 7, then 2/3, 1/3, 0 -> mean 8/10.
    fn = useful_retrain_fn([7, 8, 9], n_test=2)
    good = torch.zeros(2, 10)
    good[:, 7:] = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.5, -0.5]])  # |A| puts 7, 8, 9 on top
    coreset, pruning = metrics.create("coreset_selection"), metrics.create("data_pruning")
    assert not coreset.higher_is_better and pruning.higher_is_better
    r = coreset(good, retrain_fn=fn)
    assert r.score == pytest.approx(0.1) and r.extras["sizes"] == list(range(1, 11))
    assert pruning(good, retrain_fn=fn).score == pytest.approx(0.8)
    bad = torch.zeros(2, 10)
    bad[:, :7] = 1.0  # useful samples ranked last
    assert coreset(bad, retrain_fn=fn).score == pytest.approx(0.8)
    assert pruning(bad, retrain_fn=fn).score == pytest.approx(0.1)
    assert metrics.get("coreset") is metrics.get("coreset_selection") and metrics.get(
        "pruning"
    ) is metrics.get("data_pruning")


def test_coreset_signed_aggregate_and_ties():
    fn = useful_retrain_fn([0], n_test=1)
    a = torch.tensor([[-5.0, 1.0, 0.0, 0.0]])
    # abs: sample 0 first -> losses [0, 0, 0, 0]; signed: order 1, 2, 3, 0 (ties 2, 3 by index) -> [1, 1, 1, 0]
    assert metrics.create("coreset_selection", n_steps=4)(a, retrain_fn=fn).score == pytest.approx(
        0.0
    )
    assert metrics.create("coreset_selection", n_steps=4, aggregate="signed")(
        a, retrain_fn=fn
    ).score == pytest.approx(0.75)


# ---------------------------------------------------------------- real retraining on digits
def test_digits_retraining_metrics_run_in_seconds():
    train, x_test, _ = digits_split(120, 8)
    x_train, y_train = train.tensors

    def fit(indices: torch.Tensor) -> nn.Module:
        torch.manual_seed(0)
        model = nn.Linear(64, 10)
        return fit_full_batch(
            model, torch.utils.data.TensorDataset(x_train[indices], y_train[indices]), 1e-2, steps=1
        )

    full = fit(torch.arange(120))
    with torch.no_grad():
        targets = full(x_test).argmax(1)

    def retrain_fn(indices: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.log_softmax(fit(indices)(x_test), 1).gather(1, targets[:, None])[:, 0]

    # a sensible attribution for a linear softmax model: input similarity to same-target-class samples
    a = (x_test @ x_train.T) * (y_train[None, :] == targets[:, None]).float()
    start = time.perf_counter()
    masks = lds_subsets(120, 8, 0.5, seed=0)
    outputs = torch.stack([retrain_fn(mask.nonzero()[:, 0]) for mask in masks])
    lds = metrics.create("fidelity")(a, subset_masks=masks, subset_outputs=outputs)
    coreset = metrics.create("coreset_selection", n_steps=3)(a, retrain_fn=retrain_fn)
    leave = metrics.create("fidelity", mode="leave_k_out", top_k=10)(a, retrain_fn=retrain_fn)
    assert time.perf_counter() - start < 30
    assert lds.score > 0.2  # same-class similarity tracks the retrained log-probabilities
    assert leave.extras["drop_top"] > leave.extras["drop_random"]
    assert coreset.extras["losses"][0] > coreset.extras["losses"][-1]  # more data, lower loss
