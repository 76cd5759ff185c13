"""influence with solver='kfac' / 'ekfac': closed form on logistic regression, eigenvalues from
independent per-sample gradients on a small CNN, agreement with kronfluence, bad input."""

from __future__ import annotations

import copy
import tempfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from dattr_eval import explainers
from dattr_eval.contract import check_attributions
from dattr_eval.explainers.gradients import per_sample_gradients
from tests._digits_models import (
    digits_split,
    logistic_regression,
    pearson,
    single_thread,  # noqa: F401 (autouse fixture)
)
from tests.test_influence import L2, N_TEST, N_TRAIN, closed_form_gradients, closed_form_influence


def closed_form_kronecker(
    x: np.ndarray, residuals: np.ndarray, kind: str, damping: float
) -> np.ndarray:
    """``(K + damping I)^{-1}`` for softmax regression, ``(K (d + 1), K (d + 1))`` in the order of
    ``closed_form_gradients`` (class-major, bias last): ``A = mean [x, 1][x, 1]^T``,
    ``S = mean r r^T`` (``r = p - e_y``), K-FAC eigenvalues ``s_o a_k``, EK-FAC eigenvalues the
    mean squared gradients in the eigenbasis ``Q_S ⊗ Q_A`` (numpy, float64)."""
    xe = np.hstack([x, np.ones((len(x), 1))])
    a_vals, q_a = np.linalg.eigh(xe.T @ xe / len(x))
    s_vals, q_s = np.linalg.eigh(residuals.T @ residuals / len(x))
    q = np.kron(q_s, q_a)
    if kind == "kfac":
        lam = np.outer(s_vals, a_vals).ravel()
    else:
        grads = (residuals[:, :, None] * xe[:, None, :]).reshape(len(x), -1)
        lam = ((grads @ q) ** 2).mean(0)
    return q @ np.diag(1.0 / (lam + damping)) @ q.T


@pytest.fixture(scope="module")
def logreg():
    train, x_test, _ = digits_split(N_TRAIN, N_TEST)
    model = logistic_regression(train, weight_decay=L2)
    return model, train, x_test, model(x_test).argmax(1)


@pytest.mark.parametrize("kind", ["kfac", "ekfac"])
@pytest.mark.parametrize("labels", ["true", "sampled"])
def test_matches_closed_form_on_logistic_regression(logreg, kind, labels):
    model, train, x_test, targets = logreg
    xpl = explainers.create(
        "influence", solver=kind, damping=L2, fisher_labels=labels, batch_size=64
    ).fit(model, train)
    a = xpl.explain(x_test, targets)
    check_attributions(a, N_TEST, N_TRAIN)

    x, y = (t.numpy() for t in train.tensors)
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    fisher_y = xpl.inverse_.labels.numpy()
    if labels == "true":
        np.testing.assert_array_equal(fisher_y, y)
    else:  # drawn from the model: mostly, not always, the true class
        assert 0.5 < np.mean(fisher_y == y) < 1.0
    p, _ = closed_form_gradients(x, fisher_y, w, b)
    inverse = closed_form_kronecker(x, p - np.eye(10)[fisher_y], kind, L2)
    _, g_train = closed_form_gradients(x, y, w, b)
    _, g_test = closed_form_gradients(x_test.numpy(), targets.numpy(), w, b)
    ref = g_test @ inverse @ g_train.T
    np.testing.assert_allclose(a.numpy(), ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())


def test_ekfac_approximates_the_exact_hessian_on_logistic_regression(logreg):
    """A sanity bound, not an identity: EK-FAC is an approximation of the GGN (= H here)."""
    model, train, x_test, targets = logreg
    exact = closed_form_influence(
        *(t.numpy() for t in train.tensors),
        x_test.numpy(),
        targets.numpy(),
        model.weight.detach().numpy(),
        model.bias.detach().numpy(),
        L2,
    )
    scores = {
        kind: pearson(
            explainers.create("influence", solver=kind, damping=L2, params=None, batch_size=64)
            .fit(model, train)
            .explain(x_test, targets),
            exact,
        )
        for kind in ("kfac", "ekfac")
    }
    assert min(scores.values()) > 0.9
    # control: the curvature matters here (plain gradient dot products correlate clearly less)
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    _, g_train = closed_form_gradients(*(t.numpy() for t in train.tensors), w, b)
    _, g_test = closed_form_gradients(x_test.numpy(), targets.numpy(), w, b)
    assert pearson(g_test @ g_train.T, exact) < 0.8


