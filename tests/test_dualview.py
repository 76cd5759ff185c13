"""dualview: attributions checked against an independent sklearn surrogate and closed forms."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau
from sklearn.svm import LinearSVC
from torch import nn
from torch.utils.data import TensorDataset

from dattr_eval import explainers
from dattr_eval.contract import check_attributions
from dattr_eval.explainers import dualview
from dattr_eval.explainers.dualview import (
    DualView,
    kendall_tau_rows,
    scale_free_C,
    support_attributions,
)
from tests._digits_models import digits_split, single_thread, small_mlp  # noqa: F401  (one torch thread)

N_TRAIN, N_TEST, C = 200, 23, 1e-2


@pytest.fixture(scope="module")
def setup():
    train, x_test, _ = digits_split(N_TRAIN, N_TEST)
    model = small_mlp(train, weight_decay=1e-3)
    penultimate = lambda x: model[1](model[0](x)).detach().double()
    xpl = explainers.create("dualview", C=C, tol=1e-5, max_iter=20000).fit(model, train)
    assert xpl.svm_.method_ == "sequential"  # the CPU default
    return model, train, x_test, penultimate, xpl


def test_rows_sum_to_sklearn_surrogate_logit(setup):
    _, train, x_test, penultimate, xpl = setup
    ref = LinearSVC(
        multi_class="crammer_singer", C=C, tol=1e-8, fit_intercept=False, max_iter=100000
    )
    ref.fit(penultimate(train.tensors[0]).numpy(), train.tensors[1].numpy())
    targets = torch.arange(N_TEST) % 10
    a = xpl.explain(x_test, targets)
    check_attributions(a, N_TEST, N_TRAIN)
    logits = (penultimate(x_test).numpy() @ ref.coef_.T)[np.arange(N_TEST), targets.numpy()]
    np.testing.assert_allclose(
        a.double().sum(1).numpy(), logits, rtol=1e-3, atol=1e-3 * np.abs(logits).max()
    )


def test_closed_form_sparsity_and_self_influence(setup):
    _, train, x_test, penultimate, xpl = setup
    a = xpl.explain(x_test)  # targets = model predictions
    targets = xpl.predict(x_test)
    phi, phi_train = penultimate(x_test), penultimate(train.tensors[0])
    expected = (phi @ phi_train.T) * xpl.dual_coef_[:, targets].T
    torch.testing.assert_close(a.double(), expected, rtol=1e-4, atol=1e-6)
    non_support = torch.ones(N_TRAIN, dtype=torch.bool)
    non_support[xpl.support_] = False
    assert non_support.any() and (a[:, non_support] == 0).all()
    own = xpl.dual_coef_.gather(1, train.tensors[1][:, None]).squeeze(1)
    torch.testing.assert_close(
        xpl.self_influence().double(), own * (phi_train**2).sum(1), rtol=1e-4, atol=1e-7
    )
    assert xpl.features(x_test).shape == (N_TEST, 16)


def test_normalize_and_intercept_rows_sum_to_logit_minus_bias(setup):
    model, train, x_test, _, _ = setup
    xpl = explainers.create(
        "dualview",
        C=C,
        normalize=True,
        fit_intercept=True,
        tol=1e-5,
        max_iter=20000,
        method="block",
    ).fit(model, train)
    assert xpl.svm_.method_ == "block"  # the CUDA default, here on the CPU
    train_phi = xpl.features(train.tensors[0])
    live = xpl.feature_std_ > 1e-6 * xpl.feature_mean_.abs()
    torch.testing.assert_close(train_phi.mean(0), torch.zeros(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(train_phi[:, live].std(0, correction=0), torch.ones(int(live.sum())))
    targets = torch.arange(N_TEST) % 10
    logits = (xpl.features(x_test).double() @ xpl.coef_.T).gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(
        xpl.explain(x_test, targets).double().sum(1), logits, rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(xpl.intercept_, xpl.dual_coef_.sum(0))


def test_fidelity_report(setup):
    model, train, _, penultimate, xpl = setup
    rep = xpl.fidelity_report()
    surrogate = penultimate(train.tensors[0]) @ xpl.coef_.T
    logits = model(train.tensors[0]).detach().double()
    agree = float((surrogate.argmax(1) == logits.argmax(1)).double().mean())
    assert rep["prediction_accuracy"] == pytest.approx(agree)
    cos = torch.nn.functional.cosine_similarity(model[2].weight.detach().double(), xpl.coef_, dim=1)
    assert rep["weight_cosine"] == pytest.approx(float(cos.mean()))
    taus = [kendalltau(logits[i], surrogate[i]).statistic for i in range(N_TRAIN)]
    assert rep["logit_kendall_tau"] == pytest.approx(float(np.mean(taus)), abs=1e-9)
    assert -1 <= rep["prediction_mcc"] <= 1
    assert rep["support_fraction"] == xpl.support_.numel() / N_TRAIN
    assert {k: rep[k] for k in xpl.diagnostics_} == xpl.diagnostics_


def test_diagnostics_are_json_scalars_derived_from_alpha(setup):
    _, train, _, _, xpl = setup
    diag = xpl.diagnostics_
    json.dumps(diag)  # JSON-friendly
    assert set(diag) == {
        "C_",
        "support_fraction",
        "bound_fraction",
        "n_distinct_self_influence",
        "duality_gap",
        "attribution_error_bound",
        "converged",
        "epochs",
    }
    alpha, y = xpl.dual_coef_, train.tensors[1]
    own = alpha.gather(1, y[:, None]).squeeze(1)
    assert diag["C_"] == C and diag["converged"] and diag["epochs"] == xpl.n_iter_
    assert diag["support_fraction"] == float((alpha.abs().amax(1) >= 1e-6 * C).double().mean())
    assert diag["bound_fraction"] == float((own >= (1 - 1e-6) * C).double().mean())
    levels = {round(v / (1e-6 * C)) for v in own.tolist()}
    assert diag["n_distinct_self_influence"] == len(levels)
    assert diag["attribution_error_bound"] <= 1e-3 and diag["duality_gap"] <= 1e-5


def test_kendall_tau_rows_matches_scipy_with_ties():
    a = torch.tensor([[1.0, 2.0, 2.0, 0.0], [3.0, 1.0, 2.0, 5.0]])
    b = torch.tensor([[0.0, 1.0, 3.0, 3.0], [1.0, 2.0, 3.0, 4.0]])
    expected = [kendalltau(a[i], b[i]).statistic for i in range(2)]
    np.testing.assert_allclose(kendall_tau_rows(a, b).numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("support", [torch.arange(7), torch.tensor([1, 4, 5])])
def test_support_attributions_closed_form_in_chunks(support, monkeypatch):
    monkeypatch.setattr(dualview, "_SCALE_CHUNK", 2 * support.numel())  # two test rows per chunk
    gen = torch.Generator().manual_seed(0)
    phi, train = torch.randn(5, 3, generator=gen), torch.randn(7, 3, generator=gen)
    alpha, targets = torch.randn(7, 4, generator=gen), torch.tensor([3, 0, 0, 2, 1])
    got = support_attributions(phi, targets, train[support], alpha[support], support, 7)
    expected = torch.zeros(5, 7)
    for i in range(5):
        for j in support.tolist():
            expected[i, j] = alpha[j, targets[i]] * (train[j] @ phi[i])
    check_attributions(got, 5, 7)
    torch.testing.assert_close(got, expected)


# ---------------------------------------------------------------- digits-sized raw features


class Scale(nn.Module):
    """Multiplies its input by a constant: the penultimate features are ``factor * x``."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def pixel_model(factor: float = 1.0) -> nn.Sequential:
    """Features = the 64 digits pixels times ``factor``, then a (seeded, untrained) linear layer."""
    torch.manual_seed(0)
    return nn.Sequential(Scale(factor), nn.Linear(64, 10))


