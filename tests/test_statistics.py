"""Bootstrap intervals, paired comparisons, rank intervals, SNR and the LDS noise ceiling."""

import math

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from dattr_eval.statistics import (
    SNR_THRESHOLD,
    BootstrapResult,
    RankColumn,
    bootstrap,
    ceiling_from_split_half,
    noise_ceiling,
    paired_bootstrap,
    rank_intervals,
    signal_to_noise,
    split_half_spearman,
)


def _data_rng(*key: int) -> np.random.Generator:
    """Data generators on a stream apart from the bootstrap's ``default_rng(seed)``."""
    return np.random.default_rng([97, *key])


def _covers(result: BootstrapResult, value: float) -> bool:
    return result.ci_low <= value <= result.ci_high


# --------------------------------------------------------------------------- bootstrap
@pytest.mark.parametrize(
    ("method", "draw", "mean"),
    [
        ("percentile", lambda rng: rng.normal(0.3, 1.0, 100), 0.3),
        ("bca", lambda rng: rng.exponential(1.0, 100), 1.0),
    ],
)
def test_bootstrap_95_intervals_cover_the_known_mean(method, draw, mean):
    n_sims = 400
    covered = [
        _covers(bootstrap(draw(_data_rng(i)), method=method, seed=i), mean) for i in range(n_sims)
    ]
    coverage = float(np.mean(covered))
    assert 0.90 <= coverage <= 0.99, coverage


def test_lower_level_gives_proportionally_lower_coverage():
    covered = [
        _covers(bootstrap(_data_rng(i).normal(size=100), level=0.5, seed=i), 0.0)
        for i in range(400)
    ]
    assert 0.40 <= float(np.mean(covered)) <= 0.60


def test_default_statistic_equals_nanmean_statistic_on_the_same_resamples():
    x = _data_rng(1).normal(size=40)
    x[[3, 17]] = np.nan
    for method in ("percentile", "bca"):
        fast = bootstrap(x, method=method, seed=5)
        slow = bootstrap(x, lambda u: float(np.nanmean(u)), method=method, seed=5)
        assert fast.estimate == pytest.approx(np.nanmean(x), abs=1e-14)
        for field in ("estimate", "ci_low", "ci_high", "std_error"):
            assert getattr(fast, field) == pytest.approx(getattr(slow, field), abs=1e-12)


@pytest.mark.parametrize(("method", "scipy_method"), [("percentile", "percentile"), ("bca", "BCa")])
def test_custom_statistic_interval_matches_scipy(method, scipy_method):
    x = _data_rng(2).normal(size=30)
    ours = bootstrap(x, lambda u: float(np.std(u)), method=method, n_resamples=20000, seed=0)
    ref = scipy_stats.bootstrap(
        (x,), np.std, method=scipy_method, n_resamples=20000, random_state=0
    ).confidence_interval
    width = ours.ci_high - ours.ci_low
    # independent resamples: the ends agree up to Monte-Carlo error (~1 % of the width here)
    assert ours.ci_low == pytest.approx(ref.low, abs=0.03 * width)
    assert ours.ci_high == pytest.approx(ref.high, abs=0.03 * width)


def test_bootstrap_is_deterministic_and_accepts_tensors():
    x = _data_rng(3).normal(size=25)
    a = bootstrap(x, seed=7)
    assert a == bootstrap(torch.from_numpy(x), seed=7)
    assert a == bootstrap(list(x), seed=7)
    assert a != bootstrap(x, seed=8)
    assert isinstance(a, BootstrapResult) and a.n_units == 25 and a.n_resamples == 1000


def test_bootstrap_of_multidimensional_units_with_a_statistic():
    # units are rows of (n, 2): the ratio of column means, resampled by row
    rng = _data_rng(4)
    units = np.stack([rng.normal(2.0, 0.1, 50), rng.normal(4.0, 0.1, 50)], axis=1)
    result = bootstrap(units, lambda u: float(u[:, 0].mean() / u[:, 1].mean()))
    assert result.ci_low < 0.5 < result.ci_high
    assert result.ci_high - result.ci_low < 0.05


def test_constant_units_give_a_degenerate_interval():
    for method in ("percentile", "bca"):
        r = bootstrap(np.full(10, 0.7), method=method)
        assert (r.estimate, r.ci_low, r.ci_high, r.std_error) == pytest.approx((0.7, 0.7, 0.7, 0))
        assert r.half_width == pytest.approx(0.0)


def test_all_nan_units_give_nan_without_warnings():
    with np.errstate(all="raise"):
        r = bootstrap(np.full(5, np.nan), method="bca")
    assert math.isnan(r.estimate) and math.isnan(r.ci_low) and math.isnan(r.ci_high)


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="statistic"):
        bootstrap(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="units"):
        bootstrap(np.zeros(0))
    with pytest.raises(ValueError, match="method"):
        bootstrap(np.zeros(4), method="basic")
    with pytest.raises(ValueError, match="level"):
        bootstrap(np.zeros(4), level=95)
    with pytest.raises(ValueError, match="one number"):
        bootstrap(np.zeros((4, 2)), lambda u: u.mean(0))


