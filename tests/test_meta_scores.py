"""MetaQuantus' consistency scores on hand-made quality arrays (values derived by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dattr_eval.meta.scores import (
    drop_share,
    explainer_rankings,
    meta_scores,
    ranking_kappa,
    unit_qualities,
    wilcoxon_p,
)
from dattr_eval.metrics import create
from dattr_eval.metrics.base import MetricResult


def test_wilcoxon_p_exact_small_sample_and_no_change():
    q = np.zeros(5)
    # five positive, distinct differences: the exact two-sided p is 2 / 2^5
    assert wilcoxon_p(q + np.array([1, 2, 3, 4, 5.0]), q) == pytest.approx(2 / 32)
    assert wilcoxon_p(q, q) == 1.0  # nothing moved
    assert math.isnan(wilcoxon_p(np.array([np.nan]), np.array([1.0])))


def test_explainer_rankings_best_first_ties_in_explainer_order():
    q = np.array([[0.1, 0.5], [0.9, 0.5], [0.5, 0.2]])  # (E=3, U=2)
    assert explainer_rankings(q).tolist() == [[1, 0], [2, 1], [0, 2]]


def test_ranking_kappa_hand_cases():
    q = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])  # explainer 0 best on units 0, 1
    assert ranking_kappa(q, q) == 1.0
    # units 1 and 2 swap: observed agreement 1/2, chance 1/2 (each explainer first on half) -> 0
    swapped = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
    assert ranking_kappa(q, swapped) == pytest.approx(0.0)
    # only unit 3 changes: observed 3/4; first position: (1/2, 1/2) vs (3/4, 1/4) -> chance 1/2
    one = np.array([[1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]])
    assert ranking_kappa(q, one) == pytest.approx((0.75 - 0.5) / (1 - 0.5))
    # a constant ranking in both runs (every explainer tied everywhere): nothing to correct
    tied = np.zeros((3, 4))
    assert ranking_kappa(tied, tied) == 1.0
    # below chance is clipped at 0
    assert ranking_kappa(q, 1.0 - q) == 0.0


def test_ranking_kappa_is_chance_level_for_noise_whatever_the_number_of_explainers():
    rng = np.random.default_rng(0)
    for n_explainers in (2, 3, 10):
        q, q_hat = rng.normal(size=(2, n_explainers, 4000))
        assert ranking_kappa(q, q_hat) < 0.03


def test_drop_share():
    q = np.array([[1.0, 1.0, np.nan], [0.5, 0.5, 0.5]])
    q_hat = np.array([[0.0, 1.0, 0.0], [0.4, 0.6, 0.5]])
    assert drop_share(q, q_hat) == pytest.approx(2 / 5)  # the NaN entry is left out


def test_unit_qualities_per_unit_oriented_and_blocked():
    higher = MetricResult("m", 0.5, True, units=np.array([0.2, 0.8]))
    lower = MetricResult("m", 0.5, False, units=np.array([0.2, 0.8]))
    assert unit_qualities(higher).tolist() == [0.2, 0.8]
    assert unit_qualities(lower).tolist() == [-0.2, -0.8]
    # a metric whose statistic is not a mean of 1-D units: statistic per block of units
    metric = create("mislabel_detection")
    rng = np.random.default_rng(1)
    flipped = np.zeros(200)
    flipped[rng.choice(200, 40, replace=False)] = 1
    units = np.stack([flipped + rng.normal(0, 0.1, 200), flipped], axis=1)
    result = metric.result(units)
    blocks = unit_qualities(result, n_blocks=4, seed=3)
    order = np.random.default_rng(3).permutation(200)
    expected = [metric.statistic(units[np.sort(b)]) for b in np.array_split(order, 4)]
    assert blocks.shape == (4,) and blocks.tolist() == pytest.approx(expected)
    assert (blocks > 0.9).all()  # a good ranking scores high on every block


def test_meta_scores_estimator_same_and_estimator_different():
    """MetaQuantus' two sanity estimators: scores that never move, and scores that are noise."""
    rng = np.random.default_rng(2)
    q = rng.uniform(size=(3, 100))
    same = meta_scores(q, [q.copy(), q.copy()], {"a": [q.copy()], "b": [q.copy()]})
    assert (same.noise_resilience, same.adversarial_reactivity) == (1.0, 0.0)
    assert same.meta_consistency == 0.5 and same.flagged

    def noise():  # a fresh random level and unit noise on every run
        return rng.uniform(-10, 10, size=(3, 1)) + rng.normal(size=(3, 100))

    different = meta_scores(noise(), [noise(), noise()], {"a": [noise(), noise()]})
    assert different.noise_resilience < 0.1
    assert different.iac_ar > 0.9
    assert different.n_minor_draws == 2 and different.n_disruptive_draws == 2


def test_meta_scores_ideal_metric():
    """Qualities that stay under minor draws and fall under disruptive ones score near 1."""
    rng = np.random.default_rng(4)
    q = np.linspace(0.5, 1.0, 3)[:, None] + rng.uniform(0, 0.01, size=(3, 80))
    scores = meta_scores(q, [q.copy()], {"shuffled": [q - 0.5], "noise": [q - 0.4]})
    assert scores.noise_resilience == 1.0
    assert scores.adversarial_reactivity > 0.99
    assert scores.reactivity_by_perturbation.keys() == {"shuffled", "noise"}
    assert not scores.flagged


def test_meta_scores_rejects_bad_input():
    q = np.zeros((2, 5))
    with pytest.raises(ValueError, match="unperturbed shape"):
        meta_scores(q, [np.zeros((2, 4))], {"a": [q]})
    with pytest.raises(ValueError, match="at least one minor and one disruptive"):
        meta_scores(q, [], {"a": [q]})
    with pytest.raises(ValueError, match="n_explainers, n_units"):
        meta_scores(np.zeros(5), [q], {"a": [q]})


def test_meta_scores_with_one_explainer_has_no_inter_consistency_under_minor_draws():
    q = np.arange(10.0)[None, :]
    scores = meta_scores(q, [q.copy()], {"a": [q - 1]})
    assert math.isnan(scores.iec_nr)
    assert scores.noise_resilience == scores.iac_nr == 1.0


def test_changes_within_the_resolution_count_as_none():
    rng = np.random.default_rng(5)
    q = rng.uniform(size=(2, 200))  # std ~0.29, so delta = 0.01 * std ~0.003
    shifted = q + 1e-4  # every unit moves up by a negligible amount
    assert wilcoxon_p(q[0], shifted[0]) < 1e-10  # MetaQuantus' exact test calls it a change
    assert wilcoxon_p(q[0], shifted[0], atol=1e-3) == 1.0
    assert drop_share(shifted, q) == 1.0 and drop_share(shifted, q, atol=1e-3) == 0.0
    disrupted = {"a": [q - 0.5]}
    exact = meta_scores(q, [shifted], disrupted, tolerance=0.0)
    tolerant = meta_scores(q, [shifted], disrupted)
    assert exact.iac_nr < 1e-9 and tolerant.iac_nr == 1.0
    assert tolerant.resolution == pytest.approx(0.01 * q.std())
    assert tolerant.adversarial_reactivity == exact.adversarial_reactivity == pytest.approx(1.0)