@pytest.fixture(scope="module")
def pixels():
    train, x_test, _ = digits_split(1000, 200)
    return train, x_test


@pytest.mark.parametrize("c", [0.1, 1e-3])
def test_default_tolerance_row_sums_match_sklearn(pixels, c):
    """Issue 15: at the default rtol, row sums match liblinear at tol 1e-8 to 1e-3 (1,000 x 64)."""
    train, x_test = pixels
    xpl = DualView(C=c).fit(pixel_model(), train)
    ref = LinearSVC(
        multi_class="crammer_singer", C=c, tol=1e-8, fit_intercept=False, max_iter=100000
    ).fit(train.tensors[0].double().numpy(), train.tensors[1].numpy())
    targets = torch.arange(200) % 10
    rows = xpl.explain(x_test, targets).double().sum(1).numpy()
    expected = (x_test.double().numpy() @ ref.coef_.T)[np.arange(200), targets.numpy()]
    assert np.linalg.norm(rows - expected) <= 1e-3 * np.linalg.norm(expected)
    # and each row within the certified bound (float32 explain adds ~1e-6 relative)
    w_norm = np.linalg.norm(ref.coef_)
    slack = xpl.attribution_error_bound_ * w_norm * x_test.double().norm(dim=1).numpy()
    assert (np.abs(rows - expected) <= 1.01 * slack + 1e-5 * np.abs(expected).max()).all()