# --------------------------------------------------------------------------- paired bootstrap
def test_paired_bootstrap_detects_a_planted_difference_that_unpaired_intervals_miss():
    rng = _data_rng(5)
    difficulty = rng.normal(0.0, 1.0, 60)  # shared by both explainers, unit by unit
    a = difficulty + 0.15 + rng.normal(0.0, 0.1, 60)
    b = difficulty + rng.normal(0.0, 0.1, 60)
    paired = paired_bootstrap(a, b)
    assert paired.difference == pytest.approx(a.mean() - b.mean())
    assert paired.p_value < 0.05
    assert 0 < paired.ci_low < paired.difference < paired.ci_high
    # the same units are resampled for both: the shared difficulty cancels
    ra, rb = bootstrap(a), bootstrap(b)
    assert ra.ci_low < rb.ci_high  # the separate intervals overlap
    assert paired.std_error < 0.2 * math.hypot(ra.std_error, rb.std_error)


def test_paired_bootstrap_null_rejection_rate_is_about_five_percent():
    p_values = [
        paired_bootstrap(*_data_rng(6, i).normal(size=(2, 100)), seed=i).p_value for i in range(400)
    ]
    rate = float(np.mean(np.array(p_values) < 0.05))
    assert 0.02 <= rate <= 0.10, rate
    assert np.median(p_values) > 0.3


def test_paired_p_value_construction():
    x = _data_rng(7).normal(size=20)
    assert paired_bootstrap(x, x).p_value == 1.0
    # every bootstrap difference is > 0: the smallest p-value, 2 / (B + 1)
    assert paired_bootstrap(x + 1, x, n_resamples=999).p_value == pytest.approx(2 / 1000)


def test_paired_bootstrap_names_misaligned_arguments():
    with pytest.raises(ValueError, match="units_a and units_b"):
        paired_bootstrap(np.zeros(5), np.zeros(6))


# --------------------------------------------------------------------------- rank intervals
def _column(name, means, n=80, noise=1.0, key=0, higher_is_better=True):
    rng = _data_rng(8, key)
    return RankColumn(
        name,
        {e: rng.normal(m, noise, n) for e, m in means.items()},
        higher_is_better=higher_is_better,
    )


def test_a_clear_winner_gets_rank_interval_one_one():
    columns = [
        _column("lds", {"best": 3.0, "mid_a": 0.0, "mid_b": 0.1}, key=1),
        _column("loss", {"best": -3.0, "mid_a": 0.0, "mid_b": 0.1}, key=2, higher_is_better=False),
    ]
    result = rank_intervals(columns)
    per = result.per_column
    assert per.loc[("lds", "best"), ["rank", "rank_low", "rank_high"]].tolist() == [1, 1, 1]
    assert per.loc[("loss", "best"), ["rank", "rank_low", "rank_high"]].tolist() == [1, 1, 1]
    avg = result.average
    assert avg.index[0] == "best"
    assert avg.loc["best", ["average_rank", "rank_low", "rank_high"]].tolist() == [1, 1, 1]
    assert avg.loc["best", "n_columns"] == 2


def test_two_equal_explainers_get_overlapping_rank_intervals():
    # equal means, independent noise: neither can be told apart from the other
    columns = [_column(f"m{k}", {"a": 0.5, "b": 0.5, "worst": -2.0}, key=10 + k) for k in range(3)]
    avg = rank_intervals(columns).average
    for e in ("a", "b"):
        low, high = avg.loc[e, ["rank_low", "rank_high"]]
        assert low < 1.5 < high
    assert avg.loc["worst", ["rank_low", "rank_high"]].tolist() == [3, 3]


def test_identical_explainers_tie_in_every_resample():
    units = _data_rng(9).normal(size=50)
    column = RankColumn("m", {"a": units, "b": units.copy(), "c": units - 1})
    per = rank_intervals([column]).per_column
    for e in ("a", "b"):
        assert per.loc[("m", e), ["rank", "rank_low", "rank_high"]].tolist() == [1.5, 1.5, 1.5]


def test_point_ranks_by_hand_with_ties_orientation_and_a_missing_explainer():
    columns = [
        RankColumn("acc", {"x": [0.9, 0.9], "y": [0.5, 0.5], "z": [0.9, 0.9]}),
        RankColumn("loss", {"x": [2.0, 2.0], "y": [1.0, 1.0]}, higher_is_better=False),
    ]
    result = rank_intervals(columns, n_resamples=50)
    per = result.per_column["rank"]
    assert per[("acc", "x")] == 1.5 and per[("acc", "z")] == 1.5 and per[("acc", "y")] == 3
    assert per[("loss", "y")] == 1 and per[("loss", "x")] == 2
    assert ("loss", "z") not in per.index
    avg = result.average
    assert avg.loc["x", "average_rank"] == pytest.approx((1.5 + 2) / 2)
    assert avg.loc["y", "average_rank"] == pytest.approx((3 + 1) / 2)
    assert avg.loc["z", "average_rank"] == 1.5 and avg.loc["z", "n_columns"] == 1
    assert result.per_column.loc[("acc", "y"), "value"] == 0.5
    # constant units: every resample gives the point ranks
    assert (result.per_column["rank_low"] == result.per_column["rank"]).all()


