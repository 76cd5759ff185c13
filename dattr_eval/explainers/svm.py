"""Linear Crammer–Singer multiclass SVM solved in the dual, with a certified bound on its weights.

The problem is liblinear's ``MCSVM_CS`` (Fan et al. 2008, appendix; Keerthi et al. 2008). Primal,
for features ``phi_i`` (``(n, d)``), labels ``y_i`` and ``K`` classes::

    P(W) = 1/2 ||W||_F^2 + C sum_i max(0, max_{m != y_i} 1 + w_m.phi_i - w_{y_i}.phi_i)

Dual (minimised form), with ``e_im = 1 - [m == y_i]`` and ``W(alpha) = alpha^T Phi`` (``(K, d)``)::

    D(alpha) = 1/2 ||alpha^T Phi||_F^2 + sum_im e_im alpha_im
    s.t.       alpha_im <= C [m == y_i],   sum_m alpha_im = 0      for every i

so ``alpha_{i, y_i} in [0, C]`` and ``alpha_im <= 0`` for ``m != y_i``; ``min P = -min D``.

Certificate. ``P`` is 1-strongly convex in ``W``, so ``P(W) - P* >= 1/2 ||W - W*||^2``; ``D`` is a
quadratic whose gradient at ``alpha*`` makes a non-negative inner product with every feasible
direction, so ``D(alpha) - D* >= 1/2 ||W(alpha) - W*||^2``. Adding both, for the ``W = W(alpha)``
the solvers return::

    ||W - W*||_F <= sqrt(P(W) + D(alpha)) = sqrt(absolute duality gap) =: r

and ``weight_error_bound_ = r / (||W|| - r)`` bounds ``||W - W*|| / ||W*||`` (``inf`` when
``r >= ||W||``). Every decision value ``w_c.phi(x)`` (for DualView: every attribution row sum) is
then within ``weight_error_bound_ * ||W*|| * ||phi(x)||`` of the exact surrogate's. The bound does
not cover single dual variables, which need not be unique. The gap is summed per sample in a form
that does not cancel (``svm_sequential.cs_gap_terms``), with an allowance of ``1e-12`` times the
magnitude of its terms for rounding.

Two solvers, both dual coordinate descent, chosen by ``method``:

- ``"sequential"`` (CPU; the default there): liblinear's ``Solver_MCSVM_CS`` compiled with numba
  (``svm_sequential.cs_epoch``): a random permutation per epoch, one sample at a time with its
  sort-based closed-form sub-problem, shrinking of classes and samples at their bounds with
  liblinear's rules (all are unshrunk, with a halved shrinking tolerance, whenever the pass's
  largest violation falls below it; that full pass runs in storage order, the others shuffled),
  dense float64 rows.
- ``"block"`` (the default on CUDA): block-parallel. Samples that are provably inactive for the
  epoch (``alpha_i = 0`` and margin ``> 1``) are skipped; the rest are visited in random blocks; in a
  block every sample solves its own ``K``-variable sub-problem against the current ``W`` (the same
  closed form, batched), and the block moves along the combined direction with the exact line
  search of the quadratic dual, ``t* = -<grad, D> / ||D^T Phi_B||^2`` clipped to ``[0, 1]``: a convex
  combination of feasible points stays feasible, and the dual never increases. Every step is a
  handful of batched tensor operations, identical on CPU and CUDA.

The sequential solver can end with a second-order polish (``polish``, ``svm_polish``): once
coordinate descent has settled most samples, an interior-point solve on the few still on a margin
or a tie between classes replaces its slow tail; the polished ``alpha`` is kept only when its exact
certificate is better, and is certified like any other iterate.

Both stop when the certificate meets ``rtol`` (and the relative gap ``(P + D) / P`` meets ``tol``
when given), checked with one ``Phi W^T`` product (every epoch for ``block``; for ``sequential``,
compiled too, once the epochs since the last check have done four times as many length-``d`` row
operations as the check's ``n K``, or half of that when liblinear's rule is about to unshrink). A check
that passes is repeated on ``W`` recomputed from ``alpha`` (the running ``W`` drifts by rounding);
the solver goes on if that exact check fails. ``converged_`` is the certificate of the returned
``alpha`` on ``W`` recomputed from it (its feasibility measured once more), never the loop's
running check; a solver that ends uncertified has its ``alpha`` certified in float64 by
:func:`certify`.

Dependencies: the sequential solver needs numba (a core dependency of dattr_eval: it is the CPU
path that is faster than liblinear, see benchmarks/results/dualview_speed.md). It is imported
only when that solver first runs; without numba, ``method="auto"`` falls back to the block solver
with a warning.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from dattr_eval.explainers import svm_polish
from dattr_eval.validation import (
    check_choice,
    check_labels,
    check_positive,
    check_tensor,
    resolve_device,
)

#: relative allowance for rounding in the computed duality gap (see the module docstring)
ROUNDING = 1e-12
#: rows per chunk of the float64 certificate (bounds its extra memory to chunk x (d + K) doubles)
CERTIFY_CHUNK = 65536
#: the sequential solver polishes (``svm_polish``) once its certified relative weight error is below
#: this, and again after every tenfold improvement of coordinate descent
POLISH_BOUND = 0.1
#: ``polish="auto"`` waits until coordinate descent has done about what a polish costs, ``(K d)^3 /
#: (3 d)`` length-``d`` row operations (one factorisation of its ``K d`` Newton matrix in row
#: operations; a polish takes ~10, at BLAS speed, some ten times that of descent's row operations),
#: and at least this many passes' worth (``n K`` row operations each). Descent that certifies sooner
#: is left alone: on the 60k x 64 Fashion-MNIST features it certified C <= 1e-3 alone within 13 to
#: 18 passes' worth (sooner than with a polish), while at C = 0.1 its bound reaches POLISH_BOUND only
#: after about 55 (benchmarks/results/dualview_speed.md). On 1,797 digits the cost is 76 passes'
#: worth: small C never polishes there, large C and stalled descent (the sparse regime on a
#: weight-randomised model: 100k epochs uncertified before) do.
POLISH_AFTER_PASSES = 20


class ConvergenceWarning(UserWarning):
    """The solver stopped before its certificate met the requested tolerances."""


class Certificate(NamedTuple):
    """What a dual point ``alpha`` and its ``W = alpha^T Phi`` prove about the solution.

    Attributes:
        primal: ``P(W)``.
        dual: ``D(alpha)`` (the minimised form; ``P + D >= 0``).
        relative_gap: ``(P + D) / P``.
        weight_bound: certified ``||W - W*||_F / ||W*||_F`` (see the module docstring).
        infeasibility: largest violation of ``sum_m alpha_im = 0`` or of the box, in units of ``C``.
    """

    primal: float
    dual: float
    relative_gap: float
    weight_bound: float
    infeasibility: float = 0.0


class Solution(NamedTuple):
    """What a solver returns: the float64 dual ``alpha (n, K)`` and the epochs it ran; when it
    ended certified, also the exact float64 ``weight = alpha^T Phi`` ``(K, d)`` and that point's
    ``certificate`` (``None`` otherwise: ``fit`` then certifies ``alpha`` itself)."""

    alpha: torch.Tensor
    epochs: int
    weight: torch.Tensor | None = None
    certificate: Certificate | None = None


class GapTerms(NamedTuple):
    """Per-sample sums behind a certificate, from scores ``Phi W^T``.

    ``losses (n,)`` hinge losses; ``gap_sum = sum_i (C hinge_i - alpha_{i, y_i})`` (computed
    without cancellation); ``scale`` the sum of the magnitudes of its terms (for the rounding
    allowance).
    """

    losses: torch.Tensor
    gap_sum: float
    scale: float


def gap_terms(scores: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor, C: float) -> GapTerms:
    """``GapTerms`` of scores ``(n, K)``, labels ``(n,)`` and dual rows ``(n, K)`` (float64 sums)."""
    scores, alpha = scores.double(), alpha.double()
    own_score = scores.gather(1, y[:, None]).squeeze(1)
    other = scores.scatter(1, y[:, None], -torch.inf).amax(1)
    delta = other - own_score  # hinge = max(0, 1 + delta)
    own = alpha.gather(1, y[:, None]).squeeze(1)
    active = delta > -1.0
    losses = torch.where(active, 1.0 + delta, torch.zeros_like(delta))
    gap = torch.where(active, (C - own) + C * delta, -own)
    scale = torch.where(active, (C - own).abs() + C * (other.abs() + own_score.abs()), own.abs())
    return GapTerms(losses, float(gap.sum()), float(scale.sum()))


def certificate(
    weight_sq_norm: float,
    loss_sum: float,
    gap_sum: float,
    scale: float,
    C: float,
    max_feature_norm: float,
) -> Certificate:
    """The ``Certificate`` from ``||W||^2``, the sums of :class:`GapTerms` and ``max_i ||phi_i||``.

    Feasibility is not checked here (``certify`` does).
    """
    primal = 0.5 * weight_sq_norm + C * loss_sum
    gap = weight_sq_norm + gap_sum
    allowance = ROUNDING * (weight_sq_norm + scale)
    bound = weight_error_bound(
        max(gap, 0.0) + allowance, math.sqrt(weight_sq_norm), max_feature_norm
    )
    return Certificate(
        primal=primal,
        dual=gap - primal,
        relative_gap=max(gap, 0.0) / max(primal, torch.finfo(torch.float64).tiny),
        weight_bound=bound,
    )


def weight_error_bound(gap: float, weight_norm: float, max_feature_norm: float) -> float:
    """``r / max(||W|| - r, 1 / max_i ||phi_i||)`` with ``r = sqrt(gap)``; 0 if ``gap == 0``.

    Bounds ``||W - W*|| / max(||W*||, 1 / max_i ||phi_i||)``: the relative weight error whenever
    the exact decision values can reach the margin 1 (``||W*|| max_i ||phi_i|| >= 1``, every
    non-degenerate problem); otherwise (``W*`` near 0, e.g. features near 0) the error of the
    training decision values in units of the margin.
    """
    radius = math.sqrt(gap)
    if radius == 0.0:
        return 0.0
    floor = 1.0 / max_feature_norm if max_feature_norm > 0 else math.inf
    return radius / max(weight_norm - radius, floor)


@torch.no_grad()
def certify(
    features: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor, C: float
) -> tuple[torch.Tensor, Certificate]:
    """``(W, Certificate)`` of ``alpha (n, K)`` on ``features (n, d)``, ``W = alpha^T features`` in float64.

    Exact (no running ``W``), in row chunks of ``CERTIFY_CHUNK``; also measures feasibility.
    """
    rows = range(0, features.shape[0], CERTIFY_CHUNK)
    weight = sum(
        alpha[i : i + CERTIFY_CHUNK].double().T @ features[i : i + CERTIFY_CHUNK].double()
        for i in rows
    )
    losses, gaps, scales = 0.0, 0.0, 0.0
    for i in rows:
        chunk = slice(i, i + CERTIFY_CHUNK)
        terms = gap_terms(features[chunk].double() @ weight.T, y[chunk], alpha[chunk], C)
        losses, gaps, scales = (
            losses + float(terms.losses.sum()),
            gaps + terms.gap_sum,
            scales + terms.scale,
        )
    max_norm = max(
        (float(features[i : i + CERTIFY_CHUNK].double().norm(dim=1).max()) for i in rows),
        default=0.0,
    )
    cert = certificate(float((weight * weight).sum()), losses, gaps, scales, C, max_norm)
    return weight, cert._replace(infeasibility=infeasibility(alpha, y, C))


def infeasibility(alpha: torch.Tensor, y: torch.Tensor, C: float) -> float:
    """Largest ``|sum_m alpha_im|``, ``alpha_{i, y_i} - C``, ``-alpha_{i, y_i}`` or off-label ``alpha_im > 0``, over ``C``."""
    if alpha.numel() == 0:
        return 0.0
    alpha = alpha.double()
    own = alpha.gather(1, y[:, None]).squeeze(1)
    others = alpha.scatter(1, y[:, None], 0.0)
    worst = torch.stack(
        [
            alpha.sum(1).abs().max(),
            (own - C).max(),
            (-own).max(),
            others.max(),
        ]
    ).max()
    return max(float(worst), 0.0) / C


def hinge_losses(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Crammer–Singer losses ``(n,)``: ``max(0, max_{m != y} 1 + s_m - s_y)`` of scores ``(n, K)``."""
    margins = scores - scores.gather(1, y[:, None]) + 1.0
    margins.scatter_(1, y[:, None], 0.0)
    return margins.amax(1).clamp_min(0.0)


