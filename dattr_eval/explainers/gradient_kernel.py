"""The gradient-kernel base: attributions as weighted inner products of per-sample gradient features.

    A[i, j] = sum_t w_t <Q_t(R_t(g_t(x_i, c_i))), R_t(g_t(x_j, y_j))>

``g_t`` are per-sample gradients (optionally randomly projected) at member ``t`` (a checkpoint
or the fitted model), ``w_t`` its weight, ``R_t`` the training-side features (identity; unit
rows for cosine) and ``Q_t`` the query side applied on top (identity; an inverse curvature for
influence functions). TracIn, grad_dot, grad_cos and influence functions are small subclasses
that choose the members, ``R`` and ``Q``; the base owns the gradient streaming, the column
scorer of ``explain_topk``, ``self_influence`` (``sum_t w_t <Q_t(R_t g), R_t g>``) and the memory
estimate.

Memory: the training features (``T x n_train x d`` float32) are stored at ``fit`` when they take
at most ``memory_budget`` bytes, so each ``explain`` is one product per member. Otherwise nothing
is stored and every ``explain`` / ``explain_topk`` / ``self_influence`` call recomputes them in
column blocks (the same scores; one gradient pass over the training set per call), so memory
stays ``O(memory_budget)`` whatever ``n_train``. Per-sample gradients are computed in ``vmap``
chunks of at most ``memory_budget / WORK_FRACTION`` bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from dattr_eval.explainers.base import ColumnScorer, Explainer
from dattr_eval.explainers.gradients import (
    Checkpoint,
    Data,
    chunk_rows,
    grad_dim,
    gradient_row_bytes,
    load_checkpoint,
    make_projector,
    param_names,
    per_sample_gradients,
)
from dattr_eval.explainers.memory import (
    FLOAT32,
    block_bytes,
    parameter_count,
    sample_batch,
)
from dattr_eval.validation import check_choice, check_positive

#: the working memory of one gradient chunk (and of one streamed column block) is
#: ``memory_budget / WORK_FRACTION``
WORK_FRACTION = 8


class GradientKernelExplainer(Explainer):
    """Base of the explainers whose attributions are inner products of per-sample gradient features.

    Subclasses set the hyperparameters ``loss``, ``params``, ``projection_dim``,
    ``projection_kind``, ``seed``, ``batch_size``, ``memory_budget``, ``device``, ``progress``
    (as attributes, from ``__init__``) and may override:

    - :meth:`_members`: ``[(checkpoint or None, weight), ...]`` (default: the fitted model, 1);
    - :meth:`_prepare`: checks and fits what the features need, before any gradient pass;
    - :meth:`_train_features` (``R``) and :meth:`_query_features` (``Q``), both shape-preserving
      on rows, ``(m, d) -> (m, d)``;
    - :meth:`_projector` / :meth:`_width`: the gradient projection of a member and the feature
      width ``d``.

    Fitted: ``states_`` (``T`` state dicts or ``None``), ``weights_`` ``(T,)`` float64,
    ``projectors_``, ``width_`` (``d``), ``chunk_rows_`` (samples per gradient batch),
    ``stores_train_features_`` (bool), ``train_features_`` (``T`` tensors ``(n_train, d)``, or
    ``None`` when streamed).
    """

    loss: str = "ce"
    params = None
    projection_dim: int | None = None
    projection_kind: str = "gaussian"
    seed: int = 0
    memory_budget: int = 2**30
    progress: bool = False
    #: rows of working memory the query side ``Q`` allocates per input row (its temporaries)
    query_copies: int = 0

    # ------------------------------------------------------------------ subclass hooks
    def _members(self) -> list[tuple[Checkpoint | None, float]]:
        """The members ``t`` and their weights ``w_t``; default: the fitted model, weight 1."""
        return [(None, 1.0)]

    def _prepare(self, model: nn.Module, train_dataset: Dataset) -> None:
        """Hyperparameter checks and fitting before the gradient passes (default: none)."""

    def _projector(self, model: nn.Module, member: int) -> Callable | None:
        """The projection of member ``member``'s gradients: seeded from ``seed`` (shared by all)."""
        return make_projector(
            model, self.params, self.projection_dim, self.projection_kind, self.seed
        )

    def _width(self, model: nn.Module) -> int:
        """``d``: the feature width (the projection dimension, else the gradient size)."""
        return self.projection_dim or grad_dim(model, self.params)

    def _train_features(self, grads: torch.Tensor, member: int) -> torch.Tensor:
        """``R_t``: training-side features of gradients ``(m, d)`` (may work in place)."""
        return grads

    def _query_features(self, features: torch.Tensor, member: int) -> torch.Tensor:
        """``Q_t``: applied to ``R_t`` of a query's gradients, ``(m, d) -> (m, d)``."""
        return features

    # ------------------------------------------------------------------ gradients
    def _work_budget(self) -> int:
        return max(1, int(self.memory_budget) // WORK_FRACTION)

    def _gradients(self, data: Data, member: int) -> torch.Tensor:
        """Per-sample gradients ``(n, d)`` of member ``member`` (projected when it has a projector)."""
        return per_sample_gradients(
            self.model_,
            data,
            loss=self.loss,
            params=self.params,
            projector=self.projectors_[member],
            state_dict=self.states_[member],
            batch_size=self.chunk_rows_,
            device=self.device_,
            progress=self.progress,
        )

    def _train_block(self, member: int, start: int, stop: int) -> torch.Tensor:
        """``R_t`` of training samples ``start..stop-1``, ``(stop - start, d)``: stored or computed."""
        if self.train_features_ is not None:
            return self.train_features_[member][start:stop]
        rows = Subset(self.train_dataset_, range(start, stop))
        return self._train_features(self._gradients(rows, member), member)

    def _block_columns(self) -> int:
        """Training columns per streamed block: their features fit in the working budget."""
        return max(1, self._work_budget() // block_bytes(1, self.width_))

    def _blocks(self, start: int, stop: int) -> list[tuple[int, int]]:
        """``[start, stop)`` cut into blocks (one block when the features are stored)."""
        step = stop - start if self.train_features_ is not None else self._block_columns()
        return [(lo, min(lo + step, stop)) for lo in range(start, stop, max(1, step))]

    # ------------------------------------------------------------------ explainer hooks
    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        check_choice(self.projection_kind, "projection_kind", ("gaussian", "rademacher"))
        check_positive(self.memory_budget, "memory_budget", integer=True)
        self._prepare(model, train_dataset)
        members = self._members()
        self.states_ = [None if c is None else load_checkpoint(c) for c, _ in members]
        self.weights_ = torch.tensor([w for _, w in members], dtype=torch.float64)
        self.projectors_ = [self._projector(model, t) for t in range(len(members))]
        self.width_ = self._width(model)
        # samples per gradient batch, sized once here (not at every streamed block)
        row = gradient_row_bytes(
            model, param_names(model, self.params), sample_batch(train_dataset), self.width_
        )
        self.chunk_rows_ = chunk_rows(row, self._work_budget(), self.batch_size)
        stored = block_bytes(len(members) * len(train_dataset), self.width_)
        self.stores_train_features_ = stored <= self.memory_budget
        self.train_features_ = None
        if self.stores_train_features_:
            self.train_features_ = [
                self._train_features(self._gradients(train_dataset, t), t)
                for t in range(len(members))
            ]

    def _query(self, inputs: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
        """``Q_t(R_t(g_t))`` of a test batch for every member, each ``(b, d)``."""
        return [
            self._query_features(self._train_features(self._gradients((inputs, targets), t), t), t)
            for t in range(len(self.states_))
        ]

    def _column_scorer(self, inputs: torch.Tensor, targets: torch.Tensor) -> ColumnScorer:
        """Columns ``start..stop-1``: ``sum_t w_t * query_t @ R_t(train[start:stop]).T``, ``(b, stop - start)``."""
        queries = self._query(inputs, targets)

        def score(start: int, stop: int) -> torch.Tensor:
            out = torch.zeros(inputs.shape[0], stop - start, device=self.device_)
            for lo, hi in self._blocks(start, stop):
                for t, (weight, query) in enumerate(zip(self.weights_.tolist(), queries)):
                    out[:, lo - start : hi - start] += weight * (
                        query @ self._train_block(t, lo, hi).T
                    )
            return out

        return ColumnScorer(score, self.n_train_)

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self._column_scorer(inputs, targets).score(0, self.n_train_)

    def _self_influence(self) -> torch.Tensor:
        """``sum_t w_t <Q_t(R_t g_j), R_t g_j>`` over training blocks, ``(n_train,)``."""
        out = torch.zeros(self.n_train_, device=self.device_)
        step = max(1, self._block_columns() // (1 + self.query_copies))
        for lo in range(0, self.n_train_, step):
            hi = min(lo + step, self.n_train_)
            for t, weight in enumerate(self.weights_.tolist()):
                feats = self._train_block(t, lo, hi)
                out[lo:hi] += weight * (self._query_features(feats, t) * feats).sum(1)
        return out

    # ------------------------------------------------------------------ memory
    def estimate_memory(
        self, model: nn.Module, train_dataset: Dataset, n_test: int, batch_size: int
    ) -> int:
        """Estimated peak extra bytes of ``fit`` + explaining ``batch_size`` test inputs + ``self_influence``.

        What stays from ``fit`` on (the stored features ``T x n_train x d`` when they fit
        ``memory_budget``, the checkpoints held, the projection matrix when cached, the
        solver's state) plus the largest of the three phases' working memory: ``fit`` (one
        gradient chunk), ``explain`` (the test features ``T x b x d`` with ``query_copies`` rows
        of ``Q``'s temporaries each, the ``(b, n_train)`` result, a streamed block) and
        ``self_influence`` (one block of training features and their queries). The subclass adds
        its solver's memory (:meth:`_solver_memory`).
        """
        names = param_names(model, self.params)
        n_train, b = len(train_dataset), min(batch_size, max(1, n_test))
        members = self._members()
        width = self._estimated_width(model, train_dataset)
        work = self._work_budget()
        row = gradient_row_bytes(model, names, sample_batch(train_dataset), width)

        def chunk(rows: int) -> int:
            return min(row * rows, max(row, work))

        stored = block_bytes(len(members) * n_train, width)
        streamed = stored > self.memory_budget
        block_rows = min(n_train, max(1, work // block_bytes(1, width)))
        held, fit_work, query_work = self._solver_memory(model, train_dataset, b)
        persistent = (
            (0 if streamed else stored)
            + sum(parameter_count(model) * FLOAT32 for c, _ in members if c is not None)
            + self._projection_memory(model, names)
            + held
        )
        stream = block_bytes(block_rows, width) + chunk(self.batch_size) if streamed else 0
        explain = (
            chunk(min(b, self.batch_size))
            + block_bytes(len(members) * b, width) * (1 + self.query_copies)
            + 2 * block_bytes(b, n_train)
            + stream
        )
        rows = max(1, block_rows // (1 + self.query_copies))
        # stored: slices of the features (views), the product and Q's temporaries
        self_influence = block_bytes(rows, width) * (1 + self.query_copies + streamed) + stream
        phases = (
            chunk(self.batch_size) + fit_work,
            explain + query_work,
            self_influence + query_work,
        )
        return int(persistent + max(phases) + block_bytes(n_train))

    def _projection_memory(self, model: nn.Module, names: list[str]) -> int:
        """The projection matrix when cached, else one generated chunk of it (0: no projection)."""
        if self.projection_dim is None:
            return 0
        projector = make_projector(
            model, self.params, self.projection_dim, self.projection_kind, self.seed
        )
        rows = projector.dim_in if projector.cache else projector.chunk_size
        return block_bytes(rows, self.projection_dim)

    def _estimated_width(self, model: nn.Module, train_dataset: Dataset) -> int:
        """``d`` before fitting (default: :meth:`_width`)."""
        return self._width(model)

    def _solver_memory(
        self, model: nn.Module, train_dataset: Dataset, batch: int
    ) -> tuple[int, int, int]:
        """Bytes of a subclass's own state: ``(held from fit on, fit working, per-query working)``."""
        return 0, 0, 0
