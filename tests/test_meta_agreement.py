"""Metric agreement (Kendall's tau-b between explainer rankings) and its report figure."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dattr_eval.evaluation.agreement import metric_agreement
from dattr_eval.evaluation.figures import agreement_figure


def results(columns: dict[tuple[str, str, bool], list[float]], roles=None) -> pd.DataFrame:
    """Metric rows: ``{(benchmark, metric, higher_is_better): scores of explainers e0, e1, ...}``."""
    rows = []
    for (bench, metric, hib), scores in columns.items():
        for i, score in enumerate(scores):
            rows.append(
                {
                    "benchmark": bench,
                    "explainer": f"e{i}",
                    "metric": metric,
                    "kind": "metric",
                    "status": "ok" if not math.isnan(score) else "error",
                    "score": score,
                    "higher_is_better": hib,
                    "category": "ground-truth",
                    "explainer_role": (roles or {}).get(f"e{i}", "method"),
                }
            )
    return pd.DataFrame(rows)


def test_tau_hand_cases_and_orientation():
    tau = metric_agreement(
        results(
            {
                ("b", "a", True): [1, 2, 3, 4],
                ("b", "same", True): [10, 20, 30, 40],
                ("b", "swap", True): [1, 3, 2, 4],  # 5 concordant, 1 discordant pair of 6
                ("b", "lower", False): [4, 3, 2, 1],  # lower is better: the same ranking as a
                ("c", "reversed", True): [4, 3, 2, 1],
            }
        )
    )
    assert list(tau.index) == ["b/a", "b/same", "b/swap", "b/lower", "c/reversed"]
    assert tau.loc["b/a", "b/same"] == pytest.approx(1.0)
    assert tau.loc["b/a", "b/swap"] == pytest.approx((5 - 1) / 6)
    assert tau.loc["b/a", "b/lower"] == pytest.approx(1.0)
    assert tau.loc["b/a", "c/reversed"] == pytest.approx(-1.0)
    assert tau.equals(tau.T)


def test_tau_undefined_for_too_few_explainers_or_a_constant_column_references_left_out():
    tau = metric_agreement(
        results(
            {
                ("b", "a", True): [1, 2, 3, 4],
                ("b", "flat", True): [1, 1, 1, 1],
                ("b", "gaps", True): [1, float("nan"), float("nan"), 2],
                ("b", "ref_first", True): [1, 2, 4, 3],
            },
            roles={"e3": "reference"},
        )
    )
    assert math.isnan(tau.loc["b/a", "b/flat"])
    assert math.isnan(tau.loc["b/a", "b/gaps"])  # 1 common method explainer (e3 is a reference)
    assert tau.loc["b/a", "b/ref_first"] == pytest.approx(1.0)  # e3 left out: e0 < e1 < e2
    with_refs = metric_agreement(
        results({("b", "a", True): [1, 2, 3, 4], ("b", "r", True): [1, 2, 4, 3]}),
        references=True,
    )
    assert with_refs.loc["b/a", "b/r"] == pytest.approx(4 / 6)


def test_agreement_figure():
    assert agreement_figure(results({("b", "a", True): [1, 2, 3]})) is None  # one column
    fig = agreement_figure(results({("b", "a", True): [1, 2, 3], ("b", "c", False): [3, 1, 2]}))
    assert fig is not None and "agreement" in fig.axes[0].get_title()
