"""Compiled sequential dual coordinate descent for the Crammer–Singer SVM (liblinear's ``Solver_MCSVM_CS``).

One call of :func:`cs_epoch` is one pass of liblinear's outer loop (Fan et al. 2008, appendix;
Keerthi et al. 2008) over the active samples, in the order given by ``index[:active_size]``: for
each sample ``i`` it forms the gradient of the dual (``(K,)``), shrinks classes at their bound
whose gradient is below the smallest free one (liblinear's ``be_shrunk``), drops a sample once at
most one class is left, solves the ``K``-variable sub-problem in closed form (sort-based,
liblinear's ``solve_sub_problem``) and updates ``W`` by ``delta_i phi_i``. Rows are dense float64
(liblinear walks a sparse node list; zero features are skipped here too).

Numerics: the dual gradient is ``w_m . phi_i + [m != y_i]``; the sub-problem only depends on it up
to a common shift, so the kernels use ``w_m . phi_i - [m == y_i]`` (liblinear's value minus 1).
The off-label entries then hold the scores alone, without a 1 added: when ``C ||phi_i||^2`` is
tiny (features near 0), ``1 + w.phi`` rounds to 1 and liblinear's sub-problem returns rows that do
not sum to 0. For the same reason :func:`cs_gap_terms` sums each sample's share of the duality gap
in a form that does not cancel.

The per-epoch permutation, the shrinking schedule and the stopping rule live in
``svm.CrammerSingerSVC``; this module only holds the compiled loop.

Compilation is lazy: the functions below are plain Python until :func:`compiled` imports numba and
replaces each of them in this module by its compiled version, so ``import dattr_eval`` does not
import numba. Compiled machine code is cached on disk (numba's ``cache=True``); numba's cache
index is a pickle, loaded when a later process compiles, so :func:`private_cache_dir` keeps it in
a directory only the current user can write (``$DATTR_EVAL_CACHE/numba`` or
``~/.cache/dattr_eval/numba``, mode 0700). A ``NUMBA_CACHE_DIR`` set by the user is used as it is
(its permissions are then the user's choice).
"""

from __future__ import annotations

import functools
import os
import stat
import sys
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np


def _dot(w: np.ndarray, x: np.ndarray) -> float:
    """``w . x`` for two contiguous ``(d,)`` rows (reassociation allowed, so it vectorises)."""
    total = 0.0
    for j in range(x.shape[0]):
        total += w[j] * x[j]
    return total


def _shrinkable(
    slot: int, y_slot: int, alpha_m: float, grad_m: float, C: float, min_grad: float
) -> bool:
    """liblinear ``be_shrunk``: the class in ``slot`` sits at its bound and its gradient is below ``min_grad``."""
    bound = C if slot == y_slot else 0.0
    return alpha_m == bound and grad_m < min_grad


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


def _shrink_sample(
    x_i: np.ndarray,
    y_i: int,
    alpha_i: np.ndarray,
    W: np.ndarray,
    C: float,
    slots: np.ndarray,
    act: int,
    ys: int,
    g_slot: np.ndarray,
) -> tuple[int, int, float, float]:
    """One sample's gradients and liblinear's shrinking of its classes (in place).

    Fills ``g_slot[:act]`` with the gradient (shifted by -1) of the classes in ``slots[:act]``,
    then moves the classes that sit at their bound with a gradient below the smallest free one
    behind the first ``act`` slots (liblinear's swap-to-the-end loop), keeping ``g_slot`` in slot
    order. Returns ``(act, ys, min_g, max_g)``: the classes left, the slot of ``y_i``, and the
    smallest free and largest gradients before shrinking (their difference is the violation).
    """
    for m in range(act):  # gradient (shifted by -1) of the unshrunk classes, in slot order
        g_slot[m] = _dot(W[slots[m]], x_i) - (1.0 if slots[m] == y_i else 0.0)
    min_g, max_g = np.inf, -np.inf
    for m in range(act):
        if alpha_i[slots[m]] < 0.0 and g_slot[m] < min_g:
            min_g = g_slot[m]
        max_g = max(max_g, g_slot[m])
    if ys < act and alpha_i[y_i] < C and g_slot[ys] < min_g:
        min_g = g_slot[ys]
    m = 0
    while m < act:
        if _shrinkable(m, ys, alpha_i[slots[m]], g_slot[m], C, min_g):
            act -= 1
            while act > m:
                if not _shrinkable(act, ys, alpha_i[slots[act]], g_slot[act], C, min_g):
                    slots[m], slots[act] = slots[act], slots[m]
                    g_slot[m], g_slot[act] = g_slot[act], g_slot[m]
                    if ys == act:
                        ys = m
                    elif ys == m:
                        ys = act
                    break
                act -= 1
        m += 1
    return act, ys, min_g, max_g