def primal_objective(
    features: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, C: float
) -> float:
    """``P(W)`` for any ``weight (K, d)`` (e.g. another solver's), in float64."""
    weight = weight.double()
    losses = hinge_losses(features.double() @ weight.T, y)
    return 0.5 * float((weight * weight).sum()) + C * float(losses.sum())


def initial_alpha(
    sq_norms: torch.Tensor, y: torch.Tensor, n_classes: int, C: float
) -> torch.Tensor:
    """Starting dual rows ``(n, K)`` float64: 0, except samples with ``phi_i = 0``, set to their optimum.

    A zero row does not enter ``W``; its optimal dual row puts ``alpha_{i, y_i} = C`` (the margin
    is 0 < 1) and ``-C / (K - 1)`` on every other class. The solvers never visit those rows.
    """
    alpha = torch.zeros(y.shape[0], n_classes, dtype=torch.float64, device=y.device)
    zero = sq_norms <= 0
    alpha[zero] = -C / (n_classes - 1)
    alpha[zero, y[zero]] = C
    return alpha


def solve_subproblems(
    grad: torch.Tensor, alpha: torch.Tensor, sq_norms: torch.Tensor, y: torch.Tensor, C: float
) -> torch.Tensor:
    """Exact minimisers of the per-sample sub-problems, batched over rows.

    For row ``i`` with ``A = ||phi_i||^2`` and ``b = grad_i - A alpha_i``, returns
    ``argmin_a 1/2 A ||a||^2 + b.a`` s.t. ``a_m <= C [m == y_i]``, ``sum_m a_m = 0`` — liblinear's
    ``solve_sub_problem`` (sort-based closed form ``a_m = min(C[m == y_i], (beta - b_m) / A)``).

    Args:
        grad: ``(b, K)`` dual gradient up to a per-row shift; pass ``W phi_i - [m == y_i]`` (the
            gradient minus 1), which does not cancel when ``A C`` is tiny (``svm_sequential``).
        alpha: ``(b, K)`` current dual rows.
        sq_norms: ``(b,)`` ``||phi_i||^2``, positive.
        y: ``(b,)`` labels.

    Returns:
        ``(b, K)`` new dual rows (feasible).
    """
    n, k = grad.shape
    rows = torch.arange(n, device=grad.device)
    ac = sq_norms * C
    b = grad - sq_norms[:, None] * alpha
    d = b.clone()
    d[rows, y] += ac
    d_sorted = d.sort(dim=1, descending=True).values
    partial = d_sorted.cumsum(1) - ac[:, None]  # beta * r after taking the r largest, r = 1..K
    r = torch.arange(1, k, device=grad.device, dtype=grad.dtype)
    keep_going = partial[:, :-1] < r * d_sorted[:, 1:]
    count = 1 + keep_going.long().cumprod(1).sum(1)
    beta = partial.gather(1, (count - 1)[:, None]).squeeze(1) / count
    upper = torch.zeros_like(grad)
    upper[rows, y] = C
    return torch.minimum(upper, (beta[:, None] - b) / sq_norms[:, None])


