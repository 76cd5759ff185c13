"""Linear Crammer–Singer multiclass SVM solved in the dual: compiled on the CPU, torch on CUDA.

The problem is liblinear's ``MCSVM_CS`` (Fan et al. 2008, appendix; Keerthi et al. 2008). Primal,
for features ``phi_i`` (``(n, d)``), labels ``y_i`` and ``K`` classes::

    min_W  1/2 ||W||_F^2 + C sum_i max(0, max_{m != y_i} 1 + w_m.phi_i - w_{y_i}.phi_i)

Dual, with ``e_im = 1 - [m == y_i]`` and ``W(alpha) = alpha^T Phi`` (``(K, d)``)::

    min_alpha  1/2 ||alpha^T Phi||_F^2 + sum_im e_im alpha_im
    s.t.       alpha_im <= C [m == y_i],   sum_m alpha_im = 0      for every i

so ``alpha_{i, y_i} in [0, C]`` and ``alpha_im <= 0`` for ``m != y_i``.

Two solvers, both dual coordinate descent, chosen by ``method``:

- ``"sequential"`` (CPU; the default there): liblinear's ``Solver_MCSVM_CS`` compiled with numba
  (``svm_sequential.cs_epoch``): a random permutation per epoch, one sample at a time with its
  sort-based closed-form sub-problem, shrinking of classes and samples at their bounds with
  liblinear's rules (all are unshrunk, with a halved shrinking tolerance, whenever the pass's
  largest violation falls below it), dense float64 rows.
- ``"block"`` (the default on CUDA): block-parallel. Samples that are provably inactive for the
  epoch (``alpha_i = 0`` and margin ``> 1``) are skipped; the rest are visited in random blocks; in a
  block every sample solves its own ``K``-variable sub-problem against the current ``W`` (the same
  closed form, batched), and the block moves along the combined direction with the exact line
  search of the quadratic dual, ``t* = -<grad, D> / ||D^T Phi_B||^2`` clipped to ``[0, 1]``: a convex
  combination of feasible points stays feasible, and the dual never increases. Every step is a
  handful of batched tensor operations, identical on CPU and CUDA.

Both stop on the exact relative duality gap ``(P(W) + D(alpha)) / P(W) <= tol``, computed with one
``Phi W^T`` product (every epoch for ``block``; for ``sequential``, compiled too, once the epochs
since the last check have done as many length-``d`` row operations as the check's ``n K``, or a
quarter of that when liblinear's rule is about to unshrink), and warn when they reach ``max_iter``
epochs.
At the end ``W`` is recomputed from ``alpha`` (``coef_ == dual_coef_.T @ Phi`` to the last bit of
one matmul) and the reported gap is the gap of that pair.
"""

from __future__ import annotations

import functools
import time
import warnings

import numpy as np
import torch
from tqdm.auto import tqdm

from dattr_eval.validation import (
    check_choice,
    check_labels,
    check_positive,
    check_tensor,
    resolve_device,
)


class ConvergenceWarning(UserWarning):
    """The solver stopped at ``max_iter`` before reaching the requested duality gap."""


