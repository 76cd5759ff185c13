"""Bootstrap draws of metric scores, paired across explainers, and their intervals.

For one benchmark × metric the resampled unit indices depend only on the benchmark, the metric
label, the number of units and a base seed (:func:`resampling_seed`), never on the explainer, so
draw ``i`` of explainer A and draw ``i`` of explainer B resample the same units: differences and
ranks computed per draw are paired. Replicates (the benchmark rebuilt with other seeds) are
combined by a two-stage bootstrap (:func:`combine_replicates`): replicates are resampled with
replacement, then each picked replicate contributes its own unit-level draw, so the interval holds
both the seed-to-seed and the unit-to-unit variation.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from dattr_eval.metrics.base import MetricResult, nanmean_statistic
from dattr_eval.statistics import bootstrap_draws, percentile_interval

#: resamples per score (the issue's ≥ 1,000)
N_RESAMPLES = 1000
#: the interval's coverage
LEVEL = 0.95


def resampling_seed(benchmark: str, metric: str, n_units: int, base_seed: int = 0) -> int:
    """A seed that depends only on the benchmark, metric label, number of units and ``base_seed``."""
    return zlib.crc32(f"{benchmark}|{metric}|{n_units}|{base_seed}".encode()) & 0x7FFFFFFF


@dataclass(frozen=True)
class ScoreDraws:
    """A score with its bootstrap draws.

    Attributes:
        score: the point estimate.
        draws: ``(n_resamples,)`` the statistic on each resample (NaN where undefined).
        ci_low, ci_high: the ``LEVEL`` percentile interval of ``draws``.
    """

    score: float
    draws: np.ndarray
    ci_low: float
    ci_high: float


def result_draws(
    result: MetricResult, benchmark: str, metric: str, base_seed: int = 0
) -> ScoreDraws:
    """The bootstrap draws of one metric result (all-NaN draws when it has no units)."""
    if result.units is None or len(result.units) == 0:
        draws = np.full(N_RESAMPLES, np.nan)
    else:
        seed = resampling_seed(benchmark, metric, len(result.units), base_seed)
        # the default statistic takes the vectorised path (statistic=None is the same NaN-aware mean)
        statistic = None if result.statistic is nanmean_statistic else result.statistic
        draws = bootstrap_draws(result.units, statistic, n_resamples=N_RESAMPLES, seed=seed)
    low, high = percentile_interval(draws, LEVEL)
    return ScoreDraws(result.score, draws, low, high)


def combine_replicates(per_replicate: list[ScoreDraws], benchmark: str, metric: str) -> ScoreDraws:
    """Mean over replicates of the score; draws by the two-stage bootstrap (module docstring).

    With one replicate this returns it unchanged.
    """
    if len(per_replicate) == 1:
        return per_replicate[0]
    r = len(per_replicate)
    stacked = np.stack([d.draws for d in per_replicate])  # (r, n_resamples)
    rng = np.random.default_rng(resampling_seed(benchmark, metric, r, base_seed=1))
    picks = rng.integers(0, r, size=(N_RESAMPLES, r))  # replicates per draw
    picked = stacked[picks, np.arange(N_RESAMPLES)[:, None]]  # (n_resamples, r)
    valid = ~np.isnan(picked)
    with np.errstate(invalid="ignore"):
        draws = np.where(valid, picked, 0.0).sum(1) / valid.sum(1)
    low, high = percentile_interval(draws, LEVEL)
    scores = np.array([d.score for d in per_replicate])
    score = float(scores[~np.isnan(scores)].mean()) if (~np.isnan(scores)).any() else float("nan")
    return ScoreDraws(score, draws, low, high)