def test_scale_free_C_keeps_the_regime(pixels):
    """Features x 0.1 and x 10 with C="auto": same support fraction, C_ scaled by 1 / s^2."""
    train, _ = pixels
    fits = {s: DualView().fit(pixel_model(s), train) for s in (0.1, 1.0, 10.0)}
    base = fits[1.0]
    assert base.C_ == pytest.approx(scale_free_C(train.tensors[0], dualview.DEFAULT_C_SCALE))
    for s, fitted in fits.items():
        assert fitted.C_ == pytest.approx(base.C_ / s**2, rel=1e-5)
        ratio = fitted.diagnostics_["support_fraction"] / base.diagnostics_["support_fraction"]
        assert 0.5 <= ratio <= 2
        assert (
            abs(fitted.diagnostics_["bound_fraction"] - base.diagnostics_["bound_fraction"]) < 0.02
        )
    frac = base.diagnostics_["support_fraction"]
    assert 0 < base.diagnostics_["bound_fraction"] < frac < 0.5  # the default: sparse, few at bound


def test_regime_variants(pixels):
    train, _ = pixels
    assert explainers.get("dualview_mid") is DualView
    with pytest.warns(RuntimeWarning, match="box bound"):
        dense = explainers.create("dualview_dense").fit(pixel_model(), train)
    sparse = explainers.create("dualview_sparse").fit(pixel_model(), train)
    mid = explainers.create("dualview").fit(pixel_model(), train)
    assert dense.C_ == pytest.approx(mid.C_ / 100) and sparse.C_ == pytest.approx(mid.C_ * 100)
    fractions = [f.diagnostics_["support_fraction"] for f in (dense, mid, sparse)]
    assert fractions[0] > 0.9 and fractions[0] > fractions[1] > fractions[2]
    assert dense.diagnostics_["bound_fraction"] > 0.5
    assert (
        dense.diagnostics_["n_distinct_self_influence"]
        < mid.diagnostics_["n_distinct_self_influence"]
    )
    assert explainers.create("dualview_sparse", C_scale=5e3).fit(pixel_model(), train).C_ == (
        pytest.approx(mid.C_)
    )


def test_self_influence_kinds(pixels):
    train, _ = pixels
    subset = TensorDataset(*(t[:150] for t in train.tensors))
    fits = {
        kind: DualView(C=0.05, self_influence_kind=kind).fit(pixel_model(), subset)
        for kind in ("squared_norm", "norm", "global")
    }
    phi = subset.tensors[0].double()
    own = fits["norm"].dual_coef_.gather(1, subset.tensors[1][:, None]).squeeze(1)
    torch.testing.assert_close(
        fits["squared_norm"].self_influence().double(), own * (phi**2).sum(1), rtol=1e-5, atol=1e-7
    )
    torch.testing.assert_close(
        fits["norm"].self_influence().double(), own * phi.norm(dim=1), rtol=1e-5, atol=1e-7
    )
    # v1 protocol: explain every training point for the model's prediction, normalise rows by max |A|
    xpl = fits["global"]
    a = xpl.explain(subset.tensors[0], xpl.predict(subset.tensors[0])).abs().double()
    expected = (a / a.amax(1, keepdim=True)).sum(0)
    torch.testing.assert_close(xpl.self_influence().double(), expected, rtol=1e-4, atol=1e-5)


