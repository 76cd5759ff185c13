"""TRAK (Park et al. 2023): projected margin gradients, a Gauss–Newton kernel and out-to-loss weights."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.data.loading import make_loader
from dattr_eval.explainers import register
from dattr_eval.explainers.base import Explainer
from dattr_eval.explainers.gradient_kernel import WORK_FRACTION
from dattr_eval.explainers.gradients import (
    Checkpoint,
    gradient_row_bytes,
    load_checkpoint,
    make_projector,
    margin_output,
    param_names,
    per_sample_gradients,
    resolve_checkpoints,
)
from dattr_eval.explainers.memory import (
    DEFAULT_MEMORY_BUDGET,
    FLOAT32,
    FLOAT64,
    block_bytes,
    parameter_count,
    sample_batch,
)
from dattr_eval.validation import check_choice, check_positive


@register("trak")
class TRAK(Explainer):
    """TRAK (Park et al., ICML 2023), for classification.

    For each model ``m`` (a checkpoint, or an independently trained model of the same
    architecture): ``Phi_m (n_train, k)`` = randomly projected gradients of the margin
    ``f(x, y) = log(p_y / (1 - p_y)) = z_y - logsumexp_{c != y} z_c``, and the out-to-loss weights
    ``q_mj = 1 - p_{y_j}(x_j)``. With ``phi_m(x)`` the projected margin gradient of a test input
    for the explained class ``c``,

        A[i, j] = mean_m [phi_m(x_i)^T (Phi_m^T Phi_m + regularization I)^{-1} Phi_m[j]] * mean_m q_mj,

    the ensemble of Algorithm 1 (the scores and the weights are averaged separately, as in the
    ``traker`` package). Each model gets its own projection (seeded by ``(seed, m)``).
    ``self_influence`` is the diagonal in closed form: ``mean_m Phi_m[j]^T (Phi_m^T Phi_m)^{-1}
    Phi_m[j] * mean_m q_mj`` (the leverage scores).

    ``traker`` additionally divides the gradients by ``sqrt(p)`` and ``(Phi^T Phi)^{-1}`` by the
    mean absolute value of its entries (for float16); with one model that rescales all scores by
    one positive constant, with several it weights the models differently. Here everything is
    float32 and the ``k x k`` inverse is float64.

    Hyperparameters: ``checkpoints`` (state dicts, paths or modules of the fitted model's
    architecture, each one ensemble member; ``None`` = the fitted model alone), ``projection_dim``
    ``k`` (``None`` = no projection, the ``p x p`` kernel: small models only), ``projection_kind``,
    ``regularization`` (added to the kernel's diagonal; ``traker``'s ``lambda_reg``), ``params``
    (parameter selection), ``seed``.

    Cost: per model, one per-sample-gradient pass over the training set, ``n_train x k^2`` for the
    kernel and a ``k^3`` inverse at ``fit``, one gradient pass per test batch at ``explain``;
    memory ``M x n_train x k``. If ``Phi_m^T Phi_m`` is singular (``n_train < k``) without
    regularization, its pseudo-inverse is used and a warning is raised.
    Fitted: ``train_features_`` (list of ``M`` tensors ``Phi_m (Phi_m^T Phi_m)^{-1}``,
    ``(n_train, k)``), ``out_to_loss_`` ``(n_train,)`` (mean over models), ``leverage_``
    ``(n_train,)``.
    """

    summary = "TRAK: projected margin gradients, Gauss-Newton kernel, out-to-loss weights"
    citation = "Park et al., TRAK: Attributing Model Behavior at Scale, ICML 2023"

    def __init__(
        self,
        checkpoints: Sequence[Checkpoint] | None = None,
        projection_dim: int | None = 512,
        projection_kind: str = "gaussian",
        regularization: float = 0.0,
        params: str | Sequence[str] | None = None,
        seed: int = 0,
        batch_size: int = 64,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        device: str | None = None,
        progress: bool = False,
    ) -> None:
        self.checkpoints = checkpoints
        self.projection_dim = projection_dim
        self.projection_kind = projection_kind
        self.regularization = regularization
        self.params = params
        self.seed = seed
        self.batch_size = batch_size
        self.memory_budget = memory_budget
        self.device = device
        self.progress = progress

    def _projector(
        self, model: nn.Module, member: int
    ) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The projection of ensemble member ``member`` (its own seed derived from ``(seed, member)``)."""
        seed = int(np.random.SeedSequence([self.seed, member]).generate_state(1, np.uint64)[0] >> 1)
        return make_projector(model, self.params, self.projection_dim, self.projection_kind, seed)

    def _gradients(self, data, member: int) -> torch.Tensor:
        """Projected margin gradients ``(n, k)`` of ensemble member ``member``."""
        return per_sample_gradients(
            self.model_,
            data,
            loss=margin_output,
            params=self.params,
            projector=self.projectors_[member],
            state_dict=self.states_[member],
            batch_size=self.batch_size,
            memory_budget=max(1, self.memory_budget // WORK_FRACTION),
            device=self.device_,
            progress=self.progress,
        )

    @torch.no_grad()
    def _out_to_loss(self, train_dataset: Dataset, member: int) -> torch.Tensor:
        """``1 - p_{y_j}(x_j)`` under member ``member``, ``(n_train,)``."""
        state = self.states_[member]
        weights = None if state is None else {k: v.to(self.device_) for k, v in state.items()}
        rows = []
        for x, y in make_loader(train_dataset, self.batch_size):
            x, y = x.to(self.device_), torch.as_tensor(y).long().to(self.device_)
            logits = (
                self.model_(x)
                if weights is None
                else torch.func.functional_call(self.model_, weights, (x,))
            )
            rows.append(1 - logits.softmax(1).gather(1, y[:, None]).squeeze(1))
        return torch.cat(rows)

    def _row_blocks(self, n: int, k: int) -> list[tuple[int, int]]:
        """Rows of an ``(n, k)`` matrix per float64 block of at most the working budget."""
        step = max(1, self.memory_budget // WORK_FRACTION // block_bytes(1, k, FLOAT64))
        return [(lo, min(lo + step, n)) for lo in range(0, n, step)]

    def _kernel_inverse(self, phi: torch.Tensor) -> torch.Tensor:
        """``(Phi^T Phi + regularization I)^{-1}`` in float64, ``(k, k)``; ``Phi^T Phi`` by row blocks."""
        k = phi.shape[1]
        kernel = torch.zeros(k, k, dtype=torch.float64, device=phi.device)
        for lo, hi in self._row_blocks(*phi.shape):
            block = phi[lo:hi].double()
            kernel += block.T @ block
        kernel += self.regularization * torch.eye(k, dtype=kernel.dtype, device=kernel.device)
        factor, info = torch.linalg.cholesky_ex(kernel)
        if int(info) == 0:
            return torch.cholesky_inverse(factor)
        warnings.warn(
            f"TRAK kernel Phi^T Phi ({kernel.shape[0]} x {kernel.shape[0]}, from {phi.shape[0]} "
            "training samples) is singular; using its pseudo-inverse. Lower projection_dim below "
            "n_train or set regularization > 0.",
            stacklevel=4,
        )
        return torch.linalg.pinv(kernel, hermitian=True)

    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        check_choice(self.projection_kind, "projection_kind", ("gaussian", "rademacher"))
        check_positive(self.regularization, "regularization", allow_zero=True)
        check_positive(self.memory_budget, "memory_budget", integer=True)
        members = [c for c, _ in resolve_checkpoints(self.checkpoints)]
        self.states_ = [None if c is None else load_checkpoint(c) for c in members]
        self.projectors_ = [self._projector(model, m) for m in range(len(members))]
        self.train_features_, out_to_loss = [], 0.0
        leverage = torch.zeros(len(train_dataset), device=self.device_)
        for m in range(len(members)):
            phi = self._gradients(train_dataset, m)
            inverse = self._kernel_inverse(phi)
            # Phi (Phi^T Phi)^{-1} in float64 block by block, written over Phi in float32
            for lo, hi in self._row_blocks(*phi.shape):
                block = phi[lo:hi].double()
                features = block @ inverse
                leverage[lo:hi] += (features * block).sum(1).float()
                phi[lo:hi] = features.float()
            self.train_features_.append(phi)
            out_to_loss = out_to_loss + self._out_to_loss(train_dataset, m)
        self.out_to_loss_ = out_to_loss / len(members)
        self.leverage_ = leverage / len(members)

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(inputs.shape[0], self.n_train_, device=self.device_)
        for m, features in enumerate(self.train_features_):
            scores += self._gradients((inputs, targets), m) @ features.T
        return scores / len(self.train_features_) * self.out_to_loss_

    def _self_influence(self) -> torch.Tensor:
        return self.leverage_ * self.out_to_loss_

    def estimate_memory(
        self, model: nn.Module, train_dataset: Dataset, n_test: int, batch_size: int
    ) -> int:
        """Estimated peak extra bytes of ``fit`` + explaining ``batch_size`` inputs + ``self_influence``.

        Per member the projected features ``n_train x k`` (float32), the float64 blocks and the
        ``k x k`` kernel, its factor and inverse; the projection matrix (cached or one chunk),
        one gradient chunk, the checkpoints held, and the ``(b, n_train)`` scores.
        """
        names = param_names(model, self.params)
        n, b = len(train_dataset), min(batch_size, max(1, n_test))
        members = [c for c, _ in resolve_checkpoints(self.checkpoints)]
        p = parameter_count(model, names)
        k = self.projection_dim or p
        work = max(1, self.memory_budget // WORK_FRACTION)
        row = gradient_row_bytes(model, names, sample_batch(train_dataset), k)
        projector = make_projector(model, self.params, self.projection_dim, self.projection_kind)
        if projector is None:
            projection = 0
        elif projector.cache:
            projection = block_bytes(p, k)
        else:
            projection = block_bytes(projector.chunk_size, k)
        blocks = 2 * min(block_bytes(n, k, FLOAT64), max(work, block_bytes(1, k, FLOAT64)))
        return int(
            len(members) * block_bytes(n, k)
            + blocks
            + 3 * block_bytes(k, k, FLOAT64)
            + projection
            + min(row * self.batch_size, max(row, work))
            + sum(parameter_count(model) * FLOAT32 for c in members if c is not None)
            + block_bytes(b, k)
            + 2 * block_bytes(b, n)
            + 4 * block_bytes(n)
        )
