"""compare / compare_dirs: differences of stored scores with bootstrap intervals, on planted data.

The per-unit scores are planted, the draws made as the evaluator makes them (one resampling seed
per benchmark × metric, so the explainers' draws are paired), and the expected differences and
intervals follow from the construction or from ``statistics.paired_bootstrap``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dattr_eval
from dattr_eval.evaluation.compare import (
    INDEPENDENT,
    NO_DRAWS,
    PAIRED,
    compare,
    compare_dirs,
    draws_difference,
    format_comparison,
)
from dattr_eval.evaluation.store import ResultStore
from dattr_eval.evaluation.uncertainty import N_RESAMPLES, resampling_seed
from dattr_eval.statistics import bootstrap_draws, paired_bootstrap

N_UNITS = 80
SHIFT = 0.2


def planted_units() -> dict[str, np.ndarray]:
    """Per-unit scores: ``good`` = ``base`` + SHIFT on every unit; ``twin`` = ``base`` with the
    units' noise re-drawn (same mean in expectation, no real difference)."""
    rng = np.random.default_rng(7)
    base = rng.uniform(0, 1, N_UNITS)
    return {"base": base, "good": base + SHIFT, "twin": rng.permutation(base)}


def planted(fingerprints: dict[str, str] | None = None):
    """``(results, draws)`` for explainers base / good / twin on two benchmarks × two metrics.

    ``m_high`` (higher is better) scores the units; ``m_low`` (lower is better) scores minus them,
    so ``good`` is better on both.
    """
    fingerprints = fingerprints or {}
    rows, draws = [], {}
    for bench in ("b1", "b2"):
        for metric, sign, hib in (("m_high", 1.0, True), ("m_low", -1.0, False)):
            seed = resampling_seed(bench, metric, N_UNITS)
            for explainer, units in planted_units().items():
                units = sign * units
                rows.append(
                    {
                        "benchmark": bench,
                        "explainer": explainer,
                        "metric": metric,
                        "kind": "metric",
                        "status": "ok",
                        "score": float(units.mean()),
                        "higher_is_better": hib,
                        "benchmark_fingerprint": fingerprints.get(explainer, f"fp-{bench}"),
                        "metric_key": f"key-{metric}",
                        "cell_key": f"{bench}-{explainer}",
                    }
                )
                draws[(bench, explainer, metric)] = bootstrap_draws(
                    units, n_resamples=N_RESAMPLES, seed=seed
                )
    return pd.DataFrame(rows), draws


def test_draws_difference_equals_the_paired_bootstrap_on_the_units():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.5, 0.3, 50), rng.normal(0.45, 0.3, 50)
    draws_a = bootstrap_draws(a, n_resamples=2000, seed=11)
    draws_b = bootstrap_draws(b, n_resamples=2000, seed=11)
    diff = draws_difference(a.mean(), b.mean(), draws_a, draws_b, paired=True)
    ref = paired_bootstrap(a, b, n_resamples=2000, seed=11)
    assert diff.units == PAIRED and diff.n_resamples == 2000
    assert diff.difference == pytest.approx(ref.difference, abs=1e-12)
    assert (diff.ci_low, diff.ci_high) == pytest.approx((ref.ci_low, ref.ci_high), abs=1e-12)
    assert diff.p_value == pytest.approx(ref.p_value, abs=1e-12)


def test_compare_finds_the_planted_difference_with_a_paired_interval():
    results, draws = planted()
    table = compare(results, "good", "base", draws=draws)
    assert list(table.index) == [
        ("b1", "m_high"),
        ("b1", "m_low"),
        ("b2", "m_high"),
        ("b2", "m_low"),
    ]
    high = table.xs("m_high", level="metric")
    low = table.xs("m_low", level="metric")
    np.testing.assert_allclose(high.difference, SHIFT)
    np.testing.assert_allclose(low.difference, -SHIFT)
    # every unit moved by SHIFT, so every paired draw of the difference is SHIFT: a zero-width interval
    np.testing.assert_allclose(high[["ci_low", "ci_high"]], SHIFT, atol=1e-12)
    np.testing.assert_allclose(low[["ci_low", "ci_high"]], -SHIFT, atol=1e-12)
    assert (table.better == "good").all() and (table.units == PAIRED).all()
    assert np.allclose(table.p_value, 2 / (N_RESAMPLES + 1))  # the smallest p-value possible
    # the other way round: the same magnitudes, b is better
    flipped = compare(results, "base", "good", draws=draws)
    np.testing.assert_allclose(flipped.difference, -table.difference)
    assert (flipped.better == "good").all()


