"""Metric agreement: do two metrics rank the explainers the same way? (Kendall's tau)"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from dattr_eval.evaluation.leaderboard import (
    REFERENCE,
    column_info,
    normalise_results,
    scores_table,
)


def metric_agreement(
    results: pd.DataFrame, *, references: bool = False, min_explainers: int = 3
) -> pd.DataFrame:
    """Kendall's tau-b between the explainer rankings of every pair of benchmark × metric columns.

    Each column's scores are oriented so that higher is better (``higher_is_better``); entry
    ``[a, b]`` is tau-b over the explainers scored in both columns (1 = the same order, -1 =
    reversed, 0 = unrelated; ties handled by tau-b). Blocks of one benchmark on the diagonal are
    the per-benchmark agreement; entries across benchmarks compare what the metrics say about the
    same explainers on different tasks.

    Args:
        results: the results table (raw or normalised).
        references: include reference explainers (``random``, ...) in the rankings.
        min_explainers: fewer common explainers give NaN (as does a constant column).

    Returns:
        A square DataFrame indexed and labelled by ``"benchmark/metric"``, in the results' column
        order (empty when there are no scored metric columns).
    """
    results = normalise_results(results)
    if not references:
        results = results[results["explainer_role"] != REFERENCE]
    scores, info = scores_table(results), column_info(results)
    if scores.empty:
        return pd.DataFrame()
    sign = np.where([bool(info.loc[c, "higher_is_better"]) for c in scores.columns], 1.0, -1.0)
    oriented = scores.to_numpy(dtype=float) * sign  # (n_explainers, n_columns)
    labels = [f"{b}/{m}" for b, m in scores.columns]
    n = len(labels)
    tau = np.full((n, n), math.nan)
    for i in range(n):
        for j in range(i, n):
            both = np.isfinite(oriented[:, i]) & np.isfinite(oriented[:, j])
            if both.sum() < min_explainers:
                continue
            a, b = oriented[both, i], oriented[both, j]
            if np.ptp(a) == 0 or np.ptp(b) == 0:
                continue
            tau[i, j] = tau[j, i] = float(kendalltau(a, b).statistic)
    return pd.DataFrame(tau, index=labels, columns=labels)


__all__ = ["metric_agreement"]
