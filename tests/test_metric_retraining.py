"""lds, leave_k_out, coreset_selection, data_pruning: synthetic datamodels, hand-made cases, real digits retraining.

Retraining metrics never train: they name requests, and ``compute`` scores outputs it is handed.
``score`` below plays the retraining service with a closed-form "model" per request.
"""

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from dattr_eval import metrics
from dattr_eval.contract import topk
from dattr_eval.metrics.base import RetrainingMetric
from dattr_eval.metrics.lds import subset_masks
from tests._digits_models import digits_split, fit_full_batch, single_thread  # noqa: F401


def score(metric: RetrainingMetric, attributions, outputs_fn, **truth):
    """Update with one batch, answer the metric's requests with ``outputs_fn(indices, seed)``, compute."""
    metric.update(attributions, **truth)
    requests = metric.retrain_requests()
    outputs = torch.stack([outputs_fn(r.indices, r.seed) for r in requests])
    return metric.compute(outputs)


def additive(weights: torch.Tensor, noise: float = 0.0):
    """A linear datamodel: the model trained on S outputs ``Σ_{i∈S} weights[t, i]`` (+ seeded noise)."""

    def outputs_fn(indices: torch.Tensor, seed: int) -> torch.Tensor:
        out = weights[:, indices].sum(1).double()
        if noise:
            gen = torch.Generator().manual_seed(1000 + seed + 7 * int(indices.sum()))
            out = out + noise * torch.randn(out.shape, generator=gen, dtype=torch.float64)
        return out

    return outputs_fn


# ---------------------------------------------------------------- LDS
def test_lds_perfect_inverted_and_by_hand():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 12, generator=g)
    m = metrics.create("lds", n_subsets=6, n_seeds=2)
    assert "retrained_outputs" in m.requires and m.higher_is_better
    assert metrics.get("fidelity") is metrics.get("lds")
    assert score(m, w, additive(w)).score == pytest.approx(1.0)
    assert score(
        metrics.create("lds", n_subsets=6, n_seeds=2), -w, additive(w)
    ).score == pytest.approx(-1.0)
    # by hand: Spearman over subsets between attribution sums and seed-averaged noisy outputs
    noisy = metrics.create("lds", n_subsets=6, n_seeds=3)
    r = score(noisy, w, additive(w, noise=1.0))
    masks = subset_masks(12, 6, 0.5, 0)
    requests = noisy.retrain_requests()
    assert len(requests) == 18 and [q.seed for q in requests[:3]] == [0, 1, 2]
    outs = (
        torch.stack([additive(w, 1.0)(q.indices, q.seed) for q in requests])
        .reshape(6, 3, 3)
        .mean(1)
    )
    expected = [
        spearmanr((masks.double() @ w[t].double()).numpy(), outs[:, t].numpy()).statistic
        for t in range(3)
    ]
    assert r.units.tolist() == pytest.approx(expected)


def test_lds_noise_ceiling_and_random_band():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(40, 50, generator=g)
    clean = score(metrics.create("lds", n_subsets=30, n_seeds=2), w, additive(w))
    assert clean.extras["noise_ceiling"] == pytest.approx(1.0)  # noiseless seeds agree perfectly
    noisy = score(metrics.create("lds", n_subsets=30, n_seeds=2), w, additive(w, noise=50.0))
    assert noisy.extras["noise_ceiling"] < 0.5  # seed noise dominates the subset signal
    rand = score(
        metrics.create("lds", n_subsets=100, n_seeds=1),
        torch.randn(40, 50, generator=g),
        additive(w),
    )
    assert abs(rand.score) < 0.1 and "noise_ceiling" not in rand.extras


def test_lds_bad_input():
    with pytest.raises(ValueError, match="n_subsets"):
        metrics.create("lds", n_subsets=2)
    with pytest.raises(ValueError, match="fraction"):
        metrics.create("lds", fraction=1.5)
    with pytest.raises(TypeError, match="seed"):
        metrics.create("lds", seed=2.5)
    m = metrics.create("lds", n_subsets=4, n_seeds=1)
    m.update(torch.rand(2, 5))
    with pytest.raises(ValueError, match="n_requests=4"):
        m.compute(torch.rand(3, 2))
    with pytest.raises(ValueError, match="NaN"):
        m.compute(torch.full((4, 2), float("nan")))
    with pytest.raises(TypeError, match="retrained outputs"):
        m.compute(None)


