"""The ``Explainer`` base class: the estimator API every explainer shares.

Subclasses implement ``_fit``, ``_explain`` and optionally ``_self_influence``; the public
``fit`` / ``explain`` / ``self_influence`` here do validation, devices, default targets and the
contract check once for all. ``explain_topk`` keeps only the top k per test input; explainers
that can score a slice of the training set implement ``_column_scorer`` and are then streamed
over training chunks, never holding a test batch's full ``(b, n_train)`` row block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, NamedTuple

import torch
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.contract import TopK, check_attributions, fast_topk, merge_topk, select_topk
from dattr_eval.data.loading import dataset_labels, make_loader
from dattr_eval.params import ParamsMixin
from dattr_eval.validation import (
    check_dataset,
    check_labels,
    check_model,
    check_positive,
    check_tensor,
    resolve_device,
)


class NotFittedError(RuntimeError):
    """Raised when ``explain`` or ``self_influence`` is called before ``fit``."""


class NotApplicableError(NotImplementedError):
    """Raised by an explainer for a query it has no honest answer to (e.g. per-test attributions
    of the ``loss`` baseline, which only ranks training samples); the evaluator marks the metrics
    that needed it "not applicable" instead of failing."""


class ColumnScorer(NamedTuple):
    """Attributions of one test batch ``(b, ...)``, computed a slice of training columns at a time.

    ``score(start, stop)`` returns the ``(b, stop - start)`` attributions of the training samples
    ``columns[start:stop]`` (of samples ``start..stop-1`` when ``columns`` is ``None``), for any
    ``0 <= start < stop <= n_columns``; it must equal the same columns of ``explain``.
    ``columns``: ``None`` (all ``n_train`` samples, ``n_columns == n_train``) or an increasing
    ``(n_columns,)`` int64 tensor of training indices; every other sample's attribution is exactly 0.
    """

    score: Callable[[int, int], torch.Tensor]
    n_columns: int
    columns: torch.Tensor | None = None


class Explainer(ParamsMixin):
    """Base class of training-data attribution methods.

    Class attributes: ``name`` (set by the registry), ``summary`` (one line), ``citation``.
    Fitted attributes (trailing underscore): ``model_``, ``train_dataset_``, ``train_labels_``
    ``(n_train,)``, ``n_train_``, ``device_``.
    """

    name: ClassVar[str] = "explainer"
    summary: ClassVar[str] = ""
    citation: ClassVar[str] = ""

    #: default for the ``device`` hyperparameter of subclasses that do not declare one
    device: str | None = None
    #: batch size used when streaming the training set or predicting targets
    batch_size: int = 256

    # ------------------------------------------------------------------ public API
    def fit(self, model: nn.Module, train_dataset: Dataset) -> Explainer:
        """Fit on ``model`` and the training set it was trained on; returns ``self``."""
        check_model(model)
        check_dataset(train_dataset)
        self.device_ = resolve_device(self.device, model)
        self.model_ = model.to(self.device_).eval()
        self.train_dataset_ = train_dataset
        self.train_labels_ = dataset_labels(train_dataset)
        self.n_train_ = len(train_dataset)
        self._fit(self.model_, train_dataset)
        return self

    def explain(self, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Attributions of every training sample to each test input.

        Args:
            inputs: ``(n_test, ...)`` float test inputs, same layout as the training inputs.
            targets: ``(n_test,)`` int64 classes to explain; ``None`` = the model's predictions.

        Returns:
            ``(n_test, n_train)`` float32 tensor (the attribution contract).
        """
        inputs, targets = self._check_inputs(inputs, targets)
        if inputs.shape[0] == 0:  # an empty test batch (e.g. a selection that kept nothing)
            return torch.zeros(0, self.n_train_, device=self.device_)
        return self._explain_checked(inputs, targets)

    @torch.no_grad()
    def explain_topk(
        self,
        inputs: torch.Tensor,
        k: int,
        targets: torch.Tensor | None = None,
        chunk_size: int = 16384,
        batch_size: int | None = None,
    ) -> TopK:
        """The ``k`` largest attributions per test input: ``contract.topk(explain(inputs, targets), k)``.

        Computed per test batch of ``batch_size`` (default: the explainer's). Explainers with a
        ``_column_scorer`` stream each batch over training chunks of ``chunk_size`` columns and
        merge (``contract.merge_topk``): memory ``batch x chunk_size`` scores plus the
        ``n_test x k`` result, whatever ``n_train``. Others fall back to the dense
        ``explain`` of each batch (memory ``batch x n_train``). Ties go to the smaller training
        index, as in ``contract.topk``; blocks are reduced with ``contract.fast_topk`` (the same
        result by partial selection).

        Args:
            inputs: ``(n_test, ...)`` float test inputs.
            k: entries kept per test input, ``1 <= k <= n_train``.
            targets: ``(n_test,)`` int64 classes; ``None`` = the model's predictions.
            chunk_size: training columns scored at once on the streamed path.
            batch_size: test inputs explained at once; ``None`` = ``self.batch_size``.

        Returns:
            ``TopK(values, indices)``, each ``(n_test, k)`` (float32, int64), values descending.
        """
        inputs, targets = self._check_inputs(inputs, targets)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.n_train_:
            raise ValueError(f"k must be an int in [1, n_train={self.n_train_}], got {k!r}")
        check_positive(chunk_size, "chunk_size", integer=True)
        batch_size = check_positive(batch_size or self.batch_size, "batch_size", integer=True)
        parts = [
            self._batch_topk(inputs[i : i + batch_size], targets[i : i + batch_size], k, chunk_size)
            for i in range(0, inputs.shape[0], batch_size)
        ]
        if not parts:
            return TopK(
                torch.zeros(0, k, device=self.device_),
                torch.zeros(0, k, dtype=torch.long, device=self.device_),
            )
        return TopK(torch.cat([p.values for p in parts]), torch.cat([p.indices for p in parts]))

    def self_influence(self) -> torch.Tensor:
        """Each training sample's attribution to its own prediction (its training label), ``(n_train,)``."""
        self._check_fitted()
        scores = self._self_influence().float()
        check_tensor(scores, "self_influence", ndim=1, length=self.n_train_, finite=True)
        return scores

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """The model's predicted classes ``(n,)`` int64 for ``inputs``, in batches."""
        self._check_fitted()
        preds = [
            self.model_(inputs[i : i + self.batch_size].to(self.device_)).argmax(-1)
            for i in range(0, inputs.shape[0], self.batch_size)
        ]
        return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long, device=self.device_)

    # ------------------------------------------------------------------ subclass hooks
    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        raise NotImplementedError

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _column_scorer(self, inputs: torch.Tensor, targets: torch.Tensor) -> ColumnScorer | None:
        """How to score training columns for this (validated) test batch; ``None``: not supported.

        Override to let ``explain_topk`` stream over the training set (see :class:`ColumnScorer`).
        """
        return None

    def _self_influence(self) -> torch.Tensor:
        """Default: the diagonal of explaining the training set itself, one batch at a time.

        Costs one ``explain`` per training batch (``O(n_train^2)`` scores computed, memory
        ``batch × n_train``); explainers with a closed form override this.
        """
        diag, start = [], 0
        for x, y in make_loader(self.train_dataset_, self.batch_size):
            rows = self._explain(x.to(self.device_), torch.as_tensor(y).long().to(self.device_))
            idx = torch.arange(start, start + x.shape[0], device=rows.device)
            diag.append(rows[torch.arange(x.shape[0], device=rows.device), idx])
            start += x.shape[0]
        return torch.cat(diag)

    # ------------------------------------------------------------------ helpers
    def _check_inputs(
        self, inputs: torch.Tensor, targets: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Validated ``inputs`` and ``targets`` (default: predictions) on the fitted device."""
        self._check_fitted()
        inputs = check_tensor(inputs, "inputs", min_ndim=1, floating=True, finite=True)
        inputs = inputs.to(self.device_)
        if targets is None:
            return inputs, self.predict(inputs)
        return inputs, check_labels(targets, "targets", length=inputs.shape[0]).to(self.device_)

    def _explain_checked(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``_explain`` as float32, checked against the contract, ``(b, n_train)``."""
        return check_attributions(
            self._explain(inputs, targets).float(), inputs.shape[0], self.n_train_
        )

    def _batch_topk(
        self, inputs: torch.Tensor, targets: torch.Tensor, k: int, chunk_size: int
    ) -> TopK:
        """Top ``k`` of one test batch: streamed over ``_column_scorer`` chunks, else dense."""
        scorer = self._column_scorer(inputs, targets)
        if scorer is None:
            return fast_topk(self._explain_checked(inputs, targets), k)
        best: TopK | None = None
        for start in range(0, scorer.n_columns, chunk_size):
            stop = min(start + chunk_size, scorer.n_columns)
            block = check_attributions(
                scorer.score(start, stop).float(),
                inputs.shape[0],
                stop - start,
                name="column scores",
            )
            part = fast_topk(block, min(k, stop - start))
            best = part if best is None else merge_topk(best, part, k, offset=start)
        if scorer.columns is None:
            return best
        return self._with_zero_columns(best, scorer.columns, k, inputs.shape[0])

    def _with_zero_columns(self, best: TopK | None, columns: torch.Tensor, k: int, b: int) -> TopK:
        """Top ``k`` of ``best`` (over ``columns``) and the exact zeros of every other column."""
        others = torch.ones(self.n_train_, dtype=torch.bool, device=columns.device)
        others[columns] = False
        zeros = others.nonzero().squeeze(1)[:k].to(self.device_)  # the lowest-index zeros suffice
        values = [torch.zeros(b, zeros.numel(), device=self.device_)]
        indices = [zeros.expand(b, -1)]
        if best is not None:
            values.insert(0, best.values)
            indices.insert(0, columns.to(self.device_)[best.indices])
        return select_topk(torch.cat(values, 1), torch.cat(indices, 1), k)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet: call fit(model, train_dataset) first"
            )

    def train_loader(self) -> torch.utils.data.DataLoader:
        """The training set in fixed order, batched by ``batch_size``."""
        return make_loader(self.train_dataset_, self.batch_size)
