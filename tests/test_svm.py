"""CrammerSingerSVC: checked against scikit-learn's liblinear CS solver, scipy and the KKT conditions."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from sklearn.datasets import load_digits
from sklearn.svm import LinearSVC

from dattr_eval.explainers import svm
from dattr_eval.explainers.svm import (
    ConvergenceWarning,
    CrammerSingerSVC,
    certify,
    gap_terms,
    primal_objective,
    solve_subproblems,
    weight_error_bound,
)
from tests._digits_models import single_thread  # noqa: F401  (one torch thread for this module)

C = 0.01


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return torch.tensor(x[:300] / 16.0), torch.tensor(y[:300])


def sklearn_cs(x: torch.Tensor, y: torch.Tensor, c: float, **kw) -> LinearSVC:
    """liblinear's Crammer–Singer solver at a tight tolerance (the independent reference)."""
    ref = LinearSVC(multi_class="crammer_singer", C=c, tol=1e-8, max_iter=100000, **kw)
    return ref.fit(x.numpy(), y.numpy())


@pytest.fixture(scope="module")
def fitted(digits):
    x, y = digits
    ours = CrammerSingerSVC(C=C, tol=1e-6, max_iter=5000).fit(x, y)
    assert ours.method_ == "sequential"  # the CPU default
    return ours, sklearn_cs(x, y, C, fit_intercept=False)


def test_subproblem_matches_scipy():
    gen = torch.Generator().manual_seed(0)
    k, c = 4, 0.7
    for _ in range(5):
        grad = torch.randn(1, k, generator=gen, dtype=torch.float64)
        a = torch.rand((), generator=gen, dtype=torch.float64) + 0.2
        y = torch.randint(0, k, (1,), generator=gen)
        zeros = torch.zeros(1, k, dtype=torch.float64)
        got = solve_subproblems(grad, zeros, a[None], y, c)[0].numpy()
        upper = np.where(np.arange(k) == int(y), c, 0.0)
        g = grad[0].numpy()
        res = minimize(
            lambda v, a=float(a), g=g: 0.5 * a * v @ v + g @ v,
            np.zeros(k),
            jac=lambda v, a=float(a), g=g: a * v + g,
            constraints=[{"type": "eq", "fun": lambda v: v.sum()}],
            bounds=[(None, u) for u in upper],
            method="SLSQP",
            options={"ftol": 1e-14},
        )
        np.testing.assert_allclose(got, res.x, atol=1e-6)
        # the solution depends on the gradient only up to a common shift (the solvers pass grad - 1)
        shifted = solve_subproblems(grad - 1.0, zeros, a[None], y, c)[0].numpy()
        np.testing.assert_allclose(shifted, got, atol=1e-12)


def test_gap_terms_match_the_objectives_written_out():
    gen = torch.Generator().manual_seed(1)
    n, k, d, c = 40, 4, 5, 0.3
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=gen)
    alpha = -torch.rand(n, k, generator=gen, dtype=torch.float64) * c / k
    alpha[torch.arange(n), y] = 0.0
    alpha[torch.arange(n), y] = -alpha.sum(1)  # feasible: rows sum to 0, own in [0, C]
    w = alpha.T @ x
    scores = (x @ w.T).numpy()
    hinge = [
        max(0.0, max(1 + scores[i, m] - scores[i, y[i]] for m in range(k) if m != y[i]))
        for i in range(n)
    ]
    primal = 0.5 * float((w * w).sum()) + c * sum(hinge)
    cost = 1.0 - torch.nn.functional.one_hot(y, k).double()
    dual = 0.5 * float((w * w).sum()) + float((alpha * cost).sum())
    terms = gap_terms(x @ w.T, y, alpha, c)
    np.testing.assert_allclose(terms.losses.numpy(), hinge, rtol=1e-12)
    assert float((w * w).sum()) + terms.gap_sum == pytest.approx(primal + dual, rel=1e-10)
    weight, cert = certify(x, y, alpha, c)
    assert torch.equal(weight, w) and cert.infeasibility < 1e-14
    assert cert.primal == pytest.approx(primal) and cert.dual == pytest.approx(dual)
    assert cert.relative_gap == pytest.approx((primal + dual) / primal)