def check_finite_positive(value, name: str, *, integer: bool = False, optional: bool = False):
    """A positive finite number (an int if ``integer``; ``None`` allowed if ``optional``), else a clear error."""
    if optional and value is None:
        return None
    check_positive(value, name, integer=integer)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def check_seed(value) -> int:
    """A seed: an int in ``[0, 2**32)`` (numba's and numpy's generators take 32-bit seeds)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {value!r}")
    if not 0 <= int(value) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {value!r}")
    return int(value)


def check_polish(value) -> bool | str:
    """A ``polish`` setting: ``"auto"``, ``True`` or ``False`` (not 0 / 1), else a clear error."""
    if not (isinstance(value, bool) or (isinstance(value, str) and value == "auto")):
        raise ValueError(f'polish must be "auto", True or False, got {value!r}')
    return value


class CrammerSingerSVC:
    """Linear Crammer–Singer multiclass SVM with exact dual variables and a certified weight error.

    Args:
        C: regularisation (> 0, finite); larger C = weaker regularisation and, on separable-ish
            data, sparser ``alpha`` (measure it: benchmarks/dualview_sparsity.py).
        fit_intercept: append a constant feature ``intercept_scaling`` (regularised, as liblinear).
        intercept_scaling: value of that constant feature.
        rtol: stop when the certified relative weight error ``||W - W*|| / ||W*||`` is
            ``<= rtol`` (``None``: no such criterion). The default 1e-3 certifies every decision
            value to 0.1 % of ``||W*|| ||phi(x)||``.
        tol: also require the relative duality gap ``(P + D) / P <= tol`` (``None``: not required).
            At least one of ``rtol`` and ``tol`` must be given. ``rtol <= 1e-3`` implies a gap of at
            most ``2 rtol^2`` whenever ``||W*|| max_i ||phi_i|| >= 1``; the default ``tol=1e-3`` only
            binds on degenerate problems (features near 0), where it keeps ``alpha`` near optimal.
        max_iter: epochs at most (passes over the unshrunk samples); stopping there uncertified
            warns ``ConvergenceWarning``. Sequential epochs are cheap once most samples are shrunk;
            without the polish the certified default needs many at large C (146k epochs, 17 s, on
            60k Fashion-MNIST CNN features at C = 0.1; 1,971 epochs, 3 s, with it:
            benchmarks/results/dualview_speed.md).
        method: ``"sequential"`` (compiled liblinear-style CD on the CPU; needs numba; data on a GPU
            is copied to the host), ``"block"`` (block-parallel torch CD, CPU or CUDA) or ``"auto"``
            (sequential when the solver's device is the CPU and numba is installed, block otherwise).
        block_size: samples per parallel block of ``method="block"`` (smaller = closer to
            sequential CD, more steps).
        dtype: precision of the features and of the ``block`` solver's matrix products (float64
            default; float32 is faster on GPUs, but its rounding can keep the certificate above a
            small ``rtol``); dual variables, ``W`` updates and certificates are float64, and the
            ``sequential`` solver always iterates in float64.
        device: ``None`` = the device of ``X``.
        seed: seed of the sample permutations, an int in ``[0, 2**32)``.
        progress: show a tqdm bar over epochs.
        polish: second-order finish of the ``sequential`` solver (``svm_polish``; the ``block``
            solver never polishes). Once coordinate descent certifies a relative weight error of
            ``POLISH_BOUND``, an interior-point solve on the samples still on a margin or a tie
            replaces ``alpha`` if its exact certificate is better (then again at every tenfold
            improvement); a polished point is certified like any other. ``True``: whenever ``K d``
            (``d`` with the intercept column) is at most ``svm_polish.MAX_NEWTON_SIZE``; ``"auto"``:
            also waits until coordinate descent has done about as much work as a polish costs
            (at least ``POLISH_AFTER_PASSES`` passes' worth), so that descent which certifies
            sooner is left alone; ``False``: plain liblinear-style coordinate descent.

    Fitted attributes: ``dual_coef_ (n, K)`` float64 whatever ``dtype`` (alpha; column m = class m;
    the values the certificate is about), ``coef_ (K, d)`` in ``dtype`` (``== dual_coef_.T @ X``
    in float64, then cast), ``intercept_ (K,)`` (``intercept_scaling * dual_coef_.sum(0)``; zeros
    without ``fit_intercept``), ``support_`` int64 indices of rows with ``max_m |alpha_im| >= 1e-6 C``,
    ``at_bound_`` int64 indices of rows with ``alpha_{i, y_i} >= (1 - 1e-6) C``,
    ``primal_objective_``, ``dual_objective_``, ``duality_gap_`` (relative),
    ``weight_error_bound_`` (certified ``||W - W*|| / ||W*||``), ``n_iter_`` (epochs),
    ``converged_`` (the final float64 certificate meets ``rtol`` / ``tol`` and ``alpha`` is
    feasible to 1e-9 C), ``method_`` (the solver used), ``n_polish_iter_`` (interior-point
    iterations of the polish, all tries; 0 without it), ``fit_seconds_`` (wall time of the solve,
    synchronised on CUDA; excludes loading the compiled ``sequential`` kernels, about 2 s once per
    process, and compiling them, once per installation).
    """

    #: ``|alpha|`` below this fraction of C counts as zero (support) or as at the bound (at_bound)
    support_threshold: float = 1e-6
    #: largest infeasibility (in units of C) a converged solution may have
    feasibility_tol: float = 1e-9

    def __init__(
        self,
        C: float = 1.0,
        fit_intercept: bool = False,
        intercept_scaling: float = 1.0,
        rtol: float | None = 1e-3,
        tol: float | None = 1e-3,
        max_iter: int = 100_000,
        method: str = "auto",
        block_size: int = 256,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device | None = None,
        seed: int = 0,
        progress: bool = False,
        polish: bool | str = "auto",
    ) -> None:
        self.C = C
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.rtol = rtol
        self.tol = tol
        self.max_iter = max_iter
        self.method = method
        self.block_size = block_size
        self.dtype = dtype
        self.device = device
        self.seed = seed
        self.progress = progress
        self.polish = polish

    # ------------------------------------------------------------------ public API
    def fit(
        self, X: torch.Tensor, y: torch.Tensor, n_classes: int | None = None
    ) -> CrammerSingerSVC:
        """Solve the dual on features ``X (n, d)`` and labels ``y (n,)``; ``n_classes`` defaults to ``max(y) + 1``."""
        self._check_params()
        X = check_tensor(X, "X", ndim=2, floating=True, finite=True)
        y = check_labels(y, "y", length=X.shape[0], n_classes=n_classes)
        k = int(n_classes if n_classes is not None else int(y.max()) + 1)
        if k < 2:
            raise ValueError(f"n_classes must be >= 2, got {k}")
        device = resolve_device(self.device) if self.device is not None else X.device
        phi = self._design(X.to(device=device, dtype=self.dtype))
        y = y.to(device)
        self.method_ = self._resolve_method(device)
        solve = self._solve_sequential if self.method_ == "sequential" else self._solve_block
        self.n_polish_iter_ = 0
        start = _now(device)
        solution = solve(phi, y, k)
        self.fit_seconds_ = _now(device) - start
        self.n_iter_ = solution.epochs
        self._set_fitted(phi, y, solution)
        if not self.converged_:
            warnings.warn(
                f"CrammerSingerSVC stopped after {solution.epochs} epochs (max_iter={self.max_iter}) "
                f"uncertified: weight error bound {self.weight_error_bound_:.2e} (rtol={self.rtol}), "
                f"relative duality gap {self.duality_gap_:.2e} (tol={self.tol}), infeasibility "
                f"{self.infeasibility_:.1e} C; increase max_iter or loosen rtol / tol",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def decision_function(self, X: torch.Tensor) -> torch.Tensor:
        """Scores ``(n, K)``: ``X coef_^T + intercept_``."""
        return X.to(self.coef_) @ self.coef_.T + self.intercept_

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        """Predicted classes ``(n,)`` int64."""
        return self.decision_function(X).argmax(1)

    # ------------------------------------------------------------------ internals
    def _check_params(self) -> None:
        check_finite_positive(self.C, "C")
        check_finite_positive(self.intercept_scaling, "intercept_scaling")
        check_finite_positive(self.rtol, "rtol", optional=True)
        check_finite_positive(self.tol, "tol", optional=True)
        if self.rtol is None and self.tol is None:
            raise ValueError("rtol and tol are both None: give at least one stopping tolerance")
        check_finite_positive(self.max_iter, "max_iter", integer=True)
        check_finite_positive(self.block_size, "block_size", integer=True)
        check_choice(self.method, "method", ("auto", "sequential", "block"))
        check_seed(self.seed)
        check_polish(self.polish)

    def _resolve_method(self, device: torch.device) -> str:
        """The solver to run; loads the compiled kernels (outside the timed solve) for ``sequential``."""
        if self.method == "block" or (self.method == "auto" and device.type != "cpu"):
            return "block"
        try:
            _sequential_kernels()
        except ImportError as err:
            if self.method == "sequential":
                raise ImportError(
                    'CrammerSingerSVC(method="sequential") needs the numba package '
                    '(pip install numba); method="block" runs without it'
                ) from err
            warnings.warn(
                "the numba package is not installed: CrammerSingerSVC falls back to the block "
                "solver (pip install numba for the faster compiled CPU solver)",
                RuntimeWarning,
                stacklevel=3,
            )
            return "block"
        return "sequential"

    def _polish_after(self, n: int, k: int, d: int) -> float | None:
        """Row operations of coordinate descent before the sequential solver may polish ``n``
        samples, ``k`` classes, ``d`` columns (``None``: never; 0 for ``polish=True``)."""
        if self.polish is False or k * d > svm_polish.MAX_NEWTON_SIZE:
            return None
        if self.polish is True:
            return 0.0
        return max((k * d) ** 3 / (3 * d), POLISH_AFTER_PASSES * n * k)

    def _meets(self, cert: Certificate) -> bool:
        """Whether ``cert`` satisfies the requested tolerances (and feasibility)."""
        return (
            (self.rtol is None or cert.weight_bound <= self.rtol)
            and (self.tol is None or cert.relative_gap <= self.tol)
            and cert.infeasibility <= self.feasibility_tol
        )

    def _design(self, X: torch.Tensor) -> torch.Tensor:
        if not self.fit_intercept:
            return X
        return torch.cat([X, X.new_full((X.shape[0], 1), float(self.intercept_scaling))], 1)

    def _solve_sequential(self, phi: torch.Tensor, y: torch.Tensor, k: int) -> Solution:
        """liblinear's schedule around the compiled epoch."""
        kernels = _sequential_kernels()
        X = np.ascontiguousarray(phi.detach().cpu().double().numpy())
        labels = np.ascontiguousarray(y.cpu().numpy().astype(np.int64))
        n, C = X.shape[0], float(self.C)
        sq_norms = np.einsum("ij,ij->i", X, X)
        alpha = initial_alpha(torch.from_numpy(sq_norms), torch.from_numpy(labels), k, C).numpy()
        weight = np.zeros((k, X.shape[1]))
        index, active = np.arange(n), n
        n_active = np.full(n, k, dtype=np.int64)
        class_slots = np.tile(np.arange(k, dtype=np.int64), (n, 1))
        y_slot = labels.copy()
        kernels.seed(check_seed(self.seed))
        max_norm = math.sqrt(float(sq_norms.max()))

        def check(w: np.ndarray, a: np.ndarray = alpha) -> Certificate:
            loss, gap, scale = kernels.cs_gap_terms(X, labels, w, a, C)
            return certificate(float(np.einsum("ij,ij->", w, w)), loss, gap, scale, C, max_norm)

        # polish once the certified bound is at most polish_at (None: never) and descent has done
        # polish_after row operations
        polish_after = self._polish_after(n, k, X.shape[1])
        polish_at = None if polish_after is None else POLISH_BOUND

        # a gap check costs n K row operations: spend four times as much on the epochs in between
        # (shrunk epochs are cheap), or half of that when the shrinking rule signals convergence at
        # its tolerance (at once as much, or a quarter, checks took a quarter of the time on the
        # 60k Fashion-MNIST features at C = 1e-3)
        check_work = 4 * n * k
        shrink_tol, work, total_work = 1.0, 0, 0  # liblinear starts at max(10 eps, 1)
        in_storage_order = False
        bar = tqdm(
            range(1, self.max_iter + 1), disable=not self.progress, desc="CS-SVM dual", leave=False
        )
        for epoch in bar:
            active, stopping, epoch_work = kernels.cs_epoch(
                X,
                labels,
                sq_norms,
                C,
                alpha,
                weight,
                index,
                active,
                n_active,
                class_slots,
                y_slot,
                not in_storage_order,
            )
            work += epoch_work
            total_work += epoch_work
            unshrink = stopping < shrink_tol
            if work >= check_work or (unshrink and 2 * work >= check_work) or epoch_work == 0:
                cert, work = check(weight), 0
                bar.set_postfix(bound=f"{cert.weight_bound:.1e}")
                if self._meets(cert):
                    weight[:] = alpha.T @ X  # the running W drifts: certify the exact one
                    exact = check(weight)
                    if self._meets(exact):
                        return self._solution(alpha, epoch, weight, exact, phi.device)
                elif (
                    polish_at is not None
                    and cert.weight_bound <= polish_at
                    and total_work >= polish_after
                ):
                    polished, polished_weight, polished_cert = self._polish(
                        X, labels, alpha, weight, sq_norms, cert, check
                    )
                    feasible = polished_cert.infeasibility <= self.feasibility_tol
                    if feasible and polished_cert.weight_bound < cert.weight_bound:
                        alpha[:], weight[:] = polished, polished_weight
                        unshrink = True  # coordinate descent goes on from all samples
                        if self._meets(polished_cert):
                            return self._solution(alpha, epoch, weight, polished_cert, phi.device)
                    # another try once coordinate descent has gained a decade
                    polish_at = min(cert.weight_bound, polished_cert.weight_bound) / 10
            # after unshrinking, liblinear's full pass re-examines every sample and shrinks most at
            # once: in storage order it streams X instead of jumping through it (a full pass in
            # about two thirds of the time) and the certified fits were as fast or faster across
            # seeds (benchmarks/results/dualview_speed.md); every other epoch is shuffled
            in_storage_order = unshrink
            if unshrink:
                active, shrink_tol = n, shrink_tol / 2
                n_active[:] = k
                index[:] = np.arange(n)
        return Solution(torch.from_numpy(alpha).to(phi.device), epoch)

    @staticmethod
    def _solution(
        alpha: np.ndarray, epochs: int, weight: np.ndarray, cert: Certificate, device
    ) -> Solution:
        """A certified :class:`Solution` from the sequential solver's numpy ``alpha`` and exact ``weight``."""
        return Solution(
            torch.from_numpy(alpha).to(device), epochs, torch.from_numpy(weight).to(device), cert
        )

    def _polish(
        self,
        X: np.ndarray,
        labels: np.ndarray,
        alpha: np.ndarray,
        weight: np.ndarray,
        sq_norms: np.ndarray,
        cert: Certificate,
        check,
    ) -> tuple[np.ndarray, np.ndarray, Certificate]:
        """``svm_polish.polish`` from ``alpha (n, K)`` (certified ``cert``; ``weight`` its running
        ``W``, ``sq_norms`` the rows' squared norms); its ``(alpha, W, certificate)``.

        ``check(W, alpha)`` is the solver's exact certificate, completed here with the polished
        point's infeasibility; the polish stops early once it meets the tolerances.
        """
        C, y = float(self.C), torch.from_numpy(labels)

        judged = []  # (alpha, its certificate) of good_enough's last call

        def exact(a: np.ndarray, w: np.ndarray) -> Certificate:
            return check(w, a)._replace(infeasibility=infeasibility(torch.from_numpy(a), y, C))

        def good_enough(a: np.ndarray, w: np.ndarray) -> bool:
            judged[:] = [a, exact(a, w)]
            return self._meets(judged[1])

        polished = svm_polish.polish(
            X,
            labels,
            alpha,
            C,
            weight=weight,
            sq_norms=sq_norms,
            window=svm_polish.window_for(cert.weight_bound),
            good_enough=good_enough,
        )
        self.n_polish_iter_ += polished.iterations
        # polish judges the point it returns last; anything else is certified here
        if judged and judged[0] is polished.alpha:
            return polished.alpha, polished.weight, judged[1]
        return polished.alpha, polished.weight, exact(polished.alpha, polished.weight)

    def _solve_block(self, phi: torch.Tensor, y: torch.Tensor, k: int) -> Solution:
        """Block-parallel CD in torch."""
        C = float(self.C)
        shifted_cost = -torch.nn.functional.one_hot(y, k).double()  # gradient minus 1
        sq_norms = (phi.double() ** 2).sum(1)
        # phi_i = 0 does not enter W: those rows start at their optimum and are never visited
        usable = (sq_norms > 0).nonzero().squeeze(1)
        # alpha and W in float64 whatever dtype (feasible to float64 rounding); products in dtype
        alpha = initial_alpha(sq_norms, y, k, C)
        weight = torch.zeros(k, phi.shape[1], dtype=torch.float64, device=phi.device)
        max_norm = float(sq_norms.max().sqrt())
        gen = torch.Generator(device="cpu").manual_seed(check_seed(self.seed))
        bar = tqdm(
            range(self.max_iter + 1), disable=not self.progress, desc="CS-SVM dual", leave=False
        )
        for epoch in bar:
            terms = gap_terms(phi @ weight.T.to(phi.dtype), y, alpha, C)
            cert = certificate(
                float((weight**2).sum()),
                float(terms.losses.sum()),
                terms.gap_sum,
                terms.scale,
                C,
                max_norm,
            )
            bar.set_postfix(bound=f"{cert.weight_bound:.1e}")
            if self._meets(cert):
                weight, exact = certify(phi, y, alpha, C)  # the running W drifts: go on from it
                if self._meets(exact):
                    return Solution(alpha, epoch, weight, exact)
            if epoch == self.max_iter:
                break
            # shrinking: alpha_i = 0 with margin > 1 is optimal for this epoch's W
            losses = terms.losses
            candidates = usable[(losses[usable] > 0) | (alpha[usable] != 0).any(1)]
            order = candidates[torch.randperm(candidates.numel(), generator=gen).to(phi.device)]
            for block in order.split(self.block_size):
                self._block_step(
                    phi[block],
                    y[block],
                    shifted_cost[block],
                    sq_norms[block],
                    alpha,
                    block,
                    weight,
                    C,
                )
        return Solution(alpha, epoch)

    @staticmethod
    def _block_step(
        phi_b: torch.Tensor,
        y_b: torch.Tensor,
        shifted_cost_b: torch.Tensor,
        sq_b: torch.Tensor,
        alpha: torch.Tensor,
        block: torch.Tensor,
        weight: torch.Tensor,
        C: float,
    ) -> None:
        """One block: batched sub-problem solutions, then the exact line search (in place)."""
        alpha_b = alpha[block]
        # the dual gradient minus 1, in float64 from a product in phi's dtype
        grad = (phi_b @ weight.T.to(phi_b.dtype)).double() + shifted_cost_b
        direction = solve_subproblems(grad, alpha_b, sq_b, y_b, C) - alpha_b
        delta_w = (direction.T.to(phi_b.dtype) @ phi_b).double()
        curvature = (delta_w * delta_w).sum()
        slope = (direction * grad).sum()  # the shift cancels: rows of direction sum to 0
        # t = clamp(-slope / curvature, 0, 1) without a host sync (slope <= 0 for a descent direction)
        step = (-slope / curvature.clamp_min(1e-300)).clamp(0.0, 1.0)
        weight.add_(step * delta_w)
        alpha[block] = alpha_b + step * direction

    def _set_fitted(self, phi: torch.Tensor, y: torch.Tensor, solution: Solution) -> None:
        """Fitted attributes from a solver's :class:`Solution`.

        A certified solution brings the exact float64 ``W`` of its ``alpha`` and that point's
        certificate (its feasibility is measured again here); otherwise ``alpha`` is certified in
        float64 (:func:`certify`).
        """
        C, alpha = float(self.C), solution.alpha
        if solution.certificate is None:
            weight, cert = certify(phi, y, alpha, C)
        else:
            weight = solution.weight
            cert = solution.certificate._replace(infeasibility=infeasibility(alpha, y, C))
        weight = weight.to(phi.dtype)
        self.dual_coef_ = alpha
        self.primal_objective_, self.dual_objective_ = cert.primal, cert.dual
        self.duality_gap_ = cert.relative_gap
        self.weight_error_bound_ = cert.weight_bound
        self.infeasibility_ = cert.infeasibility
        self.converged_ = self._meets(cert)
        if self.fit_intercept:
            self.coef_ = weight[:, :-1].contiguous()
            self.intercept_ = weight[:, -1] * float(self.intercept_scaling)
        else:
            self.coef_ = weight
            self.intercept_ = weight.new_zeros(weight.shape[0])
        strength = alpha.abs().amax(1)
        self.support_ = (strength >= self.support_threshold * C).nonzero().squeeze(1)
        own = alpha.gather(1, y[:, None]).squeeze(1)
        self.at_bound_ = (own >= (1 - self.support_threshold) * C).nonzero().squeeze(1)


def _sequential_kernels():
    """The compiled ``svm_sequential`` module (numba imported and the kernels loaded on first use)."""
    from dattr_eval.explainers import svm_sequential

    return svm_sequential.compiled()


def _now(device: torch.device) -> float:
    """``perf_counter`` after the device's queued work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
