"""Ground truth that needs more than one explanation or model: produced here, handed to metrics.

- ``randomize_model``: a copy of the model with freshly initialised weights (model randomisation).
- ``lds_ground_truth``: ``m`` random training subsets and the outputs of models retrained on them
  (linear datamodeling score), computed once per benchmark and cached on disk.
- ``make_retrain_fn``: retrain on chosen training indices (coreset / pruning / leave-k-out).
- ``attach_training_run``: hand the benchmark's training checkpoints to explainers that use them.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from dattr_eval.explainers.base import Explainer


def default_cache_dir() -> Path:
    """``$DATTR_EVAL_CACHE`` if set, else ``~/.cache/dattr_eval``."""
    return Path(os.environ.get("DATTR_EVAL_CACHE", Path.home() / ".cache" / "dattr_eval"))


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
    (``dattr_eval.models.Checkpoint``); the paths and the learning rates in use when each was
    saved are set. Explainers given explicit checkpoints keep them.
    """
    params = explainer.get_params()
    if not checkpoints or "checkpoints" not in params or params["checkpoints"] is not None:
        return explainer
    explainer.checkpoints = [str(c.path) for c in checkpoints]
    if "learning_rates" in params:
        explainer.learning_rates = [float(c.lr) for c in checkpoints]
    return explainer


@torch.no_grad()
def target_log_probs(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """``log softmax(model(x))[target]`` per input, ``(n,)`` float32 on CPU (the DualView paper's LDS output)."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, inputs.shape[0], batch_size):
        logits = model(inputs[start : start + batch_size].to(device)).float()
        t = targets[start : start + batch_size].to(device)
        out.append(torch.log_softmax(logits, -1).gather(1, t[:, None])[:, 0].cpu())
    return torch.cat(out)


def lds_subsets(n_train: int, m: int, fraction: float, seed: int) -> torch.Tensor:
    """``(m, n_train)`` bool masks, each a seeded random subset of ``round(fraction · n_train)`` samples."""
    gen = torch.Generator().manual_seed(seed)
    size = max(1, round(fraction * n_train))
    masks = torch.zeros(m, n_train, dtype=torch.bool)
    for i in range(m):
        masks[i, torch.randperm(n_train, generator=gen)[:size]] = True
    return masks


def lds_ground_truth(
    bench: Any, retrain_fn: Callable[[torch.Tensor], torch.Tensor], progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Subset masks ``(m, n_train)`` and retrained outputs ``(m, n_test)`` for ``bench``.

    ``m = bench.lds_subsets`` seeded random subsets of ``bench.lds_fraction · n_train`` samples;
    row ``i`` of the outputs is ``retrain_fn`` (see ``make_retrain_fn``, which caches) on subset ``i``.
    """
    masks = lds_subsets(bench.n_train, bench.lds_subsets, bench.lds_fraction, bench.seed)
    outputs = [
        retrain_fn(mask.nonzero()[:, 0])
        for mask in tqdm(
            masks, desc=f"{bench.name}: LDS retraining", leave=False, disable=not progress
        )
    ]
    return masks, torch.stack(outputs)


def _test_digest(bench: Any) -> str:
    test_key = (
        bench.truth.test_indices if bench.truth.test_indices is not None else bench.test_inputs
    )
    return hashlib.blake2b(test_key.cpu().contiguous().numpy().tobytes(), digest_size=6).hexdigest()


def make_retrain_fn(bench: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """``train_indices (k,) int64 -> (n_test,) float32``: retrain on those samples, score the test set.

    The output is ``log_softmax(model(x_t))[target_t]`` for every explained test sample in
    benchmark order (``GroundTruth.retrain_fn``'s contract, the same output as LDS). Results are
    cached per index set in memory and, when ``bench.cache_dir`` is set, on disk.
    """
    if bench.retrain is None:
        raise ValueError(f"benchmark {bench.name!r} has no retrain recipe")
    memo: dict[str, torch.Tensor] = {}
    folder = (
        Path(bench.cache_dir) / "retrain" / f"{bench.name}-{_test_digest(bench)}"
        if bench.cache_dir
        else None
    )

    def retrain_fn(train_indices: torch.Tensor) -> torch.Tensor:
        indices = torch.as_tensor(train_indices).long().cpu()
        key = hashlib.blake2b(indices.contiguous().numpy().tobytes(), digest_size=10).hexdigest()
        if key in memo:
            return memo[key]
        path = folder / f"{key}.pt" if folder is not None else None
        if path is not None and path.exists():
            memo[key] = torch.load(path, weights_only=True)
            return memo[key]
        outputs = target_log_probs(
            bench.retrain(indices), bench.test_inputs, bench.truth.test_targets
        )
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(outputs, path)
        memo[key] = outputs
        return outputs

    return retrain_fn
