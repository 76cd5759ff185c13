"""dualview: attributions checked against an independent sklearn surrogate and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau
from sklearn.svm import LinearSVC

from dattr_eval import explainers
from dattr_eval.contract import check_attributions
from dattr_eval.explainers import dualview
from dattr_eval.explainers.dualview import kendall_tau_rows, support_attributions
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
    live = xpl.feature_std_ > 0
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
