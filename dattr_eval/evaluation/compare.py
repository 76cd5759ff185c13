"""Differences of stored scores with bootstrap intervals: two explainers, or two results directories.

- :func:`compare` (``dattr_eval.compare(results, a, b)``): explainer ``a`` minus explainer ``b`` on
  every benchmark × metric both scored in one results directory.
- :func:`compare_dirs` (``dattr-eval compare DIR_A DIR_B``): directory A minus directory B for
  every benchmark × explainer × metric scored in both (a new version of a method, a new release
  of dattr_eval, another machine).

Where both scores were computed on the same units (the same benchmark fingerprint and metric key:
the results schema makes draw ``i`` of every explainer of a benchmark × metric use the same
resampled units), the interval is the paired bootstrap's: the percentile interval of
``draws_a − draws_b``. Scores on different units (another model, other data) are independent:
B's draws are first put in a seeded random order, so ``draws_a − draws_b`` is a draw of the
difference of two independent bootstrap distributions. The p-value is two-sided, as in
``statistics.paired_bootstrap``: ``min(1, 2 (1 + min(#{d ≤ 0}, #{d ≥ 0})) / (B + 1))`` over the
``B`` finite differences ``d``. Scores without stored draws get the difference only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dattr_eval.evaluation.bundle import Bundle, load_bundle
from dattr_eval.evaluation.leaderboard import LEVEL, Draws
from dattr_eval.statistics import percentile_interval
from dattr_eval.validation import check_fraction

#: how the units of two scores relate (the ``units`` column)
PAIRED, INDEPENDENT, NO_DRAWS = "paired", "independent", "no draws"
#: seeds the order B's draws are put in when the units are independent
SHUFFLE_SEED = 0
_COLUMNS = (
    "higher_is_better",
    "score_a",
    "score_b",
    "difference",
    "ci_low",
    "ci_high",
    "p_value",
    "better",
    "units",
)


@dataclass(frozen=True)
class Difference:
    """``score_a − score_b`` with its bootstrap interval.

    Attributes:
        difference: ``score_a − score_b``.
        ci_low, ci_high: the ``level`` percentile interval of the bootstrap differences.
        p_value: two-sided (module docstring); NaN without draws.
        n_resamples: bootstrap differences used (0 without draws).
        units: :data:`PAIRED`, :data:`INDEPENDENT` or :data:`NO_DRAWS`.
    """

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n_resamples: int
    units: str


def draws_difference(
    score_a: float,
    score_b: float,
    draws_a: np.ndarray | None,
    draws_b: np.ndarray | None,
    *,
    paired: bool,
    level: float = LEVEL,
) -> Difference:
    """The difference of two scores with its interval and p-value from their bootstrap draws.

    Args:
        score_a: the point score of A.
        score_b: the point score of B.
        draws_a: A's ``(n_resamples,)`` bootstrap draws (``None``: not stored); when the lengths
            of the two differ, the first ``min`` draws of each are used.
        draws_b: B's draws.
        paired: draw ``i`` of both used the same resampled units; else B's draws are shuffled
            (seeded by :data:`SHUFFLE_SEED`) so the two are independent.
        level: the interval's coverage.
    """
    check_fraction(level, "level")
    difference = float(score_a) - float(score_b)
    if draws_a is None or draws_b is None or len(draws_a) == 0 or len(draws_b) == 0:
        return Difference(difference, math.nan, math.nan, math.nan, 0, NO_DRAWS)
    n = min(len(draws_a), len(draws_b))
    a = np.asarray(draws_a, dtype=float)[:n]
    b = np.asarray(draws_b, dtype=float)[:n]
    if not paired:
        b = np.random.default_rng(SHUFFLE_SEED).permutation(b)
    diffs = a - b
    low, high = percentile_interval(diffs, level)
    finite = diffs[np.isfinite(diffs)]
    tail = min(np.sum(finite <= 0), np.sum(finite >= 0))
    p_value = min(1.0, 2 * (1 + tail) / (finite.size + 1)) if finite.size else math.nan
    return Difference(
        difference, low, high, float(p_value), int(finite.size), PAIRED if paired else INDEPENDENT
    )


def better_of(diff: Difference, higher_is_better: bool, a: str, b: str) -> str:
    """``a`` or ``b``: the significantly better one (its interval excludes 0), else ``""``."""
    if not (diff.ci_low > 0 or diff.ci_high < 0):
        return ""
    return a if (diff.ci_low > 0) == bool(higher_is_better) else b


def _results_and_draws(results: Any, draws: Draws | None) -> tuple[pd.DataFrame, Draws]:
    if isinstance(results, pd.DataFrame):
        return results, draws or {}
    if isinstance(results, (str, os.PathLike, Bundle)):
        bundle = load_bundle(results)
        return bundle.results, bundle.draws if draws is None else draws
    raise TypeError(
        f"results must be a results directory, a Bundle or a DataFrame, got {type(results).__name__}"
    )


def _scored(results: pd.DataFrame) -> pd.DataFrame:
    """The ok metric rows, with the columns the comparison reads."""
    rows = results[(results["kind"] == "metric") & (results["status"] == "ok")]
    keep = [
        "benchmark",
        "explainer",
        "metric",
        "score",
        "higher_is_better",
        "benchmark_fingerprint",
        "metric_key",
    ]
    out = rows[[c for c in keep if c in rows]].copy()
    for col in ("benchmark_fingerprint", "metric_key"):
        out[col] = out[col].fillna("").astype(str) if col in out else ""
    return out


def _same_units(row: Any) -> bool:
    return row.benchmark_fingerprint_a == row.benchmark_fingerprint_b and (
        row.metric_key_a == row.metric_key_b
    )


def _hib(value: Any) -> bool:
    return value is not False and str(value) != "False"


def compare(
    results: str | os.PathLike[str] | Bundle | pd.DataFrame,
    a: str,
    b: str,
    *,
    draws: Draws | None = None,
    level: float = LEVEL,
) -> pd.DataFrame:
    """Explainer ``a`` minus explainer ``b`` on every benchmark × metric both scored.

    Args:
        results: a results directory (or bundle), a loaded ``Bundle``, or a results DataFrame.
        a: an explainer label in the results.
        b: another one.
        draws: bootstrap draws ``{(benchmark, explainer, metric): (n_resamples,)}`` (default: the
            directory's stored draws; none for a DataFrame).
        level: the intervals' coverage.

    Returns:
        One row per benchmark × metric (index ``(benchmark, metric)``): ``higher_is_better``,
        ``score_a``, ``score_b``, ``difference`` (``score_a − score_b``), ``ci_low``,
        ``ci_high``, ``p_value``, ``better`` (``a`` or ``b`` when the interval excludes 0, else
        ``""``) and ``units`` (``paired`` / ``independent`` / ``no draws``).

    Raises:
        ValueError: ``a`` or ``b`` has no scored rows (the message lists the explainers that have).
    """
    frame, stored = _results_and_draws(results, draws)
    scored = _scored(frame)
    for name, label in (("a", a), ("b", b)):
        if label not in set(scored["explainer"]):
            known = sorted(set(scored["explainer"]))
            raise ValueError(
                f"{name}={label!r} has no scored rows; explainers with scores: {known}"
            )
    joined = scored[scored.explainer == a].merge(
        scored[scored.explainer == b], on=["benchmark", "metric"], suffixes=("_a", "_b")
    )
    records = []
    for row in joined.itertuples(index=False):
        diff = draws_difference(
            row.score_a,
            row.score_b,
            stored.get((row.benchmark, a, row.metric)),
            stored.get((row.benchmark, b, row.metric)),
            paired=_same_units(row),
            level=level,
        )
        records.append(
            _record(row.benchmark, row.metric, _hib(row.higher_is_better_a), row, diff, a, b)
        )
    return _frame(records, ["benchmark", "metric"])


def compare_dirs(
    dir_a: str | os.PathLike[str] | Bundle,
    dir_b: str | os.PathLike[str] | Bundle,
    *,
    level: float = LEVEL,
) -> pd.DataFrame:
    """Directory A minus directory B on every benchmark × explainer × metric scored in both.

    Returns:
        As :func:`compare`, indexed by ``(benchmark, explainer, metric)``, with ``better`` =
        ``"A"`` / ``"B"`` / ``""``. ``units`` is ``paired`` where both scores share their units
        (same benchmark fingerprint and metric key), else ``independent`` (or ``no draws``).
    """
    bundle_a, bundle_b = load_bundle(dir_a), load_bundle(dir_b)
    joined = _scored(bundle_a.results).merge(
        _scored(bundle_b.results), on=["benchmark", "explainer", "metric"], suffixes=("_a", "_b")
    )
    records = []
    for row in joined.itertuples(index=False):
        key = (row.benchmark, row.explainer, row.metric)
        diff = draws_difference(
            row.score_a,
            row.score_b,
            bundle_a.draws.get(key),
            bundle_b.draws.get(key),
            paired=_same_units(row),
            level=level,
        )
        record = _record(
            row.benchmark, row.metric, _hib(row.higher_is_better_a), row, diff, "A", "B"
        )
        records.append({**record, "explainer": row.explainer})
    return _frame(records, ["benchmark", "explainer", "metric"])


def _record(
    benchmark: str, metric: str, hib: bool, row: Any, diff: Difference, a: str, b: str
) -> dict[str, Any]:
    return {
        "benchmark": benchmark,
        "metric": metric,
        "higher_is_better": hib,
        "score_a": float(row.score_a),
        "score_b": float(row.score_b),
        "difference": diff.difference,
        "ci_low": diff.ci_low,
        "ci_high": diff.ci_high,
        "p_value": diff.p_value,
        "better": better_of(diff, hib, a, b),
        "units": diff.units,
    }


def _frame(records: list[dict[str, Any]], index: list[str]) -> pd.DataFrame:
    if not records:
        return pd.DataFrame(columns=[*index, *_COLUMNS]).set_index(index)
    return pd.DataFrame(records)[[*index, *_COLUMNS]].set_index(index).sort_index()


def format_comparison(
    table: pd.DataFrame, names: tuple[str, str] = ("A", "B"), digits: int = 3
) -> str:
    """A plain-text table of :func:`compare` / :func:`compare_dirs` output: both scores (columns
    headed ``names``), the difference with its interval in brackets, the p-value, which is better
    and how the units relate."""
    if table.empty:
        return "(nothing scored in both)"

    def num(value: float) -> str:
        return "nan" if not math.isfinite(value) else f"{value:.{digits}g}"

    shown = pd.DataFrame(
        {
            names[0]: table["score_a"].map(num),
            names[1]: table["score_b"].map(num),
            f"{names[0]} - {names[1]} [CI]": [
                f"{num(d)} [{num(lo)}, {num(hi)}]" if math.isfinite(lo) else num(d)
                for d, lo, hi in zip(table["difference"], table["ci_low"], table["ci_high"])
            ],
            "p": table["p_value"].map(num),
            "better": table["better"].replace("", "-"),
            "higher is better": table["higher_is_better"].map({True: "yes", False: "no"}),
            "units": table["units"],
        },
        index=table.index,
    )
    return shown.to_string()


__all__ = [
    "INDEPENDENT",
    "NO_DRAWS",
    "PAIRED",
    "Difference",
    "better_of",
    "compare",
    "compare_dirs",
    "draws_difference",
    "format_comparison",
]