def test_weight_error_bound_closed_form():
    assert weight_error_bound(0.0, 2.0, 1.0) == 0.0
    assert weight_error_bound(0.04, 2.0, 1.0) == pytest.approx(0.2 / 1.8)
    assert weight_error_bound(4.0, 2.0, 1.0) == pytest.approx(2.0 / 1.0)  # floor 1 / max ||phi||
    assert weight_error_bound(1e-4, 0.0, 0.0) == 0.0  # phi = 0: every decision value is exact


@pytest.mark.parametrize(
    ("c", "seed", "scale", "method"),
    [
        (1e-5, 0, 32.0, "sequential"),
        (1e-4, 1, 16.0, "block"),
        (1e-3, 2, 4.0, "sequential"),
        (1e-2, 3, 1.0, "block"),
        (1e-1, 4, 1.0, "sequential"),
        (1.0, 5, 1.0, "sequential"),
    ],
)
def test_certified_bound_holds_against_sklearn(c, seed, scale, method):
    """True relative weight error vs liblinear at tol 1e-8 <= the certified bound <= rtol."""
    x_all, y_all = load_digits(return_X_y=True)
    pick = np.random.default_rng(seed).choice(len(y_all), 250, replace=False)
    x = torch.tensor(x_all[pick] / 16.0 * scale)
    y = torch.tensor(y_all[pick])
    ours = CrammerSingerSVC(C=c, method=method, block_size=32, max_iter=50000, seed=seed).fit(x, y)
    ref = torch.tensor(sklearn_cs(x, y, c, fit_intercept=False).coef_)
    assert ours.converged_ and ours.weight_error_bound_ <= 1e-3
    # the bound is relative to ||W*|| when decision values can reach the margin (checked here)
    assert float(ref.norm()) * float(x.norm(dim=1).max()) >= 1.0
    true_error = float((ours.coef_ - ref).norm() / ref.norm())
    assert true_error <= ours.weight_error_bound_
    assert ours.duality_gap_ <= 2 * ours.weight_error_bound_**2 + 1e-12


def test_matches_sklearn(digits, fitted):
    x, y = digits
    ours, ref = fitted
    w_ref = torch.tensor(ref.coef_)
    cos = float((w_ref * ours.coef_).sum() / (w_ref.norm() * ours.coef_.norm()))
    assert cos >= 0.999
    p_ref = primal_objective(x, y, w_ref, C)
    assert abs(ours.primal_objective_ - p_ref) / p_ref < 1e-3
    assert ours.converged_ and ours.duality_gap_ <= 1e-6


def test_dual_identity_and_sign_pattern(digits, fitted):
    x, y = digits
    ours, _ = fitted
    alpha = ours.dual_coef_
    torch.testing.assert_close(ours.coef_, alpha.T @ x, rtol=1e-12, atol=1e-15)
    own = alpha.gather(1, y[:, None]).squeeze(1)
    others = alpha.scatter(1, y[:, None], 0.0)
    assert (own >= 0).all() and (own <= C * (1 + 1e-12)).all()
    assert (others <= 0).all()
    torch.testing.assert_close(
        alpha.sum(1), torch.zeros(300, dtype=torch.float64), atol=1e-12, rtol=0
    )
    at_bound = (own >= (1 - 1e-6) * C).nonzero().squeeze(1)
    assert torch.equal(ours.at_bound_, at_bound) and set(at_bound.tolist()) <= set(
        ours.support_.tolist()
    )


@pytest.mark.parametrize("method", ["sequential", "block"])
def test_kkt_conditions(digits, method):
    """alpha_i = 0 where the margin is clearly > 1; alpha_{i,y_i} = C where it is clearly < 1."""
    x, y = digits
    c = 0.1
    ours = CrammerSingerSVC(C=c, max_iter=5000, method=method, block_size=32).fit(x, y)
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
    ref = sklearn_cs(x, y, C)
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


def test_converged_is_the_final_exact_check(digits, monkeypatch):
    """converged_ comes from the certificate of the returned alpha, not from the solver's loop."""
    x, y = digits
    real = svm.certify
    calls = []

    def final_check_fails(features, labels, alpha, c):
        weight, cert = real(features, labels, alpha, c)
        calls.append(cert)
        return weight, cert._replace(relative_gap=1.0, weight_bound=math.inf)

    monkeypatch.setattr(svm, "certify", final_check_fails)
    with pytest.warns(ConvergenceWarning, match="uncertified"):
        fitted = CrammerSingerSVC(C=C, max_iter=3, method="sequential").fit(x, y)
    assert calls and not fitted.converged_ and fitted.duality_gap_ == 1.0