# ---------------------------------------------------------------------- a small CNN
def tiny_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6, 10),
    ).eval()


@pytest.fixture(scope="module")
def cnn():
    train, x_test, _ = digits_split(120, 15)
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(model(train.tensors[0]), train.tensors[1]).backward()
        opt.step()
    return model.eval(), train, x_test


def test_ekfac_eigenvalues_are_mean_squared_per_sample_gradients_in_the_eigenbasis(cnn):
    """Layer by layer, ``Lambda = mean_i (Q_S^T G_i Q_A)^2`` with ``G_i`` from the ``torch.func``
    engine (not the hooks), and a convolution's ``(c_in k1 k2)`` unfolding order."""
    model, train, _ = cnn
    xpl = explainers.create("influence", solver="ekfac", params=None, batch_size=50).fit(
        model, train
    )
    inv = xpl.inverse_
    assert [layer.name for layer in inv.layers] == ["1", "4", "7"]
    grads = per_sample_gradients(model, (train.tensors[0], inv.labels), params=xpl.param_names_)
    named = dict(model.named_parameters())
    start = 0
    for layer in inv.layers:
        weight = named[f"{layer.name}.weight"]
        g_w = grads[:, start : start + weight.numel()].reshape(len(grads), weight.shape[0], -1)
        start += weight.numel()
        if layer.has_bias:
            g_b = grads[:, start : start + weight.shape[0]]
            g_w = torch.cat([g_w, g_b[:, :, None]], 2)
            start += weight.shape[0]
        q_s, q_a = layer.q_s.double(), layer.q_a.double()
        expected = ((q_s.T @ g_w.double() @ q_a) ** 2).mean(0)
        torch.testing.assert_close(layer.eigenvalues, expected, rtol=1e-4, atol=1e-9)
        # the eigenbases are orthonormal
        torch.testing.assert_close(
            q_a.T @ q_a, torch.eye(len(q_a), dtype=torch.float64), atol=1e-5, rtol=0
        )
    assert start == grads.shape[1]


def test_preconditioner_is_the_dense_inverse_on_a_small_cnn(cnn):
    """``precondition`` equals ``G (Q diag(1 / (Lambda + damping)) Q^T)`` built densely per layer."""
    model, train, x_test = cnn
    xpl = explainers.create("influence", solver="ekfac", damping=None, params=None, batch_size=50)
    xpl.fit(model, train)
    g = per_sample_gradients(model, (x_test, xpl.predict(x_test)), params=xpl.param_names_)
    out = xpl.inverse_.precondition(g)
    for layer in xpl.inverse_.layers:
        n_weight = layer.module.weight.numel()
        block = g[:, layer.start : layer.stop].double()
        matrix = block[:, :n_weight].reshape(len(g), layer.d_out, -1)
        if layer.has_bias:
            matrix = torch.cat([matrix, block[:, n_weight:, None]], 2)
        q = torch.kron(layer.q_s.double(), layer.q_a.double())
        lam = layer.eigenvalues.reshape(-1)
        dense = q @ torch.diag(1.0 / (lam + 0.1 * lam.mean())) @ q.T
        expected = matrix.reshape(len(g), -1) @ dense
        got = out[:, layer.start : layer.stop].double()
        if layer.has_bias:
            got_matrix = torch.cat(
                [got[:, :n_weight].reshape(len(g), layer.d_out, -1), got[:, n_weight:, None]], 2
            )
        else:
            got_matrix = got.reshape(len(g), layer.d_out, -1)
        torch.testing.assert_close(
            got_matrix.reshape(len(g), -1),
            expected,
            rtol=1e-3,
            atol=1e-4 * float(expected.abs().max()),
        )


