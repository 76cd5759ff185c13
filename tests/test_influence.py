"""influence: exact / CG / LiSSA against a closed-form multinomial logistic regression, Arnoldi against exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax
from scipy.stats import spearmanr

from dattr_eval import explainers
from dattr_eval.contract import check_attributions
from dattr_eval.explainers.gradients import param_names, per_sample_gradients
from dattr_eval.explainers.hessian import (
    TrainingHessian,
    arnoldi_eigenpairs,
    conjugate_gradient,
    dense_hessian,
)
from tests._digits_models import (
    digits_split,
    logistic_regression,
    pearson,
    single_thread,  # noqa: F401 (autouse fixture)
    small_mlp,
)

N_TRAIN, N_TEST, L2 = 200, 30, 1e-2
SETTINGS = {
    "exact": {},
    "cg": {"cg_tol": 1e-6, "cg_max_iter": 300},
    "lissa": {"lissa_depth": 600, "lissa_repeats": 1},
    "arnoldi": {"arnoldi_iter": 100, "arnoldi_top_k": 50},
}


def batch_size(solver: str, n: int) -> int:
    """LiSSA samples minibatches of 64; the others take the whole (tiny) set in one batch, for speed."""
    return 64 if solver == "lissa" else n


def _extend(x: np.ndarray) -> np.ndarray:
    """Inputs with a constant 1 appended (the bias), float64."""
    return np.hstack([x, np.ones((len(x), 1))]).astype(np.float64)


def closed_form_gradients(x: np.ndarray, y: np.ndarray, weight: np.ndarray, bias: np.ndarray):
    """Softmax probabilities ``(n, K)`` and CE gradients ``g_i = (p_i - e_{y_i}) kron [x_i, 1]``."""
    w = np.hstack([weight, bias[:, None]]).astype(np.float64)  # (K, d + 1)
    p = softmax(_extend(x) @ w.T, axis=1)
    residual = p - np.eye(w.shape[0])[y]
    return p, (residual[:, :, None] * _extend(x)[:, None, :]).reshape(len(x), -1)


def closed_form_hessian(x: np.ndarray, p: np.ndarray, damping: float) -> np.ndarray:
    """``mean_i (diag(p_i) - p_i p_i^T) kron x_i x_i^T + damping I`` (``x`` extended by 1)."""
    k = p.shape[1]
    s = np.einsum("ik,kl->ikl", p, np.eye(k)) - np.einsum("ik,il->ikl", p, p)  # (n, K, K)
    xe = _extend(x)
    h = np.einsum("ikl,ij,im->kjlm", s, xe, xe, optimize=True).reshape(k * xe.shape[1], -1) / len(
        xe
    )
    return h + damping * np.eye(len(h))


def closed_form_influence(
    features: np.ndarray,
    labels: np.ndarray,
    test_features: np.ndarray,
    test_targets: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    damping: float,
) -> np.ndarray:
    """``G_test H^{-1} G_train^T`` for softmax regression, all by hand (numpy, float64)."""
    p, g_train = closed_form_gradients(features, labels, weight, bias)
    _, g_test = closed_form_gradients(test_features, test_targets, weight, bias)
    return g_test @ np.linalg.solve(closed_form_hessian(features, p, damping), g_train.T)


@pytest.fixture(scope="module")
def logreg():
    train, x_test, _ = digits_split(N_TRAIN, N_TEST)
    model = logistic_regression(train, weight_decay=L2)
    targets = model(x_test).argmax(1)
    ref = closed_form_influence(
        train.tensors[0].numpy(),
        train.tensors[1].numpy(),
        x_test.numpy(),
        targets.numpy(),
        model.weight.detach().numpy(),
        model.bias.detach().numpy(),
        L2,
    )
    return model, train, x_test, targets, ref


@pytest.mark.parametrize(
    ("solver", "min_pearson"), [("exact", 0.99), ("cg", 0.99), ("lissa", 0.95)]
)
def test_agrees_with_closed_form_logistic_regression(logreg, solver, min_pearson):
    model, train, x_test, targets, ref = logreg
    xpl = explainers.create(
        "influence",
        solver=solver,
        damping=L2,
        batch_size=batch_size(solver, N_TRAIN),
        **SETTINGS[solver],
    )
    a = xpl.fit(model, train).explain(x_test, targets)
    check_attributions(a, N_TEST, N_TRAIN)
    assert pearson(a, ref) >= min_pearson
    big = np.abs(ref) > 0.1 * np.abs(ref).max()  # signs of the clearly non-zero entries
    assert np.mean(np.sign(a.numpy()[big]) == np.sign(ref[big])) >= 0.97
    if solver != "lissa":
        np.testing.assert_allclose(a.numpy(), ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


@pytest.fixture(scope="module")
def mlp():
    train, x_test, _ = digits_split(N_TRAIN, N_TEST)
    return small_mlp(train, weight_decay=L2), train, x_test


def test_last_layer_of_an_mlp_is_logistic_regression_on_its_features(mlp):
    """``params='last_layer'``: influence over the classifier only = softmax regression on features."""
    model, train, x_test = mlp
    xpl = explainers.create(
        "influence", solver="exact", damping=L2, params="last_layer", batch_size=N_TRAIN
    ).fit(model, train)
    assert xpl.param_names_ == ["2.weight", "2.bias"]
    targets = model(x_test).argmax(1)
    with torch.no_grad():
        feats = model[1](model[0](torch.cat([train.tensors[0], x_test]))).numpy()
    ref = closed_form_influence(
        feats[:N_TRAIN],
        train.tensors[1].numpy(),
        feats[N_TRAIN:],
        targets.numpy(),
        model[2].weight.detach().numpy(),
        model[2].bias.detach().numpy(),
        L2,
    )
    np.testing.assert_allclose(
        xpl.explain(x_test).numpy(), ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max()
    )


def test_arnoldi_ranks_like_exact_on_a_small_mlp(mlp):
    model, train, x_test = mlp
    hyper = {"damping": 0.1, "batch_size": N_TRAIN}
    exact = explainers.create("influence", solver="exact", **hyper).fit(model, train)
    arnoldi = explainers.create(
        "influence", solver="arnoldi", arnoldi_iter=150, arnoldi_top_k=100, **hyper
    )
    a_exact, a_arnoldi = exact.explain(x_test), arnoldi.fit(model, train).explain(x_test)
    check_attributions(a_arnoldi, N_TEST, N_TRAIN)

    def mean_spearman(a: torch.Tensor) -> float:
        return float(np.mean([spearmanr(r, e)[0] for r, e in zip(a.numpy(), a_exact.numpy())]))

    assert mean_spearman(a_arnoldi) >= 0.9
    # control: the Hessian matters here (plain gradient dot products rank clearly worse)
    g_test = per_sample_gradients(model, (x_test, exact.predict(x_test)))
    grad_dot = g_test @ per_sample_gradients(model, train).T
    assert mean_spearman(grad_dot) < 0.8


@pytest.mark.parametrize("solver", ["exact", "cg", "lissa", "arnoldi"])
def test_self_influence_is_the_diagonal(solver):
    train, _, _ = digits_split(40, 0)
    model = logistic_regression(train, weight_decay=L2)
    fast_lissa = {
        "lissa_depth": 100,
        "lissa_scale": 2.0,
    }  # agreement is tested above; here: identity
    settings = {**SETTINGS[solver], **fast_lissa} if solver == "lissa" else SETTINGS[solver]
    xpl = explainers.create(
        "influence",
        solver=solver,
        damping=L2,
        batch_size=16 if solver == "lissa" else 40,
        **settings,
    ).fit(model, train)
    x, y = train.tensors
    diag = torch.diagonal(xpl.explain(x, y))
    torch.testing.assert_close(
        xpl.self_influence(), diag, rtol=1e-3, atol=1e-4 * float(diag.abs().max())
    )
    if solver == "exact":
        assert bool((diag > 0).all())  # g^T H^{-1} g with H positive definite


def test_default_targets_are_predictions(logreg):
    model, train, x_test, targets, _ = logreg
    xpl = explainers.create("influence", solver="exact", damping=L2, batch_size=N_TRAIN)
    xpl.fit(model, train)
    torch.testing.assert_close(xpl.explain(x_test), xpl.explain(x_test, targets))


def test_hessian_subset_changes_only_the_hessian(logreg):
    model, train, x_test, targets, ref = logreg
    xpl = explainers.create(
        "influence", solver="exact", damping=L2, hessian_samples=150, batch_size=150
    ).fit(model, train)
    assert xpl.hessian_.n == 150
    a = xpl.explain(x_test, targets)
    assert 0.9 < pearson(a, ref) < 0.99999


# ---------------------------------------------------------------------- hessian.py
@pytest.fixture(scope="module")
def operator(logreg):
    model, train, *_ = logreg
    op = TrainingHessian(model, train, param_names(model), damping=L2, batch_size=N_TRAIN)
    x, y = (t.numpy() for t in train.tensors)
    p, _ = closed_form_gradients(x, y, model.weight.detach().numpy(), model.bias.detach().numpy())
    # our flat order is weight (K, d) row-major, then bias (K); the closed form's is (K, d + 1)
    k, d = model.weight.shape
    order = np.array([c * d + j if j < d else k * d + c for c in range(k) for j in range(d + 1)])
    h = np.empty((k * (d + 1),) * 2)
    h[np.ix_(order, order)] = closed_form_hessian(x, p, L2)
    return op, h


def test_dense_hessian_matches_closed_form(operator):
    op, h = operator
    np.testing.assert_allclose(dense_hessian(op).numpy(), h, rtol=0, atol=1e-6 * np.abs(h).max())


def test_cg_and_arnoldi_match_numpy_linear_algebra(operator):
    op, h = operator
    b = torch.randn(3, op.dim, generator=torch.Generator().manual_seed(0))
    x = conjugate_gradient(op, b, tol=1e-5, max_iter=300)
    expected = np.linalg.solve(h, b.double().numpy().T).T
    np.testing.assert_allclose(x.numpy(), expected, rtol=0, atol=1e-3 * np.abs(expected).max())
    values, vectors = arnoldi_eigenpairs(op, n_iter=60, top_k=5, seed=0)
    np.testing.assert_allclose(values.numpy(), np.linalg.eigvalsh(h)[::-1][:5], rtol=1e-5)
    rayleigh = np.einsum("kp,pq,kq->k", vectors.numpy(), h, vectors.numpy())
    np.testing.assert_allclose(rayleigh, values.numpy(), rtol=1e-4)


# ---------------------------------------------------------------------- bad input
def test_unknown_solver_names_the_choices(logreg):
    model, train, *_ = logreg
    with pytest.raises(
        ValueError,
        match=r"solver must be one of \['exact', 'cg', 'lissa', 'arnoldi', 'kfac', 'ekfac'\]",
    ):
        explainers.create("influence", solver="newton").fit(model, train)


@pytest.mark.parametrize(
    ("hyper", "error", "match"),
    [
        ({"damping": -1.0}, ValueError, "damping must be >= 0"),
        ({"cg_max_iter": 0}, ValueError, "cg_max_iter must be > 0"),
        ({"lissa_depth": 2.5}, TypeError, "lissa_depth must be an int"),
        ({"params": ["nope.weight"]}, ValueError, r"\['nope.weight'\] are not trainable"),
        ({"params": "fc9"}, ValueError, "selects no trainable parameter"),
    ],
)
def test_bad_hyperparameters_raise(logreg, hyper, error, match):
    model, train, *_ = logreg
    with pytest.raises(error, match=match):
        explainers.create("influence", **hyper).fit(model, train)


def test_exact_refuses_large_models():
    train, _, _ = digits_split(20, 0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))
    with pytest.raises(ValueError, match="7510 entries .* use solver='cg'"):
        explainers.create("influence", solver="exact", params=None).fit(model, train)


def test_lissa_divergence_raises(logreg):
    model, train, x_test, *_ = logreg
    xpl = explainers.create(
        "influence", solver="lissa", damping=L2, lissa_scale=1e-3, lissa_depth=200
    )
    with pytest.raises(FloatingPointError, match="lissa_scale=0.001 is too small"):
        xpl.fit(model, train).explain(x_test)


def test_cg_warns_when_not_converged(logreg):
    model, train, x_test, *_ = logreg
    xpl = explainers.create("influence", solver="cg", damping=L2, cg_max_iter=2).fit(model, train)
    with pytest.warns(UserWarning, match="CG did not converge in max_iter=2"):
        xpl.explain(x_test)


@pytest.mark.parametrize("solver", ["lissa", "arnoldi"])
def test_empty_test_batch(logreg, solver):
    model, train, x_test, *_ = logreg
    hyper = {"lissa_depth": 5, "arnoldi_iter": 10, "arnoldi_top_k": 3}
    a = explainers.create("influence", solver=solver, **hyper).fit(model, train).explain(x_test[:0])
    assert a.shape == (0, N_TRAIN)
