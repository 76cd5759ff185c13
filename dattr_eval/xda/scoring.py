"""Score pair heatmaps with Quantus through an ``explain_func`` adapter.

Quantus scores an explanation of "model output ``y`` at input ``x``". For a pair heatmap the
explained function is the attribution score itself, as a function of one of the pair's inputs:

- test side: ``s_j(x) = a[j, c] <phi(x), phi(x_j)>`` (training sample fixed, test input varies);
- train side: ``s_x(x_j) = a[j, c] <phi(x), phi(x_j)>`` (test input fixed, training sample varies).

Both are a linear read-out ``phi(input) @ w`` of the features, so one :class:`PairScoreModel`
(the network up to the classifier, then one output per pair with weight ``w_p``) covers every
pair at once, ``y = p`` picks the pair, and :func:`xda_explain_func` (LRP started with
``R = phi(input) * w_p``) is exactly the pair heatmap. The plain decision heatmap is scored on the
model itself (``side="decision"``) for comparison. Quantus is imported on first use (it is slow
to import).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from dattr_eval.contract import topk
from dattr_eval.data.loading import subset_inputs
from dattr_eval.explainers.base import Explainer
from dattr_eval.explainers.features import FeatureExtractor, classifier_layer
from dattr_eval.validation import check_choice, check_labels, check_positive, check_tensor
from dattr_eval.xda.lrp import decision_heatmaps, feature_relevance_heatmaps
from dattr_eval.xda.pairs import _resolve, dual_coefficients

if TYPE_CHECKING:
    import pandas as pd

SIDES = ("test", "train", "decision")


class PairScoreModel(nn.Module):
    """``x -> phi(x) @ weights.T``: output ``p`` is pair ``p``'s attribution as a function of ``x``.

    Args:
        model: the network; ``phi`` = the flattened input of its classifier ``layer``.
        weights: ``(n_pairs, d)`` read-out vectors (a buffer, so parameter randomisation keeps them).
    """

    def __init__(self, model: nn.Module, weights: torch.Tensor, layer: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.layer = classifier_layer(model, layer)[0]
        self.register_buffer("weights", weights.detach().float())
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, ...) -> (b, n_pairs)
        return FeatureExtractor(self.model, self.layer)(x)[0] @ self.weights.T


def xda_explain_func(
    model: nn.Module,
    inputs: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    composite: str = "epsilon_plus",
    **_: Any,
) -> np.ndarray:
    """Quantus ``explain_func``: pair heatmaps ``(b, *S)`` for ``model`` a :class:`PairScoreModel`.

    ``targets[i]`` is the pair index; the LRP pass starts with ``R = phi(inputs[i]) * weights[targets[i]]``.
    A plain ``nn.Module`` gets the decision heatmap of class ``targets[i]`` instead.
    """
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32, device=device)
    y = torch.as_tensor(np.asarray(targets), device=device).long().reshape(-1)
    if isinstance(model, PairScoreModel):
        w = model.weights[y]
        heat = feature_relevance_heatmaps(
            model.model, x, lambda phi: phi * w.to(phi), composite, layer=model.layer
        )
    else:
        heat = decision_heatmaps(model, x, y, composite)
    return heat.cpu().numpy()


def default_metrics(n_pixels: int, seed: int = 0) -> dict[str, Any]:
    """Quantus metrics sized for small images (``n_pixels`` per image), one score per sample each.

    - ``faithfulness_correlation`` (Bhatt et al. 2020, higher is better): correlation between the
      relevance of a random pixel subset and the output drop when it is blacked out.
    - ``max_sensitivity`` (Yeh et al. 2019, lower is better): largest relative heatmap change under
      small uniform input noise.
    - ``random_logit`` (Sixt et al. 2020, lower is better): SSIM between the heatmap of the target
      output and that of a random other output (another pair, or another class).
    """
    import quantus

    quiet = {"disable_warnings": True, "display_progressbar": False, "return_aggregate": False}
    return {
        "faithfulness_correlation": quantus.FaithfulnessCorrelation(
            nr_runs=20,
            subset_size=max(1, n_pixels // 8),
            perturb_baseline="black",
            normalise=False,
            abs=False,
            **quiet,
        ),
        "max_sensitivity": quantus.MaxSensitivity(nr_samples=8, lower_bound=0.05, **quiet),
        "random_logit": quantus.RandomLogit(seed=seed, **quiet),
    }


#: whether a larger score is better, per default metric name
HIGHER_IS_BETTER = {
    "faithfulness_correlation": True,
    "max_sensitivity": False,
    "random_logit": False,
}


def _pair_models(
    dualview: Explainer,
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    train_idx: torch.Tensor,
) -> dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    """``{"test" | "train": (model to score, x_batch, y_batch)}`` for the pairs ``(inputs[p], train_idx[p])``."""
    layer = getattr(dualview, "layer", None)
    extractor = FeatureExtractor(model, layer)
    x_train = subset_inputs(dualview.train_dataset_, train_idx.tolist())[0].to(inputs)
    phi_test, phi_train = extractor(inputs)[0], extractor(x_train)[0]
    coef = dual_coefficients(dualview)
    a = coef[train_idx.to(coef.device), targets.to(coef.device)].to(phi_test)[:, None]
    pairs = torch.arange(inputs.shape[0])
    return {
        "test": (PairScoreModel(model, a * phi_train, extractor.layer_name), inputs, pairs),
        "train": (PairScoreModel(model, a * phi_test, extractor.layer_name), x_train, pairs),
    }


def score_xda(
    dualview: Explainer,
    model: nn.Module | None,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    k: int = 3,
    composite: str = "epsilon_plus",
    metrics: Sequence[str] | dict[str, Any] | None = None,
    sides: Sequence[str] = SIDES,
    opponents: bool = False,
    seed: int = 0,
    batch_size: int = 64,
) -> pd.DataFrame:
    """Quantus scores of the pair heatmaps of ``inputs`` with their top-``k`` proponents.

    Args:
        dualview: a fitted DualView (or representer points); ``model``: ``None`` = its model.
        inputs: ``(n_test, C, H, W)`` test images; ``targets``: ``(n_test,)``, default predictions.
        k: training samples per test input (the ``k`` largest attributions; the ``k`` smallest if
            ``opponents``), so ``n_test * k`` pairs are scored.
        metrics: names from :func:`default_metrics`, or ``{name: quantus metric instance}``.
        sides: any of ``"test"`` / ``"train"`` (the pair heatmaps) and ``"decision"`` (plain LRP
            of the decision on the test inputs, for comparison).

    Returns:
        A DataFrame, one row per ``(metric, side)``: ``score`` (mean of the per-sample scores, NaN
        ignored), ``std``, ``n`` (samples with a finite score), ``higher_is_better`` (``None`` when
        unknown), ``composite``, ``k``.
    """
    import pandas as pd

    model = _resolve(dualview, model)
    check_positive(k, "k", integer=True)
    inputs = check_tensor(inputs, "inputs", ndim=4, floating=True, finite=True).to(dualview.device_)
    targets = (
        dualview.predict(inputs)
        if targets is None
        else check_labels(targets, "targets", length=inputs.shape[0]).to(dualview.device_)
    )
    for side in sides:
        check_choice(side, "sides", SIDES)
    if metrics is None or not isinstance(metrics, dict):
        available = default_metrics(int(np.prod(inputs.shape[2:])), seed)
        names = list(available) if metrics is None else list(metrics)
        for name in names:
            check_choice(name, "metrics", available)
        metrics = {name: available[name] for name in names}

    sign = -1.0 if opponents else 1.0
    best = topk(sign * dualview.explain(inputs, targets), k).indices  # (n_test, k)
    rows = torch.arange(inputs.shape[0], device=inputs.device).repeat_interleave(k)
    per_side = _pair_models(dualview, model, inputs[rows], targets[rows], best.reshape(-1).cpu())
    per_side["decision"] = (model, inputs, targets.cpu())
    n_classes = dual_coefficients(dualview).shape[1]

    records = []
    for side in sides:
        scored_model, x, y = per_side[side]
        for name, metric in metrics.items():
            if hasattr(
                metric, "num_classes"
            ):  # RandomLogit draws its other output from range(num_classes)
                metric.num_classes = n_classes if side == "decision" else int(y.shape[0])
            scores = np.asarray(
                metric(
                    model=scored_model,
                    x_batch=x.cpu().numpy(),
                    y_batch=y.numpy(),
                    a_batch=None,
                    explain_func=xda_explain_func,
                    explain_func_kwargs={"composite": composite},
                    channel_first=True,
                    device=str(dualview.device_),
                    batch_size=batch_size,
                ),
                dtype=float,
            ).reshape(-1)
            finite = scores[np.isfinite(scores)]
            records.append(
                {
                    "metric": name,
                    "side": side,
                    "score": float(finite.mean()) if finite.size else float("nan"),
                    "std": float(finite.std()) if finite.size else float("nan"),
                    "n": int(finite.size),
                    "higher_is_better": HIGHER_IS_BETTER.get(name),
                    "composite": composite,
                    "k": k,
                }
            )
    return pd.DataFrame.from_records(records)
