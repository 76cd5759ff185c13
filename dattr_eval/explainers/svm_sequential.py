"""Compiled sequential dual coordinate descent for the Crammer–Singer SVM (liblinear's ``Solver_MCSVM_CS``).

One call of :func:`cs_epoch` is one pass of liblinear's outer loop (Fan et al. 2008, appendix;
Keerthi et al. 2008) over the active samples, in the order given by ``index[:active_size]``: for
each sample ``i`` it forms the gradient ``G_m = w_m . phi_i + [m != y_i]`` (``(K,)``), shrinks
classes at their bound whose gradient is below the smallest free one (liblinear's ``be_shrunk``),
drops a sample once at most one class is left, solves the ``K``-variable sub-problem in closed
form (sort-based, liblinear's ``solve_sub_problem``) and updates ``W`` by ``delta_i phi_i``.
Rows are dense float64 (liblinear walks a sparse node list; zero features are skipped here too).

The per-epoch permutation, the shrinking schedule and the stopping rule (the relative duality
gap) live in ``svm.CrammerSingerSVC``; this module only holds the compiled loop. It needs numba,
imported here so that ``import dattr_eval`` does not.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, fastmath={"reassoc", "contract"})
def _dot(w: np.ndarray, x: np.ndarray) -> float:
    """``w . x`` for two contiguous ``(d,)`` rows (reassociation allowed, so it vectorises)."""
    total = 0.0
    for j in range(x.shape[0]):
        total += w[j] * x[j]
    return total


@njit(cache=True)
def _shrinkable(
    slot: int, y_slot: int, alpha_m: float, grad_m: float, C: float, min_grad: float
) -> bool:
    """liblinear ``be_shrunk``: the class in ``slot`` sits at its bound and its gradient is below ``min_grad``."""
    bound = C if slot == y_slot else 0.0
    return alpha_m == bound and grad_m < min_grad


@njit(cache=True)
def _subproblem(
    b: np.ndarray,
    n_act: int,
    y_slot: int,
    a_i: float,
    C: float,
    sorted_buf: np.ndarray,
    alpha_new: np.ndarray,
) -> None:
    """liblinear ``solve_sub_problem`` over the first ``n_act`` slots; writes ``alpha_new[:n_act]``.

    Minimises ``1/2 a_i ||a||^2 + b.a`` s.t. ``a_m <= C [m == y_slot]``, ``sum a = -(alpha of shrunk
    classes)``; ``a_m = min(bound_m, (beta - b_m) / a_i)`` with ``beta`` found on the sorted ``b``.
    """
    for m in range(n_act):
        sorted_buf[m] = b[m]
    if y_slot < n_act:
        sorted_buf[y_slot] += a_i * C
    for m in range(1, n_act):  # insertion sort, descending (n_act <= K is small)
        v = sorted_buf[m]
        r = m - 1
        while r >= 0 and sorted_buf[r] < v:
            sorted_buf[r + 1] = sorted_buf[r]
            r -= 1
        sorted_buf[r + 1] = v
    beta = sorted_buf[0] - a_i * C
    r = 1
    while r < n_act and beta < r * sorted_buf[r]:
        beta += sorted_buf[r]
        r += 1
    beta /= r
    for m in range(n_act):
        bound = C if m == y_slot else 0.0
        alpha_new[m] = min(bound, (beta - b[m]) / a_i)


@njit(cache=True)
def seed(value: int) -> None:
    """Seed the generator of :func:`cs_epoch`'s permutations (numba's own, one per thread)."""
    np.random.seed(value)


@njit(cache=True)
def cs_epoch(
    X: np.ndarray,
    y: np.ndarray,
    sq_norms: np.ndarray,
    C: float,
    alpha: np.ndarray,
    W: np.ndarray,
    index: np.ndarray,
    active_size: int,
    n_active: np.ndarray,
    class_slots: np.ndarray,
    y_slot: np.ndarray,
) -> tuple[int, float, int]:
    """One liblinear epoch: shuffle ``index[:active_size]``, visit it in order, update the state in place.

    Args:
        X: ``(n, d)`` float64 C-contiguous features.
        y: ``(n,)`` int64 labels in ``[0, K)``.
        sq_norms: ``(n,)`` ``||phi_i||^2``; samples with 0 are skipped (their alpha stays 0).
        C: box bound.
        alpha: ``(n, K)`` dual variables (class order), feasible on entry.
        W: ``(K, d)`` C-contiguous, ``== alpha^T X``.
        index: ``(n,)`` permutation; the first ``active_size`` entries are the unshrunk samples.
        active_size: number of unshrunk samples.
        n_active: ``(n,)`` number of unshrunk classes per sample.
        class_slots: ``(n, K)`` class held in each slot; the first ``n_active[i]`` are unshrunk.
        y_slot: ``(n,)`` slot holding ``y_i``.

    Returns:
        ``(active_size, stopping, work)``: samples left unshrunk, ``max_i (maxG - minG)`` over
        the samples updated (liblinear's stopping value; ``-inf`` if none), and the work done in
        length-``d`` row operations (gradient entries plus ``W`` row updates).
    """
    k = W.shape[0]
    g_slot = np.empty(k)
    b = np.empty(k)
    sorted_buf = np.empty(k)
    alpha_new = np.empty(k)
    for s in range(active_size - 1):  # Fisher-Yates, as liblinear's i + rand() % (active_size - i)
        r = np.random.randint(s, active_size)
        index[s], index[r] = index[r], index[s]
    stopping = -np.inf
    work = 0
    s = 0
    while s < active_size:
        i = index[s]
        a_i = sq_norms[i]
        if a_i <= 0.0:
            s += 1
            continue
        x_i = X[i]
        act = n_active[i]
        slots = class_slots[i]
        for m in range(act):  # gradient of the unshrunk classes only, in slot order
            g_slot[m] = _dot(W[slots[m]], x_i) + (0.0 if slots[m] == y[i] else 1.0)
        work += act
        min_g, max_g = np.inf, -np.inf
        for m in range(act):
            if alpha[i, slots[m]] < 0.0 and g_slot[m] < min_g:
                min_g = g_slot[m]
            max_g = max(max_g, g_slot[m])
        ys = y_slot[i]
        if ys < act and alpha[i, y[i]] < C and g_slot[ys] < min_g:
            min_g = g_slot[ys]
        # shrink classes at their bound (liblinear's swap-to-the-end loop)
        m = 0
        while m < act:
            if _shrinkable(m, ys, alpha[i, slots[m]], g_slot[m], C, min_g):
                act -= 1
                while act > m:
                    if not _shrinkable(act, ys, alpha[i, slots[act]], g_slot[act], C, min_g):
                        slots[m], slots[act] = slots[act], slots[m]
                        g_slot[m], g_slot[act] = g_slot[act], g_slot[m]
                        if ys == act:
                            ys = m
                        elif ys == m:
                            ys = act
                        break
                    act -= 1
            m += 1
        n_active[i] = act
        y_slot[i] = ys
        if act <= 1:  # nothing left to move: drop the sample for this round
            active_size -= 1
            index[s], index[active_size] = index[active_size], index[s]
            continue
        if max_g - min_g <= 1e-12:
            s += 1
            continue
        stopping = max(stopping, max_g - min_g)
        for m in range(act):
            b[m] = g_slot[m] - a_i * alpha[i, slots[m]]
        _subproblem(b, act, ys, a_i, C, sorted_buf, alpha_new)
        for m in range(act):
            c = slots[m]
            step = alpha_new[m] - alpha[i, c]
            if step != 0.0:
                alpha[i, c] = alpha_new[m]
                work += 1
                for j in range(x_i.shape[0]):  # W_c += step * phi_i
                    W[c, j] += step * x_i[j]
        s += 1
    return active_size, stopping, work


@njit(cache=True)
def cs_gap_terms(
    X: np.ndarray, y: np.ndarray, W: np.ndarray, alpha: np.ndarray
) -> tuple[float, float]:
    """``(sum_i hinge_i, sum_i alpha_{i, y_i})`` for ``X (n, d)``, ``W (K, d)``, ``alpha (n, K)``.

    ``hinge_i = max(0, max_{m != y_i} 1 + w_m.phi_i - w_{y_i}.phi_i)``; the objectives follow from
    these two sums and ``||W||^2``. One pass over ``X`` (``n K`` dot products), no ``(n, K)`` scores.
    """
    n, k = alpha.shape
    scores = np.empty(k)
    loss, own = 0.0, 0.0
    for i in range(n):
        x_i = X[i]
        for m in range(k):
            scores[m] = _dot(W[m], x_i)
        yi = y[i]
        worst = 0.0
        for m in range(k):
            if m != yi:
                worst = max(worst, 1.0 + scores[m] - scores[yi])
        loss += worst
        own += alpha[i, yi]
    return loss, own
