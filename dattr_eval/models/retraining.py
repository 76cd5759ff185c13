"""Retrainers: how a benchmark retrains its model on a subset of the training set.

A retrainer is content-identified (``fingerprint()``) so that the evaluator's retraining service
can cache outputs by content: the fingerprint changes whenever the architecture, its
initialisation, or the training recipe changes. ``RecipeRetrainer`` trains the built-in
architectures with a ``TrainRecipe``; a user benchmark with its own architecture subclasses
``Retrainer`` and states its own fingerprint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from dattr_eval.models.ensemble import ensemble_outputs
from dattr_eval.models.training import TrainRecipe, train_model
from dattr_eval.validation import check_positive


@torch.no_grad()
def target_log_probs(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 512
) -> torch.Tensor:
    """``log_softmax(model(x))[target]`` per input: ``(n,)`` float32 on CPU (the DualView LDS output)."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, inputs.shape[0], batch_size):
        logits = model(inputs[start : start + batch_size].to(device)).float()
        t = targets[start : start + batch_size].to(device)
        out.append(torch.log_softmax(logits, -1).gather(1, t[:, None])[:, 0].cpu())
    return torch.cat(out)


class Retrainer:
    """Trains fresh models on training subsets and scores a test set with them.

    Subclasses implement ``fingerprint`` (a string that changes whenever the trained models would)
    and ``train`` (one model); ``outputs`` may be overridden to train several models at once.
    """

    def fingerprint(self) -> str:
        """Content identity of the training procedure (architecture, initialisation, recipe)."""
        raise NotImplementedError

    def train(self, train_dataset: Dataset, indices: torch.Tensor, seed: int) -> nn.Module:
        """A model trained from scratch on ``train_dataset[indices]`` with training seed ``seed``."""
        raise NotImplementedError

    def outputs(
        self,
        train_dataset: Dataset,
        requests: Sequence[tuple[torch.Tensor, int]],
        test_inputs: torch.Tensor,
        test_targets: torch.Tensor,
    ) -> torch.Tensor:
        """``(len(requests), n_test)`` float32: ``target_log_probs`` of the model trained per request.

        Each request is ``(sorted int64 training indices, seed)``. Default: one model at a time.
        """
        return torch.stack(
            [
                target_log_probs(self.train(train_dataset, idx, seed), test_inputs, test_targets)
                for idx, seed in requests
            ]
        )


@dataclasses.dataclass(frozen=True)
class RecipeRetrainer(Retrainer):
    """Retrains a built-in architecture with ``recipe`` (its ``seed`` replaced per request).

    Attributes:
        recipe: the training recipe of every retrained model.
        min_samples: subset-size-aware epochs: a model trained on ``n`` samples runs
            ``max(recipe.epochs, ceil(min_samples / n))`` epochs, so a small subset still gets
            about ``min_samples`` sample-steps of SGD (``None``: ``recipe.epochs`` for every size).
    """

    recipe: TrainRecipe
    min_samples: int | None = None

    def __post_init__(self) -> None:
        if self.min_samples is not None:
            check_positive(self.min_samples, "min_samples", integer=True)

    def fingerprint(self) -> str:
        fields = {**dataclasses.asdict(self.recipe), "seed": None}
        content = {"recipe": fields, "torch": torch.__version__}
        if self.min_samples is not None:  # absent otherwise: earlier cache entries stay valid
            content["min_samples"] = self.min_samples
        payload = json.dumps(content, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def epochs_for(self, n_samples: int) -> int:
        """Epochs of a model trained on ``n_samples`` samples (see ``min_samples``)."""
        if self.min_samples is None or n_samples <= 0:
            return self.recipe.epochs
        return max(self.recipe.epochs, math.ceil(self.min_samples / n_samples))

    def train(self, train_dataset: Dataset, indices: torch.Tensor, seed: int) -> nn.Module:
        recipe = dataclasses.replace(
            self.recipe, seed=int(seed), epochs=self.epochs_for(len(indices))
        )
        subset = Subset(train_dataset, [int(i) for i in indices])
        return train_model(recipe, subset, None).model

    def outputs(
        self,
        train_dataset: Dataset,
        requests: Sequence[tuple[torch.Tensor, int]],
        test_inputs: torch.Tensor,
        test_targets: torch.Tensor,
    ) -> torch.Tensor:
        """All requests trained as ensembles (``models.ensemble.ensemble_outputs``), one per
        number of epochs, each member equal to ``train`` on its own (bitwise on CPU)."""
        out = torch.empty(len(requests), test_inputs.shape[0])
        by_epochs: dict[int, list[int]] = {}
        for position, (indices, _) in enumerate(requests):
            by_epochs.setdefault(self.epochs_for(len(indices)), []).append(position)
        for epochs, positions in sorted(by_epochs.items()):
            out[positions] = ensemble_outputs(
                dataclasses.replace(self.recipe, epochs=epochs),
                train_dataset,
                [requests[p][0] for p in positions],
                [int(requests[p][1]) for p in positions],
                test_inputs,
                test_targets,
            )
        return out