@pytest.mark.parametrize("kind", ["kfac", "ekfac"])
def test_self_influence_is_the_diagonal(cnn, kind):
    model, train, _ = cnn
    xpl = explainers.create("influence", solver=kind, params=None, batch_size=50).fit(model, train)
    diag = torch.diagonal(xpl.explain(*train.tensors))
    torch.testing.assert_close(
        xpl.self_influence(), diag, rtol=1e-4, atol=1e-5 * float(diag.abs().max())
    )
    assert bool((diag > 0).all())  # g^T (K + damping I)^{-1} g, K positive semi-definite


# ---------------------------------------------------------------------- kronfluence
def kronfluence_scores(model, train, test, *, strategy: str, damping: float) -> torch.Tensor:
    """kronfluence pairwise scores with true-label (empirical) Fisher factors, ``(n_test, n_train)``."""
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task

    class Classification(Task):
        def compute_train_loss(self, batch, model, sample=False):
            x, y = batch
            return F.cross_entropy(model(x), y, reduction="sum")

        def compute_measurement(self, batch, model):
            x, y = batch
            return F.cross_entropy(model(x), y, reduction="sum")

    task = Classification()
    with tempfile.TemporaryDirectory() as tmp:
        analyzer = Analyzer(
            analysis_name="test",
            model=prepare_model(copy.deepcopy(model), task),
            task=task,
            cpu=True,
            disable_tqdm=True,
            disable_model_save=True,
            output_dir=tmp,
        )
        analyzer.fit_all_factors(
            factors_name="f",
            dataset=train,
            per_device_batch_size=64,
            factor_args=FactorArguments(strategy=strategy, use_empirical_fisher=True),
            overwrite_output_dir=True,
        )
        analyzer.compute_pairwise_scores(
            scores_name="s",
            factors_name="f",
            query_dataset=TensorDataset(*test),
            train_dataset=train,
            per_device_query_batch_size=len(test[0]),
            per_device_train_batch_size=64,
            score_args=ScoreArguments(damping_factor=damping),
            overwrite_output_dir=True,
        )
        return analyzer.load_pairwise_scores("s")["all_modules"].float()


@pytest.mark.peers
def test_ekfac_matches_kronfluence(cnn):
    """Same factors (true labels: no sampling noise), same damping: the same scores."""
    pytest.importorskip("kronfluence")
    model, train, x_test = cnn
    ours = explainers.create(
        "influence", solver="ekfac", damping=1e-3, fisher_labels="true", batch_size=50
    ).fit(model, train)
    test = (x_test, ours.predict(x_test))
    theirs = kronfluence_scores(model, train, test, strategy="ekfac", damping=1e-3)
    a = ours.explain(*test)
    torch.testing.assert_close(a, theirs, rtol=1e-3, atol=1e-3 * float(theirs.abs().max()))


# ---------------------------------------------------------------------- bad input
def test_unsupported_layers_are_named(logreg):
    _, train, *_ = logreg
    model = nn.Sequential(nn.Linear(64, 8), nn.LayerNorm(8), nn.Linear(8, 10))
    with pytest.raises(ValueError, match=r"\['1.weight', '1.bias'\] belong to other modules"):
        explainers.create("influence", solver="ekfac", params=None).fit(model, train)
    # restricting params to the supported layers works
    xpl = explainers.create("influence", solver="ekfac", params=["0.weight", "2.weight", "2.bias"])
    assert xpl.fit(model, train).explain(train.tensors[0][:3]).shape == (3, N_TRAIN)


def test_grouped_convolution_is_refused():
    train, _, _ = digits_split(10, 0)
    model = nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 4, 3),
        nn.Conv2d(4, 4, 3, groups=2),
        nn.Flatten(),
        nn.Linear(64, 10),
    )
    with pytest.raises(ValueError, match="layer '2' has groups=2"):
        explainers.create("influence", solver="kfac", params=None).fit(model, train)


@pytest.mark.parametrize(
    ("hyper", "match"),
    [
        ({"solver": "cg", "damping": None}, "damping=None .* solver='cg' needs a number"),
        (
            {"solver": "ekfac", "fisher_labels": "empirical"},
            r"fisher_labels must be one of \['sampled', 'true'\]",
        ),
    ],
)
def test_bad_hyperparameters_raise(logreg, hyper, match):
    model, train, *_ = logreg
    with pytest.raises(ValueError, match=match):
        explainers.create("influence", **hyper).fit(model, train)
