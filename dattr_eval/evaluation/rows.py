"""Results rows of a finished cell: metric rows, one profile row, hook rows (pure functions).

The columns are the store's (``evaluation.store.COLUMNS``); every row of a cell carries the
cell's ``cell_key`` and each metric row its ``metric_key``, so a rerun can tell exactly which rows
are still valid (``evaluation.fingerprint``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from dattr_eval.evaluation.cell import CellResult, CellSpec
from dattr_eval.evaluation.profiling import device_name
from dattr_eval.evaluation.store import to_json
from dattr_eval.metrics.base import Metric

#: extras copied from a metric result into their own columns
_EXTRA_COLUMNS = {"noise_ceiling": "noise_ceiling", "baseline": "baseline_score"}


def role(explainer: Any) -> str:
    """``"reference"`` for reference explainers (``random``, ``loss``), else ``"method"``."""
    return str(getattr(explainer, "role", "method"))


def cell_rows(
    spec: CellSpec, result: CellResult, metric_keys: Mapping[str, str], fingerprint: str
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """``(rows, draws)`` of a finished cell: one row per metric (ok / error / skipped /
    not_applicable), one profile row, the hook rows; ``draws`` maps each scored metric label to its
    ``(n_resamples,)`` bootstrap draws."""
    bench, explainer = spec.benchmark, spec.explainer
    cls = type(explainer)
    base = {
        "benchmark": bench.name,
        "explainer": spec.explainer_label,
        "explainer_class": f"{cls.__module__}.{cls.__qualname__}",
        "explainer_params": to_json(explainer.get_params()),
        "explainer_role": role(explainer),
        "n_train": bench.n_train,
        "n_test": bench.n_test,
        "replicates": len(spec.replicates),
        "seed": bench.seed,
        "device": str(spec.device),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "version": _version(),
        "cell_key": spec.key,
        "benchmark_fingerprint": fingerprint,
    }
    rows, draws = [], {}
    for label, metric in spec.metrics.items():
        row = {**base, **_metric_columns(label, metric, metric_keys)}
        outcome = result.outcomes.get(label)
        if outcome is not None:
            row.update(_score_columns(metric, outcome))
            draws[label] = outcome.draws.draws
        elif label in result.not_applicable:
            row.update(status="not_applicable", error=result.not_applicable[label])
        else:
            err = result.error_for(label)
            row.update(status="error", error=err.text() if err else "not computed")
        rows.append(row)
    for label, (metric, reason) in spec.skipped.items():
        rows.append(
            {
                **base,
                **_metric_columns(label, metric, metric_keys),
                "status": "skipped",
                "error": reason,
            }
        )
    rows.append({**base, **_profile_columns(spec, result)})
    for hook_row in result.hook_rows:
        rows.append({**base, "metric_key": hook_row.get("metric", ""), **hook_row})
    for err in result.errors:
        if err.phase == "hook":
            rows.append(
                {
                    **base,
                    "metric": err.metric,
                    "metric_key": err.metric,
                    "kind": err.metric,
                    "category": err.metric,
                    "status": "error",
                    "error": err.text(),
                }
            )
    return rows, draws


def _metric_columns(label: str, metric: Metric, metric_keys: Mapping[str, str]) -> dict[str, Any]:
    return {
        "metric": label,
        "kind": "metric",
        "metric_key": metric_keys.get(label, ""),
        "higher_is_better": metric.higher_is_better,
        "category": metric.category,
        "unit": metric.unit,
        "metric_params": to_json(metric.get_params()),
    }


def _score_columns(metric: Metric, outcome: Any) -> dict[str, Any]:
    draws = outcome.draws
    first = outcome.per_replicate[0]
    units = (
        np.concatenate(
            [r.units for r in outcome.per_replicate if r.units is not None and r.units.ndim == 1]
        )
        if all(r.units is not None and r.units.ndim == 1 for r in outcome.per_replicate)
        else None
    )
    cols: dict[str, Any] = {
        "status": "ok",
        "score": draws.score,
        "ci_low": draws.ci_low,
        "ci_high": draws.ci_high,
        "ci_method": "percentile",
        "n_scored": sum(r.n_scored for r in outcome.per_replicate),
        "replicate_scores": json.dumps([_finite(r.score) for r in outcome.per_replicate]),
    }
    if units is not None and units.size > 1:
        finite = units[np.isfinite(units)]
        cols["score_std"] = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    if (
        metric.category == "sanity"
        and metric.sanity_threshold is not None
        and math.isfinite(draws.score)
    ):
        better = (
            draws.score > metric.sanity_threshold
            if metric.higher_is_better
            else draws.score < metric.sanity_threshold
        )
        cols["passed"] = bool(better)
    for extra, column in _EXTRA_COLUMNS.items():
        values = [r.extras[extra] for r in outcome.per_replicate if extra in r.extras]
        if values:
            cols[column] = float(np.nanmean(values))
    if "hubness" in first.extras:
        cols["hubness"] = float(np.nanmean([r.extras["hubness"] for r in outcome.per_replicate]))
    return cols


def _profile_columns(spec: CellSpec, result: CellResult) -> dict[str, Any]:
    s = result.seconds
    explain_s = s.get("explain")
    n_test = sum(b.n_test for b in spec.replicates)
    cell_errors = [e for e in result.errors if not e.metric and e.phase != "hook"]
    return {
        "metric": "",
        "metric_key": "",
        "kind": "profile",
        "status": "error" if cell_errors else "ok",
        "error": "; ".join(e.text() for e in cell_errors),
        "fit_s": s.get("fit"),
        "explain_s": explain_s,
        "explain_s_per_sample": explain_s / n_test if explain_s is not None else None,
        "self_influence_s": s.get("self_influence"),
        "randomized_s": s.get("randomized"),
        "metrics_s": s.get("metrics"),
        "retrain_s": s.get("retrain"),
        "cell_s": sum(s.values()),
        "peak_rss_mb": result.memory.peak_rss_mb,
        "rss_increase_mb": result.memory.rss_increase_mb,
        "cuda_peak_mb": result.memory.cuda_peak_mb,
        "memory_estimate_mb": (
            spec.memory_estimate / 2**20 if spec.memory_estimate is not None else None
        ),
        "device_name": device_name(spec.device),
        "torch_threads": torch.get_num_threads(),
        "diagnostics": to_json(dict(result.diagnostics)) if result.diagnostics else "",
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _version() -> str:
    from dattr_eval import __version__

    return __version__
