"""The uncertainty of scores: bootstrap intervals, paired tests, rank intervals, SNR, ceilings.

Pure functions over arrays (numpy; torch tensors are accepted and converted to float64 numpy).
A *unit* is one row of a units array ``(n_units, ...)``: what the bootstrap resamples (test
points, training points or replicate seeds; each metric names its unit). Every function is
deterministic given ``seed``.

- ``bootstrap``: a statistic's point estimate with a percentile or BCa interval.
- ``paired_bootstrap``: the difference of one statistic on two unit-aligned arrays, resampling the
  same units for both, with its interval and a two-sided p-value.
- ``rank_intervals``: bootstrap of a whole rank table (explainers x metric columns): the interval of
  each explainer's rank per column and of its average rank.
- ``signal_to_noise``: between-explainer spread / within-explainer replicate spread of a metric.
- ``noise_ceiling``: the best LDS any method can reach on a retraining ground truth, from the
  split-half agreement of the retrained outputs (``split_half_spearman``, per test point) extended
  to the all-seed average (``ceiling_from_split_half``, Spearman–Brown).

The default statistic is the mean ignoring NaN units (``nanmean``); it is vectorised over the
resamples. Any other statistic is a callable ``units (n, ...) -> float`` called once per resample
(and once per unit for BCa's jackknife).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import ndtr, ndtri

from dattr_eval.ranking import spearman_rows
from dattr_eval.validation import check_choice, check_fraction, check_positive

#: a metric whose signal-to-noise ratio is below this is flagged as unreliable in reports
SNR_THRESHOLD = 3.0

#: index-matrix entries drawn at once (bounds memory: 2**22 int64 = 32 MiB)
_CHUNK_ENTRIES = 1 << 22

Statistic = Callable[[np.ndarray], float]


@dataclass(frozen=True)
class BootstrapResult:
    """A statistic with its bootstrap confidence interval.

    estimate: the statistic on all units. ``ci_low``/``ci_high``: the ``level`` interval.
    std_error: standard deviation (ddof=1) of the bootstrap distribution. ``n_units``: rows
    resampled (NaN units included). ``method``: ``"percentile"`` or ``"bca"``.
    """

    estimate: float
    ci_low: float
    ci_high: float
    std_error: float
    n_units: int
    n_resamples: int
    level: float
    method: str

    @property
    def half_width(self) -> float:
        """``(ci_high - ci_low) / 2``: the ``±`` shown beside a score (intervals may be skewed)."""
        return (self.ci_high - self.ci_low) / 2


@dataclass(frozen=True)
class PairedResult:
    """``statistic(a) - statistic(b)`` on the same units, with its percentile interval and p-value.

    p_value: two-sided, from the bootstrap distribution of the difference (see
    ``paired_bootstrap``). ``std_error``: ddof=1 standard deviation of that distribution.
    """

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    std_error: float
    n_units: int
    n_resamples: int
    level: float


@dataclass(frozen=True)
class RankColumn:
    """One column of a rank table: a metric's per-unit scores for several explainers.

    name: the column's label (e.g. ``"digits/lds"``). units: ``{explainer: (n_units, ...)}``, all
    explainers' arrays aligned (same units in the same order), so one resample of unit indices is
    shared by every explainer of the column. statistic: as in ``bootstrap`` (``None``: nanmean of
    1-D units). higher_is_better: orientation of the statistic (rank 1 = best).
    """

    name: str
    units: Mapping[str, Any]
    statistic: Statistic | None = None
    higher_is_better: bool = True


@dataclass(frozen=True)
class RankIntervals:
    """Bootstrap intervals of a rank table.

    per_column: DataFrame indexed by ``(column, explainer)`` (only explainers present in that
    column) with ``value`` (the statistic on all units), ``rank`` (point rank, 1 = best, ties
    averaged), ``rank_low``, ``rank_high`` (the ``level`` interval of the bootstrap ranks).
    average: DataFrame indexed by ``explainer``, sorted by ``average_rank``, with
    ``average_rank`` (mean of the point ranks over the columns the explainer has), ``rank_low``,
    ``rank_high`` (interval of the bootstrap average rank) and ``n_columns``.
    Interval ends are empirical quantiles (``inverted_cdf``), so they are attained rank values.
    """

    per_column: pd.DataFrame
    average: pd.DataFrame
    n_resamples: int
    level: float
    columns: tuple[str, ...]


# --------------------------------------------------------------------------- input handling
def _as_units(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 array with at least one row (torch tensors are detached to CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(
            f"{name} must be an array (n_units, ...) with n_units >= 1, got {arr.shape}"
        )
    return arr


def _check_default_statistic_input(units: np.ndarray, name: str) -> None:
    if units.ndim != 1:
        raise ValueError(
            f"the default statistic (nanmean) needs 1-D {name}, got shape {units.shape}; "
            "pass statistic= for multi-dimensional units"
        )


def _check_resampling(n_resamples: int, level: float, seed: int) -> None:
    check_positive(n_resamples, "n_resamples", integer=True)
    check_fraction(level, "level")
    check_positive(seed, "seed", allow_zero=True, integer=True)


def _call(statistic: Statistic, sample: np.ndarray) -> float:
    value = np.asarray(statistic(sample), dtype=np.float64)
    if value.size != 1:
        raise ValueError(f"statistic must return one number, got shape {value.shape}")
    return float(value.reshape(()))


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """``np.nanmean`` that returns NaN for an all-NaN slice without warning."""
    valid = ~np.isnan(x)
    return _nan_ratio(np.where(valid, x, 0.0).sum(axis), valid.sum(axis))


def _nan_ratio(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``sums / counts`` with NaN where ``counts`` is 0 (an all-NaN sample has no mean)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


# --------------------------------------------------------------------------- resampling core
def _index_chunks(rng: np.random.Generator, n_units: int, n_resamples: int) -> Iterator[np.ndarray]:
    """Index matrices ``(b, n_units)``, uniform with replacement; ``n_resamples`` rows in all."""
    per_chunk = max(1, _CHUNK_ENTRIES // n_units)
    for start in range(0, n_resamples, per_chunk):
        yield rng.integers(0, n_units, size=(min(per_chunk, n_resamples - start), n_units))


def _point(units: np.ndarray, statistic: Statistic | None) -> float:
    if statistic is not None:
        return _call(statistic, units)
    return float(_nanmean(units, axis=0))


def _on_indices(units: np.ndarray, statistic: Statistic | None, idx: np.ndarray) -> np.ndarray:
    """The statistic on each resample ``units[idx[r]]``; ``idx`` ``(b, n_units)`` -> ``(b,)``."""
    if statistic is not None:
        return np.array([_call(statistic, units[row]) for row in idx])
    return _nanmean(units[idx], axis=1)


def _resampled(
    arrays: Sequence[np.ndarray], statistic: Statistic | None, n_resamples: int, seed: Any
) -> np.ndarray:
    """The statistic of each array on the same resamples of unit indices: ``(n_resamples, k)``.

    The indices depend only on ``seed``, ``n_units`` and ``n_resamples``, so ``bootstrap(a)`` and
    ``paired_bootstrap(a, b)`` with one seed resample the same units.
    """
    rng = np.random.default_rng(seed)
    n_units = arrays[0].shape[0]
    chunks = [
        np.stack([_on_indices(a, statistic, idx) for a in arrays], axis=1)
        for idx in _index_chunks(rng, n_units, n_resamples)
    ]
    return np.concatenate(chunks, axis=0)


def _jackknife(units: np.ndarray, statistic: Statistic | None) -> np.ndarray:
    """Leave-one-unit-out values of the statistic, ``(n_units,)``."""
    if statistic is not None:
        return np.array([_call(statistic, np.delete(units, i, axis=0)) for i in range(len(units))])
    valid = ~np.isnan(units)
    filled = np.where(valid, units, 0.0)
    return _nan_ratio(filled.sum() - filled, valid.sum() - valid)


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return float(low), float(high)


def _bca_interval(
    values: np.ndarray, estimate: float, jackknife: np.ndarray, level: float
) -> tuple[float, float]:
    """Efron's bias-corrected and accelerated interval (Efron & Tibshirani 1993, ch. 14.3)."""
    finite = values[~np.isnan(values)]
    if finite.size == 0 or math.isnan(estimate):
        return math.nan, math.nan
    b = finite.size
    below = (np.sum(finite < estimate) + 0.5 * np.sum(finite == estimate)) / b
    z0 = float(ndtri(np.clip(below, 0.5 / b, 1 - 0.5 / b)))
    jack = jackknife[~np.isnan(jackknife)]
    spread = jack.mean() - jack if jack.size else jack
    denom = 6 * float(np.sum(spread**2)) ** 1.5
    accel = float(np.sum(spread**3)) / denom if denom > 0 else 0.0
    alpha = (1 - level) / 2
    z = ndtri(np.array([alpha, 1 - alpha]))
    adjusted = ndtr(z0 + (z0 + z) / (1 - accel * (z0 + z)))
    low, high = np.quantile(finite, adjusted)
    return float(low), float(high)


