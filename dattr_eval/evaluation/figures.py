"""Report figures (matplotlib, imported lazily): score heatmap, runtime vs. rank, metric
agreement, memory, and the classic TDA panel (top-k training images per explainer for a few test points).

Every function returns a ``matplotlib.figure.Figure`` (Agg canvas, no pyplot state) or ``None``
when there is nothing to draw. ``place_labels`` is the pure label-placement step of the runtime
chart: greedy, in display pixels, so that no two labels and no label and marker overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dattr_eval.evaluation.leaderboard import REFERENCE, format_value, rank_table, scores_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: label offsets tried around a marker, as unit directions (right first, then clockwise-ish)
_DIRECTIONS = np.array(
    [(1, 0), (1, 1), (1, -1), (-1, 0), (-1, 1), (-1, -1), (0, 1), (0, -1)], dtype=float
)


def new_figure(width: float, height: float, dpi: int = 110) -> Figure:
    """A matplotlib ``Figure`` with an Agg canvas (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether boxes ``(x0, y0, x1, y1)`` ``a`` and ``b`` overlap (touching edges do not)."""
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def place_labels(
    anchors: np.ndarray,
    sizes: np.ndarray,
    bounds: tuple[float, float, float, float],
    marker: float = 5.0,
    step: float = 6.0,
    rings: int = 12,
) -> np.ndarray:
    """Label boxes that overlap neither each other nor any marker, greedily.

    Args:
        anchors: ``(n, 2)`` marker centres in pixels.
        sizes: ``(n, 2)`` label widths and heights in pixels.
        bounds: ``(x0, y0, x1, y1)`` pixel box the labels must stay inside.
        marker: half-size of the square each marker occupies, pixels.
        step: distance between candidate rings, pixels.
        rings: candidate rings tried per label before taking the least-overlapping candidate.

    Returns:
        ``(n, 4)`` boxes ``(x0, y0, x1, y1)`` in pixels. Labels are placed from the most crowded
        marker outwards; each takes the first candidate (nearest ring, direction order
        ``_DIRECTIONS``) that is inside ``bounds`` and free; when none is free it takes the
        candidate overlapping the least area.
    """
    anchors, sizes = np.asarray(anchors, float), np.asarray(sizes, float)
    markers = np.column_stack([anchors - marker, anchors + marker])
    crowd = np.linalg.norm(anchors[:, None] - anchors[None], axis=-1).sum(axis=1)
    placed = np.full((len(anchors), 4), np.nan)
    for i in np.argsort(crowd, kind="stable"):
        best, best_cost = None, np.inf
        for ring in range(rings):
            gap = marker + 2 + ring * step
            for dx, dy in _DIRECTIONS:
                box = _candidate(anchors[i], sizes[i], dx, dy, gap)
                cost = _overlap_cost(box, markers, placed, bounds)
                if cost == 0:
                    best, best_cost = box, 0.0
                    break
                if cost < best_cost:
                    best, best_cost = box, cost
            if best_cost == 0:
                break
        placed[i] = best
    return placed


def _candidate(
    anchor: np.ndarray, size: np.ndarray, dx: float, dy: float, gap: float
) -> np.ndarray:
    """The box of width/height ``size`` beside ``anchor`` in direction ``(dx, dy)`` at ``gap``."""
    w, h = size
    x0 = anchor[0] + gap if dx > 0 else anchor[0] - gap - w if dx < 0 else anchor[0] - w / 2
    y0 = anchor[1] + gap if dy > 0 else anchor[1] - gap - h if dy < 0 else anchor[1] - h / 2
    return np.array([x0, y0, x0 + w, y0 + h])


def _overlap_cost(
    box: np.ndarray, markers: np.ndarray, placed: np.ndarray, bounds: tuple[float, ...]
) -> float:
    """Overlap area of ``box`` with markers and placed labels, plus its area outside ``bounds``."""
    others = np.vstack([markers, placed[~np.isnan(placed[:, 0])]])
    w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inside_w = max(0.0, min(box[2], bounds[2]) - max(box[0], bounds[0]))
    inside_h = max(0.0, min(box[3], bounds[3]) - max(box[1], bounds[1]))
    outside = (box[2] - box[0]) * (box[3] - box[1]) - inside_w * inside_h
    return float((w * h).sum() + outside)


def runtime_figure(board: pd.DataFrame) -> Figure | None:
    """Runtime (log axis) against average rank, one marker per explainer, labels never overlap.

    ``board``: ``leaderboard(...)`` (columns ``runtime [s]``, ``avg rank``, ``role`` and, with
    bootstrap draws, ``avg rank low``/``avg rank high`` drawn as vertical whiskers). Reference
    rows are hollow grey markers.
    """
    data = board.dropna(subset=["runtime [s]", "avg rank"])
    if data.empty:
        return None
    fig = new_figure(7.0, 4.8)
    ax = fig.subplots()
    is_ref = (data["role"] == REFERENCE).to_numpy()
    x, y = data["runtime [s]"].to_numpy(float), data["avg rank"].to_numpy(float)
    if "avg rank low" in data:
        yerr = np.vstack([y - data["avg rank low"], data["avg rank high"] - y])
        ax.errorbar(x, y, yerr=np.nan_to_num(yerr), fmt="none", ecolor="#9aa7b5", lw=1.2, capsize=3)
    ax.scatter(x[~is_ref], y[~is_ref], s=46, color="#1f6feb", zorder=3, label="method")
    if is_ref.any():
        ax.scatter(
            x[is_ref], y[is_ref], s=46, facecolors="none", edgecolors="#6e7781", zorder=3,
            label="reference (would-be rank)",
        )  # fmt: skip
        ax.legend(loc="best", fontsize=8, frameon=False)
    ax.set_xscale("log")
    lo, hi = np.log10(x.min()), np.log10(x.max())
    pad = max(0.35, 0.12 * (hi - lo))
    ax.set_xlim(10 ** (lo - pad), 10 ** (hi + pad))
    span = max(1.0, y.max() - y.min())
    ax.set_ylim(y.max() + 0.25 * span, max(0.5, y.min() - 0.25 * span))  # 1 = best at the top
    ax.set_xlabel("runtime: fit + explain + self-influence [s] (log)")
    ax.set_ylabel("average rank (1 = best)")
    ax.set_title("Runtime vs. average rank")
    ax.grid(alpha=0.25)
    fig.tight_layout()
    _annotate_without_overlap(fig, ax, x, y, list(data.index))
    return fig


def _annotate_without_overlap(
    fig: Figure, ax: Any, x: np.ndarray, y: np.ndarray, labels: list[str]
):
    """Write ``labels`` beside the points ``(x, y)`` at boxes from ``place_labels``."""
    renderer = fig.canvas.get_renderer()
    anchors = ax.transData.transform(np.column_stack([x, y]))
    texts = [ax.text(0, 0, label, fontsize=8) for label in labels]
    extents = [t.get_window_extent(renderer) for t in texts]
    sizes = np.array([[e.width + 2, e.height + 2] for e in extents])
    for t in texts:
        t.remove()
    box = ax.get_window_extent(renderer)
    boxes = place_labels(anchors, sizes, (box.x0, box.y0, box.x1, box.y1))
    inverse = ax.transData.inverted()
    for label, anchor, (x0, y0, x1, y1) in zip(labels, anchors, boxes):
        corner = inverse.transform((x0 + 1, y0 + 1))
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        ax.annotate(
            label,
            xy=inverse.transform(anchor),
            xytext=corner,
            fontsize=8,
            ha="left",
            va="bottom",
            arrowprops=(
                {"arrowstyle": "-", "color": "#8c959f", "lw": 0.6, "shrinkA": 0, "shrinkB": 4}
                if np.linalg.norm(centre - anchor) > 28
                else None
            ),
        )


def heatmap_figure(results: pd.DataFrame, order: Sequence[str] | None = None) -> Figure | None:
    """Ranked metric × explainer heatmap: colour = rank within the row (1 = best), text = score.

    ``results``: normalised results. ``order``: explainer column order (default alphabetical).
    Sanity checks are not ranked and so not shown here.
    """
    ranks = rank_table(results)
    if ranks.empty:
        return None
    scores = scores_table(results).reindex(index=ranks.index, columns=ranks.columns)
    if order is not None:
        keep = [e for e in order if e in ranks.index]
        scores, ranks = scores.reindex(keep), ranks.reindex(keep)
    labels = [f"{b}/{m}" for b, m in ranks.columns]
    n = ranks.count(axis=0).clip(lower=2).to_numpy()
    quality = ((n[:, None] - ranks.T.to_numpy()) / (n[:, None] - 1)).clip(0, 1)
    fig = new_figure(max(6.0, 3.0 + 0.9 * len(ranks.index)), max(3.0, 1.5 + 0.45 * len(labels)))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(quality), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (r, c), value in np.ndenumerate(scores.T.to_numpy()):
        colour = "white" if quality[r, c] < 0.6 else "black"  # NaN (no rank): black on white
        ax.text(c, r, format_value(value), ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(len(ranks.index)), list(ranks.index), rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    fig.colorbar(image, ax=ax, label="relative rank in row (1 = best)")
    ax.set_title("Score (text); colour: rank within the metric")
    fig.tight_layout()
    return fig


def agreement_figure(results: pd.DataFrame) -> Figure | None:
    """Kendall's tau between the explainer rankings of every two metric columns
    (``meta.agreement.metric_agreement``; method explainers only): colour and text = tau, blank
    where undefined (fewer than 3 common explainers, or a constant column). ``None`` when fewer
    than two columns have a defined tau."""
    from dattr_eval.evaluation.agreement import metric_agreement

    tau = metric_agreement(results)
    values = tau.to_numpy()
    if tau.empty or not np.isfinite(values[~np.eye(len(tau), dtype=bool)]).any():
        return None
    size = max(4.0, 1.8 + 0.55 * len(tau))
    fig = new_figure(size + 1.2, size)
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu_r", vmin=-1, vmax=1)
    for (r, c), value in np.ndenumerate(values):
        if np.isfinite(value):
            colour = "white" if abs(value) > 0.6 else "black"
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(len(tau)), list(tau.columns), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(tau)), list(tau.index), fontsize=8)
    fig.colorbar(image, ax=ax, label="Kendall's tau of the explainer rankings")
    ax.set_title("Metric agreement (1 = same ranking, -1 = reversed)")
    fig.tight_layout()
    return fig


def memory_figure(results: pd.DataFrame) -> Figure | None:
    """Peak RSS increase (and CUDA peak where measured) per explainer, one bar per benchmark."""
    prof = results[(results["kind"] == "profile") & (results["status"] == "ok")]
    if prof.empty:
        return None
    panels = [("rss_increase_mb", "peak RSS increase [MiB]")]
    if prof["cuda_peak_mb"].notna().any():
        panels.append(("cuda_peak_mb", "torch.cuda.max_memory_allocated [MiB]"))
    fig = new_figure(7.5, 3.8 * len(panels))
    axes = np.atleast_1d(fig.subplots(len(panels), 1))
    for ax, (column, label) in zip(axes, panels):
        table = prof.pivot_table(index="explainer", columns="benchmark", values=column)
        table.plot.bar(ax=ax, rot=30, width=0.8)
        ax.set_ylabel(label)
        ax.legend(fontsize=7, frameon=False)
    axes[0].set_title("Peak process memory during the cell (RSS above its start)")
    fig.tight_layout()
    return fig


def topk_panel(
    test_images: Any,
    train_images: Any,
    topk_indices: Mapping[str, Any],
    test_labels: Sequence[int] | None = None,
    train_labels: Sequence[int] | None = None,
    scores: Mapping[str, Any] | None = None,
    title: str = "Top-k training samples per explainer",
) -> Figure:
    """The classic TDA panel: per test point, its image, then per explainer its top-k training
    images (left = most supportive).

    Args:
        test_images: ``(n, C, H, W)`` or ``(n, H, W)`` array/tensor, the test points shown.
        train_images: ``(n_train, C, H, W)`` or ``(n_train, H, W)`` indexed by training index,
            or a mapping ``{training index: image}`` holding at least the images shown.
        topk_indices: ``{explainer: (n, k) int}`` training indices per test point.
        test_labels: optional ``(n,)`` class labels of the test points, written above them.
        train_labels: optional class labels indexed like ``train_images``; with both label
            arguments a training image whose label equals the test point's gets a green frame,
            else red.
        scores: optional ``{explainer: (n, k) float}`` attributions written above the images.
        title: the figure's title (" (left = most supportive)" is appended).

    Returns:
        A figure with ``n × len(topk_indices)`` rows and ``k + 2`` columns (test image,
        explainer name, ``k`` training images).
    """
    test = _images(test_images)
    train = _image_lookup(train_images)
    names = list(topk_indices)
    indices = {e: np.asarray(topk_indices[e]).reshape(len(test), -1) for e in names}
    k = max(v.shape[1] for v in indices.values())
    rows = len(test) * len(names)
    cell, name_width, title_height = 0.95, 1.3, 0.42  # inches
    width, height = (k + 1) * cell + name_width + 0.3, rows * (cell + title_height) + 0.8
    fig = new_figure(width, height)
    axes = np.asarray(
        fig.subplots(
            rows,
            k + 2,
            squeeze=False,
            gridspec_kw={
                "width_ratios": [cell, name_width] + [cell] * k,
                "left": 0.1 / width,
                "right": 1 - 0.2 / width,
                "top": 1 - 0.75 / height,
                "bottom": 0.05 / height,
                "wspace": 0.12,
                "hspace": title_height / cell,
            },
        )
    )
    for t in range(len(test)):
        for e, name in enumerate(names):
            row = t * len(names) + e
            axes[row, 0].set_axis_off()
            if e == 0:
                _show(axes[row, 0], test[t], f"test {t}" + _label(test_labels, t))
            axes[row, 1].set_axis_off()
            axes[row, 1].text(0.95, 0.5, name, ha="right", va="center", fontsize=8)
            for j in range(k):
                ax = axes[row, j + 2]
                if j >= indices[name].shape[1]:
                    ax.set_axis_off()
                    continue
                idx = int(indices[name][t, j])
                score = "" if scores is None else f"\n{format_value(float(scores[name][t, j]))}"
                _show(ax, train(idx), f"#{idx}" + _label(train_labels, idx) + score)
                if test_labels is not None and train_labels is not None:
                    same = int(train_labels[idx]) == int(test_labels[t])
                    for spine in ax.spines.values():
                        spine.set(visible=True, color="#2da44e" if same else "#cf222e", lw=2)
    fig.suptitle(
        f"{title} (left = most supportive)",
        fontsize=9,
        y=1 - 0.1 / height,
        va="top",
    )
    return fig


def _images(images: Any) -> np.ndarray:
    """``(n, H, W)`` grey or ``(n, H, W, 3)`` colour images scaled to ``[0, 1]`` for ``imshow``."""
    array = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images, float)
    if array.ndim == 4 and array.shape[1] in (1, 3):
        array = np.moveaxis(array, 1, -1)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    low, high = array.min(), array.max()
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def _image_lookup(images: Any) -> Callable[[int], np.ndarray]:
    """``index -> image`` for an image array or a ``{index: image}`` mapping (scaled together)."""
    if isinstance(images, Mapping):
        position = {int(key): pos for pos, key in enumerate(images)}
        stacked = _images(np.stack([np.asarray(images[key]) for key in images]))
        return lambda index: stacked[position[index]]
    array = _images(images)
    return lambda index: array[index]


def _label(labels: Sequence[int] | None, index: int) -> str:
    return "" if labels is None else f" (y={int(labels[index])})"


def _show(ax: Any, image: np.ndarray, title: str) -> None:
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=7, pad=2)


def topk_panel_from_explainers(
    benchmark: Any,
    explainers: Mapping[str, Any],
    test_indices: Sequence[int] = (0, 1, 2),
    k: int = 5,
) -> Figure:
    """``topk_panel`` for a built benchmark and fitted explainers.

    Args:
        benchmark: a ``dattr_eval.benchmarks.Benchmark`` (``test_inputs``, ``train_dataset``,
            ``truth``).
        explainers: ``{name: fitted Explainer}`` (fitted on ``benchmark.model`` and
            ``benchmark.train_dataset``).
        test_indices: positions in ``benchmark.test_inputs`` to show.
        k: training images per explainer and test point.

    Only the ``len(test_indices) × k`` training images named by the top-k are loaded.
    """
    from dattr_eval.data.loading import subset_inputs

    positions = list(test_indices)
    inputs = benchmark.test_inputs[positions]
    targets = benchmark.truth.test_targets[positions]
    tops = {name: e.explain_topk(inputs, k, targets=targets) for name, e in explainers.items()}
    needed = sorted({int(i) for top in tops.values() for i in top.indices.flatten()})
    images, labels = subset_inputs(benchmark.train_dataset, needed)
    return topk_panel(
        inputs,
        dict(zip(needed, images)),
        {name: top.indices.cpu().numpy() for name, top in tops.items()},
        test_labels=targets.tolist(),
        train_labels=dict(zip(needed, labels.tolist())),
        scores={name: top.values.cpu().numpy() for name, top in tops.items()},
        title=f"{benchmark.name}: top-{k} training samples per explainer",
    )
