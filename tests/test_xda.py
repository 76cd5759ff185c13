"""DualView x LRP pair heatmaps (dattr_eval.xda): conservation, values, shapes, RGB, canonizers, errors."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from dattr_eval import explainers
from dattr_eval.explainers import NotFittedError
from dattr_eval.xda import (
    PairScoreModel,
    decision_heatmaps,
    explain_pair,
    explain_pairs,
    explain_topk,
    feature_relevance_heatmaps,
    plot_xda,
    score_xda,
    xda_explain_func,
)
from dattr_eval.xda.lrp import default_canonizers

N_TRAIN, N_TEST = 300, 10
#: the explainer under test: DualView (representer points share its form, tested once below)
KERNEL = "dualview" if "dualview" in explainers.names() else "representer"


def bias_free_cnn(in_channels: int = 1, n_classes: int = 10) -> nn.Sequential:
    """A small ReLU CNN without biases, for ``(in_channels, 8, 8)`` inputs; features d = 16."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, bias=False),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 16, bias=False),
        nn.ReLU(),
        nn.Linear(16, n_classes, bias=False),
    )


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 40) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def digits() -> tuple[TensorDataset, torch.Tensor, nn.Module]:
    """Digits as ``(1, 8, 8)`` images in [0, 1]: train set, test inputs, a trained bias-free CNN."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y)
    torch.manual_seed(0)
    model = train(bias_free_cnn(), x[:N_TRAIN], y[:N_TRAIN])
    return TensorDataset(x[:N_TRAIN], y[:N_TRAIN]), x[N_TRAIN : N_TRAIN + N_TEST], model


#: cheap settings: the heatmaps need the coefficients' form (a_jc times features), not the optimum
FAST = {"dualview": {"max_iter": 30}, "representer": {"max_iter": 50}}


def fit_fast(name: str, model: nn.Module, train_set: TensorDataset, **hyper):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "stopped at max_iter" / "not at its optimum"
        return explainers.create(name, **FAST[name], **hyper).fit(model, train_set)


@pytest.fixture(scope="module")
def fitted(digits):
    train_set, x_test, model = digits
    return fit_fast(KERNEL, model, train_set), x_test


def relative_errors(heatmaps: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    sums = heatmaps.flatten(start_dim=heatmaps.ndim - 2).sum(-1)
    return ((sums - scores).abs() / scores.abs()).flatten()


def test_conservation_median_over_50_pairs(fitted):
    explainer, x_test = fitted
    result = explain_topk(
        explainer, None, x_test, k=5, composite="epsilon"
    )  # 10 x 5 = 50 pairs a side
    for pairs in (result.proponents, result.opponents):
        assert pairs.scores.shape == (N_TEST, 5)
        nonzero = pairs.scores.abs() > 0
        assert int(nonzero.sum()) >= 40  # enough non-zero attributions to measure a relative error
        for heat in (pairs.test_heatmaps, pairs.train_heatmaps):
            err = relative_errors(heat, pairs.scores)[nonzero.flatten()]
            assert float(err.median()) < 0.05, float(err.median())


@pytest.mark.parametrize("name", sorted({KERNEL, "representer"}))
def test_scores_are_the_explainers_attributions(fitted, digits, name):
    explainer, x_test = fitted
    if (
        name != KERNEL
    ):  # representer points have the same kernel form (alpha_ instead of dual_coef_)
        explainer = fit_fast(name, digits[2], digits[0])
    a = explainer.explain(x_test)
    result = explain_topk(explainer, None, x_test, k=3, composite="epsilon")
    expected = torch.sort(a, dim=1, descending=True).values[:, :3]
    torch.testing.assert_close(result.proponents.scores, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        result.proponents.scores, a.gather(1, result.proponents.train_indices), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(
        result.opponents.scores, torch.sort(a, dim=1).values[:, :3], rtol=1e-4, atol=1e-5
    )


def test_lrp0_heatmaps_equal_gradient_times_input(fitted):
    """For a bias-free ReLU net LRP-0 is gradient x input of s(x) = a_jc <phi(x), phi(x_j)>."""
    explainer, x_test = fitted
    model, x, j = explainer.model_, x_test[0], 7
    c = int(model(x[None]).argmax())
    coef = explainer.dual_coef_ if hasattr(explainer, "dual_coef_") else explainer.alpha_
    features = nn.Sequential(*list(model)[:-1])
    phi_j = features(explainer.train_dataset_[j][0][None]).detach()[0]

    def attribution_of(z: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        z = z.clone().requires_grad_(True)
        s = coef[j, c] * (features(z[None])[0] * anchor).sum()
        (grad,) = torch.autograd.grad(s, z)
        return (z * grad).detach().sum(0)  # (8, 8), one channel

    test_heat, train_heat, score = explain_pair(explainer, None, x, j, composite="epsilon")
    phi_x = features(x[None]).detach()[0]
    torch.testing.assert_close(test_heat, attribution_of(x, phi_j), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        train_heat, attribution_of(explainer.train_dataset_[j][0], phi_x), rtol=1e-4, atol=1e-6
    )
    assert score == pytest.approx(float(coef[j, c] * (phi_x * phi_j).sum()), rel=1e-4)


def test_decision_heatmap_is_normalised_gradient_times_input(digits):
    _, x_test, model = digits
    x = x_test[:4].clone().requires_grad_(True)
    logits = model(x)
    c = logits.argmax(1)
    z = logits.gather(1, c[:, None]).squeeze(1)
    (grad,) = torch.autograd.grad(z.sum(), x)
    expected = (x * grad).detach().sum(1) / z.detach()[:, None, None]
    heat = decision_heatmaps(model, x_test[:4], None, "epsilon")
    assert heat.shape == (4, 8, 8)
    torch.testing.assert_close(heat, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(heat.sum((1, 2)), torch.ones(4), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("composite", ["epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1"])
def test_composites_shapes_and_signs(fitted, composite):
    explainer, x_test = fitted
    pairs = explain_pairs(explainer, None, x_test[1], [3, 5, 11, 250], composite)
    assert pairs.test_heatmaps.shape == pairs.train_heatmaps.shape == (4, 8, 8)
    assert pairs.scores.shape == pairs.train_indices.shape == (4,)
    assert pairs.train_inputs.shape == (4, 1, 8, 8)
    assert bool(torch.isfinite(pairs.test_heatmaps).all())
    if (
        composite == "epsilon_plus_flat"
    ):  # z+ / flat on a bias-free net with inputs >= 0 conserve too
        ok = pairs.scores.abs() > 0
        assert float(relative_errors(pairs.test_heatmaps, pairs.scores)[ok].max()) < 0.05


def test_rgb_heatmaps_are_channel_sums():
    torch.manual_seed(1)
    model = bias_free_cnn(in_channels=3, n_classes=3).eval()
    x = torch.rand(5, 3, 8, 8)
    w = torch.rand(5, 16)
    heat = feature_relevance_heatmaps(model, x, lambda phi: phi * w, "epsilon")
    assert heat.shape == (5, 8, 8)
    z = x.clone().requires_grad_(True)
    s = (nn.Sequential(*list(model)[:-1])(z) * w).sum()
    (grad,) = torch.autograd.grad(s, z)
    expected = (z * grad).detach().sum(1)
    torch.testing.assert_close(heat, expected, rtol=1e-3, atol=1e-3 * float(expected.abs().max()))


def test_batchnorm_is_merged_and_restored():
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 64, 8, bias=False),
        nn.ReLU(),
        nn.Linear(8, 3),
    )
    model[1].running_mean.uniform_(-0.5, 0.5)
    model[1].running_var.uniform_(0.5, 2.0)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(6, 1, 8, 8)
    w = torch.rand(6, 8)
    phi = nn.Sequential(*list(model)[:-1])(x).detach()
    heat = feature_relevance_heatmaps(model, x, lambda f: f * w, "epsilon")
    # the rules ignore biases (zero_params="bias"), so even the merged BatchNorm shift is not a sink
    torch.testing.assert_close(heat.sum((1, 2)), (phi * w).sum(1), rtol=1e-3, atol=1e-5)
    after = model.state_dict()
    assert set(after) == set(before)
    for key, value in before.items():
        torch.testing.assert_close(after[key], value)


def test_resnet_canonizer_routes_the_residual_sum():
    from torchvision.models.resnet import BasicBlock
    from zennit.torchvision import ResNetCanonizer

    from dattr_eval.explainers.features import FeatureExtractor

    torch.manual_seed(3)
    model = (
        nn.Sequential(  # a small ResNet of torchvision blocks (conv-BN-ReLU-conv-BN + skip, ReLU)
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.ReLU(),
            BasicBlock(8, 8),
            BasicBlock(8, 8),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(32, 3),
        ).eval()
    )
    assert isinstance(default_canonizers(model)[0], ResNetCanonizer)
    assert not isinstance(default_canonizers(bias_free_cnn())[0], ResNetCanonizer)
    x = torch.rand(2, 3, 8, 8)
    w = torch.rand(2, 32)
    total = (FeatureExtractor(model)(x)[0] * w).sum(1)
    heat = feature_relevance_heatmaps(model, x, lambda phi: phi * w, "epsilon_plus")
    assert heat.shape == (2, 8, 8)
    torch.testing.assert_close(heat.sum((1, 2)), total, rtol=1e-3, atol=1e-5)
    # without the canonizer the residual '+' is a plain gradient and relevance is counted twice
    raw = feature_relevance_heatmaps(model, x, lambda phi: phi * w, "epsilon_plus", canonizers=[])
    assert bool((raw.sum((1, 2)) > 2 * total).all())


def test_plot_writes_png(fitted, tmp_path):
    explainer, x_test = fitted
    result = explain_topk(explainer, None, x_test[:2], k=2)
    fig = plot_xda(result, 1, path=tmp_path / "sub" / "xda.png")
    assert (tmp_path / "sub" / "xda.png").stat().st_size > 1000
    assert len(fig.axes) == 3 * (1 + 2 * 2)
    with pytest.raises(IndexError, match="i must be"):
        plot_xda(result, 2)


def test_bad_input(fitted, digits):
    explainer, x_test = fitted
    with pytest.raises(IndexError, match="j must be in"):
        explain_pair(explainer, None, x_test[0], N_TRAIN)
    with pytest.raises(TypeError, match="j must be an int"):
        explain_pair(explainer, None, x_test[0], 1.5)
    with pytest.raises(ValueError, match="x must be one input"):
        explain_pair(explainer, None, x_test[:2], 0)
    with pytest.raises(ValueError, match="composite must be one of"):
        explain_pair(explainer, None, x_test[0], 0, composite="lrp_magic")
    with pytest.raises(ValueError, match="k must be <= n_train"):
        explain_topk(explainer, None, x_test, k=N_TRAIN + 1)
    train_set, _, model = digits
    with pytest.raises(NotFittedError):
        explain_pair(explainers.create(KERNEL), model, x_test[0], 0)
    if KERNEL == "dualview":
        normalised = fit_fast(KERNEL, model, train_set, normalize=True)
        with pytest.raises(ValueError, match="normalize=False"):
            explain_pair(normalised, None, x_test[0], 0)
    similarity = explainers.create("feature_similarity").fit(model, train_set)
    with pytest.raises(TypeError, match="dual_coef_"):
        explain_pair(similarity, None, x_test[0], 0)


def test_quantus_adapter_matches_pair_heatmaps(fitted):
    explainer, x_test = fitted
    model = explainer.model_
    idx = [4, 40, 200]
    pairs = explain_pairs(explainer, None, x_test[2], idx, "epsilon_plus")
    features = nn.Sequential(*list(model)[:-1])
    c = int(model(x_test[2:3]).argmax())
    coef = explainer.dual_coef_ if hasattr(explainer, "dual_coef_") else explainer.alpha_
    weights = coef[idx, c][:, None] * features(pairs.train_inputs).detach()
    scorer = PairScoreModel(model, weights)
    x = x_test[2:3].expand(3, 1, 8, 8)
    torch.testing.assert_close(
        scorer(x)[torch.arange(3), torch.arange(3)], pairs.scores, rtol=1e-4, atol=1e-5
    )
    heat = xda_explain_func(scorer, x.numpy(), np.arange(3), composite="epsilon_plus")
    np.testing.assert_allclose(heat, pairs.test_heatmaps.numpy(), rtol=1e-4, atol=1e-6)


def test_score_xda_table(fitted):
    explainer, x_test = fitted
    table = score_xda(
        explainer, None, x_test[:3], k=2, metrics=["faithfulness_correlation", "random_logit"]
    )
    assert list(table["side"]) == ["test", "test", "train", "train", "decision", "decision"]
    assert list(table["n"]) == [6, 6, 6, 6, 3, 3]
    faithfulness = table[table.metric == "faithfulness_correlation"]["score"]
    assert bool(((faithfulness > -1) & (faithfulness <= 1)).all())
    with pytest.raises(ValueError, match="metrics must be one of"):
        score_xda(explainer, None, x_test[:3], metrics=["nope"])
