"""CrammerSingerSVC: checked against scikit-learn's liblinear CS solver, scipy and the KKT conditions."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from sklearn.datasets import load_digits
from sklearn.svm import LinearSVC

from dattr_eval import explainers
from dattr_eval.explainers import svm
from dattr_eval.explainers.svm import (
    ConvergenceWarning,
    CrammerSingerSVC,
    objectives,
    solve_subproblems,
)
from tests._digits_models import single_thread  # noqa: F401  (one torch thread for this module)

C = 0.01


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return torch.tensor(x[:300] / 16.0), torch.tensor(y[:300])


@pytest.fixture(scope="module")
def fitted(digits):
    x, y = digits
    ours = CrammerSingerSVC(C=C, tol=1e-6, max_iter=5000).fit(x, y)
    assert ours.method_ == "sequential"  # the CPU default
    ref = LinearSVC(
        multi_class="crammer_singer", C=C, tol=1e-8, fit_intercept=False, max_iter=100000
    )
    ref.fit(x.numpy(), y.numpy())
    return ours, ref


def test_subproblem_matches_scipy():
    gen = torch.Generator().manual_seed(0)
    k, c = 4, 0.7
    for _ in range(5):
        grad = torch.randn(1, k, generator=gen, dtype=torch.float64)
        a = torch.rand((), generator=gen, dtype=torch.float64) + 0.2
        y = torch.randint(0, k, (1,), generator=gen)
        got = solve_subproblems(grad, torch.zeros(1, k, dtype=torch.float64), a[None], y, c)[
            0
        ].numpy()
        upper = np.where(np.arange(k) == int(y), c, 0.0)
        g = grad[0].numpy()
        res = minimize(
            lambda v: 0.5 * float(a) * v @ v + g @ v,
            np.zeros(k),
            jac=lambda v: float(a) * v + g,
            constraints=[{"type": "eq", "fun": lambda v: v.sum()}],
            bounds=[(None, u) for u in upper],
            method="SLSQP",
            options={"ftol": 1e-14},
        )
        np.testing.assert_allclose(got, res.x, atol=1e-6)


def test_matches_sklearn(digits, fitted):
    x, y = digits
    ours, ref = fitted
    w_ref = torch.tensor(ref.coef_)
    cos = float((w_ref * ours.coef_).sum() / (w_ref.norm() * ours.coef_.norm()))
    assert cos >= 0.999
    p_ref = objectives(x, y, w_ref, torch.zeros(300, 10, dtype=torch.float64), C)[0]
    assert abs(ours.primal_objective_ - p_ref) / p_ref < 1e-3
    assert ours.converged_ and ours.duality_gap_ <= 1e-6


def test_dual_identity_and_sign_pattern(digits, fitted):
    x, y = digits
    ours, _ = fitted
    alpha = ours.dual_coef_
    assert torch.equal(ours.coef_, alpha.T @ x)
    own = alpha.gather(1, y[:, None]).squeeze(1)
    others = alpha.scatter(1, y[:, None], 0.0)
    assert (own >= 0).all() and (own <= C * (1 + 1e-12)).all()
    assert (others <= 0).all()
    torch.testing.assert_close(
        alpha.sum(1), torch.zeros(300, dtype=torch.float64), atol=1e-12, rtol=0
    )


@pytest.mark.parametrize("method", ["sequential", "block"])
def test_kkt_conditions(digits, method):
    """alpha_i = 0 where the margin is clearly > 1; alpha_{i,y_i} = C where it is clearly < 1."""
    x, y = digits
    c = 0.1
    ours = CrammerSingerSVC(C=c, tol=1e-4, max_iter=5000, method=method, block_size=32).fit(x, y)
    assert ours.method_ == method and ours.converged_
    scores = x @ ours.coef_.T
    others = scores.scatter(1, y[:, None], -torch.inf)
    margin = scores.gather(1, y[:, None]).squeeze(1) - others.amax(1)
    own = ours.dual_coef_.gather(1, y[:, None]).squeeze(1)
    outside, inside = margin > 1.1, margin < 0.9
    assert outside.any() and inside.any()
    assert ours.dual_coef_[outside].abs().max() < 1e-2 * c
    assert (own[inside] > (1 - 1e-2) * c).all()
    assert set(ours.support_.tolist()) >= set(inside.nonzero().squeeze(1).tolist())


def test_intercept_matches_sklearn(digits):
    x, y = digits
    ours = CrammerSingerSVC(C=C, fit_intercept=True, tol=1e-6, max_iter=5000).fit(x, y)
    ref = LinearSVC(multi_class="crammer_singer", C=C, tol=1e-8, max_iter=100000).fit(
        x.numpy(), y.numpy()
    )
    both = lambda w, b: np.concatenate([np.asarray(w), np.asarray(b)[:, None]], 1).ravel()
    a, b = both(ours.coef_, ours.intercept_), both(ref.coef_, ref.intercept_)
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) >= 0.999
    torch.testing.assert_close(ours.intercept_, ours.dual_coef_.sum(0))


@pytest.mark.parametrize("method", ["sequential", "block"])
def test_warns_at_iteration_cap(digits, method):
    x, y = digits
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        fitted = CrammerSingerSVC(C=10.0, tol=1e-9, max_iter=2, method=method).fit(x, y)
    assert not fitted.converged_ and fitted.n_iter_ == 2
    assert fitted.duality_gap_ > 1e-9


def test_sequential_and_block_reach_the_same_solution(digits):
    """Two different algorithms, one optimum: W is unique; alpha is here too (checked, not assumed)."""
    x, y = digits
    x, y, c = x[:120], y[:120], 0.1
    seq, block = (
        CrammerSingerSVC(C=c, tol=1e-8, max_iter=20000, method=m, block_size=32).fit(x, y)
        for m in ("sequential", "block")
    )
    assert seq.converged_ and block.converged_
    torch.testing.assert_close(
        seq.coef_, block.coef_, rtol=0, atol=1e-5 * float(block.coef_.abs().max())
    )
    torch.testing.assert_close(seq.dual_coef_, block.dual_coef_, rtol=0, atol=1e-4 * c)
    assert torch.equal(seq.support_, block.support_) and 0 < seq.support_.numel() < 120


def test_missing_numba_names_the_fix(digits, monkeypatch):
    x, y = digits
    svm._sequential_kernels.cache_clear()
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba -> ImportError
    monkeypatch.delitem(sys.modules, "dattr_eval.explainers.svm_sequential", raising=False)
    monkeypatch.delattr(explainers, "svm_sequential", raising=False)
    try:
        with pytest.raises(ImportError, match="needs numba"):
            CrammerSingerSVC(C=C, method="sequential").fit(x, y)
        assert CrammerSingerSVC(C=C, method="block").fit(x, y).duality_gap_ <= 1e-3
    finally:
        svm._sequential_kernels.cache_clear()


def test_float32_and_bad_input(digits):
    x, y = digits
    for method in ("sequential", "block"):
        fitted = CrammerSingerSVC(C=C, dtype=torch.float32, method=method).fit(x.float(), y)
        assert fitted.coef_.dtype == torch.float32 and fitted.duality_gap_ <= 1e-3
    with pytest.raises(ValueError, match="C must be > 0"):
        CrammerSingerSVC(C=0.0).fit(x, y)
    with pytest.raises(ValueError, match="y must have length 300"):
        CrammerSingerSVC().fit(x, y[:5])
    with pytest.raises(ValueError, match="method must be one of"):
        CrammerSingerSVC(method="liblinear").fit(x, y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(digits, fitted):
    x, y = digits
    gpu = CrammerSingerSVC(C=C, tol=1e-6, max_iter=5000, block_size=64, device="cuda").fit(x, y)
    assert gpu.method_ == "block"
    torch.testing.assert_close(gpu.coef_.cpu(), fitted[0].coef_, rtol=1e-3, atol=1e-4)
