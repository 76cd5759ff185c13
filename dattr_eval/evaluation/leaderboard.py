"""Leaderboard tables: pure functions of a results DataFrame (and optional bootstrap draws).

Ranking rules (how the report reads ``results.csv``, schema v2):

- **Quality ranking.** On each benchmark × metric whose ``category`` is not ``"sanity"``, the
  explainers with ``explainer_role="method"`` are ranked 1 (best, respecting
  ``higher_is_better``) to n; ties share their average rank; a failed, skipped or not-applicable
  score gets no rank. ``avg rank`` averages an explainer's ranks over all ranked benchmark ×
  metric columns it has a rank in (``avg rank <benchmark>``: over that benchmark's columns).
- **Reference rows** (``explainer_role="reference"``, e.g. random, loss) never shift the methods'
  ranks: each reference gets a *would-be* rank, its rank among the methods plus itself alone.
- **Sanity checks** (``category="sanity"``) are not ranked: they are pass/fail columns
  (``passed``).
- **Rank intervals** come from paired bootstrap draws (``draws[(benchmark, explainer, metric)]``,
  shape ``(n_resamples,)``; draw ``i`` of every explainer of one column uses the same resampled
  units). Per draw index the column is ranked as above; the 95 % interval of an explainer's rank
  is the ``[2.5 %, 97.5 %]`` quantile pair of its draw ranks, taken conservatively (lower quantile
  rounded down, upper rounded up to an observed rank). A column gets intervals only when every
  scored explainer in it has draws; columns with different numbers of draws use the first
  ``min(n)`` (columns are resampled independently, so pairing draw ``i`` across columns is a
  draw of the joint bootstrap). The average rank gets an interval only when every ranked column
  has draws: average of the per-draw ranks, quantiles as above.
- **Non-significant differences.** Two explainers differ significantly when the 95 % percentile
  interval of their paired difference (``draws_A − draws_B``, oriented so that positive means
  "A better") excludes 0, i.e. a one-sided paired bootstrap test at 2.5 %. ``best group``: the
  best method plus every explainer *not* significantly worse than it; ``tied with next``: a
  method whose difference to the next-ranked method is not significant. On the average rank the
  same test runs on the per-draw average ranks.
- **Signal-to-noise ratio** per benchmark × metric (needs ``replicate_scores`` with ≥ 2
  replicates for ≥ 2 methods): ``std`` over methods of their mean replicate score divided by the
  mean over methods of their within-method replicate ``std`` (both with ``ddof=1``); a column with
  SNR below ``SNR_THRESHOLD`` is flagged: its ranking is mostly replicate noise.

Older results (no ``explainer_role`` column) treat ``LEGACY_REFERENCES`` as reference rows; no
``ci_low``/draws means no intervals. Runtime = fit + explain + self-influence seconds, summed over
benchmarks.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from dattr_eval.statistics import SNR_THRESHOLD, signal_to_noise

#: the confidence level of every interval in the report
LEVEL = 0.95
#: explainer names treated as reference rows when the results have no ``explainer_role`` column
LEGACY_REFERENCES = ("random", "loss")
METHOD, REFERENCE = "method", "reference"
SANITY = "sanity"
RUNTIME_PARTS = ("fit_s", "explain_s", "self_influence_s")

#: ``(benchmark, explainer, metric) -> (n_resamples,)`` bootstrap statistics
Draws = Mapping[tuple[str, str, str], np.ndarray]
#: a leaderboard column: ``(benchmark, metric)``
Column = tuple[str, str]

_NUMERIC = (
    "score",
    "ci_low",
    "ci_high",
    "score_std",
    "n_scored",
    "noise_ceiling",
    "baseline_score",
    "baseline_ci_low",
    "baseline_ci_high",
    "fit_s",
    "explain_s",
    "explain_s_per_sample",
    "self_influence_s",
    "retrain_s",
    "rss_increase_mb",
    "peak_rss_mb",
    "cuda_peak_mb",
    "n_train",
    "n_test",
    "replicates",
)
_TEXT = (
    "benchmark",
    "explainer",
    "metric",
    "kind",
    "status",
    "category",
    "unit",
    "error",
    "explainer_role",
    "replicate_scores",
    "card",
    "device",
    "device_name",
    "explainer_class",
    "explainer_params",
)
_BOOL = {"True": True, "False": False, "true": True, "false": False, "1": True, "0": False}


def normalise_results(results: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``results`` with every column the report reads present and typed.

    Numeric columns become floats (NaN where empty or absent), text columns strings (``""``),
    ``higher_is_better`` and ``passed`` booleans (``passed``: ``None`` where empty), and
    ``explainer_role`` is filled (``LEGACY_REFERENCES`` → ``"reference"`` when the column is absent
    or empty, else ``"method"``).
    """
    df = results.copy()
    for col in _NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df else np.nan
    for col in _TEXT:
        df[col] = df[col].fillna("").astype(str).replace("nan", "") if col in df else ""
    df["status"] = df["status"].replace("", "ok")
    for col, default in (("higher_is_better", True), ("passed", None)):
        values = df[col] if col in df else [default] * len(df)
        df[col] = pd.Series([_to_bool(v, default) for v in values], index=df.index, dtype=object)
    legacy = np.where(df["explainer"].isin(LEGACY_REFERENCES), REFERENCE, METHOD)
    df["explainer_role"] = np.where(df["explainer_role"] == "", legacy, df["explainer_role"])
    return df