def test_no_real_difference_is_not_significant():
    results, draws = planted()
    table = compare(results, "twin", "base", draws=draws)
    assert (table.better == "").all()
    assert ((table.ci_low <= 0) & (table.ci_high >= 0)).all()
    assert (table.p_value > 0.05).all()


def test_scores_on_other_units_are_compared_as_independent():
    results, draws = planted(fingerprints={"good": "another model"})
    table = compare(results, "good", "base", draws=draws)
    assert (table.units == INDEPENDENT).all()
    np.testing.assert_allclose(table.xs("m_high", level="metric").difference, SHIFT)
    # unpaired: the interval has the width of two independent standard errors, not zero
    se = planted_units()["base"].std(ddof=1) / np.sqrt(N_UNITS)
    widths = (table.ci_high - table.ci_low).to_numpy()
    assert np.all(widths > 2 * 1.96 * se) and np.all(widths < 2 * 1.96 * se * 2)


def test_scores_without_draws_get_the_difference_only():
    results, _ = planted()
    table = compare(results, "good", "base")
    assert (table.units == NO_DRAWS).all() and table.ci_low.isna().all()
    assert (table.better == "").all()
    np.testing.assert_allclose(table.xs("m_high", level="metric").difference, SHIFT)
    text = format_comparison(table, ("good", "base"))
    assert "good - base [CI]" in text and "no draws" in text


def test_unknown_explainer_is_named():
    results, draws = planted()
    with pytest.raises(ValueError, match=r"b='nope'.*\['base', 'good', 'twin'\]"):
        compare(results, "good", "nope", draws=draws)
    with pytest.raises(TypeError, match="results must be"):
        compare(42, "good", "base")


def _store(path, results, draws, explainers):
    store = ResultStore(path)
    for (bench, explainer), group in results.groupby(["benchmark", "explainer"]):
        if explainer in explainers:
            store.append(
                group.to_dict("records"),
                {m: draws[(bench, explainer, m)] for m in group.metric},
            )
    return path


def test_compare_dirs_matches_rows_by_benchmark_explainer_and_metric(tmp_path):
    results, draws = planted()
    old = _store(tmp_path / "old", results, draws, {"base", "twin"})
    # the "new" directory: base's rows are good's (its method improved by SHIFT); twin unchanged
    improved = results[results.explainer == "good"].assign(explainer="base")
    new_draws = {(b, "base", m): d for (b, e, m), d in draws.items() if e == "good"}
    new_draws |= {k: d for k, d in draws.items() if k[1] == "twin"}
    new = _store(
        tmp_path / "new",
        pd.concat([improved, results[results.explainer == "twin"]]),
        new_draws,
        {"base", "twin"},
    )
    table = compare_dirs(new, old)
    assert set(table.index.get_level_values("explainer")) == {"base", "twin"}
    base = table.xs("base", level="explainer")
    np.testing.assert_allclose(base.xs("m_high", level="metric").difference, SHIFT)
    np.testing.assert_allclose(base.xs("m_low", level="metric").difference, -SHIFT)
    np.testing.assert_allclose(table.xs("twin", level="explainer").difference, 0.0)
    # the stored draws give the paired intervals: every draw of base moved by SHIFT
    assert (base.better == "A").all() and (base.units == PAIRED).all()
    np.testing.assert_allclose(base[["ci_low", "ci_high"]].abs(), SHIFT, atol=1e-12)
    twin = table.xs("twin", level="explainer")
    np.testing.assert_allclose(twin[["ci_low", "ci_high"]], 0.0, atol=1e-12)
    assert (twin.better == "").all()


def test_compare_is_exported_lazily():
    assert dattr_eval.compare is compare
