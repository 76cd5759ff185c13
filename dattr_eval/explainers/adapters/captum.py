"""Captum's influence implementations (Kokhlikyan et al. 2020) as explainers.

``captum.tracin`` = ``TracInCP``, ``captum.tracin_fast`` = ``TracInCPFast`` (last layer only),
``captum.arnoldi`` = ``ArnoldiInfluenceFunction``. All use the cross-entropy loss and explain
the class given in ``targets`` (Captum reads it as the test batch's labels). Captum returns
``(n_test, n_train)`` with positive = supports already; only the dtype is mapped.
Our natives: ``tracin``, ``tracin`` with ``params=<last layer weight>``, ``influence`` with
``solver="arnoldi"``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.explainers import register
from dattr_eval.explainers.adapters._common import (
    checkpoint_files,
    import_peer,
    tensor_dataset,
    workdir,
)
from dattr_eval.explainers.base import Explainer
from dattr_eval.explainers.features import classifier_layer
from dattr_eval.explainers.gradients import Checkpoint

CITATION = "Kokhlikyan et al., Captum: A unified and generic model interpretability library for PyTorch, 2020"


class _CaptumExplainer(Explainer):
    """Shared plumbing: checkpoint files with learning rates, and the peer's influence/self-influence."""

    def _checkpoints(self, model: nn.Module) -> list[tuple[str, float]]:
        self.workdir_ = workdir("captum")
        return checkpoint_files(
            getattr(self, "checkpoints", None),
            getattr(self, "learning_rates", 1.0),
            model,
            self.workdir_.name,
        )

    @staticmethod
    def _loader(files: list[tuple[str, float]]):
        lr_of = dict(files)

        def load(net: nn.Module, path: str) -> float:
            net.load_state_dict(torch.load(path, weights_only=True))
            return lr_of[path]

        return load

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.peer_.influence((inputs, targets), show_progress=False).detach().float()

    def _self_influence(self) -> torch.Tensor:
        return self.peer_.self_influence(show_progress=False).detach().float()


@register("captum.tracin")
class CaptumTracIn(_CaptumExplainer):
    """Captum ``TracInCP``: ``sum_t lr_t <grad L(train), grad L(test)>`` over all parameters.

    Per-sample gradients by a loop (``sample_wise_grads_per_batch=False``: Captum's batched mode
    needs its own layer hooks and does not support every layer). Hyperparameters as ``tracin``:
    ``checkpoints`` (state dicts, paths or modules; ``None`` = the fitted model), ``learning_rates``.
    Cost: Captum recomputes the training gradients at every ``explain`` call.
    """

    summary = "Captum TracInCP (peer implementation of tracin)"
    citation = CITATION

    def __init__(
        self,
        checkpoints: Sequence[Checkpoint] | None = None,
        learning_rates: float | Sequence[float] = 1.0,
        batch_size: int = 64,
        device: str | None = None,
    ) -> None:
        self.checkpoints = checkpoints
        self.learning_rates = learning_rates
        self.batch_size = batch_size
        self.device = device

    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        influence = import_peer("captum.influence", self.name)
        files = self._checkpoints(model)
        self.peer_ = influence.TracInCP(
            copy.deepcopy(model),
            tensor_dataset(train_dataset),
            checkpoints=[path for path, _ in files],
            checkpoints_load_func=self._loader(files),
            loss_fn=nn.CrossEntropyLoss(reduction="none"),
            batch_size=self.batch_size,
            sample_wise_grads_per_batch=False,
        )


@register("captum.tracin_fast")
class CaptumTracInFast(_CaptumExplainer):
    """Captum ``TracInCPFast``: TracInCP restricted to the weight of the last linear layer.

    The weight gradient is the outer product (dL/dz) x (layer input), so the inner products
    factorise; the layer's bias is not included. Native equivalent: ``tracin`` with
    ``params=[<last layer>.weight]``. ``layer``: the layer's name (``None`` = last ``nn.Linear``).
    """

    summary = "Captum TracInCPFast, last-layer weights (peer implementation of tracin)"
    citation = CITATION

    def __init__(
        self,
        checkpoints: Sequence[Checkpoint] | None = None,
        learning_rates: float | Sequence[float] = 1.0,
        layer: str | None = None,
        batch_size: int = 64,
        device: str | None = None,
    ) -> None:
        self.checkpoints = checkpoints
        self.learning_rates = learning_rates
        self.layer = layer
        self.batch_size = batch_size
        self.device = device

    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        influence = import_peer("captum.influence", self.name)
        files = self._checkpoints(model)
        net = copy.deepcopy(model)
        name, _ = classifier_layer(net, self.layer)
        self.peer_ = influence.TracInCPFast(
            net,
            dict(net.named_modules())[name],
            tensor_dataset(train_dataset),
            checkpoints=[path for path, _ in files],
            checkpoints_load_func=self._loader(files),
            # TracInCPFast needs a reducing loss; "sum" keeps per-sample gradients unscaled
            loss_fn=nn.CrossEntropyLoss(reduction="sum"),
            batch_size=self.batch_size,
        )


@register("captum.arnoldi")
class CaptumArnoldi(_CaptumExplainer):
    """Captum ``ArnoldiInfluenceFunction`` (Schioppa et al. 2022) at the fitted model's weights.

    ``A = g_test^T H_k^{-1} g_train`` with ``H_k`` the top-``projection_dim`` eigenpairs of the
    training-loss Hessian found by ``arnoldi_dim`` Arnoldi steps (``hessian_reg`` added to the
    projected diagonal). Native equivalent: ``influence(solver="arnoldi")``.
    """

    summary = "Captum ArnoldiInfluenceFunction (peer implementation of influence, arnoldi)"
    citation = CITATION

    def __init__(
        self,
        projection_dim: int = 50,
        arnoldi_dim: int = 200,
        hessian_reg: float = 1e-3,
        seed: int = 0,
        batch_size: int = 64,
        device: str | None = None,
    ) -> None:
        self.projection_dim = projection_dim
        self.arnoldi_dim = arnoldi_dim
        self.hessian_reg = hessian_reg
        self.seed = seed
        self.batch_size = batch_size
        self.device = device

    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        arnoldi = import_peer("captum.influence._core.arnoldi_influence_function", self.name)
        files = self._checkpoints(model)
        self.peer_ = arnoldi.ArnoldiInfluenceFunction(
            copy.deepcopy(model),
            tensor_dataset(train_dataset),
            files[0][0],
            checkpoints_load_func=self._loader(files),
            loss_fn=nn.CrossEntropyLoss(reduction="none"),
            batch_size=self.batch_size,
            projection_dim=self.projection_dim,
            arnoldi_dim=self.arnoldi_dim,
            hessian_reg=self.hessian_reg,
            seed=self.seed,
        )
