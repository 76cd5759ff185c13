"""Representer Point Selection (Yeh et al. 2018): a kernel decomposition of an L2-regularised last layer."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from dattr_eval.explainers import register
from dattr_eval.explainers.base import Explainer
from dattr_eval.explainers.features import classifier_layer, extract_features
from dattr_eval.explainers.memory import FLOAT64, block_bytes, feature_shape, sample_batch
from dattr_eval.validation import check_choice, check_positive

#: what the surrogate layer is fitted to (``Representer.fit_to``)
FIT_TARGETS = ("model", "labels")


def fit_representer_layer(
    features: torch.Tensor,
    soft_targets: torch.Tensor,
    l2: float,
    *,
    init: torch.Tensor | None = None,
    max_iter: int = 1000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit ``W (K, d)`` minimising ``(1/n) sum_j CE(softmax(W phi_j), p_j) + l2 * ||W||_F^2``.

    Full-batch L-BFGS (strong Wolfe line search) in float64; the problem is strictly convex.

    Args:
        features: ``phi`` ``(n, d)``.
        soft_targets: ``p`` ``(n, K)``, rows on the simplex (the model's softmax outputs).
        init: starting ``W (K, d)`` (the model's last-layer weights); ``None`` = zeros.

    Returns:
        ``W (K, d)`` and the representer coefficients ``alpha (n, K)`` =
        ``-(softmax(W phi_j) - p_j) / (2 l2 n)``, both float64, so that ``W ~= alpha^T phi`` at the optimum.
    """
    phi, p = features.double(), soft_targets.double()
    n = phi.shape[0]
    weight = (
        init.detach().double().clone()
        if init is not None
        else phi.new_zeros(p.shape[1], phi.shape[1])
    )
    weight.requires_grad_(True)
    opt = torch.optim.LBFGS(
        [weight],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def objective() -> torch.Tensor:
        opt.zero_grad()
        loss = -(p * F.log_softmax(phi @ weight.T, dim=1)).sum() / n + l2 * (weight * weight).sum()
        loss.backward()
        return loss

    opt.step(objective)
    weight = weight.detach()
    alpha = -(F.softmax(phi @ weight.T, dim=1) - p) / (2 * l2 * n)
    return weight, alpha


@register("representer")
class Representer(Explainer):
    """Representer Point Selection (Yeh et al., NeurIPS 2018).

    Fit: features ``phi_j (n_train, d)`` = the input of the classifier layer and the model's softmax
    outputs ``p_j (n_train, K)``; an L2-regularised linear layer without bias is fitted to them,
    ``min_W (1/n) sum_j CE(softmax(W phi_j), p_j) + l2 ||W||^2`` (started at the model's weights;
    the authors use ``l2 = 0.003`` and a line-searched gradient descent, here L-BFGS). At its
    stationary point ``W = sum_j alpha_j phi_j^T`` with
    ``alpha_j = -(softmax(W phi_j) - p_j) / (2 l2 n)`` (the representer theorem), so

        A[i, j] = alpha_{j, c_i} * <phi_j, phi(x_i)>,

    and ``sum_j A[i, j]`` is the surrogate's logit ``(W phi(x_i))_{c_i}``. ``self_influence`` is
    ``alpha_{j, y_j} ||phi_j||^2`` (the diagonal).

    The bias of the model's classifier is not part of the surrogate (as in the paper).

    ``fit_to="labels"`` fits the surrogate to the one-hot *training labels* instead of the
    model's outputs (the representer theorem of the training objective itself): then
    ``alpha_{j, y_j} = (1 - softmax(W phi_j)_{y_j}) / (2 l2 n) >= 0`` grows with the surrogate's
    loss on sample ``j``. With the default ``fit_to="model"`` (the authors' code) the labels enter
    only through the model's probabilities: ``alpha_{j, y_j}`` is ``(p_{y_j} - s_{y_j}) / (2 l2
    n)``, large for labels the model memorised beyond what the smooth surrogate fits and negative
    for labels it did not fit, so a flipped label the model never learnt ranks *low* by
    ``self_influence`` (mislabel detection below chance when the model fits few flipped labels;
    see ``tests/test_representer.py``).

    Cost: one forward pass over the training set and a convex fit on ``(n_train, d)`` features at
    ``fit``; one forward pass and an ``(n_test, d) x (d, n_train)`` product per ``explain``.
    Memory: ``n_train x (d + K)``.
    Fitted: ``features_ (n_train, d)``, ``alpha_ (n_train, K)``, ``weight_ (K, d)``, ``stationarity_``
    (``||W - alpha^T phi|| / ||W||``, warned about above ``1e-3``).
    """

    summary = "representer points: kernel decomposition of an L2-regularised last layer"
    citation = (
        "Yeh et al., Representer Point Selection for Explaining Deep Neural Networks, NeurIPS 2018"
    )

    def __init__(
        self,
        l2: float = 0.003,
        layer: str | None = None,
        max_iter: int = 1000,
        fit_to: str = "model",
        batch_size: int = 256,
        device: str | None = None,
    ) -> None:
        self.l2 = l2
        self.layer = layer
        self.max_iter = max_iter
        self.fit_to = fit_to
        self.batch_size = batch_size
        self.device = device

    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        check_positive(self.l2, "l2")
        check_positive(self.max_iter, "max_iter", integer=True)
        check_choice(self.fit_to, "fit_to", FIT_TARGETS)
        phi, logits = extract_features(
            model, train_dataset, layer=self.layer, batch_size=self.batch_size, device=self.device_
        )
        init = getattr(classifier_layer(model, self.layer)[1], "weight", None)
        if init is None or tuple(init.shape) != (logits.shape[1], phi.shape[1]):
            init = None
        weight, alpha = fit_representer_layer(
            phi, self._targets(logits), self.l2, init=init, max_iter=self.max_iter
        )
        self.stationarity_ = float(
            (weight - alpha.T @ phi.double()).norm() / weight.norm().clamp_min(1e-30)
        )
        if self.stationarity_ > 1e-3:
            warnings.warn(
                f"representer layer not at its optimum (||W - alpha^T phi|| / ||W|| = "
                f"{self.stationarity_:.1e}); attributions do not sum to the surrogate logits. "
                "Increase max_iter.",
                stacklevel=3,
            )
        self.features_ = phi.float()
        self.alpha_ = alpha.float()
        self.weight_ = weight.float()

    def _targets(self, logits: torch.Tensor) -> torch.Tensor:
        """The surrogate's targets ``(n_train, K)`` float64: the model's softmax, or one-hot labels."""
        if self.fit_to == "model":
            return F.softmax(logits.double(), dim=1)
        labels = self.train_labels_.to(logits.device)
        return F.one_hot(labels, logits.shape[1]).double()

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        phi, _ = extract_features(
            self.model_,
            TensorDataset(inputs, targets),
            layer=self.layer,
            batch_size=self.batch_size,
            device=self.device_,
            parallel=False,  # a test batch: never sharded over Ray
        )
        return (phi @ self.features_.T) * self.alpha_[:, targets].T

    def _self_influence(self) -> torch.Tensor:
        coef = self.alpha_.gather(1, self.train_labels_.to(self.alpha_.device)[:, None]).squeeze(1)
        return coef * (self.features_ * self.features_).sum(1)

    def estimate_memory(
        self, model: nn.Module, train_dataset: Dataset, n_test: int, batch_size: int
    ) -> int:
        """Estimated peak extra bytes of ``fit`` + explaining ``batch_size`` inputs + ``self_influence``.

        The features ``n_train x d`` (float32, gathered then concatenated: twice) and their
        float64 copy, the logits and softmax targets, the L-BFGS objective's ``n_train x K``
        float64 temporaries, ``alpha``; at ``explain`` three ``(b, n_train)`` blocks.
        """
        n, b = len(train_dataset), min(batch_size, max(1, n_test))
        d, k = feature_shape(model, sample_batch(train_dataset), self.layer)
        return int(
            3 * block_bytes(n, d)
            + block_bytes(n, d, FLOAT64)
            + 2 * block_bytes(n, k)
            + 8 * block_bytes(n, k, FLOAT64)
            + 3 * block_bytes(b, n)
            + block_bytes(n)
        )
