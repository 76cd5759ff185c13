"""Does a feature-level explanation find the shortcut? Localisation of heatmaps on the mark.

On the shortcut benchmarks the mark is known pixel by pixel (``data.perturbations.mark_inputs``
stamps a border frame and a centre square), so it is an exact ground-truth segmentation
(:func:`mark_mask`). :func:`score_localisation` scores heatmaps against it with Quantus'
localisation metrics, the mask as ``s_batch``:

- ``pointing_game`` (Zhang et al. 2018): 1 when the heatmap's maximum lies on the mark;
- ``attribution_localisation`` (Kohlbrenner et al. 2020): relevance inside the mark / total;
- ``relevance_mass_accuracy`` (Arras et al. 2022): the same ratio, Quantus' mass form;
- ``relevance_rank_accuracy`` (Arras et al. 2022): share of the ``|mark|`` most relevant pixels
  that lie on the mark.

Heatmaps are scored on their positive relevance (evidence *for* the explained output, Arras et
al.'s convention); a heatmap with no positive relevance has no score (NaN). For a heatmap of
i.i.d. random pixels every metric is, in expectation, the mark's share of the image
(:func:`chance_level`): the reference each score is read against.

:func:`shortcut_heatmaps` collects the heatmaps that should show the mark: for test points the
shortcut misleads (predicted as the shortcut class, another true class), DualView's (or
representer points') pair heatmaps with the top-``k`` proponents, on the test side and, where the
proponent is a marked training image, on the training side; and the plain LRP heatmap of the
decision. Quantus is imported on first use; NumPy's global RNG is left as found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from dattr_eval.contract import topk
from dattr_eval.data.perturbations import mark_inputs
from dattr_eval.explainers.base import Explainer
from dattr_eval.validation import check_choice, check_positive, check_tensor
from dattr_eval.xda.lrp import decision_heatmaps
from dattr_eval.xda.pairs import explain_pairs

#: the localisation metrics, in report order
LOCALISATION_METRICS = (
    "pointing_game",
    "attribution_localisation",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
)
#: the heatmap sides scored on the shortcut benchmarks
LOCALISATION_SIDES = ("test", "train", "decision")


def mark_mask(image_shape: Sequence[int]) -> torch.Tensor:
    """Where ``mark_inputs`` stamps the shortcut mark on images of shape ``(C, H, W)``: ``(H, W)`` bool.

    Derived from ``mark_inputs`` itself (the pixels it sets on a blank image), so it is exact for
    any image size.
    """
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
    blank = torch.zeros(1, *(int(s) for s in image_shape))
    return (mark_inputs(blank)[0] != 0).any(0)


def chance_level(mask: torch.Tensor) -> float:
    """The expected score of a heatmap of i.i.d. random pixels: the mask's share of the image."""
    return float(torch.as_tensor(mask).float().mean())


def localisation_metrics() -> dict[str, Any]:
    """Quantus' localisation metrics (default settings, no warnings or progress bars)."""
    import quantus

    quiet = {"disable_warnings": True, "display_progressbar": False}
    return {
        "pointing_game": quantus.PointingGame(**quiet),
        "attribution_localisation": quantus.AttributionLocalisation(**quiet),
        "relevance_mass_accuracy": quantus.RelevanceMassAccuracy(**quiet),
        "relevance_rank_accuracy": quantus.RelevanceRankAccuracy(**quiet),
    }


