"""MetaQuantus' consistency scores, adapted to training-data attribution metrics (pure numpy).

For one benchmark × metric with ``E`` explainers and ``U`` units, ``Q`` ``(E, U)`` holds the
per-unit *qualities* of the unperturbed run and ``Q_k`` ``(E, U)`` those under the ``k``-th draw
of a perturbation; qualities are oriented so that higher is better (:func:`unit_qualities`). As
in MetaQuantus (Hedström et al., "The Meta-Evaluation Problem in Explainable AI", TMLR 2023,
section 4), a reliable metric

- is **noise resilient**: under a *minor* perturbation (one that should not change explanation
  quality) its qualities stay put for every explainer (intra-consistency ``IAC_NR``) and the
  explainers keep their order (inter-consistency ``IEC_NR``);
- is **adversarially reactive**: under a *disruptive* perturbation (one that destroys explanation
  quality) its qualities move (``IAC_AR``) and drop (``IEC_AR``).

The four parts, each in ``[0, 1]`` with 1 ideal:

- ``IAC_NR``: mean over explainers and draws of the p-value of a two-sided Wilcoxon signed-rank
  test of ``Q[e]`` against ``Q_k[e]`` (zero differences split between the signs); ``IAC_AR``: mean
  of ``1 - p``. All-zero differences give ``p = 1`` (nothing moved). Differences within a
  *resolution* ``delta = tolerance * std(Q)`` (the spread of the unperturbed unit scores, pooled
  over explainers; ``tolerance = 0.01`` by default) count as zero. This is the second deliberate
  change: MetaQuantus tests exact equality, and with a few hundred units a weight noise that
  moves DualView's feature-shortcut AUPRC from 0.06522 to 0.06531 on every unit (correlation
  0.99999) gives ``p = 1e-10``, i.e. "not resilient" for a shift a thousand times smaller than
  the differences the metric ranks by. ``tolerance=0`` is MetaQuantus' test exactly.
- ``IEC_NR``: agreement of the per-unit rankings of the explainers, position by position
  (MetaQuantus' ``U`` matrix), **chance-corrected** as Cohen's kappa against pairing the units at
  random, and clipped at 0. This is the one deliberate change: MetaQuantus' raw agreement is
  ``1/E`` for a metric whose rankings are noise, so the same noise would read as 0.33 with three
  explainers and 0.1 with ten; kappa reads 0 for noise whatever ``E``. A ranking that is the
  same on every unit in both runs (e.g. a metric that ignores the attributions, so every
  explainer ties) has nothing to correct for and scores 1.
- ``IEC_AR``: share of (explainer, unit) pairs whose quality dropped (by more than ``delta``).

``noise_resilience = mean(IAC_NR, IEC_NR)``, ``adversarial_reactivity = mean(IAC_AR, IEC_AR)``
(over the disruptive perturbations, each weighted equally), ``meta_consistency`` = mean of the
four (MetaQuantus' MC score with the ideal vector ``m* = 1``).

The Wilcoxon test only sees a *shift* of the qualities: a metric whose unit scores are fresh
noise from the same distribution on every run keeps ``IAC_NR`` near 0.5 (uniform p-values);
``IEC_NR`` is what exposes it (kappa near 0).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import wilcoxon

from dattr_eval.metrics.base import MetricResult, nanmean_statistic
from dattr_eval.validation import check_positive

#: a metric whose noise resilience or adversarial reactivity is below this is flagged unreliable
RELIABILITY_THRESHOLD = 0.5


def unit_qualities(result: MetricResult, n_blocks: int = 20, seed: int = 0) -> np.ndarray:
    """The per-unit qualities ``(n,)`` of a metric result, oriented so that higher is better.

    A metric whose score is the mean of 1-D units (per test point, per selected test point) gives
    its units. Any other (e.g. mislabel detection: rows ``[score, flipped]`` of training points and
    an AUC statistic) gives its statistic on ``n_blocks`` disjoint blocks of units, the blocks a
    seeded partition that depends only on the number of units and ``seed`` (so block ``b`` is the
    same training points for every explainer and every perturbation). No units: ``(0,)``.
    """
    check_positive(n_blocks, "n_blocks", integer=True)
    units = result.units
    if units is None or len(units) == 0:
        return np.zeros(0)
    if units.ndim == 1 and result.statistic is nanmean_statistic:
        qualities = np.asarray(units, dtype=np.float64)
    else:
        order = np.random.default_rng(seed).permutation(len(units))
        blocks = np.array_split(order, min(n_blocks, len(units)))
        qualities = np.array([result.statistic(units[np.sort(b)]) for b in blocks], dtype=float)
    return qualities if result.higher_is_better else -qualities


def wilcoxon_p(q: np.ndarray, q_hat: np.ndarray, atol: float = 0.0) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired ``q`` against ``q_hat`` ``(n,)``.

    Pairs with a NaN are left out; differences with ``|d| <= atol`` count as zero, and zero
    differences are split between the signs (``zsplit``). Returns 1 when every difference is zero
    (nothing moved) and NaN when no pair is left.
    """
    q, q_hat = np.asarray(q, dtype=np.float64), np.asarray(q_hat, dtype=np.float64)
    keep = np.isfinite(q) & np.isfinite(q_hat)
    diff = q[keep] - q_hat[keep]
    diff[np.abs(diff) <= atol] = 0.0
    if diff.size == 0:
        return math.nan
    if not np.any(diff != 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # small samples: normal approximation
        return float(wilcoxon(diff, zero_method="zsplit", alternative="two-sided").pvalue)


def explainer_rankings(qualities: np.ndarray) -> np.ndarray:
    """``(E, U)``: entry ``[p, u]`` is the explainer at position ``p`` (0 = best) on unit ``u``.

    Ties keep the explainers' order (stable sort), as for every unit and every run alike.
    """
    return np.argsort(-np.asarray(qualities, dtype=np.float64), axis=0, kind="stable")


def ranking_kappa(q: np.ndarray, q_hat: np.ndarray) -> float:
    """Chance-corrected agreement of the per-unit explainer rankings of ``q`` and ``q_hat`` ``(E, U)``.

    Observed agreement ``p_o``: share of (position, unit) entries holding the same explainer in
    both rankings (MetaQuantus' ``IEC`` under a minor perturbation). Chance ``p_e``: the expected
    agreement when the units of ``q_hat`` are paired with those of ``q`` at random,
    ``mean_p sum_e P(e at p in q) P(e at p in q_hat)``. Returns Cohen's kappa
    ``(p_o - p_e) / (1 - p_e)`` clipped at 0; 1 when both rankings are one constant ranking
    (``p_e = 1``). Units with a NaN for any explainer are left out; none left: NaN.
    """
    q, q_hat = np.asarray(q, dtype=np.float64), np.asarray(q_hat, dtype=np.float64)
    if q.shape != q_hat.shape or q.ndim != 2:
        raise ValueError(f"q and q_hat must both be (E, U), got {q.shape} and {q_hat.shape}")
    keep = np.isfinite(q).all(0) & np.isfinite(q_hat).all(0)
    if not keep.any():
        return math.nan
    r, r_hat = explainer_rankings(q[:, keep]), explainer_rankings(q_hat[:, keep])
    n_explainers = q.shape[0]
    observed = float((r == r_hat).mean())
    share = np.stack([(r == e).mean(1) for e in range(n_explainers)], axis=1)  # (position, e)
    share_hat = np.stack([(r_hat == e).mean(1) for e in range(n_explainers)], axis=1)
    chance = float((share * share_hat).sum(1).mean())
    if chance >= 1.0 - 1e-12:
        return 1.0
    return max(0.0, (observed - chance) / (1.0 - chance))


def drop_share(q: np.ndarray, q_hat: np.ndarray, atol: float = 0.0) -> float:
    """Share of (explainer, unit) entries of ``(E, U)`` arrays whose quality dropped by more than
    ``atol`` (``q_hat < q - atol``); entries with a NaN are left out (none left: NaN)."""
    q, q_hat = np.asarray(q, dtype=np.float64), np.asarray(q_hat, dtype=np.float64)
    keep = np.isfinite(q) & np.isfinite(q_hat)
    return float((q_hat[keep] < q[keep] - atol).mean()) if keep.any() else math.nan


def resolution(q: np.ndarray, tolerance: float) -> float:
    """``tolerance`` times the standard deviation of the finite entries of ``q`` (0 if none)."""
    finite = np.asarray(q, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return float(tolerance * finite.std()) if finite.size > 1 else 0.0


@dataclass(frozen=True)
class MetaScores:
    """MetaQuantus' scores of one benchmark × metric (see the module docstring); all in ``[0, 1]``.

    Attributes:
        iac_nr, iec_nr: intra- and inter-consistency under the minor perturbation draws.
        iac_ar, iec_ar: the same under the disruptive draws (mean over perturbation kinds).
        noise_resilience: ``mean(iac_nr, iec_nr)``.
        adversarial_reactivity: ``mean(iac_ar, iec_ar)``.
        meta_consistency: mean of the four parts.
        reactivity_by_perturbation: ``{disruptive perturbation: its adversarial reactivity}``.
        n_explainers, n_units: the shape of the quality arrays.
        n_minor_draws, n_disruptive_draws: perturbation draws scored.
        resolution: ``delta``, the absolute change below which a unit counts as unchanged.
    """

    iac_nr: float
    iec_nr: float
    iac_ar: float
    iec_ar: float
    noise_resilience: float
    adversarial_reactivity: float
    meta_consistency: float
    reactivity_by_perturbation: dict[str, float] = field(default_factory=dict)
    n_explainers: int = 0
    n_units: int = 0
    n_minor_draws: int = 0
    n_disruptive_draws: int = 0
    resolution: float = 0.0

    @property
    def flagged(self) -> bool:
        """Whether either criterion is below :data:`RELIABILITY_THRESHOLD` (or undefined)."""
        return not (
            self.noise_resilience >= RELIABILITY_THRESHOLD
            and self.adversarial_reactivity >= RELIABILITY_THRESHOLD
        )


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _intra(q: np.ndarray, draws: Sequence[np.ndarray], adversarial: bool, atol: float) -> float:
    """Mean over explainers and draws of ``p`` (``1 - p`` when ``adversarial``)."""
    values = [wilcoxon_p(q[e], q_hat[e], atol) for q_hat in draws for e in range(q.shape[0])]
    return _nanmean([1.0 - v if adversarial else v for v in values])


def meta_scores(
    unperturbed: np.ndarray,
    minor: Sequence[np.ndarray],
    disruptive: Mapping[str, Sequence[np.ndarray]],
    tolerance: float = 0.01,
) -> MetaScores:
    """MetaQuantus' scores from quality arrays ``(E, U)`` (higher = better).

    Args:
        unperturbed: ``Q``, the qualities of the unperturbed run.
        minor: ``Q_k`` for each minor perturbation draw.
        disruptive: ``{perturbation: [Q_k per draw]}`` for each disruptive perturbation.
        tolerance: the resolution ``delta`` in units of ``std(Q)`` (0: MetaQuantus' exact tests).

    With one explainer there is no ranking to keep: ``iec_nr`` is NaN and the noise resilience
    is ``iac_nr`` alone (every mean here leaves NaN parts out).

    Raises:
        ValueError: arrays of different shapes, or no draw of either kind.
    """
    q = np.asarray(unperturbed, dtype=np.float64)
    if q.ndim != 2:
        raise ValueError(f"unperturbed must be (n_explainers, n_units), got shape {q.shape}")
    every = [*minor, *(d for draws in disruptive.values() for d in draws)]
    for other in every:
        if np.shape(other) != q.shape:
            raise ValueError(
                f"every perturbed quality array must have the unperturbed shape {q.shape}, "
                f"got {np.shape(other)}"
            )
    if not minor or not any(disruptive.values()):
        raise ValueError("meta_scores needs at least one minor and one disruptive draw")
    check_positive(tolerance, "tolerance", allow_zero=True)
    delta = resolution(q, tolerance)
    iac_nr = _intra(q, minor, adversarial=False, atol=delta)
    iec_nr = _nanmean([ranking_kappa(q, q_hat) for q_hat in minor]) if q.shape[0] > 1 else math.nan
    by_kind = {
        name: (
            _intra(q, draws, adversarial=True, atol=delta),
            _nanmean([drop_share(q, d, delta) for d in draws]),
        )
        for name, draws in disruptive.items()
        if draws
    }
    iac_ar = _nanmean([iac for iac, _ in by_kind.values()])
    iec_ar = _nanmean([iec for _, iec in by_kind.values()])
    return MetaScores(
        iac_nr=iac_nr,
        iec_nr=iec_nr,
        iac_ar=iac_ar,
        iec_ar=iec_ar,
        noise_resilience=_nanmean([iac_nr, iec_nr]),
        adversarial_reactivity=_nanmean([iac_ar, iec_ar]),
        meta_consistency=_nanmean([iac_nr, iec_nr, iac_ar, iec_ar]),
        reactivity_by_perturbation={k: _nanmean(list(v)) for k, v in by_kind.items()},
        n_explainers=int(q.shape[0]),
        n_units=int(q.shape[1]),
        n_minor_draws=len(minor),
        n_disruptive_draws=sum(len(d) for d in disruptive.values()),
        resolution=delta,
    )


__all__ = [
    "RELIABILITY_THRESHOLD",
    "MetaScores",
    "drop_share",
    "explainer_rankings",
    "meta_scores",
    "ranking_kappa",
    "resolution",
    "unit_qualities",
    "wilcoxon_p",
]
