"""kronfluence (Grosse et al. 2023) EK-FAC influence as the explainer ``kronfluence.ekfac``.

kronfluence returns a dict ``{"all_modules": (n_query, n_train)}``; its pairwise score is
``g_test^T (G + damping I)^{-1} g_train`` with the loss as measurement, positive = upweighting the
training sample lowers the test loss = supports, as ours. Native equivalent: ``influence``
(another Hessian approximation: compare for correlation, not equality); with
``strategy="identity"`` the preconditioner is the identity and the scores equal ``tracin`` with
one checkpoint (the plumbing check of the tests).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from dattr_eval.explainers import register
from dattr_eval.explainers.adapters._common import import_peer, tensor_dataset, workdir
from dattr_eval.explainers.base import Explainer


def _classification_task(task_base: type, seed: int):
    """A kronfluence ``Task``: summed cross-entropy as train loss and as measurement."""
    generator = torch.Generator().manual_seed(seed)

    class Classification(task_base):
        def compute_train_loss(self, batch, model, sample=False):
            x, y = batch
            logits = model(x)
            if sample:  # labels drawn from the model (true Fisher), seeded for reproducibility
                with torch.no_grad():
                    probs = logits.softmax(1).cpu()
                    y = torch.multinomial(probs, 1, generator=generator).flatten().to(logits.device)
            return F.cross_entropy(logits, y, reduction="sum")

        def compute_measurement(self, batch, model):
            x, y = batch
            return F.cross_entropy(model(x), y, reduction="sum")

    return Classification()


@register("kronfluence.ekfac")
class KronfluenceEKFAC(Explainer):
    """kronfluence ``Analyzer``: factors fitted at ``fit``, pairwise scores per ``explain``.

    Hyperparameters: ``strategy`` (kronfluence's ``"ekfac"``, ``"kfac"``, ``"diagonal"`` or
    ``"identity"``), ``damping`` (``damping_factor``; ``None`` = 0.1 x mean eigenvalue),
    ``use_empirical_fisher`` (training labels instead of labels sampled from the model, seeded by
    ``seed``). Only ``nn.Linear`` / ``nn.Conv2d`` parameters are covered (kronfluence's modules).

    Cost: kronfluence recomputes the training gradients at every ``explain`` call.
    """

    summary = "kronfluence EK-FAC influence (peer implementation of influence)"
    citation = (
        "Grosse et al., Studying Large Language Model Generalization with Influence Functions, "
        "2023 (kronfluence package)"
    )

    def __init__(
        self,
        strategy: str = "ekfac",
        damping: float | None = 1e-8,
        use_empirical_fisher: bool = False,
        seed: int = 0,
        batch_size: int = 64,
        device: str | None = None,
    ) -> None:
        self.strategy = strategy
        self.damping = damping
        self.use_empirical_fisher = use_empirical_fisher
        self.seed = seed
        self.batch_size = batch_size
        self.device = device

    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        analyzer = import_peer("kronfluence.analyzer", self.name)
        arguments = import_peer("kronfluence.arguments", self.name)
        task = _classification_task(import_peer("kronfluence.task", self.name).Task, self.seed)
        self.workdir_ = workdir("kronfluence")
        self.train_data_ = tensor_dataset(train_dataset)
        self.peer_ = analyzer.Analyzer(
            analysis_name="dattr_eval",
            model=analyzer.prepare_model(copy.deepcopy(model), task),
            task=task,
            cpu=self.device_.type == "cpu",
            disable_tqdm=True,
            disable_model_save=True,
            output_dir=self.workdir_.name,
        )
        self.score_args_ = arguments.ScoreArguments(damping_factor=self.damping)
        self.peer_.fit_all_factors(
            factors_name="factors",
            dataset=self.train_data_,
            per_device_batch_size=self.batch_size,
            factor_args=arguments.FactorArguments(
                strategy=self.strategy, use_empirical_fisher=self.use_empirical_fisher
            ),
            overwrite_output_dir=True,
        )

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.peer_.compute_pairwise_scores(
            scores_name="pairwise",
            factors_name="factors",
            query_dataset=TensorDataset(inputs.cpu(), targets.cpu()),
            train_dataset=self.train_data_,
            per_device_query_batch_size=inputs.shape[0],
            per_device_train_batch_size=self.batch_size,
            score_args=self.score_args_,
            overwrite_output_dir=True,
        )
        return self.peer_.load_pairwise_scores("pairwise")["all_modules"].float().to(self.device_)

    def _self_influence(self) -> torch.Tensor:
        self.peer_.compute_self_scores(
            scores_name="self",
            factors_name="factors",
            train_dataset=self.train_data_,
            per_device_train_batch_size=self.batch_size,
            score_args=self.score_args_,
            overwrite_output_dir=True,
        )
        return self.peer_.load_self_scores("self")["all_modules"].float().to(self.device_)