def score_localisation(
    heatmaps: torch.Tensor,
    mask: torch.Tensor,
    metrics: Sequence[str] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Per-heatmap localisation scores on ``mask``.

    Args:
        heatmaps: ``(n, H, W)`` relevance maps (only the positive part is scored).
        mask: ``(H, W)`` or ``(n, H, W)`` bool segmentation (the mark).
        metrics: names from :data:`LOCALISATION_METRICS` (default: all).
        seed: NumPy's global seed while Quantus runs (its state is restored afterwards).

    Returns:
        ``{metric: (n,) float64}``; NaN for a heatmap with no positive relevance.
    """
    heatmaps = check_tensor(heatmaps, "heatmaps", ndim=3, floating=True, finite=True)
    mask = torch.as_tensor(mask).bool().cpu()
    if mask.ndim == 2:
        mask = mask.expand(heatmaps.shape[0], *mask.shape)
    if tuple(mask.shape) != tuple(heatmaps.shape):
        raise ValueError(
            f"mask must be (H, W) or (n, H, W) like heatmaps {tuple(heatmaps.shape)}, "
            f"got {tuple(mask.shape)}"
        )
    names = list(LOCALISATION_METRICS) if metrics is None else list(metrics)
    for name in names:
        check_choice(name, "metrics", LOCALISATION_METRICS)
    positive = heatmaps.detach().double().clamp_min(0).cpu().numpy()
    scorable = positive.reshape(len(positive), -1).max(1) > 0
    out = {name: np.full(len(positive), np.nan) for name in names}
    if not scorable.any():
        return out
    a = positive[scorable]
    s = mask.numpy()[scorable][:, None].astype(float)  # (m, 1, H, W)
    x = np.zeros_like(s, dtype=np.float32)  # Quantus reads only its shape
    y = np.zeros(len(a), dtype=np.int64)
    available = localisation_metrics()
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        for name in names:
            scores = available[name](
                model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s, channel_first=True
            )
            out[name][scorable] = np.asarray(scores, dtype=float).reshape(-1)
    finally:
        np.random.set_state(state)
    return out


@dataclass(frozen=True)
class ShortcutHeatmaps:
    """The heatmaps that should show the shortcut mark, per side.

    Attributes:
        heatmaps: ``{side: (n_side, H, W)}`` for the sides in :data:`LOCALISATION_SIDES` that have
            any (``train`` is empty when no top-``k`` proponent is marked).
        train_indices: ``(n, k)`` the top-``k`` proponents of each explained test point.
    """

    heatmaps: dict[str, torch.Tensor]
    train_indices: torch.Tensor


def shortcut_heatmaps(
    explainer: Explainer,
    model: nn.Module | None,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    marked_train_indices: torch.Tensor,
    *,
    k: int = 3,
    composite: str = "epsilon_plus",
) -> ShortcutHeatmaps:
    """Pair heatmaps of shortcut-misled test points with their top-``k`` proponents, and decision heatmaps.

    Args:
        explainer: a fitted feature-kernel explainer (DualView's ``dual_coef_``, representer
            points' ``alpha_``).
        model: the network to propagate through (``None``: the explainer's).
        inputs: ``(n, C, H, W)`` the selected test images (marked, predicted as the shortcut class).
        targets: ``(n,)`` the explained classes.
        marked_train_indices: training indices that carry the mark.
        k: proponents per test point.
        composite: the LRP composite (``xda.lrp.COMPOSITES``).

    Returns:
        :class:`ShortcutHeatmaps` with sides ``test`` ``(n k, H, W)``, ``train`` (the pairs whose
        proponent is marked) and ``decision`` ``(n, H, W)``.
    """
    check_positive(k, "k", integer=True)
    inputs = check_tensor(inputs, "inputs", ndim=4, floating=True, finite=True)
    targets = torch.as_tensor(targets).long().reshape(-1)
    if targets.shape[0] != inputs.shape[0]:
        raise ValueError(f"targets must have {inputs.shape[0]} entries, got {targets.shape[0]}")
    marked = torch.as_tensor(marked_train_indices).long().cpu()
    model = explainer.model_ if model is None else model
    device = explainer.device_
    best = topk(explainer.explain(inputs.to(device), targets.to(device)), k).indices.cpu()
    test_side, train_side = [], []
    for i in range(inputs.shape[0]):
        pairs = explain_pairs(
            explainer, model, inputs[i], best[i], composite, target=int(targets[i])
        )
        test_side.append(pairs.test_heatmaps)
        train_side.append(pairs.train_heatmaps[torch.isin(pairs.train_indices, marked)])
    spatial = tuple(inputs.shape[-2:])
    empty = torch.zeros(0, *spatial)
    heatmaps = {
        "test": torch.cat(test_side) if test_side else empty,
        "train": torch.cat(train_side) if train_side else empty,
        "decision": decision_heatmaps(model, inputs.to(device), targets.to(device), composite).cpu()
        if inputs.shape[0]
        else empty,
    }
    return ShortcutHeatmaps(heatmaps, best)


__all__ = [
    "LOCALISATION_METRICS",
    "LOCALISATION_SIDES",
    "ShortcutHeatmaps",
    "chance_level",
    "localisation_metrics",
    "mark_mask",
    "score_localisation",
    "shortcut_heatmaps",
]