@pytest.mark.parametrize(
    ("method", "polish", "fit_intercept"),
    [("sequential", False, False), ("sequential", True, True), ("block", False, False)],
)
def test_reported_certificate_is_that_of_the_returned_dual(digits, method, polish, fit_intercept):
    """A solver that ends certified hands fit its own exact certificate: it must agree with an
    independent float64 certify() of dual_coef_ (W, objectives, gap, bound)."""
    x, y = digits
    ours = CrammerSingerSVC(
        C=0.1, method=method, polish=polish, fit_intercept=fit_intercept, max_iter=50000
    ).fit(x, y)
    assert ours.converged_
    phi = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1) if fit_intercept else x
    weight, cert = certify(phi, y, ours.dual_coef_, 0.1)
    coef = weight[:, :-1] if fit_intercept else weight
    torch.testing.assert_close(ours.coef_, coef, rtol=1e-12, atol=1e-12)
    assert ours.primal_objective_ == pytest.approx(cert.primal, rel=1e-10)
    assert ours.dual_objective_ == pytest.approx(cert.dual, rel=1e-10)
    # the gaps agree to rounding (two summation orders), so do the bounds: bound^2 ~ gap / ||W||^2
    assert abs(ours.duality_gap_ - cert.relative_gap) <= 1e-12
    assert math.isclose(ours.weight_error_bound_**2, cert.weight_bound**2, abs_tol=1e-10)
    assert ours.infeasibility_ == cert.infeasibility


@pytest.mark.parametrize("method", ["sequential", "block"])
def test_tiny_features_give_feasible_certified_duals(method):
    """Issue 17: ||phi||^2 C ~ 1e-19 once gave rows summing to C with converged_=True, gap 1.0."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, dtype=torch.float64, generator=gen) * 1e-8
    y = torch.arange(200) % 5
    fitted = CrammerSingerSVC(C=1e-3, method=method).fit(x, y, 5)
    alpha = fitted.dual_coef_
    torch.testing.assert_close(
        alpha.sum(1), torch.zeros(200, dtype=torch.float64), atol=1e-15, rtol=0
    )
    own = alpha.gather(1, y[:, None]).squeeze(1)
    assert (own >= 0).all() and (own <= 1e-3).all()
    assert fitted.converged_ and fitted.duality_gap_ <= 1e-3 and fitted.weight_error_bound_ <= 1e-3
    # every margin is violated (W* ~ 0), so every sample sits at the bound
    assert fitted.at_bound_.numel() == 200


@pytest.mark.parametrize("method", ["sequential", "block"])
def test_scale_covariance(digits, method):
    """Features s phi with C / s^2 is the same problem: W scales by 1 / s (within the bounds)."""
    x, y = digits
    s = 1e-4
    base = CrammerSingerSVC(C=C, method=method).fit(x, y)
    scaled = CrammerSingerSVC(C=C / s**2, method=method).fit(x * s, y)
    assert base.converged_ and scaled.converged_
    bound = base.weight_error_bound_ + scaled.weight_error_bound_
    assert float((scaled.coef_ * s - base.coef_).norm()) <= 1.01 * bound * float(base.coef_.norm())


@pytest.mark.parametrize("method", ["sequential", "block"])
def test_zero_features_sit_at_their_optimum(method):
    """phi = 0 (e.g. constant features z-scored): W = 0, alpha_{i,y_i} = C, certified exactly."""
    y = torch.arange(30) % 3
    fitted = CrammerSingerSVC(C=0.5, method=method).fit(torch.zeros(30, 4, dtype=torch.float64), y)
    assert fitted.converged_ and fitted.weight_error_bound_ == 0.0 and fitted.duality_gap_ == 0.0
    assert (fitted.coef_ == 0).all() and fitted.infeasibility_ == 0.0
    assert torch.equal(
        fitted.dual_coef_.gather(1, y[:, None]).squeeze(1),
        torch.full((30,), 0.5, dtype=torch.float64),
    )


def test_sequential_and_block_reach_the_same_solution(digits):
    """Two different algorithms, one optimum: W within the sum of their certified bounds; alpha too."""
    x, y = digits
    x, y, c = x[:120], y[:120], 0.1
    seq, block = (
        CrammerSingerSVC(C=c, rtol=1e-4, max_iter=5000, method=m, block_size=32).fit(x, y)
        for m in ("sequential", "block")
    )
    assert seq.converged_ and block.converged_
    bound = seq.weight_error_bound_ + block.weight_error_bound_
    assert float((seq.coef_ - block.coef_).norm()) <= bound * float(block.coef_.norm()) * 1.01
    torch.testing.assert_close(seq.dual_coef_, block.dual_coef_, rtol=0, atol=1e-4 * c)
    assert torch.equal(seq.support_, block.support_) and 0 < seq.support_.numel() < 120


def test_without_numba():
    """Importing the explainers does not import numba; without it, auto falls back to the block solver."""
    code = textwrap.dedent(
        """
        import sys, warnings
        import dattr_eval.explainers
        assert "numba" not in sys.modules, "numba imported at import time"
        sys.modules["numba"] = None  # import numba -> ImportError
        import torch
        from dattr_eval.explainers.svm import CrammerSingerSVC
        x, y = torch.randn(60, 4, dtype=torch.float64), torch.arange(60) % 3
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fitted = CrammerSingerSVC(C=0.1).fit(x, y)
        assert fitted.method_ == "block" and fitted.converged_, fitted.method_
        assert any("numba" in str(w.message) for w in caught), [str(w.message) for w in caught]
        try:
            CrammerSingerSVC(C=0.1, method="sequential").fit(x, y)
        except ImportError as err:
            assert "numba" in str(err)
        else:
            raise AssertionError("method='sequential' without numba did not raise")
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_numba_cache_dir_is_private(tmp_path, monkeypatch):
    from dattr_eval.explainers import svm_sequential

    monkeypatch.setenv("DATTR_EVAL_CACHE", str(tmp_path))
    (tmp_path / "numba").mkdir(mode=0o777)
    (tmp_path / "numba").chmod(0o777)
    path = svm_sequential.private_cache_dir()
    assert path == tmp_path / "numba" and (path.stat().st_mode & 0o777) == 0o700