def seed(value: int) -> None:
    """Seed the generator of :func:`cs_epoch`'s permutations (numba's own, one per thread)."""
    np.random.seed(value)


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
    shuffle: bool,
) -> tuple[int, float, int]:
    """One liblinear epoch: shuffle ``index[:active_size]`` (if ``shuffle``), visit it in order, update the state in place.

    Args:
        X: ``(n, d)`` float64 C-contiguous features.
        y: ``(n,)`` int64 labels in ``[0, K)``.
        sq_norms: ``(n,)`` ``||phi_i||^2``; samples with 0 are skipped (their alpha is not changed).
        C: box bound.
        alpha: ``(n, K)`` dual variables (class order), feasible on entry.
        W: ``(K, d)`` C-contiguous, ``== alpha^T X``.
        index: ``(n,)`` permutation; the first ``active_size`` entries are the unshrunk samples.
        active_size: number of unshrunk samples.
        n_active: ``(n,)`` number of unshrunk classes per sample.
        class_slots: ``(n, K)`` class held in each slot; the first ``n_active[i]`` are unshrunk.
        y_slot: ``(n,)`` slot holding ``y_i``.
        shuffle: visit ``index[:active_size]`` in a fresh random order (liblinear's); ``False``
            visits it as it is.

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
    for s in range(active_size - 1 if shuffle else 0):  # Fisher-Yates, as liblinear's
        r = np.random.randint(s, active_size)  # i + rand() % (active_size - i)
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
        slots = class_slots[i]
        work += n_active[i]
        act, ys, min_g, max_g = _shrink_sample(
            x_i, y[i], alpha[i], W, C, slots, n_active[i], y_slot[i], g_slot
        )
        n_active[i] = act
        y_slot[i] = ys
        if act <= 1:  # nothing left to move: drop the sample for this round
            active_size -= 1
            index[s], index[active_size] = index[active_size], index[s]
            continue
        # liblinear skips violations <= 1e-12; a step moves alpha by violation / a_i, so with
        # tiny features (a_i C < 1) the threshold shrinks with a_i C
        if max_g - min_g <= 1e-12 * min(1.0, a_i * C):
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


def cs_gap_terms(
    X: np.ndarray, y: np.ndarray, W: np.ndarray, alpha: np.ndarray, C: float
) -> tuple[float, float, float]:
    """``(sum_i hinge_i, sum_i (C hinge_i - alpha_{i, y_i}), scale)`` for ``X (n, d)``, ``W (K, d)``, ``alpha (n, K)``.

    ``hinge_i = max(0, 1 + delta_i)`` with ``delta_i = max_{m != y_i} (w_m - w_{y_i}).phi_i``; the
    second sum is computed per sample as ``(C - alpha_iy) + C delta_i`` where the hinge is active,
    so it keeps its precision when every ``delta_i`` is tiny; ``scale`` sums the magnitudes of its
    terms (for a rounding allowance). With ``||W||^2`` these give the primal
    ``1/2 ||W||^2 + C sum hinge`` and the absolute duality gap ``||W||^2 + second sum``
    (``svm.gap_terms`` is the torch version). One pass over ``X`` (``n K`` dot products), no
    ``(n, K)`` scores.
    """
    n, k = alpha.shape
    scores = np.empty(k)
    loss, gap, scale = 0.0, 0.0, 0.0
    for i in range(n):
        x_i = X[i]
        for m in range(k):
            scores[m] = _dot(W[m], x_i)
        yi = y[i]
        other = -np.inf
        for m in range(k):
            if m != yi:
                other = max(other, scores[m])
        delta = other - scores[yi]
        own = alpha[i, yi]
        if delta > -1.0:
            loss += 1.0 + delta
            gap += (C - own) + C * delta
            scale += abs(C - own) + C * (abs(other) + abs(scores[yi]))
        else:
            gap -= own
            scale += abs(own)
    return loss, gap, scale


#: compile options of each kernel; helpers first, so that the kernels calling them see compiled ones
_JIT_OPTIONS: dict[str, dict] = {
    "_dot": {"fastmath": {"reassoc", "contract"}},
    "_shrinkable": {},
    "_shrink_sample": {},
    "_subproblem": {},
    "seed": {},
    "cs_epoch": {},
    "cs_gap_terms": {},
}


def private_cache_dir() -> Path | None:
    """A directory for numba's on-disk cache that only the current user can write, or ``None``.

    ``$DATTR_EVAL_CACHE/numba`` (default ``~/.cache/dattr_eval/numba``), created with mode 0700;
    an existing one owned by this user is set to 0700. ``None`` (with a warning) when it is owned
    by another user or cannot be created: the kernels are then compiled without a disk cache.
    """
    root = Path(os.environ.get("DATTR_EVAL_CACHE") or Path.home() / ".cache" / "dattr_eval")
    path = root / "numba"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise PermissionError(f"{path} is owned by uid {info.st_uid}, not by this user")
        if stat.S_IMODE(info.st_mode) != 0o700:
            path.chmod(0o700)
    except OSError as err:
        warnings.warn(
            f"numba's kernel cache is disabled ({err}); the CrammerSingerSVC kernels are compiled "
            "in every process (a few seconds)",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return path


#: the plain Python functions, compiled by :func:`compiled` (kept to recompile after a cache clear)
_PYTHON_FUNCTIONS = {name: globals()[name] for name in _JIT_OPTIONS}


@functools.cache
def compiled() -> ModuleType:
    """This module with every kernel compiled by numba (imported here); raises ``ImportError`` without it.

    The disk cache goes to :func:`private_cache_dir` unless ``NUMBA_CACHE_DIR`` is set. Each
    kernel is called once on a 2 x 2 problem, so that loading (or, once per installation,
    compiling) its machine code happens here and not in the first solve.
    """
    import numba

    user_dir = os.environ.get("NUMBA_CACHE_DIR")
    cache_dir = None if user_dir else private_cache_dir()
    previous = numba.config.CACHE_DIR
    if cache_dir is not None:
        numba.config.CACHE_DIR = str(cache_dir)  # read when each dispatcher sets up its cache
    try:
        namespace = globals()
        for name, options in _JIT_OPTIONS.items():
            namespace[name] = numba.njit(cache=bool(user_dir) or cache_dir is not None, **options)(
                _PYTHON_FUNCTIONS[name]
            )
    finally:
        numba.config.CACHE_DIR = previous
    one, zeros = np.ones((2, 2)), np.zeros(2, dtype=np.int64)
    state = (np.zeros((2, 2)), np.zeros((2, 2)), np.arange(2), 2, np.full(2, 2))
    cs_epoch(one, zeros, one.sum(1), 1.0, *state, np.tile(np.arange(2), (2, 1)), zeros.copy(), True)
    cs_gap_terms(one, zeros, one, one, 1.0)
    seed(0)
    return sys.modules[__name__]
