"""Ground-truth providers: what the evaluator adds to a benchmark's ground truth for its metrics.

Metrics declare what they ``require`` (class-level). Each required name is either a field the
benchmark's ``GroundTruth`` already holds (labels, flipped or marked indices, ...) or one of the
providers here, which need the fitted explainer or the retraining service:

- ``self_influence`` (cell): ``explainer.self_influence()``, ``(n_train,)``;
- ``randomized_attributions`` (per test batch): the same explainer fitted on a copy of the model
  with re-initialised weights (:func:`randomize_model`), explaining the same batch;
- ``retrained_outputs`` (after the batches): the retraining service trains what a
  ``RetrainingMetric`` requests (``evaluation.retraining``); needs ``benchmark.retrain``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from dattr_eval.benchmarks import Benchmark
from dattr_eval.explainers.base import Explainer
from dattr_eval.metrics.base import RETRAINED_OUTPUTS, Metric

SELF_INFLUENCE = "self_influence"
RANDOMIZED = "randomized_attributions"
#: every provider name, with whether a benchmark can supply it
PROVIDERS: dict[str, str] = {
    SELF_INFLUENCE: "the fitted explainer's self_influence()",
    RANDOMIZED: "the explainer refitted on a weight-randomised copy of the model",
    RETRAINED_OUTPUTS: "models retrained on training subsets (needs the benchmark's retrain recipe)",
}


def provided(bench: Benchmark) -> set[str]:
    """The provider names ``bench`` supports (``retrained_outputs`` only with a retrain recipe)."""
    names = {SELF_INFLUENCE, RANDOMIZED}
    if bench.retrain is not None:
        names.add(RETRAINED_OUTPUTS)
    return names


def missing_ground_truth(metric: Metric, bench: Benchmark) -> list[str]:
    """The names ``metric`` requires that neither ``bench.truth`` nor a provider can supply."""
    supplied = provided(bench)
    return [
        name
        for name in metric.requires
        if name not in supplied
        and (not hasattr(bench.truth, name) or getattr(bench.truth, name) is None)
    ]


def randomize_model(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with every parameterised layer re-initialised (``reset_parameters``).

    Seeded by ``seed`` without touching the global RNG state; the original is unchanged.
    """
    randomized = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in randomized.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return randomized.eval()


def attach_training_run(explainer: Explainer, checkpoints: Sequence[Any]) -> Explainer:
    """Give ``explainer`` the benchmark's training checkpoints if it takes them and has none set.

    The convention of ``explainers.gradients.resolve_checkpoints`` (TracIn): an explainer opts in
    with a ``checkpoints`` hyperparameter (``None`` = use the fitted model only) and optionally
    ``learning_rates``. Each benchmark checkpoint has ``path``, ``epoch`` and ``lr``
    (``dattr_eval.models.Checkpoint``), or holds its ``state`` dict in memory
    (``evaluation.portable.InlineCheckpoint``); the paths (or state dicts) and the learning rates in
    use when each was saved are set. Explainers given explicit checkpoints keep them.
    """
    params = explainer.get_params()
    if not checkpoints or "checkpoints" not in params or params["checkpoints"] is not None:
        return explainer
    explainer.checkpoints = [
        c.state if getattr(c, "state", None) is not None else str(c.path) for c in checkpoints
    ]
    if "learning_rates" in params:
        explainer.learning_rates = [float(c.lr) for c in checkpoints]
    return explainer
