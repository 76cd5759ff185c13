"""Hessian-vector products of the mean training loss, and the inverse-Hessian solvers built on them.

``H = (1/n) sum_i d^2/dtheta^2 CE(f(x_i; theta), y_i) + damping * I`` over the chosen parameters
``theta`` (flattened in the order of their names, ``p`` entries). Products ``H V`` are computed
with ``torch.func`` (forward-over-reverse: ``jvp`` of ``grad``), vectorised over the rows of
``V`` with ``vmap`` and streamed over the training set in batches; ``H`` itself is formed only by
:func:`dense_hessian` (the ``exact`` solver, small models).

Solvers, each mapping right-hand sides ``B (m, p)`` to ``H^{-1} B``:

- :class:`ExactInverse`: dense ``H`` from ``p`` products, then a Cholesky (or LU) solve.
  Cost ``O(p)`` products + ``O(p^3)``; memory ``p^2`` (guarded by ``EXACT_MAX_PARAMS``).
- :func:`conjugate_gradient`: CG on every column at once; one pass over the data per iteration.
- :func:`lissa`: the stochastic Neumann series of Agarwal et al. (2017), as used by Koh & Liang.
- :class:`ArnoldiInverse`: Schioppa et al. (2022): an Arnoldi (Krylov) iteration from a seeded
  random start gives the top eigenpairs of ``H``; ``H^{-1}`` is approximated on their span.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp, vmap
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from dattr_eval.data.loading import make_loader

#: largest parameter count for which the ``exact`` solver builds the dense Hessian
#: (``p^2`` float64 entries: 5,000 parameters = 200 MB).
EXACT_MAX_PARAMS = 5_000


class TrainingHessian:
    """The operator ``V (m, p) -> V (H + damping I)`` for the mean cross-entropy training loss.

    Args:
        model: the network (used functionally; its parameters are not modified).
        dataset: the ``(x, y)`` samples whose mean loss defines ``H``.
        names: parameter names defining ``theta`` (see ``gradients.param_names``).
        damping: added to the diagonal, ``>= 0``.
        batch_size: samples per streamed batch.
        rhs_chunk: right-hand sides vectorised together (memory ``rhs_chunk x batch`` activations).

    Cost of one product ``op(V)``: one streamed pass over ``dataset``; per sample and row of
    ``V`` about 1.5 x a forward + backward pass (measured on a small CNN, CPU).
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: Dataset,
        names: Sequence[str],
        *,
        damping: float = 0.0,
        batch_size: int = 256,
        rhs_chunk: int = 64,
        device: torch.device | str | None = None,
        progress: bool = False,
    ) -> None:
        named = dict(model.named_parameters())
        self.model = model
        self.dataset = dataset
        self.names = list(names)
        self.shapes = [named[n].shape for n in self.names]
        self.damping = float(damping)
        self.batch_size = batch_size
        self.rhs_chunk = rhs_chunk
        self.progress = progress
        self.device = torch.device(device) if device is not None else named[self.names[0]].device
        self.theta = torch.cat([named[n].detach().reshape(-1) for n in self.names]).to(self.device)
        self.frozen = {n: p.detach() for n, p in named.items() if n not in set(self.names)}
        self.frozen.update({n: b for n, b in model.named_buffers()})
        self.dim = self.theta.numel()
        self.n = len(dataset)

    # ------------------------------------------------------------------ products
    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        sizes = [math.prod(s) for s in self.shapes]
        return {n: c.view(s) for n, c, s in zip(self.names, flat.split(sizes), self.shapes)}

    def _loss_sum(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(self.model, {**self.frozen, **self._unflatten(flat)}, (x,))
        return F.cross_entropy(out, y, reduction="sum")

    def batch_hvp(self, V: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``V (m, p)`` times the Hessian of the *summed* loss of one batch (no damping), ``(m, p)``.

        One right-hand side (Arnoldi, power iteration): double backward with plain autograd;
        several: ``vmap`` of forward-over-reverse ``jvp(grad)``, ``rhs_chunk`` at a time.
        """
        if V.shape[0] == 1:
            theta = self.theta.detach().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(self._loss_sum(theta, x, y), theta, create_graph=True)
                # <g, v> as a scalar: grad_outputs=v would import torch's symbolic shapes (sympy)
                (hv,) = torch.autograd.grad(g @ V[0], theta)
            return hv[None]
        grad_fn = grad(self._loss_sum)

        def one(v: torch.Tensor) -> torch.Tensor:
            return jvp(lambda w: grad_fn(w, x, y), (self.theta,), (v,))[1]

        hvp = vmap(one)
        return torch.cat(
            [hvp(V[i : i + self.rhs_chunk]) for i in range(0, V.shape[0], self.rhs_chunk)]
        )

    def minibatch_hvp(self, V: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``V (H_batch + damping I)``, ``H_batch`` the mean Hessian over one batch, ``(m, p)``."""
        return self.batch_hvp(V, x, y) / x.shape[0] + self.damping * V

    def __call__(self, V: torch.Tensor) -> torch.Tensor:
        """``V (H + damping I)`` for ``V (m, p)``: one streamed pass over the dataset."""
        out = torch.zeros_like(V)
        batches = make_loader(self.dataset, self.batch_size)
        for x, y in tqdm(
            batches, desc="Hessian-vector products", disable=not self.progress, leave=False
        ):
            out += self.batch_hvp(V, x.to(self.device), torch.as_tensor(y).long().to(self.device))
        return out / self.n + self.damping * V

    def minibatches(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless seeded stream of shuffled batches (a new permutation every epoch)."""
        epoch = 0
        while True:
            for x, y in make_loader(
                self.dataset, self.batch_size, shuffle=True, seed=seed * 100_003 + epoch
            ):
                yield x.to(self.device), torch.as_tensor(y).long().to(self.device)
            epoch += 1


# ---------------------------------------------------------------------- exact
def dense_hessian(op: TrainingHessian) -> torch.Tensor:
    """``H + damping I`` as a dense symmetric ``(p, p)`` float64 matrix (``p`` products).

    Raises:
        ValueError: ``p > EXACT_MAX_PARAMS``.
    """
    if op.dim > EXACT_MAX_PARAMS:
        raise ValueError(
            f"solver='exact' builds the dense Hessian, but the chosen parameters have {op.dim} "
            f"entries (> {EXACT_MAX_PARAMS}); use solver='cg', 'lissa' or 'arnoldi', or restrict "
            "params (e.g. params='last_layer')"
        )
    eye = torch.eye(op.dim, device=op.device, dtype=op.theta.dtype)
    h = op(eye).double()
    return (h + h.T) / 2


class ExactInverse:
    """``(H + damping I)^{-1}`` from the dense matrix: Cholesky, or LU when it is not positive definite."""

    def __init__(self, op: TrainingHessian) -> None:
        h = dense_hessian(op)
        self.factor, info = torch.linalg.cholesky_ex(h)
        self.cholesky = int(info) == 0
        if not self.cholesky:
            warnings.warn(
                "H + damping*I is not positive definite (the model is not at a minimum of the "
                "training loss, or damping is too small); using its indefinite inverse. "
                "Increase damping for a positive definite H.",
                stacklevel=3,
            )
            self.factor, self.pivots = torch.linalg.lu_factor(h)

    def solve(self, B: torch.Tensor) -> torch.Tensor:
        """``B (m, p) -> B H^{-1}`` (``H`` is symmetric), same dtype as ``B``."""
        rhs = B.double().T
        if self.cholesky:
            x = torch.cholesky_solve(rhs, self.factor)
        else:
            x = torch.linalg.lu_solve(self.factor, self.pivots, rhs)
        return x.T.to(B.dtype)


# ---------------------------------------------------------------------- CG
def conjugate_gradient(
    op: TrainingHessian, B: torch.Tensor, *, tol: float = 1e-5, max_iter: int = 200
) -> torch.Tensor:
    """Solve ``X (H + damping I) = B`` row by row with conjugate gradients, all rows at once.

    A row stops when its residual norm is ``<= tol * ||b||``; each iteration costs one streamed
    product for the rows still running. Warns if some row has not converged after ``max_iter``.
    """
    X = torch.zeros_like(B)
    R = B.clone()
    P = R.clone()
    rs = (R * R).sum(1)
    bound = (tol * B.norm(dim=1)) ** 2
    active = rs > bound
    for _ in range(max_iter):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        p = P[idx]
        Ap = op(p)
        curvature = (p * Ap).sum(1)
        if bool((curvature <= 0).any()):
            warnings.warn(
                "CG met non-positive curvature: H + damping*I is not positive definite; "
                "increase damping",
                stacklevel=3,
            )
        alpha = rs[idx] / curvature
        X[idx] += alpha[:, None] * p
        R[idx] -= alpha[:, None] * Ap
        rs_new = (R[idx] * R[idx]).sum(1)
        P[idx] = R[idx] + (rs_new / rs[idx])[:, None] * p
        rs[idx] = rs_new
        active[idx] = rs_new > bound[idx]
    if bool(active.any()):
        worst = float((rs[active] / (B[active] * B[active]).sum(1)).sqrt().max())
        warnings.warn(
            f"CG did not converge in max_iter={max_iter} iterations for {int(active.sum())} of "
            f"{B.shape[0]} right-hand sides (worst relative residual {worst:.2e} > tol={tol})",
            stacklevel=3,
        )
    return X


# ---------------------------------------------------------------------- LiSSA
def top_eigenvalue(op: TrainingHessian, *, iters: int = 20, seed: int = 0) -> float:
    """Largest-magnitude eigenvalue of ``H + damping I`` by seeded power iteration."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(1, op.dim, generator=gen).to(op.device, op.theta.dtype)
    v = v / v.norm()
    value = 0.0
    for _ in range(iters):
        w = op(v)
        value = float((v * w).sum())
        v = w / w.norm().clamp_min(1e-30)
    return value


def default_lissa_scale(op: TrainingHessian, *, seed: int = 0) -> float:
    """2 x the top eigenvalue of ``H + damping I``: stable while minibatch Hessians stay below 4 x it."""
    return 2.0 * abs(top_eigenvalue(op, seed=seed))


def lissa(
    op: TrainingHessian,
    B: torch.Tensor,
    *,
    depth: int = 1000,
    repeats: int = 1,
    scale: float,
    seed: int = 0,
) -> torch.Tensor:
    """LiSSA estimate of ``B (H + damping I)^{-1}``, ``(m, p)``.

    Each repeat runs ``h_0 = b``, ``h_t = b + h_{t-1} - h_{t-1} (H_t + damping I) / scale`` with
    ``H_t`` the mean Hessian of a seeded random minibatch, and returns ``h_depth / scale``; the
    repeats are averaged. Converges when ``scale`` exceeds half the largest eigenvalue of every
    ``H_t + damping I`` (see :func:`default_lissa_scale`), at rate ``1 - (lambda_min + damping) /
    scale`` per step. Cost: ``depth x repeats`` minibatch products.

    Raises:
        FloatingPointError: the recursion diverged (``scale`` too small).
    """
    estimate = torch.zeros_like(B)
    for r in range(repeats):
        batches = op.minibatches(seed + r)
        h = B.clone()
        for step in tqdm(
            range(depth), desc=f"LiSSA repeat {r + 1}", disable=not op.progress, leave=False
        ):
            x, y = next(batches)
            h = B + h - op.minibatch_hvp(h, x, y) / scale
            if step % 50 == 0 and not bool(torch.isfinite(h).all()):
                raise FloatingPointError(
                    f"LiSSA diverged at step {step}: lissa_scale={scale} is too small for this "
                    "Hessian; increase it"
                )
        estimate += h / scale
    if not bool(torch.isfinite(estimate).all()):
        raise FloatingPointError(f"LiSSA diverged: lissa_scale={scale} is too small; increase it")
    return estimate / repeats


# ---------------------------------------------------------------------- Arnoldi
def arnoldi_eigenpairs(
    op: TrainingHessian, *, n_iter: int = 100, top_k: int = 20, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``top_k`` eigenpairs (largest magnitude) of ``H + damping I`` (Schioppa et al. 2022).

    Runs ``n_iter`` Arnoldi steps from a seeded Gaussian start (one streamed product each, full
    re-orthogonalisation), then diagonalises the ``(n_iter, n_iter)`` Hessenberg matrix (symmetrised:
    ``H`` is symmetric). Memory: the Krylov basis, ``(n_iter + 1) x p`` in the model's dtype.

    Returns:
        eigenvalues ``(k,)`` float64 and orthonormal eigenvectors ``(k, p)`` (rows, the model's
        dtype), ``k <= top_k``.
    """
    dtype = op.theta.dtype
    gen = torch.Generator().manual_seed(seed)
    basis = torch.zeros(n_iter + 1, op.dim, dtype=dtype, device=op.device)
    start = torch.randn(op.dim, generator=gen, dtype=torch.float64)
    basis[0] = (start / start.norm()).to(op.device, dtype)
    hess = torch.zeros(n_iter + 1, n_iter, dtype=torch.float64)
    tiny = 100 * torch.finfo(dtype).eps
    for j in tqdm(range(n_iter), desc="Arnoldi", disable=not op.progress, leave=False):
        w = op(basis[j][None])[0]
        for _ in range(2):  # Gram-Schmidt twice keeps the basis orthonormal in floating point
            coef = basis[: j + 1] @ w
            hess[: j + 1, j] += coef.double().cpu()
            w = w - coef @ basis[: j + 1]
        hess[j + 1, j] = float(w.norm())
        if float(hess[j + 1, j]) <= tiny * float(hess[: j + 1, j].abs().max()):
            break  # invariant subspace found: the Krylov space is exhausted
        basis[j + 1] = w / w.norm()
    m = j + 1
    small = hess[:m, :m]
    values, vectors = torch.linalg.eigh((small + small.T) / 2)
    order = values.abs().argsort(descending=True)[: min(top_k, m)]
    eigvecs = vectors[:, order].T.to(op.device, dtype) @ basis[:m]
    return values[order].to(op.device), eigvecs


class ArnoldiInverse:
    """``(H + damping I)^{-1}`` restricted to the span of the top eigenvectors from Arnoldi."""

    def __init__(self, op: TrainingHessian, *, n_iter: int, top_k: int, seed: int) -> None:
        self.eigenvalues, self.eigenvectors = arnoldi_eigenpairs(
            op, n_iter=n_iter, top_k=top_k, seed=seed
        )

    def project(self, G: torch.Tensor) -> torch.Tensor:
        """Coordinates of ``G (m, p)`` on the eigenvectors, ``(m, k)``."""
        return G @ self.eigenvectors.to(G.dtype).T

    def precondition(self, C: torch.Tensor) -> torch.Tensor:
        """Coordinates ``C (m, k)`` divided by the eigenvalues: ``U^T H^{-1}`` on the span."""
        return (C.double() / self.eigenvalues).to(C.dtype)