def test_float32_and_bad_input(digits):
    x, y = digits
    for method in ("sequential", "block"):
        fitted = CrammerSingerSVC(C=C, rtol=None, dtype=torch.float32, method=method).fit(
            x.float(), y
        )
        assert fitted.coef_.dtype == torch.float32 and fitted.duality_gap_ <= 1e-3
    bad = [
        ({"C": 0.0}, ValueError, "C must be > 0"),
        ({"C": float("nan")}, ValueError, "C must be a finite number"),
        ({"C": float("inf")}, ValueError, "C must be a finite number"),
        ({"C": True}, TypeError, "C must be a number"),
        ({"tol": float("inf")}, ValueError, "tol must be a finite number"),
        ({"rtol": -1.0}, ValueError, "rtol must be > 0"),
        ({"rtol": None, "tol": None}, ValueError, "rtol and tol are both None"),
        ({"max_iter": True}, TypeError, "max_iter must be an int"),
        ({"max_iter": 2.5}, TypeError, "max_iter must be an int"),
        ({"seed": 2.5}, TypeError, "seed must be an int"),
        ({"seed": -1}, ValueError, "seed must be in"),
        ({"method": "liblinear"}, ValueError, "method must be one of"),
    ]
    for params, error, message in bad:
        with pytest.raises(error, match=message):
            CrammerSingerSVC(**params).fit(x, y)
    with pytest.raises(ValueError, match="y must have length 300"):
        CrammerSingerSVC().fit(x, y[:5])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(digits, fitted):
    x, y = digits
    gpu = CrammerSingerSVC(C=C, tol=1e-6, max_iter=5000, block_size=64, device="cuda").fit(x, y)
    assert gpu.method_ == "block"
    torch.testing.assert_close(gpu.coef_.cpu(), fitted[0].coef_, rtol=1e-3, atol=1e-4)