def _to_bool(value: object, default: bool | None) -> bool | None:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return bool(value)
    return _BOOL.get(str(value), default)


# ---------------------------------------------------------------------- tables of the results
def metric_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The ``kind="metric"`` rows (all statuses) of normalised ``results``."""
    return results[results["kind"] == "metric"]


def roles(results: pd.DataFrame) -> pd.Series:
    """``explainer -> "method" | "reference"`` over metric and profile rows."""
    rows = results[results["kind"].isin(["metric", "profile"]) & (results["explainer"] != "")]
    return rows.groupby("explainer")["explainer_role"].last()


def column_info(results: pd.DataFrame) -> pd.DataFrame:
    """One row per ``(benchmark, metric)`` column, in first-seen order.

    Columns: ``higher_is_better``, ``category``, ``unit``, ``ranked`` (False for sanity checks),
    ``noise_ceiling`` (NaN where the results carry none).
    """
    rows = metric_rows(results)
    if rows.empty:
        return pd.DataFrame(
            columns=["higher_is_better", "category", "unit", "ranked", "noise_ceiling"],
            index=pd.MultiIndex.from_tuples([], names=["benchmark", "metric"]),
        )
    grouped = rows.groupby(["benchmark", "metric"], sort=False)
    info = pd.DataFrame(
        {
            "higher_is_better": grouped["higher_is_better"].last().astype(bool),
            "category": grouped["category"].agg(_first_text),
            "unit": grouped["unit"].agg(_first_text),
            "noise_ceiling": grouped["noise_ceiling"].max(),
        }
    )
    info["ranked"] = info["category"] != SANITY
    return info


def _first_text(values: pd.Series) -> str:
    present = [v for v in values if v]
    return present[0] if present else ""


def scores_table(results: pd.DataFrame, value: str = "score") -> pd.DataFrame:
    """``value`` (default the score) with explainers as rows and ``(benchmark, metric)`` columns.

    NaN where the cell's status is not ``ok``. Columns keep ``column_info``'s order.
    """
    rows = metric_rows(results)
    rows = rows[rows["status"] == "ok"]
    table = rows.pivot_table(
        index="explainer", columns=["benchmark", "metric"], values=value, aggfunc="last"
    )
    order = [c for c in column_info(results).index if c in table.columns]
    return table.reindex(columns=pd.MultiIndex.from_tuples(order, names=["benchmark", "metric"]))


# ---------------------------------------------------------------------- ranks and intervals
def ranks_among(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Ranks along the last axis of ``values`` ``(..., n)``: 1 = best, ties averaged, NaN → NaN."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return values.copy()
    flat = values.reshape(-1, values.shape[-1])
    ranked = pd.DataFrame(flat).rank(axis=1, ascending=not higher_is_better, method="average")
    return ranked.to_numpy().reshape(values.shape)


def method_ranks(
    values: np.ndarray, is_reference: np.ndarray, higher_is_better: bool
) -> np.ndarray:
    """Ranks ``(d, n)`` of ``values`` ``(d, n)``: methods among methods, each reference among the
    methods plus itself alone (its would-be rank; it never shifts a method's rank)."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    is_reference = np.asarray(is_reference, dtype=bool)
    out = np.full(values.shape, np.nan)
    methods = ~is_reference
    out[:, methods] = ranks_among(values[:, methods], higher_is_better)
    for j in np.flatnonzero(is_reference):
        keep = methods.copy()
        keep[j] = True
        position = int(np.count_nonzero(keep[:j]))  # j's column among the kept ones
        out[:, j] = ranks_among(values[:, keep], higher_is_better)[:, position]
    return out


def quantile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Conservative ``level`` interval per column of ``samples`` ``(d, n)``: the lower quantile
    rounded down and the upper rounded up to an observed value (ranks stay ranks)."""
    tail = (1 - level) / 2
    low = np.quantile(samples, tail, axis=0, method="lower")
    high = np.quantile(samples, 1 - tail, axis=0, method="higher")
    return low, high


def not_significant(
    better: np.ndarray, worse: np.ndarray, higher_is_better: bool, level: float = LEVEL
) -> bool:
    """Whether the paired difference ``better − worse`` (``(d,)`` draws, oriented so positive
    means "better is better") has a ``level`` percentile interval that reaches 0."""
    diff = np.asarray(better, dtype=float) - np.asarray(worse, dtype=float)
    if not higher_is_better:
        diff = -diff
    return bool(np.quantile(diff, (1 - level) / 2) <= 0)


def significance(
    point: np.ndarray,
    samples: np.ndarray,
    is_reference: np.ndarray,
    higher_is_better: bool,
    level: float = LEVEL,
) -> tuple[np.ndarray, np.ndarray]:
    """``(best_group, tied_with_next)`` for ``n`` explainers with point values ``point`` ``(n,)``
    and paired draws ``samples`` ``(d, n)`` (see the module docstring).

    ``best_group[j]``: j is the best method or not significantly worse than it (references are
    compared with the best method too). ``tied_with_next[j]``: method j's difference to the next
    method in point order is not significant (NaN for the last method and for references).
    """
    point = np.asarray(point, dtype=float)
    is_reference = np.asarray(is_reference, dtype=bool)
    best_group = np.full(point.shape, np.nan)
    tied_with_next = np.full(point.shape, np.nan)
    methods = np.flatnonzero(~is_reference)
    if methods.size == 0:
        return best_group, tied_with_next
    order = methods[
        np.argsort(-point[methods] if higher_is_better else point[methods], kind="stable")
    ]
    best = order[0]
    for j in range(point.size):
        best_group[j] = j == best or not_significant(
            samples[:, best], samples[:, j], higher_is_better, level
        )
    for a, b in itertools.pairwise(order):
        tied_with_next[a] = not_significant(samples[:, a], samples[:, b], higher_is_better, level)
    return best_group, tied_with_next


def column_draws(draws: Draws, column: Column, explainers: list[str]) -> np.ndarray | None:
    """``explainers``' draws of ``column`` as one ``(d, n)`` matrix, column ``j`` for
    ``explainers[j]`` (the first ``d = min`` lengths), or ``None`` when any of them has no draws
    (then the column gets no intervals)."""
    bench, metric = column
    arrays = [draws.get((bench, e, metric)) for e in explainers]
    if not explainers or any(a is None or len(a) == 0 for a in arrays):
        return None
    d = min(len(a) for a in arrays)
    return np.column_stack([np.asarray(a, float)[:d] for a in arrays])


def column_ranks(
    results: pd.DataFrame, draws: Draws | None = None, level: float = LEVEL
) -> pd.DataFrame:
    """Ranks of every scored explainer on every ranked (non-sanity) column.

    Returns a long DataFrame with columns ``benchmark``, ``metric``, ``explainer``, ``role``,
    ``rank`` (methods among methods; references: would-be rank), ``rank_low``, ``rank_high``,
    ``best_group``, ``tied_with_next`` (the last four NaN without draws).
    """
    scores, info, role = scores_table(results), column_info(results), roles(results)
    frames = []
    for column in scores.columns:
        if not info.loc[column, "ranked"]:
            continue
        point = scores[column].dropna()
        if point.empty:
            continue
        names = list(point.index)
        is_ref = (role.reindex(names) == REFERENCE).to_numpy()
        hib = bool(info.loc[column, "higher_is_better"])
        frame = pd.DataFrame(
            {
                "benchmark": column[0],
                "metric": column[1],
                "explainer": names,
                "role": np.where(is_ref, REFERENCE, METHOD),
                "rank": method_ranks(point.to_numpy()[None], is_ref, hib)[0],
            }
        )
        sampled = column_draws(draws or {}, column, names)
        if sampled is not None:
            low, high = quantile_interval(method_ranks(sampled, is_ref, hib), level)
            best, tied = significance(point.to_numpy(), sampled, is_ref, hib, level)
            frame = frame.assign(rank_low=low, rank_high=high, best_group=best, tied_with_next=tied)
        frames.append(frame)
    columns = ["benchmark", "metric", "explainer", "role", "rank"]
    extra = ["rank_low", "rank_high", "best_group", "tied_with_next"]
    if not frames:
        return pd.DataFrame(columns=columns + extra)
    return pd.concat(frames, ignore_index=True).reindex(columns=columns + extra)


def rank_table(results: pd.DataFrame) -> pd.DataFrame:
    """Point ranks as a wide table: explainers × ranked ``(benchmark, metric)`` columns."""
    long = column_ranks(results)
    if long.empty:
        return pd.DataFrame()
    table = long.pivot_table(
        index="explainer", columns=["benchmark", "metric"], values="rank", aggfunc="last"
    )
    order = [c for c in column_info(results).index if c in table.columns]
    return table.reindex(columns=pd.MultiIndex.from_tuples(order, names=["benchmark", "metric"]))


def average_ranks(
    results: pd.DataFrame, draws: Draws | None = None, level: float = LEVEL
) -> pd.DataFrame:
    """Per explainer: ``avg rank`` over all ranked columns and its interval and significance.

    Columns: ``role``, ``avg rank``, ``avg rank low``, ``avg rank high``, ``best_group``,
    ``tied_with_next`` (the last four NaN unless every ranked column has draws), and
    ``avg rank <benchmark>`` per benchmark.
    """
    ranks = rank_table(results)
    role = roles(results)
    out = pd.DataFrame(index=pd.Index(sorted(role.index), name="explainer"))
    out["role"] = role
    out["avg rank"] = ranks.mean(axis=1) if not ranks.empty else np.nan
    for col in ("avg rank low", "avg rank high", "best_group", "tied_with_next"):
        out[col] = np.nan
    if ranks.empty:
        return out
    for bench in dict.fromkeys(ranks.columns.get_level_values(0)):
        out[f"avg rank {bench}"] = ranks[bench].mean(axis=1)
    sampled = _average_rank_draws(results, ranks, draws or {})
    scored = out["avg rank"].dropna().index
    if sampled is not None and len(scored):
        values = sampled.reindex(columns=scored).to_numpy()
        is_ref = (out.loc[scored, "role"] == REFERENCE).to_numpy()
        low, high = quantile_interval(values, level)
        best, tied = significance(
            out.loc[scored, "avg rank"].to_numpy(), values, is_ref, False, level
        )
        out.loc[scored, "avg rank low"], out.loc[scored, "avg rank high"] = low, high
        out.loc[scored, "best_group"], out.loc[scored, "tied_with_next"] = best, tied
    return out


def _average_rank_draws(
    results: pd.DataFrame, ranks: pd.DataFrame, draws: Draws
) -> pd.DataFrame | None:
    """``(d, explainers)`` per-draw average ranks, or None unless every ranked column has draws."""
    info, role = column_info(results), roles(results)
    per_column = []
    for column in ranks.columns:
        names = list(ranks[column].dropna().index)
        sampled = column_draws(draws, column, names)
        if sampled is None:
            return None
        is_ref = (role.reindex(names) == REFERENCE).to_numpy()
        hib = bool(info.loc[column, "higher_is_better"])
        per_column.append(pd.DataFrame(method_ranks(sampled, is_ref, hib), columns=names))
    d = min(len(frame) for frame in per_column)
    stacked = np.stack(
        [frame.iloc[:d].reindex(columns=ranks.index).to_numpy() for frame in per_column], axis=2
    )
    return pd.DataFrame(np.nanmean(stacked, axis=2), columns=ranks.index)


# ---------------------------------------------------------------------- other tables
def sanity_table(results: pd.DataFrame) -> pd.DataFrame:
    """Sanity checks in long form: ``benchmark``, ``metric``, ``explainer``, ``role``, ``score``,
    ``passed`` (``None`` where the results carry no verdict), for ``ok`` rows."""
    rows = metric_rows(results)
    rows = rows[(rows["category"] == SANITY) & (rows["status"] == "ok")]
    return rows.rename(columns={"explainer_role": "role"})[
        ["benchmark", "metric", "explainer", "role", "score", "passed"]
    ].reset_index(drop=True)


def replicate_lists(values: pd.Series) -> list[list[float]]:
    """Parse ``replicate_scores`` JSON lists (``[]`` where empty or malformed)."""
    parsed = []
    for text in values:
        try:
            value = json.loads(text) if text else []
        except json.JSONDecodeError:
            value = []
        parsed.append([float(v) for v in value] if isinstance(value, list) else [])
    return parsed


def snr_table(results: pd.DataFrame) -> pd.DataFrame:
    """Signal-to-noise ratio per ``(benchmark, metric)`` (see the module docstring).

    Returns columns ``snr`` (``inf`` when the replicates agree exactly), ``n_methods`` (methods
    with ≥ 2 replicates) and ``flagged`` (``snr < SNR_THRESHOLD``); only columns with ≥ 2 such methods.
    """
    rows = metric_rows(results)
    rows = rows[(rows["status"] == "ok") & (rows["explainer_role"] == METHOD)].copy()
    rows["replicates_list"] = replicate_lists(rows["replicate_scores"])
    rows = rows[rows["replicates_list"].map(len) >= 2]
    records = []
    for (bench, metric), group in rows.groupby(["benchmark", "metric"], sort=False):
        if len(group) < 2:
            continue
        lists = list(group["replicates_list"])
        matrix = np.full((len(lists), max(map(len, lists))), np.nan)
        for i, values in enumerate(lists):
            matrix[i, : len(values)] = values
        snr = signal_to_noise(matrix)
        records.append(
            {
                "benchmark": bench,
                "metric": metric,
                "snr": snr,
                "n_methods": len(group),
                "flagged": snr < SNR_THRESHOLD,
            }
        )
    table = pd.DataFrame(records, columns=["benchmark", "metric", "snr", "n_methods", "flagged"])
    return table.set_index(["benchmark", "metric"])


def json_object(text: object) -> dict | None:
    """The JSON object in a results cell (``card``, ``diagnostics``, ``*_params``); ``None`` when the
    cell is empty, not text, malformed or holds another JSON type."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def benchmark_cards(results: pd.DataFrame) -> dict[str, dict]:
    """``{benchmark: card dict}`` from the ``kind="card"`` rows (malformed JSON is skipped)."""
    cards = {}
    for row in results[results["kind"] == "card"].itertuples(index=False):
        card = json_object(row.card)
        if card is not None:
            cards[row.benchmark] = card
    return cards


def cards_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per benchmark card: the quantities a reader checks before trusting its scores.

    Columns: ``n_train``, ``n_test``, ``test_accuracy`` (marked test images included on shortcut
    benchmarks), ``test_accuracy_unmarked``, ``train_accuracy``, ``median_1-p`` and ``q05_1-p``
    (the model's ``1 - p(label)`` over the training set), ``flipped_fitted`` (share of flipped
    labels the model predicts, mislabel benchmarks), ``loss_auroc`` (how well training loss
    alone finds the flipped labels), ``shortcut_rate`` (marked other-class test images predicted
    as the shortcut class) and ``flags`` (the card's warnings, ``"none"`` when there are none).
    Missing entries are NaN.
    """
    records = []
    for bench, card in benchmark_cards(results).items():
        one_minus_p = card.get("train_one_minus_p") or {}
        mislabel = card.get("mislabel") or {}
        shortcut = card.get("shortcut") or {}
        records.append(
            {
                "benchmark": bench,
                "n_train": card.get("n_train"),
                "n_test": card.get("n_test"),
                "test_accuracy": card.get("test_accuracy"),
                "test_accuracy_unmarked": card.get("test_accuracy_clean"),
                "train_accuracy": card.get("train_accuracy"),
                "median_1-p": one_minus_p.get("median"),
                "q05_1-p": one_minus_p.get("q05"),
                "flipped_fitted": mislabel.get("flipped_fit"),
                "loss_auroc": mislabel.get("flipped_loss_auroc"),
                "shortcut_rate": shortcut.get("shortcut_rate"),
                "flags": "; ".join(card.get("flags") or []) or "none",
            }
        )
    if not records:
        return pd.DataFrame()
    table = pd.DataFrame(records).set_index("benchmark").sort_index()
    numeric = table.columns.drop("flags")
    table[numeric] = table[numeric].apply(pd.to_numeric, errors="coerce")
    return table.dropna(axis=1, how="all")


#: ``diagnostics_`` entries shown in ``diagnostics_table`` (DualView's regime and certificate)
DIAGNOSTIC_COLUMNS = (
    "C_",
    "support_fraction",
    "bound_fraction",
    "n_distinct_self_influence",
    "attribution_error_bound",
    "converged",
)


def diagnostics_table(results: pd.DataFrame) -> pd.DataFrame:
    """Fitted-explainer diagnostics per ``(benchmark, explainer)`` from the profile rows.

    One row per cell whose explainer reports ``diagnostics_`` (DualView: the fitted ``C_``, the
    support fraction, the fraction of training points at the box bound, the number of distinct
    self-influence levels, the certified relative attribution-error bound and ``converged``);
    columns ``DIAGNOSTIC_COLUMNS`` that some row reports. Empty when no cell reports any.
    """
    prof = results[results["kind"] == "profile"]
    if "diagnostics" not in prof.columns:
        return pd.DataFrame()
    records = []
    for row in prof.itertuples(index=False):
        found = json_object(row.diagnostics)
        if found:
            kept = {k: found[k] for k in DIAGNOSTIC_COLUMNS if k in found}
            records.append({"benchmark": row.benchmark, "explainer": row.explainer, **kept})
    if not records:
        return pd.DataFrame()
    table = pd.DataFrame(records).set_index(["benchmark", "explainer"]).sort_index()
    return table[[c for c in DIAGNOSTIC_COLUMNS if c in table.columns]]


def profile_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per explainer: runtime seconds (summed over benchmarks), per-sample explain milliseconds,
    peak RSS increase and CUDA peak (MiB, maxima over benchmarks)."""
    prof = results[(results["kind"] == "profile") & (results["status"] == "ok")].copy()
    columns = ["runtime_s", "explain_ms_per_sample", "peak_rss_increase_mb", "cuda_peak_mb"]
    if prof.empty:
        return pd.DataFrame(columns=columns)
    prof["runtime_s"] = prof[list(RUNTIME_PARTS)].fillna(0).sum(axis=1)
    grouped = prof.groupby("explainer")
    return pd.DataFrame(
        {
            "runtime_s": grouped["runtime_s"].sum(),
            "explain_ms_per_sample": grouped["explain_s_per_sample"].mean() * 1000,
            "peak_rss_increase_mb": grouped["rss_increase_mb"].max(),
            "cuda_peak_mb": grouped["cuda_peak_mb"].max(),
        }
    )


def context_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark: ``n_train``, ``n_test`` and the devices the profile rows report."""
    prof = results[results["kind"] == "profile"]
    if prof.empty:
        return pd.DataFrame()
    return prof.groupby("benchmark").agg(
        n_train=("n_train", "max"),
        n_test=("n_test", "max"),
        device=("device", lambda s: ", ".join(sorted(set(s) - {""}))),
        device_name=("device_name", lambda s: ", ".join(sorted(set(s) - {""}))),
    )


def problems_table(results: pd.DataFrame) -> pd.DataFrame:
    """Rows whose status is ``error`` or ``skipped``: benchmark, explainer, metric, status, error."""
    bad = results[results["status"].isin(["error", "skipped"])]
    return bad[["benchmark", "explainer", "metric", "status", "error"]].reset_index(drop=True)


#: metric-label prefix of the shortcut-localisation rows (``evaluation.xda_localisation``)
LOCALISATION_PREFIX = "xda/localisation/"


def xda_table(results: pd.DataFrame) -> pd.DataFrame:
    """XDA scores (``kind="xda"`` rows but the localisation ones): one row per benchmark ×
    explainer, one column per ``xda/<quantus metric>/<side>`` (empty when the evaluation ran
    without XDA)."""
    rows = results[(results["kind"] == "xda") & (results["status"] == "ok")]
    rows = rows[~rows["metric"].str.startswith(LOCALISATION_PREFIX)]
    if rows.empty:
        return pd.DataFrame()
    table = rows.pivot_table(
        index=["benchmark", "explainer"], columns="metric", values="score", aggfunc="last"
    )
    table.columns.name = None
    table.index = [f"{b} / {e}" for b, e in table.index]
    table.index.name = "benchmark / explainer"
    return table


def localisation_table(results: pd.DataFrame) -> pd.DataFrame:
    """Shortcut-localisation scores: one row per benchmark × explainer, one column per
    ``<quantus metric>/<side>`` (``<column> ±``: half-width of its 95 % CI), and ``chance`` (the
    mark's share of the image, the expected score of a random heatmap). Empty without such rows."""
    rows = results[(results["kind"] == "xda") & (results["status"] == "ok")]
    rows = rows[rows["metric"].str.startswith(LOCALISATION_PREFIX)]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(
        column=rows["metric"].str.slice(len(LOCALISATION_PREFIX)),
        half=(rows["ci_high"] - rows["ci_low"]) / 2,
        label=rows["benchmark"] + " / " + rows["explainer"],
    )
    scores = rows.pivot_table(index="label", columns="column", values="score", aggfunc="last")
    half = rows.pivot_table(index="label", columns="column", values="half", aggfunc="last")
    table = pd.DataFrame(index=scores.index)
    table["chance"] = rows.groupby("label")["baseline_score"].last()
    for column in dict.fromkeys(rows["column"]):
        table[column] = scores[column]
        if column in half and half[column].notna().any():
            table[f"{column} ±"] = half[column]
    table.index.name = "benchmark / explainer"
    return table


# ---------------------------------------------------------------------- the wide board
def leaderboard(
    results: pd.DataFrame, draws: Draws | None = None, level: float = LEVEL
) -> pd.DataFrame:
    """One row per explainer: methods by average rank, then reference rows by would-be rank.

    Columns: ``role``, ``avg rank`` (+ ``avg rank low``/``avg rank high`` with draws),
    ``avg rank <benchmark>``, per ``(benchmark, metric)`` the score ``<benchmark>/<metric>`` (+
    ``<benchmark>/<metric> ±``, the half-width of ``[ci_low, ci_high]``, where the results carry
    intervals; sanity checks add ``<benchmark>/<metric> passed``), then ``runtime [s]``,
    ``explain [ms/sample]``, ``peak RSS + [MiB]`` and, on CUDA, ``CUDA peak [MiB]``.
    ``results`` may be raw (``read_results``) or normalised.
    """
    results = normalise_results(results)
    avg = average_ranks(results, draws, level)
    board = avg[["role", "avg rank"]].copy()
    if avg["avg rank low"].notna().any():
        board["avg rank low"], board["avg rank high"] = avg["avg rank low"], avg["avg rank high"]
    for col in avg.columns:
        if col.startswith("avg rank ") and col not in ("avg rank low", "avg rank high"):
            board[col] = avg[col]
    scores, info = scores_table(results), column_info(results)
    half = (scores_table(results, "ci_high") - scores_table(results, "ci_low")) / 2
    passed = scores_table(results.assign(passed=results["passed"].map(_as_float)), "passed")
    for column in scores.columns:
        name = f"{column[0]}/{column[1]}"
        board[name] = scores[column]
        if column in half.columns and half[column].notna().any():
            board[f"{name} ±"] = half[column]
        if not info.loc[column, "ranked"] and column in passed.columns:
            board[f"{name} passed"] = passed[column].map(_as_bool)
    prof = profile_table(results)
    board["runtime [s]"] = prof["runtime_s"]
    board["explain [ms/sample]"] = prof["explain_ms_per_sample"]
    board["peak RSS + [MiB]"] = prof["peak_rss_increase_mb"]
    if prof["cuda_peak_mb"].notna().any():
        board["CUDA peak [MiB]"] = prof["cuda_peak_mb"]
    order = board.assign(_ref=board["role"] == REFERENCE).sort_values(
        ["_ref", "avg rank"], na_position="last", kind="stable"
    )
    return board.loc[order.index]


def _as_float(value: bool | None) -> float:
    return math.nan if value is None else float(value)


def _as_bool(value: float) -> bool | None:
    return None if pd.isna(value) else bool(value)


def format_value(value: object) -> str:
    """A short display string: 3 significant digits, ``–`` for NaN/None, ✓/✗ for booleans."""
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "✓" if value else "✗"
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞"
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def display_board(board: pd.DataFrame) -> pd.DataFrame:
    """``board`` with paired columns merged into display strings: ``score ± half-width`` and
    ``avg rank [low, high]``; every value formatted by ``format_value``."""
    out = pd.DataFrame(index=board.index)
    for col in board.columns:
        if col.endswith(" ±") or col in ("avg rank low", "avg rank high"):
            continue
        text = board[col].map(format_value)
        if f"{col} ±" in board:
            hw = board[f"{col} ±"]
            text = text.where(hw.isna(), text + " ± " + hw.map(format_value))
        if col == "avg rank" and "avg rank low" in board:
            low, high = board["avg rank low"], board["avg rank high"]
            bounds = " [" + low.map(format_value) + ", " + high.map(format_value) + "]"
            text = text.where(low.isna(), text + bounds)
        out[col] = text
    return out


def to_markdown(board: pd.DataFrame) -> str:
    """A GitHub Markdown table of ``board`` (index as the first column; values via
    ``display_board``)."""
    shown = display_board(board)
    header = [board.index.name or "", *map(str, shown.columns)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(shown.columns)) + "|",
    ]
    for name, row in shown.iterrows():
        lines.append("| " + " | ".join([str(name), *row.tolist()]) + " |")
    return "\n".join(lines)