def test_rank_intervals_are_deterministic():
    columns = [_column("m", {"a": 0.1, "b": 0.0, "c": -0.1}, key=20)]
    first = rank_intervals(columns, seed=3).average
    assert first.equals(rank_intervals(columns, seed=3).average)


def test_rank_intervals_name_a_misaligned_column():
    column = RankColumn("lds", {"a": np.zeros(5), "b": np.zeros(6)})
    with pytest.raises(ValueError, match="lds"):
        rank_intervals([column])
    with pytest.raises(ValueError, match="distinct"):
        rank_intervals([column, column])


# --------------------------------------------------------------------------- signal to noise
def test_signal_to_noise_by_hand():
    scores = np.array([[1.0, 2.0, 3.0, np.nan], [2.0, 4.0, 6.0, 8.0]])
    # means 2 and 5 -> std (ddof=1) 3/sqrt(2); within stds 1 and sqrt(20/3) -> mean
    signal = 3 / math.sqrt(2)
    noise = (1 + math.sqrt(20 / 3)) / 2
    assert signal_to_noise(scores) == pytest.approx(signal / noise)
    assert signal_to_noise(torch.tensor(scores)) == pytest.approx(signal / noise)
    assert SNR_THRESHOLD == 3.0


def test_signal_to_noise_edge_cases():
    assert signal_to_noise([[1.0, 1.0], [2.0, 2.0]]) == math.inf
    assert math.isnan(signal_to_noise([[1.0, 1.0], [1.0, 1.0]]))
    assert math.isnan(signal_to_noise([[1.0], [2.0]]))  # one replicate: no noise estimate
    assert math.isnan(signal_to_noise([[1.0, 2.0]]))  # one explainer: no signal
    with pytest.raises(ValueError, match="scores"):
        signal_to_noise([1.0, 2.0])


# --------------------------------------------------------------------------- noise ceiling
def test_noise_ceiling_is_one_without_seed_noise():
    truth = _data_rng(30).normal(size=(32, 40))
    outputs = np.repeat(truth[None], 3, axis=0)
    assert noise_ceiling(outputs) == pytest.approx(1.0)
    assert noise_ceiling(outputs, spearman_brown=False) == pytest.approx(1.0)


def test_noise_ceiling_is_about_zero_on_pure_noise():
    outputs = _data_rng(31).normal(size=(4, 64, 2000))
    assert abs(noise_ceiling(outputs, spearman_brown=False)) < 0.02
    assert 0 <= noise_ceiling(outputs) < 0.1


def test_split_half_with_two_seeds_is_their_spearman():
    outputs = _data_rng(32).normal(size=(2, 20, 6))
    expected = [
        scipy_stats.spearmanr(outputs[0, :, t], outputs[1, :, t]).statistic for t in range(6)
    ]
    np.testing.assert_allclose(split_half_spearman(outputs), expected, atol=1e-12)
    r = float(np.mean(expected))
    assert noise_ceiling(outputs, spearman_brown=False) == pytest.approx(r)
    assert noise_ceiling(outputs) == pytest.approx(math.sqrt(2 * max(r, 0) / (1 + r)))


@pytest.mark.parametrize("n_seeds", [3, 4])
def test_ceiling_is_the_lds_of_the_noise_free_predictor(n_seeds):
    # outputs = truth + seed noise: the best possible attribution predicts the truth exactly;
    # its LDS against the all-seed average is what the ceiling must give
    rng = _data_rng(33, n_seeds)
    truth = rng.normal(size=(100, 300))
    outputs = truth[None] + 1.5 * rng.normal(size=(n_seeds, 100, 300))
    target = outputs.mean(0)
    best = np.mean([scipy_stats.spearmanr(truth[:, t], target[:, t]).statistic for t in range(300)])
    assert noise_ceiling(outputs) == pytest.approx(best, abs=0.03)
    assert noise_ceiling(outputs, spearman_brown=False) < best - 0.2  # the raw split half is not


def test_ceiling_from_split_half_closed_form():
    # equal halves reduce to sqrt(2r / (1 + r))
    assert ceiling_from_split_half(0.5, 4) == pytest.approx(math.sqrt(2 * 0.5 / 1.5))
    # 1 vs 2 seeds with noise/truth variance ratio 1: r = 1/sqrt(2 * 1.5), ceiling sqrt(3/4)
    assert ceiling_from_split_half(1 / math.sqrt(3), 3) == pytest.approx(math.sqrt(3 / 4))
    assert ceiling_from_split_half(-0.1, 3) == 0.0 and ceiling_from_split_half(1.0, 3) == 1.0


def test_noise_ceiling_rejects_bad_outputs():
    with pytest.raises(ValueError, match="n_seeds >= 2"):
        noise_ceiling(np.zeros((1, 5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        noise_ceiling(np.full((2, 5, 3), np.nan))