# ---------------------------------------------------------------- leave-top-k-out
def test_leave_k_out_by_hand():
    w = torch.tensor([[3.0, 1.0, 0.0, 0.5, 0.0], [0.0, 0.0, 2.0, 0.0, 1.0]])
    m = metrics.create("leave_k_out", top_k=1, seed=0)
    assert m.accepts_topk and m.top_k_needed == 1
    r = score(m, w, additive(w), train_labels=torch.zeros(5, dtype=torch.long))
    random_removed = int(torch.randperm(5, generator=torch.Generator().manual_seed(0))[0])
    # removing the top sample drops output by w[t, top] = 3 and 2; random removal drops w[t, r]
    assert r.extras["drop_top"] == pytest.approx(2.5)
    assert r.units.tolist() == pytest.approx(
        [3.0 - float(w[0, random_removed]), 2.0 - float(w[1, random_removed])]
    )
    assert len(m.retrain_requests()) == 4  # full, random, one per distinct top set
    inverted = score(
        metrics.create("leave_k_out", top_k=1),
        -w,
        additive(w),
        train_labels=torch.zeros(5, dtype=torch.long),
    )
    assert inverted.score < r.score
    streamed = score(
        metrics.create("leave_k_out", top_k=1),
        topk(w, 2),
        additive(w),
        train_labels=torch.zeros(5, dtype=torch.long),
    )
    assert streamed.units.tolist() == r.units.tolist()


def test_leave_k_out_uses_test_positions():
    w = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 2.0], [1.0, 5.0, 0.0]])
    labels = torch.zeros(3, dtype=torch.long)
    full = score(metrics.create("leave_k_out", top_k=1), w, additive(w), train_labels=labels)
    m = metrics.create("leave_k_out", top_k=1)
    m.update(w[2:], train_labels=labels, test_positions=torch.tensor([2]))
    m.update(w[:2], train_labels=labels, test_positions=torch.tensor([0, 1]))
    out = torch.stack([additive(w)(r.indices, r.seed) for r in m.retrain_requests()])
    assert m.compute(out).units.tolist() == pytest.approx(full.units[[2, 0, 1]].tolist())


def test_leave_k_out_bad_input():
    w = torch.rand(2, 4)
    with pytest.raises(ValueError, match="top_k"):
        metrics.create("leave_k_out", top_k=4).update(
            w, train_labels=torch.zeros(4, dtype=torch.long)
        )


# ---------------------------------------------------------------- coreset / pruning
def useful_outputs(useful: list[int], n_test: int):
    """Target log-prob = -(share of ``useful`` samples missing from the training set), every test point."""

    def outputs_fn(indices: torch.Tensor, seed: int) -> torch.Tensor:
        missing = len(set(useful) - set(indices.tolist()))
        return torch.full((n_test,), -missing / len(useful), dtype=torch.float64)

    return outputs_fn


def random_loss(useful, labels, size, n_orders, seed=0):
    from dattr_eval.metrics._selection import random_selection

    draws = [
        random_selection(labels, size, seed=seed * 1000 + o, stratified=True)
        for o in range(n_orders)
    ]
    return sum(len(set(useful) - set(d.tolist())) / len(useful) for d in draws) / n_orders