def _std(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(np.std(finite, ddof=1)) if finite.size > 1 else math.nan


# --------------------------------------------------------------------------- public API
def bootstrap_draws(
    units: Any, statistic: Statistic | None = None, *, n_resamples: int = 1000, seed: int = 0
) -> np.ndarray:
    """The statistic on each of ``n_resamples`` seeded resamples of ``units``: ``(n_resamples,)``.

    The resampled indices depend only on ``seed``, ``n_units`` and ``n_resamples`` (as in
    :func:`bootstrap`), so draws of two unit-aligned arrays with one seed are paired. NaN where a
    resample's statistic is undefined.
    """
    arr = _as_units(units, "units")
    check_positive(n_resamples, "n_resamples", integer=True)
    check_positive(seed, "seed", allow_zero=True, integer=True)
    if statistic is None:
        _check_default_statistic_input(arr, "units")
    return _resampled([arr], statistic, n_resamples, seed)[:, 0]


def percentile_interval(draws: Any, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` percentile interval of bootstrap ``draws`` (NaN draws left out; NaN if none)."""
    check_fraction(level, "level")
    return _percentile_interval(np.asarray(draws, dtype=np.float64), level)


def bootstrap(
    units: Any,
    statistic: Statistic | None = None,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
) -> BootstrapResult:
    """Seeded nonparametric bootstrap interval of a statistic over units.

    Each resample draws ``n_units`` rows of ``units`` uniformly with replacement and evaluates the
    statistic. Intervals:

    - ``"percentile"``: the ``(1-level)/2`` and ``(1+level)/2`` quantiles (linear interpolation)
      of the bootstrap distribution.
    - ``"bca"``: bias-corrected and accelerated (Efron 1987): the quantile levels are shifted by
      the bias ``z0 = Φ⁻¹(share of resamples below the estimate, ties counted half)`` (clipped to
      ``[0.5/B, 1-0.5/B]`` so a one-sided distribution stays finite) and the acceleration
      ``a = Σd³ / (6 (Σd²)^{3/2})`` of the leave-one-unit-out jackknife values ``d``. Second-order
      accurate for skewed statistics; costs ``n_units`` extra statistic calls (vectorised for the
      default statistic).

    Args:
        units: ``(n_units, ...)`` array or tensor; rows are the resampled units.
        statistic: ``units (n, ...) -> float`` on a numpy array; ``None``: the mean of 1-D units
            ignoring NaN (units where the metric is undefined drop out of each resample's mean; a
            resample with no finite unit has no value). Resamples whose statistic is NaN are left
            out of the interval and the standard error.
        n_resamples: bootstrap resamples ``B``.
        level: coverage of the interval in ``(0, 1)``.
        seed: seed of the resampling.
        method: ``"percentile"`` (default) or ``"bca"``.

    Returns:
        ``BootstrapResult``; all-NaN units give NaN estimate and interval.
    """
    arr = _as_units(units, "units")
    _check_resampling(n_resamples, level, seed)
    check_choice(method, "method", ("percentile", "bca"))
    if statistic is None:
        _check_default_statistic_input(arr, "units")
    estimate = _point(arr, statistic)
    values = bootstrap_draws(arr, statistic, n_resamples=n_resamples, seed=seed)
    if method == "bca":
        low, high = _bca_interval(values, estimate, _jackknife(arr, statistic), level)
    else:
        low, high = _percentile_interval(values, level)
    return BootstrapResult(
        estimate=estimate,
        ci_low=low,
        ci_high=high,
        std_error=_std(values),
        n_units=arr.shape[0],
        n_resamples=n_resamples,
        level=level,
        method=method,
    )


def paired_bootstrap(
    units_a: Any,
    units_b: Any,
    statistic: Statistic | None = None,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedResult:
    """Paired bootstrap of ``statistic(a) - statistic(b)``: both resampled on the same unit indices.

    ``units_a`` and ``units_b`` must be aligned row by row (row ``i`` of both is the same test
    point, training point or replicate), so the shared variation of the units cancels in the
    difference. The interval is the percentile interval of the bootstrap differences ``d*``.
    p-value (two-sided): ``min(1, 2·min((1 + #{d* ≤ 0}) / (B + 1), (1 + #{d* ≥ 0}) / (B + 1)))``
    over the ``B`` resamples with a finite difference: twice the bootstrap mass on the far side of
    zero, with the +1 correction so it is never 0 (smallest value ``2 / (B + 1)``). It is below
    ``1 - level`` roughly when the ``level`` percentile interval excludes 0.

    Args:
        units_a, units_b: ``(n_units, ...)`` arrays or tensors, aligned.
        statistic: as in ``bootstrap`` (``None``: nanmean of 1-D units, NaN units ignored per side).
        n_resamples, level, seed: as in ``bootstrap``.
    """
    a = _as_units(units_a, "units_a")
    b = _as_units(units_b, "units_b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            "units_a and units_b must hold the same units row by row, got "
            f"{a.shape[0]} and {b.shape[0]} rows"
        )
    _check_resampling(n_resamples, level, seed)
    if statistic is None:
        _check_default_statistic_input(a, "units_a")
        _check_default_statistic_input(b, "units_b")
    difference = _point(a, statistic) - _point(b, statistic)
    both = _resampled([a, b], statistic, n_resamples, seed)
    diffs = both[:, 0] - both[:, 1]
    low, high = _percentile_interval(diffs, level)
    finite = diffs[~np.isnan(diffs)]
    tail = min(np.sum(finite <= 0), np.sum(finite >= 0))
    p_value = min(1.0, 2 * (1 + tail) / (finite.size + 1)) if finite.size else math.nan
    return PairedResult(
        difference=difference,
        ci_low=low,
        ci_high=high,
        p_value=float(p_value),
        std_error=_std(diffs),
        n_units=a.shape[0],
        n_resamples=n_resamples,
        level=level,
    )


def _ranks(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Ranks along the last axis of ``(..., k)``: 1 = best, ties averaged, NaN values unranked."""
    v = values if higher_is_better else -values
    better = (v[..., None, :] > v[..., :, None]).sum(-1)
    tied = (v[..., None, :] == v[..., :, None]).sum(-1) - 1
    return np.where(np.isnan(v), np.nan, 1 + better + 0.5 * tied)


def _rank_quantiles(ranks: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Empirical ``level`` interval over axis 0 of ``(B, k)`` ranks, NaN ignored."""
    alpha = (1 - level) / 2
    low = np.array([_quantile(ranks[:, j], alpha) for j in range(ranks.shape[1])])
    high = np.array([_quantile(ranks[:, j], 1 - alpha) for j in range(ranks.shape[1])])
    return low, high


def _quantile(x: np.ndarray, q: float) -> float:
    finite = x[~np.isnan(x)]
    return float(np.quantile(finite, q, method="inverted_cdf")) if finite.size else math.nan


def rank_intervals(
    columns: Sequence[RankColumn],
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> RankIntervals:
    """Bootstrap the whole rank table: intervals of each explainer's rank and average rank.

    Per resample: each column draws its own unit indices (columns independently; within a column
    one index set shared by all its explainers), evaluates the column's statistic per explainer,
    ranks the explainers (1 = best under ``higher_is_better``, ties get their mean rank, an
    explainer missing from a column or with a NaN value is unranked there), and each explainer's
    average rank is the mean over the columns where it is ranked. The intervals are the empirical
    ``(1-level)/2`` and ``(1+level)/2`` quantiles of these bootstrap ranks. Column ``k`` uses the
    ``k``-th child of ``SeedSequence(seed)``, so its resamples do not depend on the other columns.

    Args:
        columns: the rank table's columns (distinct names); see ``RankColumn``.
        n_resamples, level, seed: as in ``bootstrap``.

    Returns:
        ``RankIntervals`` (two DataFrames, see there). An average rank over different column sets
        compares explainers on different metrics: pass the same columns for all to avoid it.
    """
    _check_resampling(n_resamples, level, seed)
    names = [c.name for c in columns]
    if not columns or len(set(names)) != len(names):
        raise ValueError(f"columns must be a non-empty list with distinct names, got {names}")
    explainers = list(dict.fromkeys(e for c in columns for e in c.units))
    point = np.full((len(columns), len(explainers)), np.nan)
    boot = np.full((len(columns), n_resamples, len(explainers)), np.nan)
    rows = []
    seeds = np.random.SeedSequence(seed).spawn(len(columns))
    for k, (column, column_seed) in enumerate(zip(columns, seeds)):
        if not column.units:
            raise ValueError(f"column {column.name!r} has no explainers")
        present = list(column.units)
        arrays = [
            _as_units(column.units[e], f"units[{e!r}] of column {column.name!r}") for e in present
        ]
        lengths = {e: a.shape[0] for e, a in zip(present, arrays)}
        if len(set(lengths.values())) != 1:
            raise ValueError(
                f"column {column.name!r}: explainers' units must be aligned (same rows), "
                f"got n_units {lengths}"
            )
        if column.statistic is None:
            for e, a in zip(present, arrays):
                _check_default_statistic_input(a, f"units[{e!r}] of column {column.name!r}")
        values = np.array([_point(a, column.statistic) for a in arrays])
        ranks = _ranks(values, column.higher_is_better)
        boot_ranks = _ranks(
            _resampled(arrays, column.statistic, n_resamples, column_seed), column.higher_is_better
        )
        cols = [explainers.index(e) for e in present]
        point[k, cols] = ranks
        boot[k][:, cols] = boot_ranks
        low, high = _rank_quantiles(boot_ranks, level)
        rows += [
            (column.name, e, values[j], ranks[j], low[j], high[j]) for j, e in enumerate(present)
        ]
    per_column = pd.DataFrame(
        rows, columns=["column", "explainer", "value", "rank", "rank_low", "rank_high"]
    ).set_index(["column", "explainer"])
    low, high = _rank_quantiles(_nanmean(boot, axis=0), level)
    average = pd.DataFrame(
        {
            "average_rank": _nanmean(point, axis=0),
            "rank_low": low,
            "rank_high": high,
            "n_columns": (~np.isnan(point)).sum(0),
        },
        index=pd.Index(explainers, name="explainer"),
    ).sort_values("average_rank", kind="stable")
    return RankIntervals(
        per_column=per_column,
        average=average,
        n_resamples=n_resamples,
        level=level,
        columns=tuple(names),
    )


def signal_to_noise(scores: Any) -> float:
    """Signal-to-noise ratio of a metric over replicates: can it tell the explainers apart?

    ``SNR = std_e(mean_r s[e, r]) / mean_e(std_r s[e, r])``: the standard deviation (ddof=1) over
    explainers of each explainer's mean over replicates, divided by the mean over explainers of
    the within-explainer standard deviation (ddof=1) over replicates. NaN scores are ignored; an
    explainer with no finite score is left out of the signal, one with fewer than two out of the
    noise. The signal includes the noise of the means (``σ/√R``), so explainers that differ only by
    noise give ``SNR ≈ 1/√R``, not 0. Below ``SNR_THRESHOLD`` the metric's ranking is unreliable.

    Args:
        scores: ``(n_explainers, n_replicates)``, one benchmark replicate (seed) per column.

    Returns:
        The ratio; ``inf`` when the noise is exactly 0 and the signal positive; NaN when undefined
        (fewer than two explainers with a score, no explainer with two replicates, or 0 / 0).
    """
    s = _as_units(scores, "scores")
    if s.ndim != 2:
        raise ValueError(f"scores must be (n_explainers, n_replicates), got shape {s.shape}")
    counts = (~np.isnan(s)).sum(1)
    means = _nanmean(s, axis=1)[counts >= 1]
    replicated = s[counts >= 2]
    if means.size < 2 or replicated.shape[0] == 0:
        return math.nan
    signal = float(np.std(means, ddof=1))
    noise = float(np.mean(np.nanstd(replicated, axis=1, ddof=1)))
    if noise == 0:
        return math.inf if signal > 0 else math.nan
    return signal / noise


def split_half_spearman(outputs: Any, *, seed: int = 0) -> np.ndarray:
    """Split-half agreement of retrained outputs, per test point: ``(n_test,)``.

    The seeds are split at random (``seed``) into a first half of ``n_seeds // 2`` seeds and a
    second half of the rest; each half's outputs are averaged over its seeds, and per test point
    the Spearman correlation over the ``m`` subsets between the two half-averages is taken. This
    is the LDS that an independent retraining with one half's seeds scores against the other half.
    A test point whose half-average is constant over the subsets has no correlation: NaN.

    Args:
        outputs: ``(n_seeds, m_subsets, n_test)`` finite, each retrained model's output (e.g. the
            target's log-probability) for each LDS subset and test point; ``n_seeds >= 2``,
            ``m_subsets >= 2``.
        seed: seed of the split.
    """
    out = _as_units(outputs, "outputs")
    if out.ndim != 3 or out.shape[0] < 2 or out.shape[1] < 2:
        raise ValueError(
            "outputs must be (n_seeds, m_subsets, n_test) with n_seeds >= 2 and m_subsets >= 2, "
            f"got shape {out.shape}"
        )
    if not np.isfinite(out).all():
        raise ValueError(f"outputs contains {int((~np.isfinite(out)).sum())} NaN/inf value(s)")
    order = np.random.default_rng(seed).permutation(out.shape[0])
    half = out.shape[0] // 2
    first = out[order[:half]].mean(0)
    second = out[order[half:]].mean(0)
    return spearman_rows(torch.from_numpy(first.T), torch.from_numpy(second.T)).numpy()


def ceiling_from_split_half(split_half: float, n_seeds: int) -> float:
    """The correlation a noise-free predictor reaches against the ``n_seeds``-seed average.

    Spearman–Brown for unequal halves under the classical model ``output = truth + noise``
    (independent noise of equal variance per seed): halves of ``k1 = n_seeds // 2`` and
    ``k2 = n_seeds - k1`` seeds correlate at ``r = 1 / sqrt((1 + λ/k1)(1 + λ/k2))`` with
    ``λ = noise variance / truth variance``. Solving for ``λ`` and returning
    ``1 / sqrt(1 + λ / n_seeds)`` gives the correlation between the truth and the all-seed average,
    the target the LDS correlates attributions with. Equal halves reduce to the textbook
    ``sqrt(2r / (1 + r))``. ``r <= 0``: 0 (no reliable signal); ``r >= 1``: 1; NaN stays NaN.

    Args:
        split_half: the (mean) split-half correlation ``r``, e.g. of ``split_half_spearman``.
        n_seeds: seeds averaged in the LDS target (both halves together), ``>= 2``.
    """
    check_positive(n_seeds, "n_seeds", integer=True)
    if n_seeds < 2:
        raise ValueError(f"n_seeds must be >= 2 (two halves), got {n_seeds}")
    r = float(split_half)
    if math.isnan(r) or r >= 1:
        return r if math.isnan(r) else 1.0
    if r <= 0:
        return 0.0
    k1 = n_seeds // 2
    k2 = n_seeds - k1
    # λ² + (k1 + k2) λ + k1 k2 (1 − 1/r²) = 0, positive root
    b = k1 + k2
    noise_ratio = (-b + math.sqrt(b * b - 4 * k1 * k2 * (1 - 1 / r**2))) / 2
    return 1 / math.sqrt(1 + noise_ratio / n_seeds)


def noise_ceiling(outputs: Any, *, seed: int = 0, spearman_brown: bool = True) -> float:
    """The best LDS any attribution method can reach on this retraining ground truth.

    ``r`` = mean over test points (NaN left out) of ``split_half_spearman(outputs, seed=seed)``.
    With ``spearman_brown=True`` (default) returns ``ceiling_from_split_half(r, n_seeds)``: the
    correlation the noise-free expected output would reach against the all-seed average, which is
    what the LDS correlates attributions with. The uncorrected ``r`` (``spearman_brown=False``)
    answers a different question, how well half the seeds predict the other half, and understates
    the ceiling badly when seed noise dominates: the noise-free predictor scores about ``sqrt(r)``
    against a noisy target, not ``r`` (e.g. ``r = 0.04`` -> ceiling ~0.2 for two seeds), so an
    attribution's LDS can exceed an uncorrected "ceiling". The correction assumes additive noise
    and reads a Spearman ``r`` as a Pearson one; near 0 the square root makes it sensitive to
    sampling noise in ``r`` (pure noise gives a small positive value when ``r`` happens to be > 0).

    Args:
        outputs: ``(n_seeds, m_subsets, n_test)``, see ``split_half_spearman``.
        seed: seed of the split of the seeds into halves.
        spearman_brown: extrapolate to the all-seed average (see above).

    Returns:
        In ``[0, 1]`` corrected (``[-1, 1]`` uncorrected); NaN if no test point has a value. For
        its interval, bootstrap ``split_half_spearman(outputs)`` with the statistic
        ``lambda r: ceiling_from_split_half(np.nanmean(r), n_seeds)``.
    """
    rho = split_half_spearman(outputs, seed=seed)
    r = float(_nanmean(rho, axis=0))
    n_seeds = np.shape(outputs)[0]
    return ceiling_from_split_half(r, n_seeds) if spearman_brown else r
