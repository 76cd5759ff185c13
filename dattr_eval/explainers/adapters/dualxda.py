"""The authors' DualView / DualDA package (``dualxda`` with the scikit-learn fork ``dualxda-skl``).

``dualxda.DualDA`` fits ``sklearn_dual.svm.LinearSVC(multi_class="crammer_singer",
fit_intercept=True)`` on the classifier layer's input features and exposes the dual variables.
It already returns ``(n_test, n_train)`` with positive = supports. Native equivalent:
``dualview`` with ``fit_intercept=True`` (the bias is left out of the kernel in both).
"""

from __future__ import annotations

import contextlib
import copy
import io

import torch
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.explainers import register
from dattr_eval.explainers.adapters._common import import_peer, tensor_dataset, workdir
from dattr_eval.explainers.base import Explainer
from dattr_eval.explainers.features import classifier_layer


@register("dualxda.dualview")
class DualXDADualView(Explainer):
    """The authors' ``DualDA``: ``A[x, j] = alpha_{j, c} <phi_j, phi(x)>`` (liblinear's CS dual).

    Hyperparameters: ``C``, ``max_iter`` (as the package; liblinear's own iteration cap applies,
    see the notes), ``layer`` (classifier layer name; ``None`` = last ``nn.Linear``).
    Fitted: ``dual_coef_`` ``(n_train, K)`` float32 (zero rows for non-support vectors),
    ``active_`` ``(n_train,)`` bool rows the package keeps (any ``alpha != 0``, ``isclose``).
    ``self_influence`` is the package's ``||phi_j||^2 alpha_{j, y_j}``.
    """

    summary = "the authors' dualxda DualDA (peer implementation of dualview)"
    citation = (
        "Yolcu et al., DualView: Data Attribution from the Dual Perspective, 2024 (dualxda package)"
    )

    def __init__(
        self,
        C: float = 1e-3,
        max_iter: int = 1_000_000,
        layer: str | None = None,
        batch_size: int = 256,
        device: str | None = None,
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.layer = layer
        self.batch_size = batch_size
        self.device = device

    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        dualxda = import_peer("dualxda", self.name)

        # Workaround: DualDA.__init__ reads ``self.name`` (its cache sub-directory) but never sets
        # it (dualxda 0.1.0); a fresh temporary cache also avoids its non-weights_only torch.load.
        class _DualDA(dualxda.DualDA):
            name = "dualda"

        net = copy.deepcopy(model).eval()  # DualDA leaves a forward hook on the model it gets
        layer, _ = classifier_layer(net, self.layer)
        self.workdir_ = workdir("dualxda")
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints progress messages
            self.peer_ = _DualDA(
                net,
                tensor_dataset(train_dataset),
                layer,
                str(self.device_),
                self.workdir_.name,
                C=self.C,
                max_iter=self.max_iter,
            )
        self.active_ = self.peer_._active_indices.bool()
        # The coefficient columns follow the *present* training labels (liblinear's classes_),
        # so a class missing from the training set would shift every column after it.
        classes = torch.unique(self.train_labels_)
        if not torch.equal(classes.cpu(), torch.arange(classes.numel())):
            raise ValueError(
                f"{self.name} needs every class 0..K-1 in the training labels, got {classes.tolist()}"
            )
        coef = torch.zeros(self.n_train_, self.peer_.coefficients.shape[1], device=self.device_)
        coef[self.active_.to(self.device_)] = self.peer_.coefficients.float()
        self.dual_coef_ = coef

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # Workaround: DualDA.attribute squeezes its (b, n_sv, 1) result, which loses the batch
        # axis for one test input or one support vector; ask for the support columns only and
        # rebuild the (b, n_train) layout here.
        scores = self.peer_.attribute(inputs, targets, drop_zero_columns=True)
        scores = scores.reshape(inputs.shape[0], -1).float()
        out = scores.new_zeros(inputs.shape[0], self.n_train_)
        out[:, self.active_.to(out.device)] = scores
        return out

    def _self_influence(self) -> torch.Tensor:
        return self.peer_.self_influences().float().to(self.device_)
