"""The perturbations of the meta-evaluation, and the evaluation cells that apply them.

Minor perturbation (quality should not change):

- ``weight_noise``: every model parameter multiplied elementwise by ``N(1, sigma^2)``,
  ``sigma = 0.001`` by default: MetaQuantus' model resilience test. The explainers are refitted on
  the perturbed model; the benchmark's ground truth (explained classes, shortcut selection,
  retrained outputs) stays that of the trained model, so every unit stays paired with its
  unperturbed self. Chosen over the benchmark's own seeds (a new test subset or training seed)
  because those change the units themselves (no paired test is possible) and their spread is
  already what the replicate signal-to-noise ratio measures.

Disruptive perturbations (quality must drop):

- ``shuffled_columns``: the attributions' training columns permuted by one seeded permutation
  (self-influence permuted alike): a ranking that no longer names the right training samples;
- ``randomized_model``: the explainer fitted on a copy of the model with every layer
  re-initialised (its training checkpoints dropped, so TracIn sees the random model too);
- ``equal_norm_noise``: each attribution row (and the self-influence vector) replaced by Gaussian
  noise of the same Euclidean norm.

The two post-hoc ones wrap the explainer (:class:`PerturbedExplainer`): the fitted explainer of
the unperturbed cell is reused, so they cost an explain pass and the metrics, never a refit. The
wrapper is a method in its own right, applied alike wherever the cell fits it (also on the
randomised model that ``model_randomization`` compares with).
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.evaluation.cell import CellSpec
from dattr_eval.evaluation.providers import attach_training_run, randomize_model
from dattr_eval.explainers.base import Explainer
from dattr_eval.params import clone
from dattr_eval.validation import check_choice, check_model, check_positive


@dataclass(frozen=True)
class Perturbation:
    """A named perturbation: whether it is ``disruptive`` and what it does (one line)."""

    name: str
    disruptive: bool
    description: str


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation(
            "weight_noise",
            False,
            "model weights multiplied by N(1, sigma^2) (MetaQuantus' model resilience test); refit",
        ),
        Perturbation(
            "shuffled_columns",
            True,
            "attribution columns (and self-influence) permuted by one seeded permutation",
        ),
        Perturbation(
            "randomized_model",
            True,
            "explainer fitted on a re-initialised copy of the model (no checkpoints)",
        ),
        Perturbation(
            "equal_norm_noise",
            True,
            "each attribution row (and self-influence) replaced by Gaussian noise of equal norm",
        ),
    )
}
#: post-hoc perturbations of a fitted explainer's output (no refit)
POST_HOC = ("shuffled_columns", "equal_norm_noise")
#: the default weight-noise level (MetaQuantus' model resilience test for MNIST-like data)
WEIGHT_NOISE = 1e-3


def draw_seed(perturbation: str, draw: int, seed: int = 0) -> int:
    """The seed of draw ``draw`` of ``perturbation`` (depends on nothing else, process-independent)."""
    return zlib.crc32(f"meta|{perturbation}|{draw}|{seed}".encode()) & 0x7FFFFFFF


def perturb_weights(model: nn.Module, sigma: float, seed: int) -> nn.Module:
    """A deep copy of ``model`` with every parameter multiplied elementwise by ``N(1, sigma^2)``.

    Buffers (e.g. batch-norm statistics) are kept. Seeded by ``seed`` without touching the global
    RNG; the original is unchanged.
    """
    check_model(model)
    check_positive(sigma, "weight_noise")
    noisy = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in noisy.parameters():
            factor = 1.0 + sigma * torch.randn(p.shape, generator=gen, dtype=torch.float64)
            p.mul_(factor.to(device=p.device, dtype=p.dtype))
    return noisy.eval()


class PerturbedExplainer(Explainer):
    """An explainer whose output is disrupted after the fact (meta-evaluation's post-hoc perturbations).

    ``explain`` returns the wrapped explainer's attributions ``(b, n_train)`` with their training
    columns permuted (``"shuffled_columns"``: one seeded permutation, fixed at fit) or each row
    replaced by Gaussian noise of the same Euclidean norm (``"equal_norm_noise"``: drawn from a
    generator seeded at fit, so the same sequence of calls gives the same noise).
    ``self_influence`` ``(n_train,)`` is perturbed alike.

    Args:
        explainer: the explainer whose output is disrupted (an unfitted template).
        perturbation: ``"shuffled_columns"`` or ``"equal_norm_noise"``.
        seed: seeds the permutation or the noise.
        prefit: ``explainer`` already fitted: reused without refitting when ``fit`` gets the very
            model and training set it was fitted on; otherwise a clone of ``explainer`` is fitted.

    Fitted attributes: ``explainer_`` (the fitted wrapped explainer), ``permutation_``
    ``(n_train,)`` int64 (shuffled columns).
    """

    summary = "an explainer's attributions, disrupted (shuffled columns or equal-norm noise)"
    citation = "Hedström et al., The Meta-Evaluation Problem in Explainable AI, TMLR 2023"

    def __init__(
        self,
        explainer: Explainer,
        perturbation: str = "shuffled_columns",
        seed: int = 0,
        prefit: Explainer | None = None,
    ) -> None:
        self.explainer = explainer
        self.perturbation = perturbation
        self.seed = seed
        self.prefit = prefit

    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        check_choice(self.perturbation, "perturbation", POST_HOC)
        if not isinstance(self.explainer, Explainer):
            raise TypeError(f"explainer must be an Explainer, got {type(self.explainer).__name__}")
        reusable = (
            self.prefit is not None
            and getattr(self.prefit, "model_", None) is model
            and getattr(self.prefit, "train_dataset_", None) is train_dataset
        )
        self.explainer_ = (
            self.prefit if reusable else clone(self.explainer).fit(model, train_dataset)
        )
        gen = torch.Generator().manual_seed(self.seed)
        self.permutation_ = torch.randperm(self.n_train_, generator=gen)
        self.noise_generator_ = torch.Generator().manual_seed(self.seed + 1)

    def _perturb(self, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` ``(..., n_train)`` perturbed along the training axis."""
        if self.perturbation == "shuffled_columns":
            return scores[..., self.permutation_.to(scores.device)]
        noise = torch.randn(scores.shape, generator=self.noise_generator_, dtype=torch.float64)
        norm = scores.double().norm(dim=-1, keepdim=True).cpu()
        scaled = noise * norm / noise.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        return scaled.to(device=scores.device, dtype=scores.dtype)

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self._perturb(self.explainer_.explain(inputs, targets))

    def _self_influence(self) -> torch.Tensor:
        return self._perturb(self.explainer_.self_influence())


def perturbed_cell(
    spec: CellSpec,
    perturbation: str,
    draw: int,
    fitted: Explainer,
    *,
    weight_noise: float = WEIGHT_NOISE,
    seed: int = 0,
) -> CellSpec:
    """The cell ``spec`` (its first replicate) under draw ``draw`` of ``perturbation``.

    Args:
        spec: the unperturbed cell.
        perturbation: a name in :data:`PERTURBATIONS`.
        fitted: the explainer fitted in the unperturbed cell (reused by the post-hoc ones).
        weight_noise: ``sigma`` of ``weight_noise``.
        seed: base seed of the draws (:func:`draw_seed`).

    The cell keeps the metrics, ground truth and retraining service (retrained outputs are
    cached by content, so fixed retraining subsets are trained once); hooks are dropped.
    """
    check_choice(perturbation, "perturbation", PERTURBATIONS)
    bench, explainer = spec.benchmark, spec.explainer
    s = draw_seed(perturbation, draw, seed)
    if perturbation == "weight_noise":
        bench = replace(bench, model=perturb_weights(bench.model, weight_noise, s))
    elif perturbation == "randomized_model":
        bench = replace(bench, model=randomize_model(bench.model, s), checkpoints=())
    else:
        inner = attach_training_run(clone(explainer), bench.checkpoints)
        explainer = PerturbedExplainer(inner, perturbation, s, prefit=fitted)
    return replace(
        spec,
        replicates=(bench,),
        explainer=explainer,
        skipped={},
        retraining=spec.retraining[:1],
        hooks=(),
        key="",
    )


__all__ = [
    "PERTURBATIONS",
    "POST_HOC",
    "WEIGHT_NOISE",
    "Perturbation",
    "PerturbedExplainer",
    "draw_seed",
    "perturb_weights",
    "perturbed_cell",
]