def test_constant_features_normalized(pixels):
    """Issue 17: constant features z-score to 0; the dual must be feasible and honestly certified."""
    train, _ = pixels
    subset = TensorDataset(*(t[:100] for t in train.tensors))
    torch.manual_seed(0)
    first = nn.Linear(64, 4)
    nn.init.zeros_(first.weight)
    model = nn.Sequential(first, nn.Linear(4, 10))
    with pytest.warns(RuntimeWarning, match="box bound"):
        xpl = DualView(normalize=True).fit(model, subset)
    alpha = xpl.dual_coef_
    assert (xpl.train_features_ == 0).all()
    assert xpl.C_ == pytest.approx(dualview.DEFAULT_C_SCALE / 100)
    torch.testing.assert_close(
        alpha.sum(1), torch.zeros(100, dtype=torch.float64), atol=1e-12 * xpl.C_, rtol=0
    )
    assert xpl.converged_ and xpl.duality_gap_ <= 1e-3 and (xpl.coef_ == 0).all()
    assert (xpl.explain(subset.tensors[0][:5]) == 0).all()


def test_polish_reaches_the_solver(pixels):
    """``polish`` is a DualView hyperparameter passed to the solver; both settings are certified."""
    train, _ = pixels
    fits = {p: DualView(C=0.1, polish=p).fit(pixel_model(), train) for p in (True, False)}
    assert fits[True].get_params()["polish"] is True and fits[True].svm_.polish is True
    assert fits[True].svm_.n_polish_iter_ > 0 and fits[False].svm_.n_polish_iter_ == 0
    assert fits[True].converged_ and fits[False].converged_
    gap = float((fits[True].coef_ - fits[False].coef_).norm() / fits[False].coef_.norm())
    assert gap <= 1.01 * (
        fits[True].attribution_error_bound_ + fits[False].attribution_error_bound_
    )


def test_bad_hyperparameters_name_the_argument(pixels):
    train, _ = pixels
    subset = TensorDataset(*(t[:50] for t in train.tensors))
    bad = [
        ({"C": float("nan")}, ValueError, "C must be a finite number"),
        ({"C": float("inf")}, ValueError, "C must be a finite number"),
        ({"C": True}, TypeError, "C must be a number"),
        ({"C": "big"}, ValueError, 'C must be "auto"'),
        ({"C_scale": -1.0}, ValueError, "C_scale must be > 0"),
        ({"rtol": float("inf")}, ValueError, "rtol must be a finite number"),
        ({"tol": True}, TypeError, "tol must be a number"),
        ({"max_iter": True}, TypeError, "max_iter must be an int"),
        ({"seed": 2.5}, TypeError, "seed must be an int"),
        ({"self_influence_kind": "coef"}, ValueError, "self_influence_kind must be one of"),
        ({"normalize": 1}, TypeError, "normalize must be a bool"),
        ({"polish": "yes"}, ValueError, 'polish must be "auto", True or False'),
    ]
    for params, error, message in bad:
        with pytest.raises(error, match=message):
            DualView(**params).fit(pixel_model(), subset)


def test_estimate_memory_covers_the_fitted_state(pixels):
    train, _ = pixels
    xpl = DualView(C=0.05).fit(pixel_model(), train)
    kept = sum(
        t.numel() * t.element_size()
        for t in (
            xpl.train_features_,
            xpl.train_logits_,
            xpl.dual_coef_,
            xpl.support_features_,
            xpl.support_coef_,
        )
    )
    estimate = xpl.estimate_memory(1000, 200, 64)
    assert isinstance(estimate, int) and estimate >= kept + 64 * 1000 * 4
    assert xpl.estimate_memory(2000, 200, 64) > estimate
    unfitted = DualView().estimate_memory(1000, 200, 64, feature_dim=64, n_classes=10)
    assert unfitted == estimate
