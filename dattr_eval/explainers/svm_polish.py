"""Second-order finish for the Crammer–Singer dual: an interior-point solve on the unsettled samples.

Why. Sequential dual coordinate descent (``svm_sequential``) settles most samples quickly — at
``alpha_i = 0`` (margin > 1) or at the box bound with one violating class — but its tail, on the few
hundred samples that sit exactly on a margin or on a tie between classes, converges slowly, and the
certificate of ``svm.CrammerSingerSVC`` needs that tail: near the kinks of the hinge, ``P(W) - P*``
grows linearly with ``||W - W*||``, so a relative weight bound of 1e-3 asks for ``W`` to about 1e-8.

What. Given a feasible dual point ``alpha`` (``(n, K)``) with ``W = alpha^T Phi``, the dual gradient
``G = Phi W^T + e`` (``e_im = [m != y_i]``) shows which classes are still in play: a class is a
*candidate* of sample ``i`` when its ``alpha_im`` is strictly inside its box or ``G_im`` is within
``window`` (margin units) of the sample's largest gradient. Samples with one candidate are frozen
(their row is then determined by the constraints); the dual restricted to the others — ``alpha`` of
the candidates, the rest of the row at its bound, ``sum_m alpha_im = 0`` per row — is a QP with a
few thousand variables in the ``K d`` numbers of ``W``:

    min_x 1/2 ||W_rest + x^T Phi_S||^2 + e.x   s.t.  x_im <= C [m == y_i],  sum_{m in F_i} x_im = r_i

:func:`interior_point` solves it by Mehrotra's predictor-corrector primal-dual method. Each Newton
system is reduced, row by row, to ``(I + sum_i T_i (x) phi_i phi_i^T) dW = rhs`` of size
``K d``, with ``T_i`` the rank ``f_i - 1`` matrix of the row's barrier weights (:func:`newton_matrix`: one
weighted Gram matrix per pair of classes, then one Cholesky factorisation), so an iteration costs
``O(|S| f^2 d^2 + (K d)^3 / 3)``. Near the end, :func:`purify` guesses which
candidates sit at their bound (``slack / C < multiplier``), puts them exactly there and solves the
equalities of the remaining face exactly (a small dense system in the free directions), which
removes the interior-point's residual distance to the kinks.

Checks. After a round, :func:`polish` recomputes ``G`` for every sample; frozen classes whose
gradient exceeds their row's candidate level violate the optimality conditions and become
candidates for another round. Every point returned is dual-feasible by construction (rows are
written whole, sums restored exactly), so ``svm.CrammerSingerSVC`` certifies it with the same exact
certificate as any coordinate-descent iterate; nothing here is trusted without it.

Applies when ``K d <= MAX_NEWTON_SIZE`` (the dense factorisation); beyond it the solver keeps to
coordinate descent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import scipy.linalg

#: largest ``K d`` for which the dense Newton matrix is factorised (640 for 10 classes x 64 features)
MAX_NEWTON_SIZE = 1536
#: candidate classes: gradient within this many margin units of the row's largest
WINDOW = 1e-2
#: alpha within this fraction of C of its bound counts as at the bound (rounding residue of CD)
RESIDUE = 1e-12
#: gradient excess (margin units) of a frozen class over its row's level that counts as a violation
VIOLATION_TOL = 1e-9
#: the interior point first tries :func:`purify` once its mean complementarity is below this times
#: C, then again at every tenfold decrease
PURIFY_MU = 1e-6
#: and stops once it is below this times C
FINAL_MU = 1e-15
#: the interior point starts centred at this complementarity times C (:func:`warm_start`)
START_MU = 3e-3
#: smallest starting multiplier (margin units) of a candidate below its row's top gradient
START_GAP = 1e-2
#: :func:`purify` guesses a candidate free when its ``slack / C`` exceeds this times its multiplier
#: (a strict guess: :func:`active_set` frees missing classes more reliably than it bounds spurious
#: ones; on the 60k Fashion-MNIST features at C = 1e-3 the face is then found one iteration
#: earlier than at 100, and no other measured case needed more iterations)
FREE_EVIDENCE = 1000.0


class RestrictedDual(NamedTuple):
    """The dual restricted to the candidate classes of rows ``rows`` (``ns`` of them).

    Attributes:
        rows: ``(ns,)`` indices of the rows in the training set.
        candidates: ``(ns, K)`` bool, at least two per row.
        features: ``(ns, d')`` float64 ``phi_i`` on the ``d'`` columns that are not zero in every
            row (``W``'s other columns are not moved by these rows and are left out).
        pair_classes: ``(P, 2)`` every two classes ``a < b`` that are both candidates of some
            rows (for :func:`newton_matrix`); pair ``p``'s rows are ``pair_rows[pair_starts[p] :
            pair_starts[p + 1]]``.
        pair_starts: ``(P + 1,)`` offsets into ``pair_rows``.
        pair_rows: ``(M,)`` indices into the ``ns`` rows, pair after pair.
        pair_features: ``(M, d')`` ``features[pair_rows]``.
        upper: ``(ns, K)`` box bounds ``C [m == y_i]``.
        cost: ``(ns, K)`` linear cost ``e_im = [m != y_i]``.
        row_sums: ``(ns,)`` ``r_i = -sum`` of the non-candidate bounds (the candidates' sum).
        weight_rest: ``(K, d')`` ``W`` of every other dual variable (frozen rows, bounds).
    """

    rows: np.ndarray
    candidates: np.ndarray
    features: np.ndarray
    pair_classes: np.ndarray
    pair_starts: np.ndarray
    pair_rows: np.ndarray
    pair_features: np.ndarray
    upper: np.ndarray
    cost: np.ndarray
    row_sums: np.ndarray
    weight_rest: np.ndarray

    def weight(self, x: np.ndarray) -> np.ndarray:
        """``W (K, d')`` for candidate values ``x (ns, K)`` (zero off the candidates)."""
        return self.weight_rest + x.T @ self.features

    def gradient(self, weight: np.ndarray) -> np.ndarray:
        """Dual gradient ``(ns, K)`` on the candidates (zero elsewhere) for ``weight (K, d')``."""
        return np.where(self.candidates, self.features @ weight.T + self.cost, 0.0)

    def objective(self, x: np.ndarray) -> float:
        """The dual objective ``1/2 ||W||^2 + e.alpha`` up to the frozen rows' constant."""
        weight = self.weight(x)
        return 0.5 * float(np.einsum("ij,ij->", weight, weight)) + float((self.cost * x).sum())


class InteriorPoint(NamedTuple):
    """An iterate of :func:`interior_point`: ``x``, ``slack = upper - x``, ``multiplier >= 0`` (all
    ``(ns, K)``, zero off the candidates), the row levels ``beta (ns,)`` and its iteration number."""

    x: np.ndarray
    slack: np.ndarray
    multiplier: np.ndarray
    beta: np.ndarray
    iteration: int

    def mu(self) -> float:
        """Mean complementarity ``slack * multiplier`` over the candidates."""
        return float((self.slack * self.multiplier).sum()) / max(int((self.slack > 0).sum()), 1)


class Face(NamedTuple):
    """A solution ``x (ns, K)`` of the restricted dual and its ``free (ns, K)`` candidates (the
    others at their bound)."""

    x: np.ndarray
    free: np.ndarray


class Polished(NamedTuple):
    """Result of :func:`polish`: the feasible dual ``alpha (n, K)``, its ``weight = alpha^T X``
    ``(K, d)``, the interior-point iterations (all rounds) and the rounds."""

    alpha: np.ndarray
    weight: np.ndarray
    iterations: int
    rounds: int


def window_for(weight_bound: float) -> float:
    """The candidate window for a dual point whose certified relative weight error is ``weight_bound``.

    Gradient errors shrink with the weight error, so the window does too: a sixth of the bound,
    within ``[WINDOW, 5 WINDOW]`` (a heuristic: a class the window misses shows up as a violation
    of the optimality conditions after the round and joins the next one, see :func:`polish`).
    """
    return min(max(weight_bound / 6, WINDOW), 5 * WINDOW)


def upper_bounds(y: np.ndarray, n_classes: int, C: float) -> np.ndarray:
    """``(n, K)`` box bounds ``C [m == y_i]``."""
    upper = np.zeros((y.shape[0], n_classes))
    upper[np.arange(y.shape[0]), y] = C
    return upper


def candidate_classes(
    alpha: np.ndarray,
    gradient: np.ndarray,
    upper: np.ndarray,
    usable: np.ndarray,
    C: float,
    window: float,
) -> np.ndarray:
    """``(n, K)`` bool: classes strictly inside their box or within ``window`` of the row's largest gradient.

    Rows that are not ``usable`` (``phi_i = 0``: at their optimum from the start) have none.
    """
    inside = alpha < upper - RESIDUE * C
    near_top = gradient >= gradient.max(1, keepdims=True) - window
    return (inside | near_top) & usable[:, None]


def violations(gradient: np.ndarray, candidates: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """``(n, K)`` bool: non-candidate classes whose gradient exceeds the row's largest candidate one.

    At an optimum of the restricted problem the candidates' gradient level ``beta_i`` is the
    largest over the free ones and every class at its bound needs ``G_im <= beta_i``.
    """
    level = np.where(candidates, gradient, -np.inf).max(1, keepdims=True)
    return ~candidates & (gradient > level + VIOLATION_TOL) & usable[:, None]


def restrict(
    X: np.ndarray,
    y: np.ndarray,
    alpha: np.ndarray,
    weight: np.ndarray,
    candidates: np.ndarray,
    C: float,
) -> tuple[RestrictedDual, np.ndarray]:
    """The :class:`RestrictedDual` of the rows with >= 2 candidates and its start ``x (ns, K)``.

    The start is ``alpha`` on the candidates, shifted evenly within each row so that it sums to the
    row's ``r_i`` exactly (non-candidates are put exactly at their bound).
    """
    rows = np.flatnonzero(candidates.sum(1) >= 2)
    cand = candidates[rows]
    features = X[rows]
    used = (features != 0).any(0)  # other columns of W do not move: drop them
    features = np.ascontiguousarray(features[:, used])
    upper = upper_bounds(y[rows], alpha.shape[1], C)
    cost = np.where(upper > 0, 0.0, 1.0)
    row_alpha = alpha[rows]
    fixed = np.where(cand, 0.0, upper)
    row_sums = -fixed.sum(1)
    x = np.where(cand, row_alpha, 0.0)
    x += np.where(cand, ((row_sums - x.sum(1)) / cand.sum(1))[:, None], 0.0)
    weight_rest = weight[:, used] - (row_alpha - fixed).T @ features
    pair_classes, pair_rows = [], []
    for a, b in zip(*np.triu_indices(cand.shape[1], 1), strict=True):
        both = np.flatnonzero(cand[:, a] & cand[:, b])
        if both.size:
            pair_classes.append((a, b))
            pair_rows.append(both)
    pair_starts = np.cumsum([0, *(len(r) for r in pair_rows)])
    pair_rows = np.concatenate(pair_rows) if pair_rows else np.zeros(0, dtype=np.int64)
    problem = RestrictedDual(
        rows=rows,
        candidates=cand,
        features=features,
        pair_classes=np.array(pair_classes, dtype=np.int64).reshape(-1, 2),
        pair_starts=pair_starts,
        pair_rows=pair_rows,
        pair_features=features[pair_rows],
        upper=upper,
        cost=cost,
        row_sums=row_sums,
        weight_rest=weight_rest,
    )
    return problem, x


def interior_point(
    problem: RestrictedDual,
    start: np.ndarray,
    C: float,
    *,
    max_iter: int = 60,
) -> Iterator[InteriorPoint]:
    """Mehrotra predictor-corrector on ``problem`` from :func:`warm_start`; yields each iterate.

    Ends when the mean complementarity is at most ``FINAL_MU * C``, the steps stall, the Newton
    matrix cannot be factorised, or after ``max_iter`` iterations. Every step sums to zero in each
    row, so ``x`` keeps its row sums.
    """
    cand = problem.candidates
    k, d = problem.weight_rest.shape
    x, slack, multiplier, beta = warm_start(problem, start, START_MU * C, C)
    grad = problem.gradient(problem.weight(x))
    pairs = int(cand.sum())
    newton = np.empty((k * d, k * d))
    stalled = 0
    for iteration in range(1, max_iter + 1):
        mu = float((slack * multiplier)[cand].sum()) / pairs
        if mu <= FINAL_MU * C or stalled >= 3:
            return
        residual = np.where(cand, grad + multiplier - beta[:, None], 0.0)
        weights = np.where(cand, slack / np.where(cand, multiplier, 1.0), 0.0)
        factor = cholesky(newton_matrix(problem, weights, newton))
        if factor is None:
            return
        system = NewtonSystem(factor, weights, residual, slack, multiplier)
        # predictor (affine), then Mehrotra's corrector with centring sigma = (mu_aff / mu)^3
        dx, d_mult, _ = newton_step(problem, system, np.where(cand, -slack * multiplier, 0.0))
        step_p, step_d = max_step(slack, -dx, cand), max_step(multiplier, d_mult, cand)
        mu_affine = (
            float(((slack - step_p * dx) * (multiplier + step_d * d_mult))[cand].sum()) / pairs
        )
        sigma = min(1.0, (mu_affine / mu) ** 3)
        dx, d_mult, d_beta = newton_step(
            problem, system, np.where(cand, sigma * mu - slack * multiplier + dx * d_mult, 0.0)
        )
        step_p = min(1.0, 0.995 * max_step(slack, -dx, cand))
        step_d = min(1.0, 0.995 * max_step(multiplier, d_mult, cand))
        stalled = stalled + 1 if max(step_p, step_d) < 1e-6 else 0
        x = x + step_p * dx
        slack = np.where(cand, problem.upper - x, 1.0)
        multiplier = multiplier + step_d * d_mult
        beta = beta + step_d * d_beta
        grad = problem.gradient(problem.weight(x))
        yield InteriorPoint(x, np.where(cand, slack, 0.0), multiplier, beta, iteration)


def warm_start(
    problem: RestrictedDual, start: np.ndarray, mu: float, C: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A centred interior point ``(x, slack, multiplier, beta)`` at complementarity ``mu``.

    The gradient at ``start`` ranks each row's candidates: the top one is guessed free, every other
    candidate sits at slack ``mu / lambda`` from its bound with multiplier ``lambda`` = its
    gradient gap to the top (at least ``START_GAP``), its slack capped so that together they take
    at most ``C / 2`` of the row; the top candidate takes what the row sum leaves (a slack of at
    least ``C / 2``) and multiplier ``mu / slack``, and sets ``beta``. Centred
    (``slack * multiplier = mu``) and feasible; dual-feasible up to the change of ``W``.
    """
    cand = problem.candidates
    rows = np.arange(cand.shape[0])
    grad = problem.gradient(problem.weight(start))
    top = np.where(cand, grad, -np.inf).argmax(1)
    others = cand.copy()
    others[rows, top] = False
    gap = np.maximum(grad[rows, top][:, None] - grad, START_GAP)
    cap = 0.5 * C / np.maximum(cand.sum(1) - 1, 1)
    slack = np.where(others, np.minimum(mu / gap, cap[:, None]), 0.0)
    x = np.where(others, problem.upper - slack, 0.0)
    x[rows, top] = problem.row_sums - x.sum(1)
    slack = np.where(cand, problem.upper - x, 1.0)  # 1 off the candidates: safe to divide by
    multiplier = np.where(cand, mu / slack, 0.0)
    beta = problem.gradient(problem.weight(x))[rows, top] + multiplier[rows, top]
    return x, slack, multiplier, beta


def newton_matrix(problem: RestrictedDual, weights: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``I + sum_i T_i (x) phi_i phi_i^T`` (lower triangle, in ``out (K d', K d')``).

    ``T_i = diag(w_i) - w_i w_i^T / sum(w_i)`` over row ``i``'s candidates (``w = weights``) is
    ``sum_{a < b} c_ab (e_a - e_b)(e_a - e_b)^T`` with ``c_ab = w_a w_b / sum(w) >= 0``, so the
    matrix is ``I + sum_{a < b} (e_a - e_b)(e_a - e_b)^T (x) G_ab`` with one product
    ``G_ab = Phi^T diag(c_ab) Phi`` per pair of classes over the rows that have both: every term
    positive semi-definite, nothing cancels however many decades the weights span. Block
    ``(b, a)`` (``b > a``) is ``-G_ab``; diagonal block ``a`` is ``I`` plus the sum of the ``G``
    of its pairs, i.e. minus the sum of the off-diagonal blocks in its block row and column.
    """
    k, d = problem.weight_rest.shape
    rows, (first, second) = problem.pair_rows, problem.pair_classes.T
    pair_of = np.repeat(np.arange(len(first)), np.diff(problem.pair_starts))
    total = weights.sum(1)
    coef = weights[rows, first[pair_of]] * (weights[rows, second[pair_of]] / total[rows])
    scaled = problem.pair_features * np.sqrt(coef)[:, None]
    blocks = out.reshape(k, d, k, d)
    out[:] = 0.0
    for p, (a, b) in enumerate(problem.pair_classes):
        part = scaled[problem.pair_starts[p] : problem.pair_starts[p + 1]]
        blocks[b, :, a, :] = -(part.T @ part)  # numpy computes X^T X with a symmetric rank-k update
    # diagonal block a = -(sum over b of block (b, a) + sum over b of block (a, b)), lower ones only
    column_sums, row_sums = blocks.sum(0), blocks.sum(2)
    for a in range(k):
        blocks[a, :, a, :] = -(column_sums[:, a, :] + row_sums[a])
    out[np.diag_indices_from(out)] += 1.0
    return out


class NewtonSystem(NamedTuple):
    """One interior-point iteration's linearisation: the Cholesky ``factor`` of the ``K d`` Newton
    matrix, the barrier ``weights = slack / multiplier``, the dual ``residual = G + multiplier -
    beta`` and the current ``slack`` and ``multiplier`` (``(ns, K)``, zero off the candidates)."""

    factor: tuple
    weights: np.ndarray
    residual: np.ndarray
    slack: np.ndarray
    multiplier: np.ndarray


def newton_step(
    problem: RestrictedDual, system: NewtonSystem, complementarity: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, d_multiplier, d_beta)`` solving the Newton equations for a complementarity target.

    The equations ``(H + D) dx - dbeta_i 1 = h`` (``H`` the dual Hessian, ``D = multiplier /
    slack``, ``h = -residual - complementarity / slack``) and ``sum_m dx_im = 0`` reduce row by row
    to ``dx_i = T_i (h_i - (dW phi_i))`` with ``(I + sum_i T_i (x) phi_i phi_i^T) vec(dW) =
    sum_i T_i h_i (x) phi_i``.
    """
    cand, (k, d) = problem.candidates, problem.weight_rest.shape
    rhs = np.where(cand, -system.residual - complementarity / system.slack, 0.0)
    delta_w = scipy.linalg.cho_solve(
        system.factor,
        (weighted_centred(system.weights, rhs).T @ problem.features).ravel(),
        check_finite=False,
    ).reshape(k, d)
    rest = np.where(cand, rhs - problem.features @ delta_w.T, 0.0)
    dx = weighted_centred(system.weights, rest)
    d_beta = -(system.weights * rest).sum(1) / system.weights.sum(1)
    d_mult = np.where(cand, (complementarity + system.multiplier * dx) / system.slack, 0.0)
    return dx, d_mult, d_beta


def weighted_centred(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``T_i v_i = w_i * (v_i - (w_i . v_i) / sum(w_i))`` per row (``(ns, K)``; zero where ``w`` is)."""
    mean = (weights * values).sum(1, keepdims=True) / weights.sum(1, keepdims=True)
    return weights * (values - mean)


def max_step(value: np.ndarray, change: np.ndarray, mask: np.ndarray) -> float:
    """Largest ``t <= 1`` with ``value + t change >= 0`` on ``mask``."""
    shrinking = mask & (change < 0)
    if not shrinking.any():
        return 1.0
    return min(1.0, float((-value[shrinking] / change[shrinking]).min()))


def cholesky(matrix: np.ndarray):
    """``scipy.linalg.cho_factor`` of the lower triangle, with a growing diagonal shift if rounding
    made it indefinite; ``None`` if even that fails."""
    shift = 1e-12 * float(np.abs(np.diag(matrix)).max())
    for attempt in range(4):
        shifted = matrix if attempt == 0 else matrix + shift * 100.0**attempt * np.eye(len(matrix))
        try:
            return scipy.linalg.cho_factor(shifted, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            continue
    return None


def restore_sums(problem: RestrictedDual, x: np.ndarray, slack: np.ndarray) -> np.ndarray:
    """``x`` with each row's rounding drift from ``r_i`` moved onto its candidate of largest slack."""
    drift = problem.row_sums - np.where(problem.candidates, x, 0.0).sum(1)
    widest = np.where(problem.candidates, slack, -np.inf).argmax(1)
    x = x.copy()
    x[np.arange(x.shape[0]), widest] += drift
    return x


def purify(problem: RestrictedDual, point: InteriorPoint, C: float) -> Face | None:
    """The exact optimum of the face an interior point has identified, or ``None``.

    Candidates with ``slack / C >= FREE_EVIDENCE * multiplier`` are guessed free, the others at
    their bound (mid-way, :func:`active_set`'s swaps add missing free classes more reliably than
    they remove spurious ones). ``None`` also when the result's dual objective is above the point's.
    """
    free = problem.candidates & (point.slack / C >= FREE_EVIDENCE * point.multiplier)
    face = active_set(problem, free, point.x, point.slack, C)
    if face is None or problem.objective(face.x) > problem.objective(point.x):
        return None
    return face


def active_set(
    problem: RestrictedDual,
    free: np.ndarray,
    start: np.ndarray,
    preference: np.ndarray,
    C: float,
    max_swaps: int = 6,
) -> Face | None:
    """Primal-dual active-set steps from the guess ``free (ns, K)``; the optimum :class:`Face` or ``None``.

    The free candidates solve the face's equalities exactly (:func:`face_solution`), the others sit
    at their bound. Classes the guess got wrong — a free value beyond its bound, a bounded class
    whose gradient exceeds its row's level — swap sides, for ``max_swaps`` solves at most. A row
    left without a free class gets back the candidate of largest ``preference``. ``None`` if the
    swaps do not settle or :func:`face_solution` fails.
    """
    cand = problem.candidates
    free = free & cand
    for _ in range(max_swaps):
        stuck = ~free.any(1)  # every row keeps one free class to meet its sum
        free[stuck, np.where(cand[stuck], preference[stuck], -np.inf).argmax(1)] = True
        x = face_solution(problem, free, start)
        if x is None:
            return None
        grad = problem.gradient(problem.weight(x))
        level = np.where(free, grad, -np.inf).max(1, keepdims=True)
        beyond = free & (x > problem.upper + RESIDUE * C)
        rising = cand & ~free & (grad > level + VIOLATION_TOL)
        if not (beyond.any() or rising.any()):
            x = np.where(cand, np.minimum(x, problem.upper), 0.0)
            return Face(restore_sums(problem, x, np.where(free, problem.upper - x, -np.inf)), free)
        free = (free & ~beyond) | rising
    return None


def face_solution(
    problem: RestrictedDual, free: np.ndarray, start: np.ndarray
) -> np.ndarray | None:
    """Minimiser ``(ns, K)`` of the restricted dual with the non-``free`` candidates at their bound.

    From ``start`` on the free entries (shifted to meet the row sums) one exact Newton step in the
    ``p`` free directions ``u`` (each free class against its row's first): ``Q u = -(G_m - G_b)``
    with ``Q_pq = <e_m - e_b, e_m' - e_b'> phi_i . phi_j``. ``None`` if ``p > K d'`` (the system would be singular) or
    ``Q`` is not numerically positive definite.
    """
    cand = problem.candidates
    x = np.where(free, start, np.where(cand, problem.upper, 0.0))
    x += np.where(free, ((problem.row_sums - x.sum(1)) / free.sum(1))[:, None], 0.0)
    base = free.argmax(1)
    is_base = np.zeros_like(free)
    is_base[np.arange(free.shape[0]), base] = True
    rows, classes = np.nonzero(free & ~is_base)
    if rows.size > problem.weight_rest.size:
        return None
    if rows.size:
        grad = problem.gradient(problem.weight(x))
        bases = base[rows]
        feats = problem.features[rows]
        overlap = same(classes, classes) - same(classes, bases) - same(bases, classes)
        overlap += same(bases, bases)
        try:
            factor = scipy.linalg.cho_factor(
                (feats @ feats.T) * overlap, lower=True, check_finite=False
            )
        except np.linalg.LinAlgError:
            return None
        u = scipy.linalg.cho_solve(factor, grad[rows, bases] - grad[rows, classes])
        x[rows, classes] += u
        np.subtract.at(x, (rows, bases), u)
    return x


def same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` float indicator of ``a_p == b_q``."""
    return (a[:, None] == b[None, :]).astype(float)


def polish(
    X: np.ndarray,
    y: np.ndarray,
    alpha: np.ndarray,
    C: float,
    *,
    weight: np.ndarray | None = None,
    sq_norms: np.ndarray | None = None,
    window: float = WINDOW,
    max_rounds: int = 6,
    good_enough: Callable[[np.ndarray, np.ndarray], bool] | None = None,
) -> Polished:
    """Interior-point rounds on the unsettled rows of the feasible dual ``alpha (n, K)``.

    Round 1 runs :func:`interior_point_round` on the candidates (:func:`candidate_classes`). If
    classes outside them then violate the optimality conditions (:func:`violations`), the next
    round restricts to those classes with their rows' windows plus the rows the last round left
    with two or more free classes (every other row stays as the last round left it), a much
    smaller problem.

    Args:
        X: ``(n, d)`` float64 C-contiguous features.
        y: ``(n,)`` int64 labels.
        alpha: ``(n, K)`` feasible dual rows (not modified).
        C: box bound.
        weight: ``(K, d)`` ``alpha^T X`` if the caller has it (a coordinate-descent running ``W``,
            whose rounding drift only perturbs the first round's problem at that level: the
            returned ``weight`` is recomputed exactly); computed here if ``None``.
        sq_norms: ``(n,)`` ``||x_i||^2`` if the caller has them; computed here if ``None``.
        window: candidate window in margin units.
        max_rounds: rounds at most.
        good_enough: ``(alpha, W) -> bool`` called after each round on the point it leaves;
            ``True`` ends the polish. Its last call sees the point returned.

    Returns:
        :class:`Polished` with a feasible ``alpha``; it is not certified here.
    """
    upper = upper_bounds(y, alpha.shape[1], C)
    cost = np.where(upper > 0, 0.0, 1.0)
    usable = (np.einsum("ij,ij->i", X, X) if sq_norms is None else sq_norms) > 0
    alpha = alpha.copy()
    weight = alpha.T @ X if weight is None else weight
    grad = X @ weight.T + cost
    cand = candidate_classes(alpha, grad, upper, usable, C, window)
    iterations, rounds = 0, 0
    while rounds < max_rounds:
        problem, start = restrict(X, y, alpha, weight, cand, C)
        if problem.rows.size == 0:
            break
        rounds += 1
        face, done = interior_point_round(problem, start, C)
        iterations += done
        alpha[problem.rows] = np.where(problem.candidates, face.x, problem.upper)
        weight = alpha.T @ X
        if good_enough is not None and good_enough(alpha, weight):
            break
        grad = X @ weight.T + cost
        wrong = violations(grad, cand, usable)
        if not wrong.any():
            break
        # next: the rows still free in two or more classes, and the violating rows with windows
        # (violations are judged against the free classes, the level of each row)
        cand[problem.rows] = face.free  # rows with one free class are frozen at it
        cand |= wrong
        rows = wrong.any(1)
        cand[rows] |= candidate_classes(
            alpha[rows], grad[rows], upper[rows], usable[rows], C, window
        )
    return Polished(alpha, weight, iterations, rounds)


def interior_point_round(problem: RestrictedDual, start: np.ndarray, C: float) -> tuple[Face, int]:
    """:func:`interior_point` from ``start``, trying :func:`purify` from ``PURIFY_MU`` on and again
    at every tenfold decrease of ``mu``; ``(face, iterations)``: the purified face, else the last
    iterate with its guess of free classes (``slack / C >= multiplier``), else the start."""
    attempt, point = PURIFY_MU, None
    for point in interior_point(problem, start, C):
        if point.mu() <= attempt * C:
            face = purify(problem, point, C)
            if face is not None:
                return face, point.iteration
            attempt = point.mu() / C / 10
    if point is None:  # the first Newton matrix could not be factorised
        return Face(start, problem.candidates.copy()), 0
    x = restore_sums(problem, point.x, point.slack)
    return Face(x, problem.candidates & (point.slack / C >= point.multiplier)), point.iteration
