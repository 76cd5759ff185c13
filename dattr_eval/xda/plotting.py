"""Figures of feature-level explanations: one per test input, saved as PNG.

Layout (``k`` proponents and ``k`` opponents): column 0 holds the test input and its plain LRP
decision heatmap; each further column is one training sample ``x_j`` (top, titled with its index,
label and score ``A[x, j]``), the test heatmap of the pair (middle: which pixels of ``x`` tie it
to ``x_j``) and the train heatmap (bottom: which pixels of ``x_j`` matter). Heatmaps use a
symmetric blue-white-red scale (red = positive relevance), each scaled to its own max ``|R|``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from dattr_eval.xda.pairs import PairHeatmaps, XDAResult


def _as_image(t: torch.Tensor, image_shape: tuple[int, ...] | None) -> np.ndarray:
    """A displayable array: ``(H, W)``, or ``(H, W, 3)`` for RGB ``(3, H, W)`` inputs."""
    a = t.detach().cpu().float().numpy()
    if image_shape is not None:
        a = a.reshape(image_shape)
    elif a.ndim == 1 and math.isqrt(a.size) ** 2 == a.size:
        a = a.reshape(math.isqrt(a.size), -1)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
    if a.ndim == 3:  # RGB: rescale to [0, 1] for display
        a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12)
    return a


def _show_input(ax, t: torch.Tensor, title: str, image_shape) -> None:
    ax.imshow(_as_image(t, image_shape), cmap="gray_r")
    ax.set_title(title, fontsize=8)


def _show_heatmap(ax, t: torch.Tensor, title: str, image_shape) -> None:
    a = _as_image(t, image_shape)
    vmax = max(float(np.abs(a).max()), 1e-12)
    ax.imshow(a, cmap="bwr", vmin=-vmax, vmax=vmax)
    ax.set_title(title, fontsize=8)


def plot_xda(
    result: XDAResult,
    i: int = 0,
    *,
    image_shape: tuple[int, ...] | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Figure of test input ``i`` of ``result``: decision heatmap and pair heatmaps.

    Args:
        result: from :func:`dattr_eval.xda.explain_topk`.
        i: which test input.
        image_shape: shape to view flat inputs as (e.g. ``(8, 8)``); square flat inputs are
            reshaped automatically.
        path: if given, the figure is saved there as PNG (parent folders are created).

    Returns:
        The matplotlib ``Figure`` (shown when it is the last expression of a notebook cell).
    """
    n_test = result.inputs.shape[0]
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_test:
        raise IndexError(f"i must be an int in [0, n_test={n_test}), got {i!r}")
    sides: list[tuple[str, PairHeatmaps]] = [("+", result.proponents), ("−", result.opponents)]
    k = result.proponents.scores.shape[1]
    fig = Figure(figsize=(1.6 * (1 + 2 * k), 5.2), layout="constrained")
    axes = fig.subplots(3, 1 + 2 * k, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    _show_input(
        axes[0, 0], result.inputs[i], f"test input\nclass {int(result.targets[i])}", image_shape
    )
    _show_heatmap(axes[1, 0], result.decision_heatmaps[i], "LRP of the decision", image_shape)
    axes[2, 0].axis("off")
    for row, label in enumerate(("training sample", "test heatmap", "train heatmap")):
        axes[row, 1].set_ylabel(label, fontsize=8)
    column = 1
    for sign, pairs in sides:
        for m in range(k):
            ax_top, ax_mid, ax_bot = axes[:, column]
            title = (
                f"{sign} j={int(pairs.train_indices[i, m])} y={int(pairs.train_labels[i, m])}"
                f"\nA={float(pairs.scores[i, m]):.3g}"
            )
            _show_input(ax_top, pairs.train_inputs[i, m], title, image_shape)
            _show_heatmap(
                ax_mid,
                pairs.test_heatmaps[i, m],
                f"sum={float(pairs.test_heatmaps[i, m].sum()):.3g}",
                image_shape,
            )
            _show_heatmap(
                ax_bot,
                pairs.train_heatmaps[i, m],
                f"sum={float(pairs.train_heatmaps[i, m].sum()):.3g}",
                image_shape,
            )
            column += 1
    fig.suptitle("DualView × LRP: proponents (+) and opponents (−)", fontsize=10)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def save_xda_figures(
    result: XDAResult,
    out_dir: str | Path,
    *,
    image_shape: tuple[int, ...] | None = None,
    prefix: str = "xda",
) -> list[Path]:
    """One PNG per test input of ``result`` in ``out_dir`` (``{prefix}_{i:03d}.png``); returns the paths."""
    paths = []
    for i in range(result.inputs.shape[0]):
        path = Path(out_dir) / f"{prefix}_{i:03d}.png"
        plot_xda(result, i, image_shape=image_shape, path=path)
        paths.append(path)
    return paths
