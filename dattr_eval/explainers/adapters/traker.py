"""MadryLab's ``traker`` (Park et al. 2023) as the explainer ``traker.trak``.

``TRAKer`` returns scores ``(n_train, n_test)``: transposed here to ``(n_test, n_train)``.
Positive = supports in both. Native equivalent: ``trak`` (same formula; traker also rescales
the kernel inverse per model, a positive constant for a single model).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.data.loading import stack_dataset
from dattr_eval.explainers import register
from dattr_eval.explainers.adapters._common import import_peer, workdir
from dattr_eval.explainers.base import Explainer
from dattr_eval.explainers.gradients import Checkpoint, load_checkpoint, resolve_checkpoints


def traker_projection(
    grad_dim: int, proj_dim: int, seed: int, model_id: int, block_size: int = 100
) -> torch.Tensor:
    """The ``(grad_dim, proj_dim)`` Gaussian matrix of traker's CPU ``BasicProjector`` for ``model_id``.

    Block ``i`` (``block_size`` columns) is drawn from ``manual_seed(seed + 1000 i + 100000
    model_id)``, as traker 0.3.2 does; lets ``trak`` project with the same matrices to compare
    formulas without the randomness (``tests/test_trak.py``).
    """
    out = torch.empty(grad_dim, proj_dim)
    for i, start in enumerate(range(0, proj_dim, block_size)):
        gen = torch.Generator().manual_seed(seed + 1000 * i + 100000 * model_id)
        block = torch.empty(grad_dim, block_size).normal_(generator=gen)
        out[:, start : start + block_size] = block[:, : min(block_size, proj_dim - start)]
    return out


@register("traker.trak")
class TrakerTRAK(Explainer):
    """traker's ``TRAKer`` (task ``image_classification``, CPU ``BasicProjector``, float32).

    Hyperparameters: ``checkpoints`` (ensemble members: state dicts, paths or modules; ``None`` =
    the fitted model), ``projection_dim`` (``None`` = traker's ``NoOpProjector``: the exact
    ``p x p`` kernel, small models only), ``regularization`` (added to the kernel's diagonal as in
    ``trak``; passed to traker as ``lambda_reg = regularization / n_params``), ``seed``
    (traker's projector seed), ``block_size`` (columns per seeded Gaussian block).

    Cost: traker scores one experiment per ``explain`` call, re-loading every checkpoint;
    ``self_influence`` is the diagonal of explaining the training set (the base fallback),
    ``n_train / batch_size`` experiments.
    """

    summary = "traker TRAKer (peer implementation of trak)"
    citation = "Park et al., TRAK: Attributing Model Behavior at Scale, ICML 2023 (traker package)"

    def __init__(
        self,
        checkpoints: Sequence[Checkpoint] | None = None,
        projection_dim: int | None = 512,
        regularization: float = 0.0,
        seed: int = 0,
        block_size: int = 100,
        batch_size: int = 64,
        device: str | None = None,
    ) -> None:
        self.checkpoints = checkpoints
        self.projection_dim = projection_dim
        self.regularization = regularization
        self.seed = seed
        self.block_size = block_size
        self.batch_size = batch_size
        self.device = device

    def _projector(self, grad_dim: int):
        projectors = import_peer("trak.projectors", self.name)
        if self.projection_dim is None:
            return projectors.NoOpProjector(
                grad_dim, grad_dim, self.seed, device=str(self.device_)
            ), grad_dim
        # Workaround: with a single block (block_size >= projection_dim) traker 0.3.2 frees the
        # matrix in finalize_features and then fails at score; keep at least two blocks.
        block = min(self.block_size, max(1, self.projection_dim // 2))
        projector = projectors.BasicProjector(
            grad_dim,
            self.projection_dim,
            self.seed,
            projectors.ProjectionType.normal,
            str(self.device_),
            block_size=block,
        )
        return projector, self.projection_dim

    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        trak = import_peer("trak", self.name)
        self.states_ = [
            model.state_dict() if c is None else load_checkpoint(c)
            for c, _ in resolve_checkpoints(self.checkpoints)
        ]
        net = copy.deepcopy(model).eval()
        grad_dim = sum(p.numel() for p in net.parameters())
        projector, proj_dim = self._projector(grad_dim)
        self.workdir_ = workdir("traker")
        self.peer_ = trak.TRAKer(
            model=net,
            task="image_classification",
            train_set_size=self.n_train_,
            save_dir=self.workdir_.name,
            device=str(self.device_),
            projector=projector,
            proj_dim=proj_dim,
            use_half_precision=False,
            projector_seed=self.seed,
            # traker divides gradients by sqrt(n_params) before X^T X, so its lambda_reg is ours / n_params
            lambda_reg=self.regularization / grad_dim,
            logging_level=40,
        )
        x, y = stack_dataset(train_dataset)
        for model_id, state in enumerate(self.states_):
            self.peer_.load_checkpoint(state, model_id=model_id)
            for start in range(0, self.n_train_, self.batch_size):
                batch = (
                    x[start : start + self.batch_size].to(self.device_),
                    y[start : start + self.batch_size].to(self.device_),
                )
                self.peer_.featurize(batch=batch, num_samples=batch[0].shape[0])
        self.peer_.finalize_features()
        self._experiments = itertools.count()

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # one scoring experiment per call: traker keeps scores per experiment name on disk
        name = f"explain_{next(self._experiments)}"
        for model_id, state in enumerate(self.states_):
            self.peer_.start_scoring_checkpoint(
                exp_name=name, checkpoint=state, model_id=model_id, num_targets=inputs.shape[0]
            )
            for start in range(0, inputs.shape[0], self.batch_size):
                batch = (
                    inputs[start : start + self.batch_size],
                    targets[start : start + self.batch_size],
                )
                self.peer_.score(batch=batch, num_samples=batch[0].shape[0])
        scores = torch.as_tensor(self.peer_.finalize_scores(exp_name=name).copy())
        return scores.T.float().to(self.device_)  # traker: (n_train, n_test)
