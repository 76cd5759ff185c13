"""The sequential solver's second-order polish (``svm_polish``): certified, exact, optional."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.svm import LinearSVC

from dattr_eval.explainers import svm_polish
from dattr_eval.explainers.svm import CrammerSingerSVC, certify
from tests._digits_models import single_thread  # noqa: F401  (one torch thread for this module)

#: tight, but above the certificate's rounding floor (~2e-6 on digits, ~1e-5 on the clusters)
RTOL = 1e-5
CLUSTER_RTOL = 1e-4


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16.0), torch.tensor(y)


def clusters(seed: int, n: int = 600, d: int = 6, k: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian class clusters ``(n, d)`` float64 with 10 % of the labels redrawn (ties, margins)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=gen)
    x = torch.randn(k, d, generator=gen, dtype=torch.float64)[y]
    x = x + 0.8 * torch.randn(n, d, generator=gen, dtype=torch.float64)
    flip = torch.rand(n, generator=gen) < 0.1
    y[flip] = torch.randint(0, k, (int(flip.sum()),), generator=gen)
    return x, y


def design(x: torch.Tensor, fit_intercept: bool) -> torch.Tensor:
    """``x`` with the constant column CrammerSingerSVC appends for ``fit_intercept``."""
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1) if fit_intercept else x


def full_weight(model: CrammerSingerSVC) -> torch.Tensor:
    """``W (K, d [+1])`` including the intercept column."""
    if not model.fit_intercept:
        return model.coef_
    return torch.cat([model.coef_, model.intercept_[:, None]], 1)


def error_scale(model: CrammerSingerSVC, phi: torch.Tensor) -> float:
    """``max(||W||, 1 / max_i ||phi_i||)``: the certified bound times this bounds ``||W - W*||``."""
    return max(float(full_weight(model).norm()), 1.0 / float(phi.norm(dim=1).max()))


@pytest.mark.parametrize(
    ("c", "fit_intercept"), [(1e-5, False), (1e-3, False), (0.1, False), (0.1, True), (1.0, False)]
)
def test_polished_solution_is_certified_and_matches_references(digits, c, fit_intercept):
    x, y = digits
    phi = design(x, fit_intercept)
    polished = CrammerSingerSVC(C=c, rtol=RTOL, polish=True, fit_intercept=fit_intercept).fit(x, y)
    plain = CrammerSingerSVC(C=c, rtol=RTOL, polish=False, fit_intercept=fit_intercept).fit(x, y)
    assert polished.n_polish_iter_ > 0 and plain.n_polish_iter_ == 0
    assert polished.n_iter_ < plain.n_iter_  # the polish replaces coordinate descent's tail
    # certified by the final exact check of the returned alpha
    _, cert = certify(phi, y, polished.dual_coef_, c)
    assert polished.converged_ and cert.weight_bound <= RTOL and cert.infeasibility <= 1e-9
    # the solver's own exact certificate of that alpha: the same up to rounding in the gap
    assert math.isclose(polished.weight_error_bound_**2, cert.weight_bound**2, abs_tol=1e-10)
    # both certified: ||W_p - W_u|| <= ||W_p - W*|| + ||W_u - W*|| <= sum of bound * scale
    diff = float((full_weight(polished) - full_weight(plain)).norm())
    allowed = polished.weight_error_bound_ * error_scale(polished, phi)
    allowed += plain.weight_error_bound_ * error_scale(plain, phi)
    assert diff <= allowed
    # an independent reference: liblinear at a tight tolerance
    ref = LinearSVC(
        multi_class="crammer_singer",
        C=c,
        tol=1e-10,
        max_iter=100_000,
        fit_intercept=fit_intercept,
    ).fit(x.numpy(), y.numpy())
    w_ref = torch.tensor(ref.coef_)
    if fit_intercept:
        w_ref = torch.cat([w_ref, torch.tensor(ref.intercept_)[:, None]], 1)
    assert float((full_weight(polished) - w_ref).norm()) <= 1e-6 * error_scale(polished, phi)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_polish_on_random_clusters_is_feasible_and_certified(seed):
    x, y = clusters(seed)
    polished = CrammerSingerSVC(C=0.5, rtol=CLUSTER_RTOL, polish=True).fit(x, y, 4)
    plain = CrammerSingerSVC(C=0.5, rtol=CLUSTER_RTOL, polish=False).fit(x, y, 4)
    assert polished.converged_ and polished.n_polish_iter_ > 0
    alpha = polished.dual_coef_
    own = alpha.gather(1, y[:, None]).squeeze(1)
    slack = 1e-9 * 0.5  # CrammerSingerSVC.feasibility_tol (in units of C): rounding only
    assert float(alpha.sum(1).abs().max()) <= slack
    assert bool((own >= -slack).all() and (own <= 0.5 + slack).all())
    assert float(alpha.scatter(1, y[:, None], 0.0).max()) <= slack
    diff = float((polished.coef_ - plain.coef_).norm())
    bound = polished.weight_error_bound_ * error_scale(polished, x)
    assert diff <= bound + plain.weight_error_bound_ * error_scale(plain, x)


def test_auto_leaves_descent_that_certifies_before_a_polish_would_pay(digits):
    """``"auto"`` waits for a polish's cost in descent work: here descent certifies first, on the
    same path as ``polish=False``."""
    x, y = digits
    x, y = x[:500], y[:500]
    auto = CrammerSingerSVC(C=0.1).fit(x, y)
    plain = CrammerSingerSVC(C=0.1, polish=False).fit(x, y)
    assert auto._polish_after(500, 10, x.shape[1]) > 200 * 500 * 10  # a 640-wide Newton matrix
    assert auto.n_polish_iter_ == 0 and plain.n_polish_iter_ == 0
    assert torch.equal(auto.dual_coef_, plain.dual_coef_) and auto.n_iter_ == plain.n_iter_


def test_auto_polishes_a_stalled_descent_on_a_small_problem(digits):
    """At large C descent on all 1,797 digits runs past a polish's cost: "auto" polishes, certified,
    in fewer epochs than descent alone."""
    x, y = digits
    auto = CrammerSingerSVC(C=100.0).fit(x, y)
    plain = CrammerSingerSVC(C=100.0, polish=False).fit(x, y)
    assert auto.converged_ and plain.converged_
    assert auto.n_polish_iter_ > 0 and auto.n_iter_ < plain.n_iter_


def test_auto_polishes_clusters_where_descent_stalls():
    x, y = clusters(3, n=2000, d=4, k=3)
    fitted = CrammerSingerSVC(C=1.0, rtol=CLUSTER_RTOL).fit(x, y, 3)
    assert fitted.converged_ and fitted.n_polish_iter_ > 0


def test_a_rejected_polish_leaves_the_path_unchanged(digits, monkeypatch):
    """A polished point is taken only if feasible with a better certificate: here it is infeasible."""
    x, y = digits
    real = svm_polish.polish
    calls = []

    def infeasible(X, labels, alpha, C, **kw):
        result = real(X, labels, alpha, C, **kw)
        calls.append(result)
        broken = result.alpha.copy()
        broken[:, 0] += 1e-6 * C  # rows no longer sum to 0
        return result._replace(alpha=broken, weight=broken.T @ X)

    monkeypatch.setattr(svm_polish, "polish", infeasible)
    tried = CrammerSingerSVC(C=0.1, rtol=RTOL, polish=True).fit(x, y)
    plain = CrammerSingerSVC(C=0.1, rtol=RTOL, polish=False).fit(x, y)
    assert calls and tried.converged_
    assert torch.equal(tried.dual_coef_, plain.dual_coef_) and tried.n_iter_ == plain.n_iter_


def test_block_solver_never_polishes(digits):
    x, y = digits
    fitted = CrammerSingerSVC(C=0.1, method="block", polish=True).fit(x[:300], y[:300])
    assert fitted.n_polish_iter_ == 0 and fitted.converged_


@pytest.mark.parametrize("bad", ["yes", 1, None, np.float64(0.0)])
def test_bad_polish_value_raises(digits, bad):
    x, y = digits
    with pytest.raises(ValueError, match='polish must be "auto", True or False'):
        CrammerSingerSVC(polish=bad).fit(x[:50], y[:50])


@pytest.mark.parametrize("seed", [0, 1])
def test_newton_matrix_is_the_sum_of_kronecker_terms(seed):
    """newton_matrix (per-pair Gram blocks) == I + sum_i T_i (x) phi_i phi_i^T written out densely."""
    rng = np.random.default_rng(seed)
    n, d, k, c = 40, 5, 4, 0.5
    x = rng.normal(size=(n, d))
    x[:, 2] = 0.0  # a column no row uses: left out of the restricted problem
    y = rng.integers(0, k, n)
    candidates = rng.random((n, k)) < 0.6
    candidates[: n // 2, :2] = True  # at least half the rows have two or more candidates
    alpha = np.zeros((n, k))
    problem, _ = svm_polish.restrict(x, y, alpha, alpha.T @ x, candidates, c)
    weights = np.where(problem.candidates, rng.uniform(1e-3, 10.0, problem.candidates.shape), 0.0)
    size = k * problem.features.shape[1]
    ours = svm_polish.newton_matrix(problem, weights, np.empty((size, size)))
    dense = np.eye(size)
    for w, phi in zip(weights, problem.features, strict=True):
        t = np.diag(w) - np.outer(w, w) / w.sum()
        dense += np.kron(t, np.outer(phi, phi))
    assert problem.features.shape[1] == d - 1
    np.testing.assert_allclose(np.tril(ours), np.tril(dense), rtol=1e-12, atol=1e-12)
