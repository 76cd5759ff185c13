"""The ``loss`` reference row: each training sample's loss as its self-influence."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.data.loading import make_loader
from dattr_eval.explainers import NotApplicableError, register
from dattr_eval.explainers.base import Explainer
from dattr_eval.explainers.memory import block_bytes, feature_shape, sample_batch


@register("loss")
class LossBaseline(Explainer):
    """Training loss as self-influence: the classic mislabel-detection baseline (no attribution).

    ``self_influence()[j]`` is the cross-entropy ``-log p_{y_j}(x_j)`` of training sample ``j``
    under the fitted model, with its (possibly flipped) training label: a sample the model does
    not fit ranks first, which is what mislabel detection rewards. There is no honest per-test
    definition (the loss of a training sample does not depend on the test input), so
    ``explain`` / ``explain_topk`` raise :class:`~dattr_eval.explainers.NotApplicableError`;
    evaluators mark per-test metrics "not applicable" for this row.

    Cost: one forward pass over the training set at ``self_influence`` (none at ``fit``).
    """

    summary = "training loss of each sample as self-influence (reference row; no attributions)"
    #: a reference row in leaderboards: shown, never shifting the methods' ranks
    role = "reference"
    citation = "—"

    def __init__(self, batch_size: int = 256, device: str | None = None) -> None:
        self.batch_size = batch_size
        self.device = device

    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        pass

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotApplicableError(
            f"explainer {self.name!r} has no per-test attributions (only self_influence, the "
            "training loss): per-test metrics do not apply to it"
        )

    @torch.no_grad()
    def _self_influence(self) -> torch.Tensor:
        losses = []
        for x, y in make_loader(self.train_dataset_, self.batch_size):
            logits = self.model_(x.to(self.device_))
            y = torch.as_tensor(y).long().to(self.device_)
            losses.append(F.cross_entropy(logits.float(), y, reduction="none"))
        return torch.cat(losses) if losses else torch.zeros(0, device=self.device_)

    def estimate_memory(
        self, model: nn.Module, train_dataset: Dataset, n_test: int, batch_size: int
    ) -> int:
        """Estimated peak extra bytes: one batch of logits and the ``(n_train,)`` losses (twice)."""
        _, k = feature_shape(model, sample_batch(train_dataset))
        return int(block_bytes(self.batch_size, k) + 2 * block_bytes(len(train_dataset)))
