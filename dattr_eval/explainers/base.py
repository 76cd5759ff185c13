"""The ``Explainer`` base class: the estimator API every explainer shares.

Subclasses implement ``_fit``, ``_explain`` and optionally ``_self_influence``; the public
``fit`` / ``explain`` / ``self_influence`` here do validation, devices, default targets and the
contract check once for all.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.contract import check_attributions
from dattr_eval.data.loading import dataset_labels, make_loader
from dattr_eval.params import ParamsMixin
from dattr_eval.validation import check_dataset, check_labels, check_model, check_tensor, resolve_device


class NotFittedError(RuntimeError):
    """Raised when ``explain`` or ``self_influence`` is called before ``fit``."""


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
    def fit(self, model: nn.Module, train_dataset: Dataset) -> "Explainer":
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
        self._check_fitted()
        inputs = check_tensor(inputs, "inputs", min_ndim=1, floating=True, finite=True)
        inputs = inputs.to(self.device_)
        if targets is None:
            targets = self.predict(inputs)
        else:
            targets = check_labels(targets, "targets", length=inputs.shape[0]).to(self.device_)
        if inputs.shape[0] == 0:  # an empty test batch (e.g. a selection that kept nothing)
            return torch.zeros(0, self.n_train_, device=self.device_)
        attributions = self._explain(inputs, targets).float()
        return check_attributions(attributions, inputs.shape[0], self.n_train_)

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
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit(model, train_dataset) first")

    def train_loader(self) -> torch.utils.data.DataLoader:
        """The training set in fixed order, batched by ``batch_size``."""
        return make_loader(self.train_dataset_, self.batch_size)
