"""The machine-readable leaderboard: one JSON document (``leaderboard.json``).

The document is what both ``leaderboard.json`` and the interactive ``leaderboard.html`` show;
its schema is ``SCHEMA_FILE`` (JSON Schema, draft 2020-12), described field by field in the
documentation page "leaderboard.json". Every float that is NaN in the results is ``null``.
"""

from __future__ import annotations

import inspect
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dattr_eval.evaluation.leaderboard import (
    LEVEL,
    SNR_THRESHOLD,
    Draws,
    average_ranks,
    benchmark_cards,
    column_info,
    column_ranks,
    context_table,
    json_object,
    leaderboard,
    metric_rows,
    normalise_results,
    problems_table,
    profile_table,
    snr_table,
)

#: bumped when a field changes meaning or disappears (adding a field keeps the version)
SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).parent / "assets" / "leaderboard.schema.json"
DEFAULT_UNIT = "test point"

_CELL_FIELDS = (
    "score",
    "ci_low",
    "ci_high",
    "n_scored",
    "baseline_score",
    "baseline_ci_low",
    "baseline_ci_high",
    "noise_ceiling",
)


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats → ``None``, numpy scalars → Python, containers recursed."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if value is pd.NA or value is None:
        return None
    return value


def _bool_or_none(value: Any) -> bool | None:
    return None if value is None or pd.isna(value) else bool(value)


def first_paragraph(doc: str | None) -> str:
    """The first paragraph of a docstring joined into one line, reST literal quotes (double
    backticks) removed (``""`` for none)."""
    if not doc:
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].replace("``", "").split())


def metric_metadata(name: str, rows: pd.DataFrame | None = None) -> dict[str, Any]:
    """What a metric card shows: ``name``, ``summary``, ``description`` (the class docstring's
    first paragraph), ``citation``, ``category``, ``higher_is_better``, ``unit``, ``registered``.

    Read from the registered metric class (``dattr_eval.metrics.get``); for names the registry
    does not know (XDA scores, user metrics not imported here) from the result ``rows`` alone.
    ``unit`` is the results' ``unit`` column when set, else the class's ``unit`` attribute, else
    ``DEFAULT_UNIT``.
    """
    from dattr_eval import metrics

    try:
        cls = metrics.get(name)
    except KeyError:
        cls = None
    rows = rows if rows is not None else pd.DataFrame()
    units = [u for u in rows.get("unit", []) if u]
    category = [c for c in rows.get("category", []) if c]
    direction = list(rows.get("higher_is_better", []))
    return {
        "name": name,
        "registered": cls is not None,
        "summary": getattr(cls, "summary", ""),
        "description": first_paragraph(cls.__doc__) if cls is not None else "",
        "citation": getattr(cls, "citation", ""),
        "category": getattr(cls, "category", "") or (category[-1] if category else ""),
        "higher_is_better": bool(
            getattr(cls, "higher_is_better", direction[-1] if direction else True)
        ),
        "unit": units[-1] if units else getattr(cls, "unit", DEFAULT_UNIT),
    }