def _cost_matrix(y: torch.Tensor, n_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """``E (n, K)``: 1 everywhere except 0 at ``(i, y_i)``."""
    e = torch.ones(y.shape[0], n_classes, dtype=dtype, device=y.device)
    return e.scatter_(1, y[:, None], 0.0)


def hinge_losses(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Crammer–Singer losses ``(n,)``: ``max(0, max_{m != y} 1 + s_m - s_y)`` of scores ``(n, K)``."""
    margins = scores - scores.gather(1, y[:, None]) + 1.0
    margins.scatter_(1, y[:, None], 0.0)
    return margins.amax(1).clamp_min(0.0)


def objectives(
    features: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, alpha: torch.Tensor, C: float
) -> tuple[float, float, float]:
    """Primal ``P(W)``, dual ``D(alpha)`` (the minimised form above) and relative gap ``(P + D) / P``.

    ``weight`` is ``(K, d)``; ``alpha`` ``(n, K)``. ``P + D >= 0`` for any feasible ``alpha`` with
    ``weight = alpha^T features``; it is 0 exactly at the optimum.
    """
    ww = float((weight * weight).sum())
    primal = 0.5 * ww + C * float(hinge_losses(features @ weight.T, y).sum())
    dual = 0.5 * ww + float((alpha * _cost_matrix(y, weight.shape[0], alpha.dtype)).sum())
    return primal, dual, relative_gap(primal, dual)


def relative_gap(primal: float, dual: float) -> float:
    """``(P + D) / P`` for the primal ``P`` and the minimised dual ``D`` (``P > 0`` unless ``W = 0`` fits all)."""
    return (primal + dual) / max(primal, torch.finfo(torch.float64).tiny)


def solve_subproblems(
    grad: torch.Tensor, alpha: torch.Tensor, sq_norms: torch.Tensor, y: torch.Tensor, C: float
) -> torch.Tensor:
    """Exact minimisers of the per-sample sub-problems, batched over rows.

    For row ``i`` with ``A = ||phi_i||^2`` and ``b = grad_i - A alpha_i``, returns
    ``argmin_a 1/2 A ||a||^2 + b.a`` s.t. ``a_m <= C [m == y_i]``, ``sum_m a_m = 0`` — liblinear's
    ``solve_sub_problem`` (sort-based closed form ``a_m = min(C[m == y_i], (beta - b_m) / A)``).

    Args:
        grad: ``(b, K)`` dual gradient ``W phi_i + e_i``.
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


class CrammerSingerSVC:
    """Linear Crammer–Singer multiclass SVM with exact dual variables (CPU: numba; CPU or CUDA: torch).

    Args:
        C: regularisation (> 0); larger C = weaker regularisation and, on separable-ish data, sparser
            ``alpha`` (measure it: benchmarks/dualview_sparsity.py).
        fit_intercept: append a constant feature ``intercept_scaling`` (regularised, as liblinear).
        intercept_scaling: value of that constant feature.
        tol: stop when the relative duality gap ``(P + D) / P`` is ``<= tol``.
        max_iter: epochs at most (passes over the unshrunk samples); reaching it warns
            ``ConvergenceWarning``. Sequential epochs are cheap once most samples are shrunk; at
            C >= 0.1 thousands can be needed (benchmarks/results/dualview_speed.md).
        method: ``"sequential"`` (compiled liblinear-style CD on the CPU; needs numba; data on a GPU
            is copied to the host), ``"block"`` (block-parallel torch CD, CPU or CUDA) or ``"auto"``
            (sequential when the solver's device is the CPU, block otherwise).
        block_size: samples per parallel block of ``method="block"`` (smaller = closer to
            sequential CD, more steps).
        dtype: precision of the results and of the ``block`` solver (float64 default; float32 is
            faster on GPUs); the ``sequential`` solver always iterates in float64.
        device: ``None`` = the device of ``X``.
        seed: seed of the sample permutations.
        progress: show a tqdm bar over epochs.

    Fitted attributes: ``dual_coef_ (n, K)`` (alpha; column m = class m), ``coef_ (K, d)``
    (``== dual_coef_.T @ X``), ``intercept_ (K,)`` (``intercept_scaling * dual_coef_.sum(0)``; zeros
    without ``fit_intercept``), ``support_`` int64 indices of rows with ``max_m |alpha_im| >= 1e-6 C``,
    ``primal_objective_``, ``dual_objective_``, ``duality_gap_`` (relative), ``n_iter_`` (epochs),
    ``converged_``, ``method_`` (the solver used), ``fit_seconds_`` (wall time of the solve,
    synchronised on CUDA; excludes loading the compiled ``sequential`` kernels, about 2 s once per
    process, and compiling them, once per installation).
    """

    support_threshold: float = 1e-6

    def __init__(
        self,
        C: float = 1.0,
        fit_intercept: bool = False,
        intercept_scaling: float = 1.0,
        tol: float = 1e-3,
        max_iter: int = 10_000,
        method: str = "auto",
        block_size: int = 256,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device | None = None,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        self.C = C
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.tol = tol
        self.max_iter = max_iter
        self.method = method
        self.block_size = block_size
        self.dtype = dtype
        self.device = device
        self.seed = seed
        self.progress = progress

    # ------------------------------------------------------------------ public API
    def fit(
        self, X: torch.Tensor, y: torch.Tensor, n_classes: int | None = None
    ) -> CrammerSingerSVC:
        """Solve the dual on features ``X (n, d)`` and labels ``y (n,)``; ``n_classes`` defaults to ``max(y) + 1``."""
        check_positive(self.C, "C")
        check_positive(self.tol, "tol")
        check_positive(self.max_iter, "max_iter", integer=True)
        check_positive(self.block_size, "block_size", integer=True)
        check_choice(self.method, "method", ("auto", "sequential", "block"))
        X = check_tensor(X, "X", ndim=2, floating=True, finite=True)
        y = check_labels(y, "y", length=X.shape[0], n_classes=n_classes)
        k = int(n_classes if n_classes is not None else int(y.max()) + 1)
        if k < 2:
            raise ValueError(f"n_classes must be >= 2, got {k}")
        device = resolve_device(self.device) if self.device is not None else X.device
        phi = self._design(X.to(device=device, dtype=self.dtype))
        y = y.to(device)
        self.method_ = self.method
        if self.method == "auto":
            self.method_ = "sequential" if device.type == "cpu" else "block"
        solve = self._solve_block
        if self.method_ == "sequential":
            _sequential_kernels()  # import and load outside the timed solve
            solve = self._solve_sequential
        start = _now(device)
        alpha, epochs, gap = solve(phi, y, k)
        self.n_iter_ = epochs
        self.converged_ = gap <= self.tol
        self.fit_seconds_ = _now(device) - start
        if not self.converged_:
            warnings.warn(
                f"CrammerSingerSVC stopped at max_iter={self.max_iter} epochs with relative duality "
                f"gap {gap:.2e} > tol={self.tol:g}; increase max_iter or tol",
                ConvergenceWarning,
                stacklevel=2,
            )
        self._set_fitted(phi, y, alpha)
        return self

    def decision_function(self, X: torch.Tensor) -> torch.Tensor:
        """Scores ``(n, K)``: ``X coef_^T + intercept_``."""
        return X.to(self.coef_) @ self.coef_.T + self.intercept_

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        """Predicted classes ``(n,)`` int64."""
        return self.decision_function(X).argmax(1)

    # ------------------------------------------------------------------ internals
    def _design(self, X: torch.Tensor) -> torch.Tensor:
        if not self.fit_intercept:
            return X
        return torch.cat([X, X.new_full((X.shape[0], 1), float(self.intercept_scaling))], 1)

    def _solve_sequential(
        self, phi: torch.Tensor, y: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, int, float]:
        """liblinear's schedule around the compiled epoch; returns ``(alpha, epochs, gap)``."""
        kernels = _sequential_kernels()
        X = np.ascontiguousarray(phi.detach().cpu().double().numpy())
        labels = np.ascontiguousarray(y.cpu().numpy().astype(np.int64))
        n, C = X.shape[0], float(self.C)
        alpha, weight = np.zeros((n, k)), np.zeros((k, X.shape[1]))
        sq_norms = np.einsum("ij,ij->i", X, X)
        index, active = np.arange(n), n
        n_active = np.full(n, k, dtype=np.int64)
        class_slots = np.tile(np.arange(k, dtype=np.int64), (n, 1))
        y_slot = labels.copy()
        kernels.seed(self.seed)
        # a gap check costs n K row operations: spend as much on the epochs in between (shrunk epochs
        # are cheap), or a quarter of it when the shrinking rule signals convergence at its tolerance
        check_work = n * k
        shrink_tol, work, gap = 1.0, 0, float("inf")  # liblinear starts at max(10 eps, 1)
        bar = tqdm(
            range(1, self.max_iter + 1), disable=not self.progress, desc="CS-SVM dual", leave=False
        )
        for epoch in bar:
            active, stopping, epoch_work = kernels.cs_epoch(
                X, labels, sq_norms, C, alpha, weight, index, active, n_active, class_slots, y_slot
            )
            work += epoch_work
            unshrink = stopping < shrink_tol
            if (
                work >= check_work
                or (unshrink and 4 * work >= check_work)
                or epoch == self.max_iter
            ):
                loss, own = kernels.cs_gap_terms(X, labels, weight, alpha)
                ww = float(np.einsum("ij,ij->", weight, weight))
                gap = relative_gap(0.5 * ww + C * loss, 0.5 * ww - own)
                work = 0
                bar.set_postfix(gap=f"{gap:.1e}")
                if gap <= self.tol:
                    break
            if unshrink:
                active, shrink_tol = n, shrink_tol / 2
                n_active[:] = k
        return torch.from_numpy(alpha).to(device=phi.device, dtype=phi.dtype), epoch, gap

    def _solve_block(
        self, phi: torch.Tensor, y: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, int, float]:
        """Block-parallel CD in torch; returns ``(alpha, epochs, gap)``."""
        n, C = phi.shape[0], float(self.C)
        cost = _cost_matrix(y, k, phi.dtype)
        sq_norms = (phi * phi).sum(1)
        usable = (
            (sq_norms > 0).nonzero().squeeze(1)
        )  # phi_i = 0 leaves the dual unchanged: alpha_i = 0
        alpha = phi.new_zeros(n, k)
        weight = phi.new_zeros(k, phi.shape[1])
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        gap = float("inf")
        bar = tqdm(
            range(self.max_iter + 1), disable=not self.progress, desc="CS-SVM dual", leave=False
        )
        for epoch in bar:
            scores = phi @ weight.T
            losses = hinge_losses(scores, y)
            ww = (weight * weight).sum()
            gap = relative_gap(
                float(0.5 * ww + C * losses.sum()), float(0.5 * ww + (alpha * cost).sum())
            )
            bar.set_postfix(gap=f"{gap:.1e}")
            if gap <= self.tol or epoch == self.max_iter:
                break
            # shrinking: alpha_i = 0 with margin > 1 is optimal for this epoch's W
            candidates = usable[(losses[usable] > 0) | (alpha[usable] != 0).any(1)]
            order = candidates[torch.randperm(candidates.numel(), generator=gen).to(phi.device)]
            for block in order.split(self.block_size):
                self._block_step(
                    phi[block], y[block], cost[block], sq_norms[block], alpha, block, weight, C
                )
        return alpha, epoch, gap

    @staticmethod
    def _block_step(
        phi_b: torch.Tensor,
        y_b: torch.Tensor,
        cost_b: torch.Tensor,
        sq_b: torch.Tensor,
        alpha: torch.Tensor,
        block: torch.Tensor,
        weight: torch.Tensor,
        C: float,
    ) -> None:
        """One block: batched sub-problem solutions, then the exact line search (in place)."""
        alpha_b = alpha[block]
        grad = phi_b @ weight.T + cost_b
        direction = solve_subproblems(grad, alpha_b, sq_b, y_b, C) - alpha_b
        delta_w = direction.T @ phi_b
        curvature = (delta_w * delta_w).sum()
        slope = (direction * grad).sum()
        # t = clamp(-slope / curvature, 0, 1) without a host sync (slope <= 0 for a descent direction)
        step = (-slope / curvature.clamp_min(1e-300)).clamp(0.0, 1.0)
        weight.add_(step * delta_w)
        alpha[block] = alpha_b + step * direction

    def _set_fitted(self, phi: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor) -> None:
        weight = alpha.T @ phi  # exact dual identity
        self.dual_coef_ = alpha
        self.primal_objective_, self.dual_objective_, self.duality_gap_ = objectives(
            phi, y, weight, alpha, float(self.C)
        )
        if self.fit_intercept:
            self.coef_ = weight[:, :-1].contiguous()
            self.intercept_ = weight[:, -1] * float(self.intercept_scaling)
        else:
            self.coef_ = weight
            self.intercept_ = weight.new_zeros(weight.shape[0])
        strength = alpha.abs().amax(1)
        self.support_ = (strength >= self.support_threshold * float(self.C)).nonzero().squeeze(1)


@functools.cache
def _sequential_kernels():
    """The compiled ``svm_sequential`` module, loaded (and, once per installation, compiled) on first use."""
    try:
        from dattr_eval.explainers import svm_sequential
    except ImportError as err:
        raise ImportError(
            'CrammerSingerSVC(method="sequential") needs numba (pip install numba); '
            'method="block" runs without it'
        ) from err
    # the first call of each kernel loads (or compiles) its machine code: do it on a 2 x 2 problem
    one = np.ones((2, 2))
    zeros = np.zeros(2, dtype=np.int64)
    svm_sequential.cs_epoch(
        one,
        zeros,
        one.sum(1),
        1.0,
        np.zeros((2, 2)),
        np.zeros((2, 2)),
        np.arange(2),
        2,
        np.full(2, 2),
        np.tile(np.arange(2), (2, 1)),
        zeros.copy(),
    )
    svm_sequential.cs_gap_terms(one, zeros, one, one)
    svm_sequential.seed(0)
    return svm_sequential


def _now(device: torch.device) -> float:
    """``perf_counter`` after the device's queued work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
