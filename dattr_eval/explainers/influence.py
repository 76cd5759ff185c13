"""Influence functions (Koh & Liang 2017) with exact, CG, LiSSA, Arnoldi, K-FAC and EK-FAC inverse-curvature solvers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from dattr_eval.explainers import register
from dattr_eval.explainers.gradient_kernel import GradientKernelExplainer
from dattr_eval.explainers.gradients import grad_dim, param_names
from dattr_eval.explainers.hessian import (
    ArnoldiInverse,
    ExactInverse,
    TrainingHessian,
    conjugate_gradient,
    default_lissa_scale,
    lissa,
)
from dattr_eval.explainers.kfac import (
    EIGENVALUE_CHUNK,
    KINDS,
    LABELS,
    KroneckerInverse,
    kronecker_layers,
)
from dattr_eval.explainers.layer_grads import layer_inputs
from dattr_eval.explainers.memory import (
    DEFAULT_MEMORY_BUDGET,
    FLOAT32,
    FLOAT64,
    activation_floats,
    block_bytes,
    parameter_count,
    parameter_modules,
    sample_batch,
)
from dattr_eval.validation import check_choice, check_positive

SOLVERS = ("exact", "cg", "lissa", "arnoldi", *KINDS)
#: activation copies per right-hand side in a forward-over-reverse Hessian-vector product
HVP_COPIES = 6
#: at most this many right-hand sides per vectorised Hessian-vector product
MAX_RHS_CHUNK = 64


@register("influence")
class InfluenceFunction(GradientKernelExplainer):
    """Influence functions: ``A[i, j] = grad L(x_i, c_i)^T H^{-1} grad L(x_j, y_j)``.

    ``L`` is the cross-entropy loss, gradients are taken over the chosen parameters ``theta``
    (``params``: default ``"last_layer"``; ``None`` for all trainable ones), and
    ``H = (1/n) sum_j d^2 L(x_j, y_j) / dtheta^2 + damping * I`` is the mean Hessian of the
    training loss plus damping. ``A[i, j] > 0`` means upweighting ``x_j`` lowers the test loss
    (it supports the prediction): this is minus Koh & Liang's ``I_up,loss``.

    Solvers (``solver=``), all through Hessian-vector products (``hessian.py``):

    - ``"exact"``: dense ``H`` (``p`` products), Cholesky. Small models only
      (``p <= hessian.EXACT_MAX_PARAMS``). Cost ``O(p n + p^3)`` at fit.
    - ``"cg"``: conjugate gradients on ``H s = g`` for each test gradient, ``cg_max_iter``
      streamed passes at most, stopping at relative residual ``cg_tol``.
    - ``"lissa"``: LiSSA (Agarwal et al. 2017), ``lissa_depth`` seeded minibatch steps,
      ``lissa_repeats`` averaged, scale ``lissa_scale`` (``None``: 2 x the top eigenvalue).
    - ``"arnoldi"``: Schioppa et al. (2022): ``arnoldi_iter`` Arnoldi steps (streamed products)
      give the ``arnoldi_top_k`` largest-magnitude eigenpairs ``(lambda_k, u_k)`` of ``H``;
      ``A[i, j] = sum_k (u_k . g_i)(u_k . g_j) / lambda_k``. Train gradients are projected as they
      stream, so memory is ``n_train x top_k`` plus the Krylov basis ``arnoldi_iter x p``.
    - ``"kfac"`` / ``"ekfac"`` (``kfac.py``): ``H`` replaced by the block-diagonal K-FAC or EK-FAC
      approximation of the Fisher (George et al. 2018; Grosse et al. 2023, as kronfluence), one
      block per ``nn.Linear`` / ``nn.Conv2d`` layer (other parameters raise ``ValueError``),
      fitted on the cross-entropy of labels drawn from the model's predictive distribution
      (``fisher_labels="sampled"``, seeded) or of the true labels (``"true"``). ``damping=None``
      uses kronfluence's heuristic, 0.1 x the mean eigenvalue of each layer. Cost at fit: two
      forward + backward passes (K-FAC: one) and the eigendecompositions of the factors; per
      ``explain`` batch, one rotation per layer: no Hessian-vector products at all.

    ``hessian_samples`` estimates ``H`` (or the K-FAC / EK-FAC factors) on a seeded random
    subset of that many training samples.

    Defaults: Arnoldi (30 steps) on the last layer's parameters — minutes for a whole digits
    leaderboard on 2 CPU cores, where CG over all parameters had not finished one benchmark after
    7 minutes. ``solver="cg", params=None`` is the exact-but-slow choice.

    Cost: one per-sample-gradient pass over the training set at ``fit``, kept in memory
    (``n_train x p``; ``arnoldi``: ``n_train x top_k``) when that fits ``memory_budget`` bytes,
    else recomputed in bounded blocks at each ``explain`` call (the same scores; see
    :mod:`~dattr_eval.explainers.gradient_kernel`); per ``explain`` batch, the test gradients and one
    inverse-Hessian solve for all of them at once (CG / LiSSA: each iteration is one streamed
    pass whose products are vectorised over the test gradients; its compute grows with their
    number). ``self_influence`` is ``g_j^T H^{-1} g_j``: closed form for ``exact``, ``arnoldi``,
    ``kfac``, ``ekfac``; ``cg``/``lissa`` solve for every training gradient.
    """

    summary = "influence functions: test gradient x inverse Hessian x train gradient"
    #: the inverse-curvature products keep several rows per right-hand side (rotations, CG vectors)
    query_copies = 6
    citation = (
        "Koh & Liang, Understanding Black-box Predictions via Influence Functions, ICML 2017; "
        "Schioppa et al., Scaling Up Influence Functions, AAAI 2022 (arnoldi); "
        "George et al., Fast Approximate Natural Gradient Descent in a Kronecker-factored "
        "Eigenbasis, NeurIPS 2018 and Grosse et al., Studying Large Language Model "
        "Generalization with Influence Functions, 2023 (ekfac)"
    )

    def __init__(
        self,
        solver: str = "arnoldi",
        damping: float | None = 1e-3,
        params: str | Sequence[str] | None = "last_layer",
        cg_tol: float = 1e-4,
        cg_max_iter: int = 100,
        lissa_depth: int = 1000,
        lissa_repeats: int = 1,
        lissa_scale: float | None = None,
        arnoldi_iter: int = 30,
        arnoldi_top_k: int = 20,
        fisher_labels: str = "sampled",
        hessian_samples: int | None = None,
        seed: int = 0,
        batch_size: int = 256,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        device: str | None = None,
        progress: bool = False,
    ) -> None:
        self.solver = solver
        self.damping = damping
        self.params = params
        self.cg_tol = cg_tol
        self.cg_max_iter = cg_max_iter
        self.lissa_depth = lissa_depth
        self.lissa_repeats = lissa_repeats
        self.lissa_scale = lissa_scale
        self.arnoldi_iter = arnoldi_iter
        self.arnoldi_top_k = arnoldi_top_k
        self.fisher_labels = fisher_labels
        self.hessian_samples = hessian_samples
        self.seed = seed
        self.batch_size = batch_size
        self.memory_budget = memory_budget
        self.device = device
        self.progress = progress

    # ------------------------------------------------------------------ fit
    def _check_hyperparameters(self) -> None:
        check_choice(self.solver, "solver", SOLVERS)
        check_choice(self.fisher_labels, "fisher_labels", LABELS)
        if self.damping is not None:
            check_positive(self.damping, "damping", allow_zero=True)
        elif self.solver not in KINDS:
            raise ValueError(
                "damping=None (0.1 x the mean eigenvalue) is for solver='kfac' or 'ekfac' only; "
                f"solver={self.solver!r} needs a number >= 0"
            )
        check_positive(self.cg_tol, "cg_tol")
        for name in (
            "cg_max_iter",
            "lissa_depth",
            "lissa_repeats",
            "arnoldi_iter",
            "arnoldi_top_k",
            "batch_size",
        ):
            check_positive(getattr(self, name), name, integer=True)
        if self.lissa_scale is not None:
            check_positive(self.lissa_scale, "lissa_scale")
        if self.hessian_samples is not None:
            check_positive(self.hessian_samples, "hessian_samples", integer=True)

    def _hessian_data(self, train_dataset: Dataset) -> Dataset:
        if self.hessian_samples is None or self.hessian_samples >= len(train_dataset):
            return train_dataset
        gen = torch.Generator().manual_seed(self.seed)
        return Subset(
            train_dataset,
            torch.randperm(len(train_dataset), generator=gen)[: self.hessian_samples].tolist(),
        )

    def _prepare(self, model: nn.Module, train_dataset: Dataset) -> None:
        """The inverse-curvature operator; the base then computes (or streams) the train gradients."""
        self._check_hyperparameters()
        self.param_names_ = param_names(model, self.params)
        data = self._hessian_data(train_dataset)
        if self.solver in KINDS:
            self.inverse_ = KroneckerInverse(
                model,
                data,
                self.param_names_,
                kind=self.solver,
                labels=self.fisher_labels,
                damping=self.damping,
                batch_size=self.batch_size,
                seed=self.seed,
                device=self.device_,
            )
        else:
            self._fit_hessian(model, data)

    def _fit_hessian(self, model: nn.Module, data: Dataset) -> None:
        """The Hessian operator and what the exact / LiSSA / Arnoldi solvers precompute from it."""
        self.hessian_ = TrainingHessian(
            model,
            data,
            self.param_names_,
            damping=self.damping,
            batch_size=self.batch_size,
            rhs_chunk=self._rhs_chunk(model, data),
            device=self.device_,
            progress=self.progress,
        )
        if self.solver == "exact":
            self.inverse_ = ExactInverse(self.hessian_)
        elif self.solver == "lissa":
            self.lissa_scale_ = self.lissa_scale or default_lissa_scale(
                self.hessian_, seed=self.seed
            )
        elif self.solver == "arnoldi":
            self.inverse_ = ArnoldiInverse(
                self.hessian_, n_iter=self.arnoldi_iter, top_k=self.arnoldi_top_k, seed=self.seed
            )

    # ------------------------------------------------------------------ kernel hooks
    def _projector(self, model: nn.Module, member: int):
        """Arnoldi: coordinates on the eigenvectors, ``(b, p) -> (b, k)``; else none."""
        return self.inverse_.project if self.solver == "arnoldi" else None

    def _width(self, model: nn.Module) -> int:
        if self.solver == "arnoldi":
            return int(self.inverse_.eigenvalues.shape[0])
        return grad_dim(model, self.params)

    def _estimated_width(self, model: nn.Module, train_dataset: Dataset) -> int:
        if self.solver == "arnoldi":
            return min(self.arnoldi_top_k, self.arnoldi_iter)
        return grad_dim(model, self.params)

    def _query_features(self, features: torch.Tensor, member: int) -> torch.Tensor:
        """Test gradients ``(m, p)`` (Arnoldi: coordinates ``(m, k)``) times ``H^{-1}``."""
        return self._precondition(features)

    def _rhs_chunk(self, model: nn.Module, data: Dataset) -> int:
        """Right-hand sides per vectorised Hessian-vector product, from the working budget.

        One product over a batch keeps about ``HVP_COPIES`` copies of the batch's activations
        per right-hand side (forward, backward and their tangents) plus the ``p`` entries of its
        gradient and tangent.
        """
        return max(1, min(MAX_RHS_CHUNK, self._work_budget() // self._rhs_bytes(model, data)))

    def _rhs_bytes(self, model: nn.Module, data: Dataset) -> int:
        """Bytes of one right-hand side in a vectorised Hessian-vector product over a batch."""
        names = param_names(model, self.params)
        acts = activation_floats(model, sample_batch(data), parameter_modules(model, names))
        return FLOAT32 * (HVP_COPIES * self.batch_size * acts + 4 * parameter_count(model, names))

    def _precondition(self, rep: torch.Tensor) -> torch.Tensor:
        """Gradients ``(m, p)`` (Arnoldi: coordinates ``(m, k)``) times ``H^{-1}``, same shape."""
        if self.solver == "cg":
            return conjugate_gradient(
                self.hessian_, rep, tol=self.cg_tol, max_iter=self.cg_max_iter
            )
        if self.solver == "lissa":
            return lissa(
                self.hessian_,
                rep,
                depth=self.lissa_depth,
                repeats=self.lissa_repeats,
                scale=self.lissa_scale_,
                seed=self.seed,
            )
        if self.solver == "exact":
            return self.inverse_.solve(rep)
        return self.inverse_.precondition(rep)  # arnoldi, kfac, ekfac

    def _solver_memory(
        self, model: nn.Module, train_dataset: Dataset, batch: int
    ) -> tuple[int, int, int]:
        """Dense Hessian and factor, Krylov basis, K-FAC factors and passes, CG / LiSSA vectors."""
        names = param_names(model, self.params)
        p = parameter_count(model, names)
        if self.solver == "exact":
            return 2 * block_bytes(p, p, FLOAT64), 2 * block_bytes(p, p, FLOAT64), 0
        if self.solver == "arnoldi":
            eigenvectors = block_bytes(min(self.arnoldi_top_k, self.arnoldi_iter), p)
            return eigenvectors, block_bytes(self.arnoldi_iter + 1, p), 0
        if self.solver in ("cg", "lissa"):
            # X, R, P, A P (CG) or h, B and the products (LiSSA) for the test batch, plus the
            # vectorised products (bounded by the working budget)
            hvp = min(MAX_RHS_CHUNK, batch) * self._rhs_bytes(model, train_dataset)
            return 0, 0, 5 * block_bytes(batch, p) + min(hvp, self._work_budget())
        return kronecker_memory(model, names, sample_batch(train_dataset), self.batch_size)


def kronecker_memory(
    model: nn.Module, names: list[str], sample: torch.Tensor, batch_size: int
) -> tuple[int, int, int]:
    """Bytes of K-FAC / EK-FAC fitted on batches of ``batch_size``: ``(held, fit working, 0)``.

    Held: the factors, per layer ``A``, ``S`` (float64), their eigenbases and eigenvalues. The passes:
    every layer's inputs and output gradients of a batch, ``(b, T, d_in' + d_out)`` float32, the
    float64 copies of one chunk of ``EIGENVALUE_CHUNK`` samples, and EK-FAC's rotated per-sample
    gradients and their squares, ``2 x (chunk, d_out, d_in')`` float64; plus the batch's
    activations kept for the backward.
    """
    layers = kronecker_layers(model, names)
    shapes: list[tuple[int, int, int]] = []

    def record(layer):
        def hook(module, args, _out):
            a = layer_inputs(module, args[0], layer.has_bias)
            shapes.append((a.shape[1], a.shape[2], layer.d_out))

        return hook

    handles = [lay.module.register_forward_hook(record(lay)) for lay in layers]
    try:
        with torch.no_grad():
            model(sample.to(next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    factors = sum(
        2 * (block_bytes(i, i, FLOAT64) + block_bytes(o, o, FLOAT64) + block_bytes(o, i, FLOAT64))
        for _, i, o in shapes
    )
    captured = sum(block_bytes(batch_size * t, i + o) for t, i, o in shapes)
    chunk = min(batch_size, EIGENVALUE_CHUNK)
    per_layer = max(
        block_bytes(chunk * t, i + o, FLOAT64) + 2 * block_bytes(chunk * o, i, FLOAT64)
        for t, i, o in shapes
    )
    acts = activation_floats(model, sample, parameter_modules(model, names))
    return factors, factors + captured + per_layer + block_bytes(batch_size, 2 * acts), 0