def test_coreset_and_pruning_by_hand():
    # N = 20 (one class), useful {17, 18, 19}; fractions 0.05 and 0.5 -> sizes 1 and 10.
    # a perfect ranking keeps 1 useful sample at size 1 (loss 2/3) and all at size 10 (loss 0);
    # pruning keeps the bottom: 0 useful at both sizes (loss 1). Score = mean over the two sizes
    # (the trapezoid over two points) of the loss minus the random subsets' loss.
    labels = torch.zeros(20, dtype=torch.long)
    fn = useful_outputs([17, 18, 19], n_test=2)
    good = torch.zeros(2, 20)
    good[:, 17:] = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.5, -0.5]])
    good[:, :17] = 0.01 * torch.arange(17.0)  # no ties: one order
    kw = {"n_fractions": 2, "n_orders": 5}
    rand = [random_loss([17, 18, 19], labels, size, 5) for size in (1, 10)]
    coreset = score(metrics.create("coreset_selection", **kw), good, fn, train_labels=labels)
    assert coreset.score == pytest.approx(((2 / 3 - rand[0]) + (0 - rand[1])) / 2)
    assert coreset.extras["baseline"] == pytest.approx(sum(rand) / 2)
    pruning = score(metrics.create("data_pruning", **kw), good, fn, train_labels=labels)
    assert pruning.score == pytest.approx(((1 - rand[0]) + (1 - rand[1])) / 2)
    assert coreset.score < 0 < pruning.score
    assert (
        not metrics.get("coreset_selection").higher_is_better
        and metrics.get("data_pruning").higher_is_better
    )
    # without ties every tie order is the same: the ranking's requests collapse to one per size
    m = metrics.create("coreset_selection", **kw)
    m.update(good, train_labels=labels)
    ranking = m.retrain_requests()[:10]
    assert len({tuple(r.indices.tolist()) for r in ranking}) == 2


def test_coreset_ties_are_averaged_over_random_orders():
    # all attributions equal: the ranking is pure tie order, so it is a random subset like the
    # baseline; averaged over orders the score is the difference of two random-subset losses.
    labels = torch.zeros(40, dtype=torch.long)
    fn = useful_outputs(list(range(10)), n_test=1)
    m = metrics.create("coreset_selection", n_fractions=3, n_orders=8)
    m.update(torch.ones(1, 40), train_labels=labels)
    requests = m.retrain_requests()
    ranked = requests[: 3 * 8]
    assert len({tuple(r.indices.tolist()) for r in ranked[:8]}) == 8  # 8 different tie orders
    r = m.compute(torch.stack([fn(q.indices, q.seed) for q in requests]))
    assert abs(r.score) < 0.15  # ties carry no signal: close to the random baseline


def test_coreset_selection_is_class_stratified():
    labels = torch.tensor([0] * 30 + [1] * 10)
    a = torch.zeros(1, 40)
    a[0, :30] = torch.arange(30.0) + 1  # class 0 ranked above all of class 1
    m = metrics.create("coreset_selection", n_fractions=2, n_orders=1)
    m.update(a, train_labels=labels)
    for request in m.retrain_requests():
        share = float((labels[request.indices] == 1).double().mean())
        assert share == pytest.approx(0.25, abs=0.5 / len(request.indices) + 1e-9)


# ---------------------------------------------------------------- real retraining on digits
def test_digits_retraining_metrics_track_a_sensible_attribution():
    train, x_test, _ = digits_split(120, 8)
    x_train, y_train = train.tensors

    def fit(indices: torch.Tensor, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = nn.Linear(64, 10)
        return fit_full_batch(
            model, torch.utils.data.TensorDataset(x_train[indices], y_train[indices]), 1e-2, steps=1
        )

    full = fit(torch.arange(120), 0)
    with torch.no_grad():
        targets = full(x_test).argmax(1)

    def outputs_fn(indices: torch.Tensor, seed: int) -> torch.Tensor:
        with torch.no_grad():
            return torch.log_softmax(fit(indices, seed)(x_test), 1).gather(1, targets[:, None])[
                :, 0
            ]

    # a sensible attribution for a linear softmax model: input similarity to same-target-class samples
    a = (x_test @ x_train.T) * (y_train[None, :] == targets[:, None]).float()
    lds = score(metrics.create("lds", n_subsets=8, n_seeds=1), a, outputs_fn)
    leave = score(metrics.create("leave_k_out", top_k=10), a, outputs_fn, train_labels=y_train)
    assert lds.score > 0.2  # same-class similarity tracks the retrained log-probabilities
    assert leave.extras["drop_top"] > leave.extras["drop_random"]
