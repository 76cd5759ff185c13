"""The evaluator's optional XDA benchmark: Quantus scores of DualView's pair heatmaps.

With ``Evaluator(..., hooks=[XDAHook()])`` (CLI ``dattr-eval run --xda``) every cell whose explainer is a
feature-kernel explainer (DualView's ``dual_coef_`` or representer points' ``alpha_``, fitted on
raw features) on an image benchmark also scores the LRP heatmaps of the first ``n_test`` test
points paired with their top-``k`` proponents (:func:`dattr_eval.xda.score_xda`). Each
Quantus metric × side becomes one results row with ``kind="xda"`` and the metric label
``xda/<quantus metric>/<side>`` (sides: ``test`` and ``train`` heatmaps of the pairs, and the
plain LRP heatmap of the ``decision`` for comparison). Other explainers get no XDA rows.

Quantus draws its perturbations from NumPy's global generator; the scorer seeds it with
``seed`` for the call and restores the previous state, so a rerun gives the same scores.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from dattr_eval.benchmarks import Benchmark
from dattr_eval.explainers.base import Explainer
from dattr_eval.validation import check_choice, check_positive

#: the ``kind`` and ``category`` of XDA result rows
XDA_KIND = "xda"


@dataclass(frozen=True)
class XDASettings:
    """What the XDA benchmark scores.

    Args:
        n_test: the first ``n_test`` test points of each benchmark are explained.
        k: top-``k`` proponents per test point, so ``n_test * k`` pairs per side.
        composite: zennit composite name (``"epsilon_plus"``, ``"epsilon_plus_flat"``,
            ``"epsilon_alpha2_beta1"``, ...).
        metrics: names from :func:`dattr_eval.xda.scoring.default_metrics`; ``None`` = all.
        sides: any of ``"test"``, ``"train"``, ``"decision"``.
        seed: seed of Quantus' perturbations (NumPy's global generator, restored afterwards).
    """

    n_test: int = 16
    k: int = 3
    composite: str = "epsilon_plus"
    metrics: tuple[str, ...] | None = None
    sides: tuple[str, ...] = ("test", "train", "decision")
    seed: int = 0
    batch_size: int = field(default=64, repr=False)

    def __post_init__(self) -> None:
        check_positive(self.n_test, "xda n_test", integer=True)
        check_positive(self.k, "xda k", integer=True)
        for side in self.sides:
            check_choice(side, "xda sides", ("test", "train", "decision"))


def supports_xda(explainer: Explainer, bench: Benchmark) -> bool:
    """Whether the fitted ``explainer`` has pair heatmaps on ``bench`` (kernel coefficients, image inputs)."""
    from dattr_eval.xda.pairs import dual_coefficients

    if bench.test_inputs.ndim != 4:
        return False
    try:
        dual_coefficients(explainer)
    except (TypeError, ValueError):
        return False
    return True


def xda_rows(explainer: Explainer, bench: Benchmark, settings: XDASettings) -> list[dict[str, Any]]:
    """Result rows (without the cell's common columns) of the XDA scores of a fitted ``explainer``.

    Returns one row per Quantus metric × side: ``metric`` (``xda/<name>/<side>``), ``kind``,
    ``category``, ``status`` (``ok``; ``error`` when no sample had a finite score), ``score`` (mean
    over pairs), ``score_std``, ``n_scored``, ``higher_is_better``, ``metric_params`` (the settings).
    """
    from dattr_eval.evaluation.store import to_json
    from dattr_eval.xda.scoring import score_xda

    inputs, targets = xda_inputs(bench, settings)
    state = np.random.get_state()
    np.random.seed(settings.seed)
    try:
        table = score_xda(
            explainer,
            bench.model,
            inputs,
            targets,
            k=settings.k,
            composite=settings.composite,
            metrics=list(settings.metrics) if settings.metrics is not None else None,
            sides=settings.sides,
            seed=settings.seed,
            batch_size=settings.batch_size,
        )
    finally:
        np.random.set_state(state)
    params = to_json({**asdict(settings), "n_test": inputs.shape[0]})
    rows = []
    for rec in table.to_dict("records"):
        finite = not math.isnan(rec["score"])
        rows.append(
            {
                "metric": f"xda/{rec['metric']}/{rec['side']}",
                "kind": XDA_KIND,
                "category": XDA_KIND,
                "status": "ok" if finite else "error",
                "error": "" if finite else "no pair had a finite score",
                "score": rec["score"],
                "score_std": rec["std"],
                "n_scored": rec["n"],
                "higher_is_better": rec["higher_is_better"],
                "metric_params": params,
            }
        )
    return rows


def xda_inputs(bench: Benchmark, settings: XDASettings) -> tuple[torch.Tensor, torch.Tensor]:
    """The test inputs ``(n, C, H, W)`` and targets ``(n,)`` the XDA benchmark explains."""
    n = min(settings.n_test, bench.n_test)
    return bench.test_inputs[:n], bench.truth.test_targets[:n]


@dataclass(frozen=True)
class XDAHook:
    """The evaluator hook that adds the XDA rows of a cell (none for unsupported explainers).

    Args:
        settings: what to score (:class:`XDASettings`).
    """

    settings: XDASettings = field(default_factory=XDASettings)
    name: str = XDA_KIND

    def __call__(self, explainer: Explainer, bench: Benchmark) -> list[dict[str, Any]]:
        if not supports_xda(explainer, bench):
            return []
        return xda_rows(explainer, bench, self.settings)
