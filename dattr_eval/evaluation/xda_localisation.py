"""The evaluator's shortcut-localisation hook: do XDA heatmaps find the shortcut mark?

With ``Evaluator(..., hooks=[LocalisationHook()])`` (CLI ``--localisation``) every cell whose
explainer has pair heatmaps (DualView's ``dual_coef_``, representer points' ``alpha_``; see
``xda_scores.supports_xda``) on a benchmark with a shortcut mark (``marked_train_indices`` and
``shortcut_class`` in its ground truth, image inputs) scores, for the first ``n_test`` test points
the shortcut misleads (predicted as the shortcut class, true label different), the heatmaps of
``xda.localisation.shortcut_heatmaps`` against the mark's exact segmentation with Quantus'
localisation metrics (``xda.localisation.score_localisation``). One row per metric × side,
``kind="xda"``, metric label ``xda/localisation/<metric>/<side>``, score = mean over heatmaps
with a 95 % bootstrap interval over heatmaps, ``baseline_score`` = the chance level (the mark's
share of the image). NumPy's global RNG is left as found.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from dattr_eval.benchmarks import Benchmark
from dattr_eval.evaluation.xda_scores import XDA_KIND, supports_xda
from dattr_eval.explainers.base import Explainer
from dattr_eval.validation import check_choice, check_positive

#: the metric-label prefix of localisation rows
LOCALISATION_PREFIX = "xda/localisation/"


@dataclass(frozen=True)
class LocalisationSettings:
    """What the localisation hook scores.

    Args:
        n_test: the first ``n_test`` shortcut-misled test points are explained.
        k: top-``k`` proponents per test point.
        composite: zennit composite name (``xda.lrp.COMPOSITES``).
        metrics: names from ``xda.localisation.LOCALISATION_METRICS``; ``None`` = all.
        sides: any of ``"test"``, ``"train"``, ``"decision"``.
        seed: NumPy's global seed while Quantus runs, and the bootstrap seed.
    """

    n_test: int = 16
    k: int = 3
    composite: str = "epsilon_plus"
    metrics: tuple[str, ...] | None = None
    sides: tuple[str, ...] = ("test", "train", "decision")
    seed: int = 0

    def __post_init__(self) -> None:
        from dattr_eval.xda.localisation import LOCALISATION_METRICS, LOCALISATION_SIDES

        check_positive(self.n_test, "localisation n_test", integer=True)
        check_positive(self.k, "localisation k", integer=True)
        for side in self.sides:
            check_choice(side, "localisation sides", LOCALISATION_SIDES)
        for name in self.metrics or ():
            check_choice(name, "localisation metrics", LOCALISATION_METRICS)


def supports_localisation(explainer: Explainer, bench: Benchmark) -> bool:
    """Whether ``bench`` has a shortcut mark and the fitted ``explainer`` pair heatmaps on it."""
    truth = bench.truth
    return (
        truth.marked_train_indices is not None
        and truth.shortcut_class is not None
        and supports_xda(explainer, bench)
    )


def shortcut_positions(bench: Benchmark, n_test: int) -> torch.Tensor:
    """The first ``n_test`` test rows the shortcut misleads, ``(m,)`` int64: predicted as the
    shortcut class with a true label other than it (the selection of ``feature_shortcut`` and
    ``domain_mismatch`` with their default filters)."""
    truth = bench.truth
    shortcut = int(truth.shortcut_class)
    keep = (truth.test_predictions.cpu() == shortcut) & (truth.test_labels.cpu() != shortcut)
    return keep.nonzero().flatten()[:n_test]


def localisation_rows(
    explainer: Explainer, bench: Benchmark, settings: LocalisationSettings
) -> list[dict[str, Any]]:
    """Result rows (without the cell's common columns) of the localisation scores (module docstring)."""
    from dattr_eval.evaluation.store import to_json
    from dattr_eval.statistics import bootstrap
    from dattr_eval.xda.localisation import (
        LOCALISATION_METRICS,
        chance_level,
        mark_mask,
        score_localisation,
        shortcut_heatmaps,
    )

    positions = shortcut_positions(bench, settings.n_test)
    mask = mark_mask(tuple(bench.test_inputs.shape[1:]))
    names = list(settings.metrics or LOCALISATION_METRICS)
    params = to_json({**asdict(settings), "n_selected": int(positions.numel())})
    heatmaps = (
        shortcut_heatmaps(
            explainer,
            bench.model,
            bench.test_inputs[positions],
            bench.truth.test_targets[positions],
            bench.truth.marked_train_indices,
            k=settings.k,
            composite=settings.composite,
        ).heatmaps
        if positions.numel()
        else {}
    )
    rows = []
    for side in settings.sides:
        maps = heatmaps.get(side)
        scores = (
            score_localisation(maps, mask, names, settings.seed)
            if maps is not None and maps.shape[0]
            else {name: np.zeros(0) for name in names}
        )
        for name in names:
            units = scores[name]
            finite = units[np.isfinite(units)]
            row = {
                "metric": f"{LOCALISATION_PREFIX}{name}/{side}",
                "kind": XDA_KIND,
                "category": XDA_KIND,
                "unit": "heatmap",
                "higher_is_better": True,
                "baseline_score": chance_level(mask),
                "n_scored": int(finite.size),
                "metric_params": params,
            }
            if finite.size == 0:
                row.update(status="error", error=_why_empty(side, positions.numel(), units.size))
            else:
                ci = bootstrap(finite, seed=settings.seed)
                row.update(
                    status="ok",
                    error="",
                    score=ci.estimate,
                    ci_low=ci.ci_low,
                    ci_high=ci.ci_high,
                    ci_method="percentile",
                    score_std=float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
                )
            rows.append(row)
    return rows


def _why_empty(side: str, n_selected: int, n_heatmaps: int) -> str:
    if not n_selected:
        return "no test point is predicted as the shortcut class with another true label"
    if not n_heatmaps:
        return f"no {side} heatmap (no top-k proponent carries the mark)"
    return "no heatmap has positive relevance"


@dataclass(frozen=True)
class LocalisationHook:
    """The evaluator hook that adds the localisation rows of a cell (none where unsupported).

    Args:
        settings: what to score (:class:`LocalisationSettings`).
    """

    settings: LocalisationSettings = field(default_factory=LocalisationSettings)
    name: str = "xda_localisation"

    def __call__(self, explainer: Explainer, bench: Benchmark) -> list[dict[str, Any]]:
        if not supports_localisation(explainer, bench):
            return []
        return localisation_rows(explainer, bench, self.settings)


__all__ = [
    "LOCALISATION_PREFIX",
    "LocalisationHook",
    "LocalisationSettings",
    "localisation_rows",
    "shortcut_positions",
    "supports_localisation",
]
