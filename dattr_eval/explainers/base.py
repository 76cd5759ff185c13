"""The ``Explainer`` base class: the estimator API every explainer shares.

Subclasses implement ``_fit``, ``_explain`` and optionally ``_self_influence``; the public
``fit`` / ``explain`` / ``self_influence`` here do validation, devices, default targets and the
contract check once for all. ``explain_topk`` keeps only the top k per test input; explainers
that can score a slice of the training set implement ``_column_scorer`` and are then streamed
over training chunks, never holding a test batch's full ``(b, n_train)`` row block.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar, NamedTuple

import torch
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.contract import (
    AttributionContractError,
    TopK,
    check_attributions,
    fast_topk,
    merge_topk,
    select_topk,
)
from dattr_eval.data.loading import CastInputs, dataset_labels, make_loader
from dattr_eval.params import ParamsMixin
from dattr_eval.validation import (
    check_dataset,
    check_labels,
    check_model,
    check_positive,
    check_sample,
    check_seed,
    check_tensor,
    resolve_device,
)

#: ``explain`` refuses to return a dense output larger than this many bytes unless given a larger
#: ``max_output_bytes`` (use ``explain_topk``, or explain smaller test batches, instead)
MAX_OUTPUT_BYTES = 8 * 2**30

#: where subclass authors read how to write the hooks
HOOKS_DOC = "see the README section 'Score your own method' and the Explainer class docstring"

_HOOK_HELP = {
    "_fit": "_fit(self, model, train_dataset) -> None: compute what explain needs from the model "
    "and the training set and store it in attributes with a trailing underscore",
    "_explain": "_explain(self, inputs, targets) -> torch.Tensor: return the (n_test, n_train) "
    "float attributions of every training sample to each of the (already validated) inputs",
}


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


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block with ``model`` in eval mode, then restore every submodule's ``training`` flag."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


class Explainer(ParamsMixin):
    """Base class of training-data attribution methods.

    Write an explainer by subclassing and implementing two hooks (the README section "Score your
    own method" walks through one):

    - ``_fit(self, model, train_dataset) -> None``: compute what ``_explain`` needs; store it in
      attributes with a trailing underscore. ``model`` is in eval mode during the call.
    - ``_explain(self, inputs, targets) -> torch.Tensor``: the ``(b, n_train)`` float attributions
      (float32 preferred) of a validated test batch: ``inputs`` ``(b, *input_shape_)`` on
      ``device_`` in the model's dtype, ``targets`` ``(b,)`` int64 in ``[0, n_classes_)``.
      Return a ``torch.Tensor`` (a numpy array is refused: convert it with ``torch.from_numpy``).
    - optional: ``_self_influence(self) -> (n_train,)`` (closed forms), ``_column_scorer`` (lets
      ``explain_topk`` stream over training chunks, see :class:`ColumnScorer`).

    Hyperparameters go in ``__init__`` and are stored unchanged under the same names (scikit-learn
    rule), so ``get_params``, ``set_params`` and ``dattr_eval.params.clone`` work. ``fit`` checks
    the common ones: ``batch_size`` (positive int), ``seed`` (int >= 0), ``device``.

    The caller's model is left as it was: with ``device=None`` the explainer uses the model in place
    on its own device (``model_ is model``); with an explicit ``device`` that differs from where the
    model lives, it works on a deep copy moved there, so the caller's model never moves. ``fit``,
    ``explain``, ``explain_topk``, ``self_influence`` and ``predict`` run the model in eval mode
    and restore every submodule's train/eval flag afterwards.

    Class attributes: ``name`` (set by the registry), ``summary`` (one line), ``citation``.
    Fitted attributes (trailing underscore): ``model_``, ``device_``, ``train_dataset_`` (inputs
    cast to the model's dtype when they differ), ``train_labels_`` ``(n_train,)`` int64,
    ``n_train_``, ``n_classes_`` (the model's number of outputs), ``input_shape_`` (one sample's
    shape), ``input_dtype_`` (the model's floating dtype).
    """

    name: ClassVar[str] = "explainer"
    summary: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    #: ``"method"``, or ``"reference"`` for baselines (random, loss) that leaderboards show apart
    role: ClassVar[str] = "method"

    #: default for the ``device`` hyperparameter of subclasses that do not declare one
    device: str | None = None
    #: batch size used when streaming the training set, predicting targets and explaining
    batch_size: int = 256

    # ------------------------------------------------------------------ public API
    def fit(self, model: nn.Module, train_dataset: Dataset) -> Explainer:
        """Fit on ``model`` and the training set it was trained on; returns ``self``.

        Raises:
            TypeError / ValueError: naming the argument: not a module, an empty dataset, items
                that are not ``(x, y)``, labels that are not integers in ``[0, n_classes)``, a
                model that does not map ``(1, *input_shape)`` to ``(1, n_classes)`` logits, a bad
                ``device`` / ``batch_size`` / ``seed`` hyperparameter.
            NotImplementedError: the subclass lacks ``_fit`` or ``_explain``.
        """
        check_model(model)
        check_dataset(train_dataset)
        self._check_hooks()
        self._check_common_params()
        self.device_ = resolve_device(self.device, model)
        self.model_ = self._placed(model)
        x0, _ = check_sample(train_dataset[0], "train_dataset[0]")
        self.input_shape_ = tuple(x0.shape)
        self.input_dtype_ = _floating_dtype(self.model_, default=x0.dtype)
        self.n_classes_ = self._count_classes(x0)
        labels = dataset_labels(train_dataset, "train_dataset")
        self.train_labels_ = check_labels(labels, "train_dataset labels", n_classes=self.n_classes_)
        self.train_dataset_ = (
            train_dataset
            if x0.dtype == self.input_dtype_
            else CastInputs(train_dataset, self.input_dtype_)
        )
        self.n_train_ = len(train_dataset)
        with eval_mode(self.model_):
            self._fit(self.model_, self.train_dataset_)
        return self

    def explain(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        max_output_bytes: int | None = None,
    ) -> torch.Tensor:
        """Attributions of every training sample to each test input.

        More than ``batch_size`` test inputs are explained in batches of ``batch_size`` written into
        one preallocated output, so peak extra memory is the output plus one batch's
        ``(batch_size, n_train)`` block and its intermediates (measured: 1.4x the output at
        1,000 x 100,000, ``benchmarks/results/reliability.md``).

        Args:
            inputs: ``(n_test, *input_shape_)`` float test inputs, same layout as the training
                inputs; any float dtype (cast to the model's).
            targets: ``(n_test,)`` integer classes in ``[0, n_classes_)`` (tensor, numpy or list);
                ``None`` = the model's predictions.
            max_output_bytes: refuse (``ValueError``) when the ``n_test * n_train * 4``-byte
                output would exceed this; ``None`` = the module default ``MAX_OUTPUT_BYTES``
                (8 GiB). For large test sets use ``explain_topk``.

        Returns:
            ``(n_test, n_train)`` float32 tensor on ``device_`` (the attribution contract).
        """
        self._check_fitted()
        inputs = self._check_input_tensor(inputs)
        n_test = inputs.shape[0]
        self._check_output_size(n_test, max_output_bytes)
        targets = self._check_targets(inputs, targets)
        with eval_mode(self.model_):
            if n_test == 0:  # an empty test batch (e.g. a selection that kept nothing)
                return torch.zeros(0, self.n_train_, device=self.device_)
            if n_test <= self.batch_size:  # one batch: its result is the output, no copy
                return self._explain_checked(inputs, targets).to(self.device_)
            out = torch.empty(n_test, self.n_train_, device=self.device_)
            for i in range(0, n_test, self.batch_size):
                stop = min(i + self.batch_size, n_test)
                out[i:stop] = self._explain_checked(inputs[i:stop], targets[i:stop])
        return out

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
            inputs: ``(n_test, *input_shape_)`` float test inputs.
            k: entries kept per test input, ``1 <= k <= n_train``.
            targets: ``(n_test,)`` integer classes; ``None`` = the model's predictions.
            chunk_size: training columns scored at once on the streamed path.
            batch_size: test inputs explained at once; ``None`` = ``self.batch_size``.

        Returns:
            ``TopK(values, indices)``, each ``(n_test, k)`` (float32, int64), values descending.
        """
        inputs, targets = self._check_inputs(inputs, targets)
        if (
            isinstance(k, bool)
            or not isinstance(k, numbers.Integral)
            or not 1 <= k <= self.n_train_
        ):
            raise ValueError(f"k must be an int in [1, n_train={self.n_train_}], got {k!r}")
        k = int(k)
        check_positive(chunk_size, "chunk_size", integer=True)
        batch_size = check_positive(
            self.batch_size if batch_size is None else batch_size, "batch_size", integer=True
        )
        with eval_mode(self.model_):
            parts = [
                self._batch_topk(
                    inputs[i : i + batch_size], targets[i : i + batch_size], k, chunk_size
                )
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
        with eval_mode(self.model_):
            scores = self._self_influence()
        _check_output_type(scores, f"{type(self).__name__}._self_influence", "(n_train,)")
        scores = scores.float()
        check_tensor(scores, "self_influence", ndim=1, length=self.n_train_, finite=True)
        return scores

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """The model's predicted classes ``(n,)`` int64 for ``inputs`` ``(n, *input_shape_)``, in batches."""
        self._check_fitted()
        inputs = self._check_input_tensor(inputs)
        with eval_mode(self.model_):
            preds = [
                self.model_(inputs[i : i + self.batch_size]).argmax(-1)
                for i in range(0, inputs.shape[0], self.batch_size)
            ]
        return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long, device=self.device_)

    # ------------------------------------------------------------------ subclass hooks
    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        raise NotImplementedError(self._hook_message("_fit"))

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(self._hook_message("_explain"))

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
    def _hook_message(self, hook: str) -> str:
        return f"{type(self).__name__} must implement {_HOOK_HELP[hook]} ({HOOKS_DOC})"

    def _check_hooks(self) -> None:
        """``NotImplementedError`` naming the first required hook the subclass lacks."""
        for hook in ("_fit", "_explain"):
            if getattr(type(self), hook) is getattr(Explainer, hook):
                raise NotImplementedError(self._hook_message(hook))

    def _check_common_params(self) -> None:
        """Check the hyperparameters many explainers share: ``batch_size``, ``seed``."""
        check_positive(self.batch_size, "batch_size", integer=True)
        if "seed" in self._param_names():
            check_seed(self.seed)

    def _placed(self, model: nn.Module) -> nn.Module:
        """``model`` itself when it lives on ``device_``, else a deep copy moved there."""
        tensors = [*model.parameters(), *model.buffers()]
        if all(t.device == self.device_ for t in tensors):
            return model
        return copy.deepcopy(model).to(self.device_)

    @torch.no_grad()
    def _count_classes(self, x0: torch.Tensor) -> int:
        """The model's number of outputs, from one forward pass of the first training input."""
        batch = x0[None].to(self.device_, self.input_dtype_)
        try:
            with eval_mode(self.model_):
                out = self.model_(batch)
        except Exception as err:  # the user's model: any failure, named with its input
            raise ValueError(
                f"model failed on train_dataset[0] with a batch dimension added, input shape "
                f"{tuple(batch.shape)}: {type(err).__name__}: {err}"
            ) from err
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"model must map a batch of inputs (b, *input_shape) to logits of shape "
                f"(batch, n_classes); on train_dataset[0] it returned {got}"
            )
        return int(out.shape[1])

    def _check_input_tensor(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` checked (float, finite, ``(n, *input_shape_)``), cast and moved for the model."""
        inputs = check_tensor(inputs, "inputs", min_ndim=1, floating=True, finite=True)
        if tuple(inputs.shape[1:]) != self.input_shape_:
            expected = ", ".join(["n_test", *map(str, self.input_shape_)])
            if tuple(inputs.shape) == self.input_shape_:
                raise ValueError(
                    f"inputs of shape {tuple(inputs.shape)} look like a single sample; add the "
                    f"batch dimension: inputs[None] (expected ({expected}))"
                )
            raise ValueError(
                f"inputs must have shape ({expected}) like the training inputs, got "
                f"{tuple(inputs.shape)}"
            )
        return inputs.to(self.device_, self.input_dtype_)

    def _check_output_size(self, n_test: int, max_output_bytes: int | None) -> None:
        """``ValueError`` when a dense ``(n_test, n_train)`` float32 output exceeds the limit."""
        limit = MAX_OUTPUT_BYTES if max_output_bytes is None else max_output_bytes
        limit = check_positive(limit, "max_output_bytes", integer=True)
        size = n_test * self.n_train_ * 4
        if size > limit:
            raise ValueError(
                f"explain would return an ({n_test}, {self.n_train_}) float32 tensor of {size} "
                f"bytes ({size / 2**30:.2f} GiB), over max_output_bytes={limit}; use "
                "explain_topk(inputs, k) for the top k per test input (memory n_test x k), explain "
                "smaller test batches, or pass a larger max_output_bytes"
            )

    def _check_targets(self, inputs: torch.Tensor, targets: object) -> torch.Tensor:
        """``targets`` checked against ``inputs`` and ``n_classes_`` (``None``: predictions)."""
        if targets is None:
            return self.predict(inputs)
        targets = check_labels(
            targets, "targets", length=inputs.shape[0], n_classes=self.n_classes_
        )
        return targets.to(self.device_)

    def _check_inputs(
        self, inputs: torch.Tensor, targets: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Validated ``inputs`` and ``targets`` (default: predictions) on the fitted device."""
        self._check_fitted()
        inputs = self._check_input_tensor(inputs)
        return inputs, self._check_targets(inputs, targets)

    def _explain_checked(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``_explain`` as float32, checked against the contract, ``(b, n_train)``."""
        out = self._explain(inputs, targets)
        _check_output_type(out, f"{type(self).__name__}._explain", "(n_test, n_train)")
        return (
            check_attributions(
                out, inputs.shape[0], self.n_train_, name=f"{type(self).__name__}._explain output"
            )
            .detach()
            .float()
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
            scores = scorer.score(start, stop)
            _check_output_type(scores, f"{type(self).__name__} column scorer", "(b, stop - start)")
            block = check_attributions(
                scores, inputs.shape[0], stop - start, name="column scores"
            ).float()
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


def _floating_dtype(model: nn.Module, default: torch.dtype) -> torch.dtype:
    """The dtype of ``model``'s first floating parameter or buffer, else ``default``."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return default


def _check_output_type(out: object, source: str, shape: str) -> None:
    """``AttributionContractError`` when a hook returned something other than a torch.Tensor."""
    if not isinstance(out, torch.Tensor):
        raise AttributionContractError(
            f"{source} returned {type(out).__name__}; it must return a torch.Tensor of shape "
            f"{shape} with a float dtype (float32 preferred), e.g. "
            f"torch.from_numpy(scores).float() ({HOOKS_DOC})"
        )