def leaderboard_document(
    results: pd.DataFrame,
    draws: Draws | None = None,
    level: float = LEVEL,
    generated: str | None = None,
    meta: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The leaderboard of ``results`` (raw or normalised) as a JSON-ready dict.

    Args:
        results: the results DataFrame (``read_results``).
        draws: paired bootstrap draws (``(benchmark, explainer, metric) -> (n_resamples,)``);
            without them no rank intervals.
        level: confidence level of the intervals.
        generated: ISO timestamp written into ``meta`` (default: now, UTC).
        meta: a meta-evaluation table (``meta.csv``); its scored rows become the optional
            ``meta_evaluation`` list.

    Returns:
        A dict following ``SCHEMA_FILE``: ``meta``, ``benchmarks``, ``columns``, ``metrics``,
        ``explainers`` (board order), ``cells``, ``xda``, ``problems`` (and ``meta_evaluation``).
    """
    from dattr_eval import __version__

    results = normalise_results(results)
    info, snr = column_info(results), snr_table(results)
    long_ranks = column_ranks(results, draws, level)
    sampled = long_ranks[long_ranks["rank_low"].notna()]
    with_rank_intervals = set(zip(sampled["benchmark"], sampled["metric"]))
    ranks = long_ranks.set_index(["benchmark", "metric", "explainer"])
    board, avg = leaderboard(results, draws, level), average_ranks(results, draws, level)
    context, cards, prof = context_table(results), benchmark_cards(results), profile_table(results)
    rows = metric_rows(results)

    columns = []
    for (bench, metric), col in info.iterrows():
        present = rows[(rows["benchmark"] == bench) & (rows["metric"] == metric)]
        columns.append(
            {
                "id": f"{bench}/{metric}",
                "benchmark": bench,
                "metric": metric,
                "category": col["category"],
                "higher_is_better": bool(col["higher_is_better"]),
                "ranked": bool(col["ranked"]),
                "unit": col["unit"] or metric_metadata(metric, present)["unit"],
                "noise_ceiling": col["noise_ceiling"],
                "snr": snr["snr"].get((bench, metric), math.nan),
                "snr_flagged": bool(snr["flagged"].get((bench, metric), False)),
                "has_intervals": bool(present["ci_low"].notna().any()),
                "has_rank_intervals": (bench, metric) in with_rank_intervals,
            }
        )
    benchmarks = []
    for bench in dict.fromkeys(b for b in results["benchmark"] if b):
        ctx = context.loc[bench] if bench in context.index else {}
        benchmarks.append(
            {
                "name": bench,
                "n_train": ctx.get("n_train", math.nan),
                "n_test": ctx.get("n_test", math.nan),
                "device": ctx.get("device", ""),
                "card": cards.get(bench),
                "columns": [c["id"] for c in columns if c["benchmark"] == bench],
            }
        )
    explainers = []
    for name, row in board.iterrows():
        params = results.loc[results["explainer"] == name, "explainer_params"]
        explainers.append(
            {
                "name": name,
                "role": row["role"],
                "class": _last_text(results.loc[results["explainer"] == name, "explainer_class"]),
                "params": json_object(params.iloc[-1] if len(params) else "") or {},
                "avg_rank": row["avg rank"],
                "avg_rank_low": avg.loc[name, "avg rank low"],
                "avg_rank_high": avg.loc[name, "avg rank high"],
                "best_group": _bool_or_none(avg.loc[name, "best_group"]),
                "tied_with_next": _bool_or_none(avg.loc[name, "tied_with_next"]),
                "avg_rank_by_benchmark": {
                    b["name"]: avg.loc[name].get(f"avg rank {b['name']}", math.nan)
                    for b in benchmarks
                },
                "runtime_s": prof["runtime_s"].get(name, math.nan),
                "explain_ms_per_sample": prof["explain_ms_per_sample"].get(name, math.nan),
                "peak_rss_increase_mb": prof["peak_rss_increase_mb"].get(name, math.nan),
                "cuda_peak_mb": prof["cuda_peak_mb"].get(name, math.nan),
            }
        )
    cells = []
    for row in rows.itertuples(index=False):
        key = (row.benchmark, row.metric, row.explainer)
        rank = ranks.loc[key] if key in ranks.index else None
        cell = {
            "benchmark": row.benchmark,
            "metric": row.metric,
            "explainer": row.explainer,
            "role": row.explainer_role,
            "status": row.status,
            **{f: getattr(row, f) for f in _CELL_FIELDS},
            "half_width": (row.ci_high - row.ci_low) / 2,
            "passed": row.passed,
            "error": row.error,
            "rank": rank["rank"] if rank is not None else math.nan,
            "rank_low": rank["rank_low"] if rank is not None else math.nan,
            "rank_high": rank["rank_high"] if rank is not None else math.nan,
            "best_group": _bool_or_none(rank["best_group"]) if rank is not None else None,
            "tied_with_next": _bool_or_none(rank["tied_with_next"]) if rank is not None else None,
        }
        cells.append(cell)
    xda = results[(results["kind"] == "xda") & (results["status"] == "ok")]
    document = {
        "meta": {
            "schema_version": SCHEMA_VERSION,
            "dattr_eval_version": __version__,
            "generated": generated or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "level": level,
            "snr_flag": SNR_THRESHOLD,
        },
        "benchmarks": benchmarks,
        "columns": columns,
        "metrics": {
            m: metric_metadata(m, rows[rows["metric"] == m]) for m in dict.fromkeys(rows["metric"])
        },
        "explainers": explainers,
        "cells": cells,
        "xda": xda[["benchmark", "explainer", "metric", "score"]].to_dict("records"),
        "problems": problems_table(results).to_dict("records"),
    }
    if meta is not None:
        scored = meta[meta["status"] == "ok"]
        document["meta_evaluation"] = [
            {
                "benchmark": row["benchmark"],
                "metric": row["metric"],
                "noise_resilience": row["noise_resilience"],
                "adversarial_reactivity": row["adversarial_reactivity"],
                "meta_consistency": row["meta_consistency"],
                "flagged": _bool_or_none(row["flagged"]),
            }
            for row in scored.to_dict("records")
        ]
    return json_safe(document)


def _last_text(values: pd.Series) -> str:
    present = [v for v in values if v]
    return present[-1] if present else ""


def load_schema() -> dict[str, Any]:
    """The JSON Schema of the document (``SCHEMA_FILE``)."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
