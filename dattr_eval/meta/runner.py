"""``meta_evaluate``: which metrics of an evaluation grid can be trusted (MetaQuantus' protocol).

The evaluator runs the grid as usual (benchmarks built once, models and retrained outputs cached
by content, ``results.csv`` written cell by cell) with a :class:`MetaExecutor`: for each cell it
runs the unperturbed cell, then the same cell under every draw of every perturbation
(``meta.perturbations``) with :func:`~dattr_eval.evaluation.cell.run_cell`, and keeps the per-unit
qualities of every metric (``meta.scores.unit_qualities``). The unperturbed results go to the
evaluator's store; the perturbed ones only feed the meta table.

Cost: one unperturbed cell plus, per method explainer, ``n_draws`` cells per perturbation: the
post-hoc ones (shuffled columns, equal-norm noise) reuse the fitted explainer (explain pass and
metrics only), weight noise and the randomised model refit it. Retraining metrics reuse every
cached retrained model (LDS subsets are fixed, so they train once); those whose subsets follow
the ranking (coreset, pruning) retrain for each perturbed ranking. Reference explainers
(``random``, ``loss``: no quality to lose) are run unperturbed only and left out of the scores.
The meta table quotes the measured cost as a multiple of the unperturbed run.

``meta.csv`` (one row per benchmark × metric, :data:`META_COLUMNS`): the parts and scores of
``meta.scores.MetaScores``, the reactivity to each disruptive perturbation
(``ar_<perturbation>``), the number of explainers, units and draws, the resolution (the unit change
below which nothing counts as moved), the share of test predictions the weight noise left
unchanged, the run's cost multiple, and ``flagged`` (noise resilience or
adversarial reactivity below ``meta.scores.RELIABILITY_THRESHOLD``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dattr_eval.benchmarks import Benchmark
from dattr_eval.benchmarks.base import predict
from dattr_eval.evaluation.cell import CellHook, CellResult, CellSpec, run_cell
from dattr_eval.evaluation.evaluator import Evaluator
from dattr_eval.evaluation.leaderboard import LEGACY_REFERENCES, REFERENCE
from dattr_eval.evaluation.meta_table import MEASURE_COLUMNS, META_FILE
from dattr_eval.evaluation.rows import role
from dattr_eval.explainers.base import Explainer
from dattr_eval.meta.perturbations import PERTURBATIONS, WEIGHT_NOISE, perturbed_cell
from dattr_eval.meta.scores import meta_scores, unit_qualities
from dattr_eval.validation import check_choice, check_positive

#: the columns of ``meta.csv``, in order (``ar_<perturbation>`` columns follow ``meta_consistency``)
META_COLUMNS: tuple[str, ...] = (
    "benchmark",
    "metric",
    "category",
    "higher_is_better",
    "status",
    "error",
    *MEASURE_COLUMNS,
    *(f"ar_{name}" for name, p in PERTURBATIONS.items() if p.disruptive),
    "flagged",
    "n_explainers",
    "n_units",
    "n_minor_draws",
    "n_disruptive_draws",
    "resolution",
    "prediction_agreement",
    "base_s",
    "meta_s",
    "cost_multiple",
)


@dataclass(frozen=True)
class MetaSettings:
    """What the meta-evaluation perturbs.

    Args:
        n_draws: draws per perturbation (MetaQuantus' ``K``).
        perturbations: names from ``meta.perturbations.PERTURBATIONS``; at least one minor and one
            disruptive.
        weight_noise: ``sigma`` of the multiplicative weight noise.
        n_blocks: blocks of units of metrics whose score is not a mean of 1-D units
            (``meta.scores.unit_qualities``).
        tolerance: unit changes within ``tolerance`` standard deviations of the unperturbed unit
            scores count as no change (``meta.scores``; 0 = MetaQuantus' exact tests).
        seed: base seed of the draws and of the unit blocks.
    """

    n_draws: int = 3
    perturbations: tuple[str, ...] = tuple(PERTURBATIONS)
    weight_noise: float = WEIGHT_NOISE
    n_blocks: int = 20
    tolerance: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive(self.n_draws, "n_draws", integer=True)
        check_positive(self.weight_noise, "weight_noise")
        check_positive(self.n_blocks, "n_blocks", integer=True)
        check_positive(self.tolerance, "tolerance", allow_zero=True)
        for name in self.perturbations:
            check_choice(name, "perturbations", PERTURBATIONS)
        kinds = {PERTURBATIONS[name].disruptive for name in self.perturbations}
        if kinds != {True, False}:
            raise ValueError(
                "perturbations must hold at least one minor and one disruptive perturbation "
                f"({[n for n, p in PERTURBATIONS.items() if not p.disruptive]} / "
                f"{[n for n, p in PERTURBATIONS.items() if p.disruptive]}), got {list(self.perturbations)}"
            )


@dataclass
class FittedCapture:
    """A cell hook that keeps the cell's fitted explainer (and adds no rows)."""

    name: str = "meta_capture"
    explainer: Explainer | None = None

    def __call__(self, explainer: Explainer, bench: Benchmark) -> list[dict[str, Any]]:
        self.explainer = explainer
        return []


@dataclass
class CellRecord:
    """One cell's per-unit qualities, unperturbed and under each perturbation draw.

    Attributes:
        benchmark, explainer: the cell.
        reference: a reference explainer (scored unperturbed only).
        metrics: ``{metric label: (category, higher_is_better)}`` of the cell's metrics.
        base: ``{metric label: qualities (n_units,)}`` of the unperturbed cell.
        perturbed: ``{perturbation: [{metric label: qualities} per draw]}``.
        base_s, perturbed_s: seconds of the unperturbed cell and of all perturbed ones.
        prediction_agreement: per weight-noise draw, the share of test predictions unchanged.
    """

    benchmark: str
    explainer: str
    reference: bool
    metrics: dict[str, tuple[str, bool]]
    base: dict[str, np.ndarray]
    perturbed: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    base_s: float = 0.0
    perturbed_s: float = 0.0
    prediction_agreement: list[float] = field(default_factory=list)


def is_reference(label: str, explainer: Explainer) -> bool:
    """Whether an explainer is a reference row (its ``role``, or the legacy names random / loss)."""
    return role(explainer) == REFERENCE or label in LEGACY_REFERENCES


class MetaExecutor:
    """Runs each cell unperturbed (yielded to the evaluator) and under every perturbation draw.

    Args:
        settings: the perturbations (:class:`MetaSettings`).

    Attributes: ``records``, one :class:`CellRecord` per cell run.
    """

    def __init__(self, settings: MetaSettings | None = None) -> None:
        self.settings = settings or MetaSettings()
        self.records: list[CellRecord] = []

    def run(self, cells: Iterable[CellSpec]) -> Iterator[tuple[CellSpec, CellResult]]:
        for spec in cells:
            capture = FittedCapture()
            start = time.perf_counter()
            base = run_cell(replace(spec, hooks=(*spec.hooks, capture)))
            record = CellRecord(
                benchmark=spec.benchmark.name,
                explainer=spec.explainer_label,
                reference=is_reference(spec.explainer_label, spec.explainer),
                metrics={k: (m.category, m.higher_is_better) for k, m in spec.metrics.items()},
                base=self.qualities(base),
                base_s=time.perf_counter() - start,
            )
            if not record.reference and capture.explainer is not None:
                self.perturb(spec, capture.explainer, record)
            self.records.append(record)
            yield spec, base

    def perturb(self, spec: CellSpec, fitted: Explainer, record: CellRecord) -> None:
        """Run every perturbation draw of ``spec`` and add their qualities to ``record``."""
        s = self.settings
        start = time.perf_counter()
        for name in s.perturbations:
            record.perturbed[name] = []
            for draw in range(s.n_draws):
                cell = perturbed_cell(
                    spec, name, draw, fitted, weight_noise=s.weight_noise, seed=s.seed
                )
                record.perturbed[name].append(self.qualities(run_cell(cell)))
                if name == "weight_noise":
                    bench = cell.benchmark
                    same = predict(bench.model, bench.test_inputs) == bench.truth.test_predictions
                    record.prediction_agreement.append(float(same.double().mean()))
        record.perturbed_s = time.perf_counter() - start

    def qualities(self, result: CellResult) -> dict[str, np.ndarray]:
        """``{metric label: qualities (n_units,)}`` of a cell's scored metrics (first replicate)."""
        s = self.settings
        return {
            label: unit_qualities(outcome.per_replicate[0], s.n_blocks, s.seed)
            for label, outcome in result.outcomes.items()
        }


def meta_table(records: Sequence[CellRecord], settings: MetaSettings | None = None) -> pd.DataFrame:
    """One row per benchmark × metric (columns :data:`META_COLUMNS`) from the cells' records.

    A metric is scored over the method explainers that scored it unperturbed and under every
    draw; with none, its row has ``status="error"`` and says why.
    """
    settings = settings or MetaSettings()
    rows = []
    for bench in dict.fromkeys(r.benchmark for r in records):
        cells = [r for r in records if r.benchmark == bench]
        methods = [r for r in cells if not r.reference]
        base_s = sum(r.base_s for r in cells)
        meta_s = sum(r.perturbed_s for r in cells)
        cost = {
            "base_s": base_s,
            "meta_s": meta_s,
            "cost_multiple": (base_s + meta_s) / base_s if base_s > 0 else np.nan,
            "prediction_agreement": float(
                np.mean([a for r in methods for a in r.prediction_agreement])
            )
            if any(r.prediction_agreement for r in methods)
            else np.nan,
        }
        labels = dict.fromkeys(label for r in cells for label in r.metrics)
        for label in labels:
            category, higher = next(r.metrics[label] for r in cells if label in r.metrics)
            row: dict[str, Any] = {
                "benchmark": bench,
                "metric": label,
                "category": category,
                "higher_is_better": higher,
                **cost,
            }
            complete = [r for r in methods if _complete(r, label, settings.perturbations)]
            if not complete:
                row.update(
                    status="error",
                    error="no method explainer scored it unperturbed and under every draw",
                )
                rows.append(row)
                continue
            try:
                scores = meta_scores(
                    np.stack([r.base[label] for r in complete]),
                    _draws(complete, label, settings.perturbations, disruptive=False)["all"],
                    _draws(complete, label, settings.perturbations, disruptive=True),
                    tolerance=settings.tolerance,
                )
            except ValueError as exc:
                row.update(status="error", error=f"ValueError: {exc}")
                rows.append(row)
                continue
            row.update(
                status="ok",
                error="",
                noise_resilience=scores.noise_resilience,
                adversarial_reactivity=scores.adversarial_reactivity,
                iac_nr=scores.iac_nr,
                iec_nr=scores.iec_nr,
                iac_ar=scores.iac_ar,
                iec_ar=scores.iec_ar,
                meta_consistency=scores.meta_consistency,
                flagged=scores.flagged,
                n_explainers=scores.n_explainers,
                n_units=scores.n_units,
                n_minor_draws=scores.n_minor_draws,
                n_disruptive_draws=scores.n_disruptive_draws,
                resolution=scores.resolution,
                **{f"ar_{k}": v for k, v in scores.reactivity_by_perturbation.items()},
            )
            rows.append(row)
    return pd.DataFrame(rows, columns=list(META_COLUMNS))


def _complete(record: CellRecord, label: str, perturbations: Sequence[str]) -> bool:
    """Whether ``record`` has non-empty qualities of ``label`` unperturbed and in every draw."""
    if label not in record.base or record.base[label].size == 0:
        return False
    return all(
        name in record.perturbed
        and record.perturbed[name]
        and all(label in draw for draw in record.perturbed[name])
        for name in perturbations
    )


def _draws(
    records: Sequence[CellRecord], label: str, perturbations: Sequence[str], disruptive: bool
) -> dict[str, list[np.ndarray]]:
    """``{perturbation: [(E, U) per draw]}`` (minor ones pooled under ``"all"``)."""
    out: dict[str, list[np.ndarray]] = {}
    for name in perturbations:
        if PERTURBATIONS[name].disruptive != disruptive:
            continue
        n_draws = len(records[0].perturbed[name])
        stacked = [np.stack([r.perturbed[name][d][label] for r in records]) for d in range(n_draws)]
        out.setdefault("all" if not disruptive else name, []).extend(stacked)
    return out


def meta_evaluate(
    benchmarks: Any,
    explainers: Any,
    metrics: Any = None,
    out_dir: str | Path = "results",
    *,
    n_draws: int = 3,
    perturbations: Sequence[str] | None = None,
    weight_noise: float = WEIGHT_NOISE,
    n_blocks: int = 20,
    tolerance: float = 0.01,
    seed: int = 0,
    device: str | torch.device | None = None,
    batch_size: int = 64,
    hooks: Sequence[CellHook] = (),
    cache_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Meta-evaluate the metrics of a grid: noise resilience and adversarial reactivity per metric.

    Runs ``Evaluator(benchmarks, explainers, metrics, out_dir, ...)`` (every cell recomputed, so
    each is perturbed; models and retrained outputs come from the cache) with a
    :class:`MetaExecutor`, writes ``out_dir/results.csv`` (the unperturbed results, as
    ``evaluate`` does) and ``out_dir/meta.csv``, and returns the meta table.

    Args:
        benchmarks: as for ``Evaluator``.
        explainers: as for ``Evaluator``; use at least two method explainers (inter-consistency
            compares explainers; ``random`` is a reference and not scored).
        metrics: as for ``Evaluator`` (``None``: each benchmark's own).
        out_dir: where ``results.csv`` and ``meta.csv`` are written.
        n_draws: draws per perturbation.
        perturbations: names from ``meta.perturbations.PERTURBATIONS`` (default: all).
        weight_noise: ``sigma`` of the multiplicative weight noise (minor perturbation).
        n_blocks: unit blocks of metrics that are not a mean of 1-D units.
        tolerance: changes within this many standard deviations of the unperturbed unit scores
            count as none (0: MetaQuantus' exact tests).
        seed: base seed of the perturbation draws.
        device: as for ``Evaluator``.
        batch_size: as for ``Evaluator``.
        hooks: as for ``Evaluator`` (they run on the unperturbed cells only).
        cache_dir: as for ``Evaluator``.
        data_dir: as for ``Evaluator``.
        progress: as for ``Evaluator``.

    Returns:
        The meta table (``meta_table``): one row per benchmark × metric.
    """
    settings = MetaSettings(
        n_draws=n_draws,
        perturbations=tuple(perturbations) if perturbations is not None else tuple(PERTURBATIONS),
        weight_noise=weight_noise,
        n_blocks=n_blocks,
        tolerance=tolerance,
        seed=seed,
    )
    executor = MetaExecutor(settings)
    evaluator = Evaluator(
        benchmarks,
        explainers,
        metrics,
        out_dir=out_dir,
        device=device,
        batch_size=batch_size,
        executor=executor,
        hooks=hooks,
        cache_dir=cache_dir,
        data_dir=data_dir,
        force=True,
        progress=progress,
    )
    evaluator.run()
    table = meta_table(executor.records, settings)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    table.to_csv(Path(out_dir) / META_FILE, index=False)
    return table


__all__ = [
    "META_COLUMNS",
    "CellRecord",
    "FittedCapture",
    "MetaExecutor",
    "MetaSettings",
    "is_reference",
    "meta_evaluate",
    "meta_table",
]
