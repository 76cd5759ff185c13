"""representer: checked against an independent numpy/scipy fit of Yeh et al.'s objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from dattr_eval import explainers
from dattr_eval.contract import check_attributions
from tests._digits_models import (
    digits_split,
    single_thread,  # noqa: F401 (autouse fixture)
    small_mlp,
)

N_TRAIN, N_TEST, L2 = 150, 23, 0.003


def reference_alpha(phi: np.ndarray, p: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """``W`` and ``alpha`` of Yeh et al. by scipy's L-BFGS-B on the same objective, from zeros."""
    n, d = phi.shape
    k = p.shape[1]

    def objective(w_flat: np.ndarray) -> tuple[float, np.ndarray]:
        w = w_flat.reshape(k, d)
        z = phi @ w.T
        loss = -(p * log_softmax(z, axis=1)).sum() / n + l2 * (w * w).sum()
        grad = (softmax(z, axis=1) - p).T @ phi / n + 2 * l2 * w
        return loss, grad.ravel()

    res = minimize(
        objective,
        np.zeros(k * d),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 5000},
    )
    w = res.x.reshape(k, d)
    alpha = -(softmax(phi @ w.T, axis=1) - p) / (2 * l2 * n)
    return w, alpha


@pytest.fixture(scope="module")
def setup():
    train, x_test, _ = digits_split(N_TRAIN, N_TEST)
    model = small_mlp(train, weight_decay=1e-3)
    with torch.no_grad():
        penultimate = lambda x: model[1](model[0](x)).detach().double().numpy()
        probs = torch.softmax(model(train.tensors[0]).double(), 1).numpy()
    w_ref, alpha_ref = reference_alpha(penultimate(train.tensors[0]), probs, L2)
    xpl = explainers.create("representer", l2=L2).fit(model, train)
    return model, train, x_test, penultimate, w_ref, alpha_ref, xpl


def test_coefficients_match_the_reference_fit(setup):
    *_, w_ref, alpha_ref, xpl = setup
    np.testing.assert_allclose(xpl.weight_.numpy(), w_ref, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(
        xpl.alpha_.numpy(), alpha_ref, rtol=1e-3, atol=1e-4 * np.abs(alpha_ref).max()
    )
    assert xpl.stationarity_ < 1e-4


def test_attributions_match_closed_form(setup):
    _, train, x_test, penultimate, _, alpha_ref, xpl = setup
    targets = torch.arange(N_TEST) % 10
    a = xpl.explain(x_test, targets)
    check_attributions(a, N_TEST, N_TRAIN)
    expected = (penultimate(x_test) @ penultimate(train.tensors[0]).T) * alpha_ref[
        :, targets.numpy()
    ].T
    np.testing.assert_allclose(a.numpy(), expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def test_rows_sum_to_the_surrogate_logit(setup):
    """The representer theorem: sum_j A[i, j] = (W phi(x_i))_c for the fitted W."""
    _, _, x_test, penultimate, w_ref, _, xpl = setup
    targets = torch.arange(N_TEST) % 10
    logits = penultimate(x_test) @ w_ref.T
    np.testing.assert_allclose(
        xpl.explain(x_test, targets).sum(1).numpy(),
        logits[np.arange(N_TEST), targets.numpy()],
        rtol=1e-3,
        atol=1e-3,
    )


def test_default_targets_are_predictions(setup):
    model, _, x_test, *_, xpl = setup
    torch.testing.assert_close(xpl.explain(x_test), xpl.explain(x_test, model(x_test).argmax(1)))


def test_self_influence_is_the_diagonal(setup):
    *_, xpl = setup
    x, y = xpl.train_dataset_.tensors
    torch.testing.assert_close(
        xpl.self_influence(), torch.diagonal(xpl.explain(x, y)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_non_positive_l2_raises(setup, bad):
    model, train, *_ = setup
    with pytest.raises(ValueError, match="l2 must be > 0"):
        explainers.create("representer", l2=bad).fit(model, train)


def test_unfitted_layer_warns(setup):
    model, train, *_ = setup
    with pytest.warns(UserWarning, match="not at its optimum"):
        explainers.create("representer", max_iter=1).fit(model, train)


def test_labels_target_matches_the_reference_fit_and_ranks_unlearnt_flips_first(setup):
    """Mislabel direction: flipped labels the model never learnt rank *last* by the default
    self-influence (fit to the model's outputs) and first when the surrogate is fit to the labels."""
    model, train, _, penultimate, *_ = setup
    x = train.tensors[0]
    with torch.no_grad():
        pred = model(x).argmax(1)
    labels = pred.clone()
    flipped = torch.arange(0, N_TRAIN, 10)  # 15 labels the model does not predict
    labels[flipped] = (pred[flipped] + 3) % 10
    noisy = torch.utils.data.TensorDataset(x, labels)
    phi = penultimate(x)
    onehot = np.eye(10)[labels.numpy()]
    _, alpha_ref = reference_alpha(phi, onehot, L2)
    by_labels = explainers.create("representer", l2=L2, fit_to="labels").fit(model, noisy)
    np.testing.assert_allclose(
        by_labels.alpha_.numpy(), alpha_ref, rtol=1e-3, atol=1e-4 * np.abs(alpha_ref).max()
    )
    flip = torch.zeros(N_TRAIN, dtype=torch.bool)
    flip[flipped] = True
    si_labels = by_labels.self_influence()
    top = set(si_labels.argsort(descending=True)[: len(flipped)].tolist())
    assert (
        len(top & set(flipped.tolist())) >= 12
    )  # of 15 (a few clean points the surrogate misfits)
    assert float(si_labels[flip].min()) > float(si_labels[~flip].median())
    si_model = explainers.create("representer", l2=L2).fit(model, noisy).self_influence()
    # the default's alpha_{j, y_j} = (p_y - s_y) / (2 l2 n): ~0 or negative for unlearnt labels
    assert float(si_model[flip].max()) < float(si_model[~flip].median())
    with pytest.raises(ValueError, match="fit_to"):
        explainers.create("representer", fit_to="softmax").fit(model, noisy)
