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
from pathlib import Path
from typing import Any, Callable, Sequence

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
def target_log_probs(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
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


def lds_ground_truth(bench: Any, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Subset masks ``(m, n_train)`` and retrained outputs ``(m, n_test)`` for ``bench``.

    Each of the ``bench.lds_subsets`` models is trained with ``bench.retrain`` on one subset;
    its output is the log-probability of each test sample's target class. Cached under
    ``bench.cache_dir`` (when set) by the benchmark name, ``m``, fraction, seed and test indices.
    """
    if bench.retrain is None:
        raise ValueError(f"benchmark {bench.name!r} has no retrain recipe; LDS needs one")
    m, fraction, seed = bench.lds_subsets, bench.lds_fraction, bench.seed
    masks = lds_subsets(bench.n_train, m, fraction, seed)
    cache = _lds_cache_path(bench, m, fraction, seed)
    if cache is not None and cache.exists():
        stored = torch.load(cache, weights_only=True)
        if torch.equal(stored["masks"], masks):
            return masks, stored["outputs"]
    targets = bench.truth.test_targets
    outputs = torch.stack(
        [
            target_log_probs(bench.retrain(mask.nonzero()[:, 0]), bench.test_inputs, targets)
            for mask in tqdm(masks, desc=f"{bench.name}: LDS retraining", leave=False, disable=not progress)
        ]
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"masks": masks, "outputs": outputs}, cache)
    return masks, outputs


def _lds_cache_path(bench: Any, m: int, fraction: float, seed: int) -> Path | None:
    if bench.cache_dir is None:
        return None
    test_key = bench.truth.test_indices if bench.truth.test_indices is not None else bench.test_inputs
    digest = hashlib.blake2b(test_key.cpu().contiguous().numpy().tobytes(), digest_size=6).hexdigest()
    return Path(bench.cache_dir) / "lds" / f"{bench.name}-m{m}-f{fraction}-s{seed}-{digest}.pt"


def make_retrain_fn(bench: Any) -> Callable[[torch.Tensor], Any]:
    """``indices -> model`` retraining the benchmark's recipe on those training indices."""
    if bench.retrain is None:
        raise ValueError(f"benchmark {bench.name!r} has no retrain recipe")
    return bench.retrain
