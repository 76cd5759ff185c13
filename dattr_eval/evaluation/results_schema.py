"""The columns of an evaluation's results, their types, and the checks every stored row passes.

One row per benchmark × explainer × metric (``kind="metric"``), one profile row per benchmark ×
explainer (``kind="profile"``, ``metric=""``), XDA rows (``kind="xda"``) and one card row per
benchmark (``kind="card"``). Schema version 2 adds confidence intervals, replicates, resume keys
(``cell_key``, ``metric_key``, ``benchmark_fingerprint``) and cards to the 30 columns of version 1
(:data:`V1_COLUMNS`), which older ``results.csv`` files carry and which are still read.

Every row goes through :func:`normalize_row`, whether it comes from the evaluator or from a CSV
file, so a stored value always has its column's type: text (without control characters other
than tab and line ends), float, integer or bool (``None`` for missing).
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: the schema version written into ``schema_version`` of new rows
SCHEMA_VERSION = 2

#: the 30 columns of schema version 1 (results.csv before resume keys and intervals)
V1_COLUMNS: tuple[str, ...] = (
    "benchmark",
    "explainer",
    "metric",
    "kind",
    "status",
    "score",
    "score_std",
    "n_scored",
    "higher_is_better",
    "category",
    "error",
    "explainer_class",
    "explainer_params",
    "metric_params",
    "fit_s",
    "explain_s",
    "explain_s_per_sample",
    "self_influence_s",
    "randomized_s",
    "metrics_s",
    "cell_s",
    "peak_rss_mb",
    "rss_increase_mb",
    "cuda_peak_mb",
    "device",
    "device_name",
    "n_train",
    "n_test",
    "timestamp",
    "version",
)

#: the columns of schema version 2, in file order
COLUMNS: tuple[str, ...] = (
    "benchmark",
    "explainer",
    "metric",
    "kind",
    "status",
    "score",
    "ci_low",
    "ci_high",
    "ci_method",
    "score_std",
    "n_scored",
    "unit",
    "higher_is_better",
    "category",
    "passed",
    "explainer_role",
    "replicate_scores",
    "noise_ceiling",
    "baseline_score",
    "baseline_ci_low",
    "baseline_ci_high",
    "hubness",
    "diagnostics",
    "error",
    "explainer_class",
    "explainer_params",
    "metric_params",
    "fit_s",
    "explain_s",
    "explain_s_per_sample",
    "self_influence_s",
    "randomized_s",
    "metrics_s",
    "retrain_s",
    "cell_s",
    "peak_rss_mb",
    "rss_increase_mb",
    "cuda_peak_mb",
    "memory_estimate_mb",
    "device",
    "device_name",
    "torch_threads",
    "n_train",
    "n_test",
    "replicates",
    "seed",
    "timestamp",
    "version",
    "cell_key",
    "metric_key",
    "benchmark_fingerprint",
    "card",
    "schema_version",
)

#: the latest row per KEY is the current result (a rerun supersedes an older row)
KEY = ("benchmark", "explainer", "metric", "kind")

KINDS = ("metric", "profile", "xda", "card")
STATUSES = ("ok", "error", "skipped", "not_applicable")
#: statuses after which a cell's row need not be computed again
FINISHED_STATUSES = ("ok", "skipped", "not_applicable")

BOOL_COLUMNS = frozenset({"higher_is_better", "passed"})
INTEGER_COLUMNS = frozenset(
    {"n_scored", "torch_threads", "n_train", "n_test", "replicates", "seed", "schema_version"}
)
FLOAT_COLUMNS = frozenset(
    {
        "score",
        "ci_low",
        "ci_high",
        "score_std",
        "noise_ceiling",
        "baseline_score",
        "baseline_ci_low",
        "baseline_ci_high",
        "hubness",
        "fit_s",
        "explain_s",
        "explain_s_per_sample",
        "self_influence_s",
        "randomized_s",
        "metrics_s",
        "retrain_s",
        "cell_s",
        "peak_rss_mb",
        "rss_increase_mb",
        "cuda_peak_mb",
        "memory_estimate_mb",
    }
)
#: text columns that hold a JSON document
JSON_COLUMNS = frozenset(
    {"replicate_scores", "diagnostics", "explainer_params", "metric_params", "card"}
)
TEXT_COLUMNS = frozenset(COLUMNS) - BOOL_COLUMNS - INTEGER_COLUMNS - FLOAT_COLUMNS


#: characters never stored in text (written as ``\\xNN`` instead); in a CSV field they mean damage
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def to_json(value: Any) -> str:
    """A deterministic JSON string of hyperparameters (non-JSON values via ``repr``)."""
    return json.dumps(value, sort_keys=True, default=repr)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _number(value: Any, column: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"column {column!r} must be a number, got {value!r}")
    return float(value)


def _typed(column: str, value: Any) -> Any:
    """``value`` as stored in ``column``: str, float, int, bool or ``None``; ValueError if invalid."""
    if _is_missing(value):
        return None
    if column in BOOL_COLUMNS:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"column {column!r} must be True, False or None, got {value!r}")
        return bool(value)
    if column in INTEGER_COLUMNS or column in FLOAT_COLUMNS:
        number = _number(value, column)
        if math.isnan(number):
            return None
        if column in FLOAT_COLUMNS:
            return number + 0.0  # -0.0 becomes 0.0, as SQLite stores it
        if not number.is_integer():
            raise ValueError(f"column {column!r} must be an integer, got {value!r}")
        return int(number)
    if column in JSON_COLUMNS and not isinstance(value, str):
        return to_json(value)
    if column in JSON_COLUMNS and value:
        try:
            json.loads(value)
        except ValueError as exc:
            raise ValueError(
                f"column {column!r} must hold JSON, got {value[:80]!r}: {exc}"
            ) from exc
    text = value if isinstance(value, str) else str(value)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # no lone surrogates
    return CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def normalize_row(row: Mapping[str, Any], schema_version: int = SCHEMA_VERSION) -> dict[str, Any]:
    """A checked copy of ``row`` with every column of :data:`COLUMNS` (``None`` where absent).

    Args:
        row: column -> value; missing columns are ``None``, ``NaN`` counts as missing.
        schema_version: stored in ``schema_version`` unless ``row`` has one.

    Raises:
        ValueError: an unknown column, a non-integral integer, an unknown ``kind`` or ``status``,
            an empty ``benchmark`` or a JSON column that does not parse; the message names it.
        TypeError: a number or bool column given a value of another type.
    """
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown result column(s) {sorted(unknown)}; known: {list(COLUMNS)}")
    out = {column: _typed(column, row.get(column)) for column in COLUMNS}
    if out["schema_version"] is None:
        out["schema_version"] = schema_version
    for column in ("benchmark", "kind", "status"):
        if not out[column]:
            raise ValueError(f"column {column!r} must be a non-empty string, got {out[column]!r}")
    if out["kind"] not in KINDS:
        raise ValueError(f"column 'kind' must be one of {KINDS}, got {out['kind']!r}")
    if out["status"] not in STATUSES:
        raise ValueError(f"column 'status' must be one of {STATUSES}, got {out['status']!r}")
    for column in ("explainer", "metric", "cell_key", "metric_key"):
        if out[column] is None:
            out[column] = ""
    return out


def parse_field(column: str, text: str) -> Any:
    """A CSV field of ``column`` as a typed value (``""`` is ``None``); ValueError if malformed."""
    if text == "":
        return None
    if column in BOOL_COLUMNS:
        if text not in ("True", "False"):
            raise ValueError(f"column {column!r} must be True or False, got {text!r}")
        return text == "True"
    if column in INTEGER_COLUMNS or column in FLOAT_COLUMNS:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"column {column!r} must be a number, got {text!r}") from None
    return text


def format_field(column: str, value: Any) -> str:
    """A stored value as a CSV field (the inverse of :func:`parse_field`)."""
    if value is None:
        return ""
    if column in BOOL_COLUMNS:
        return "True" if value else "False"
    return str(value)


def to_frame(records: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """A DataFrame of stored rows (tuples in :data:`COLUMNS` order) with each column's dtype.

    Text columns are ``str`` (``""`` when missing), float columns ``float64`` (NaN when missing),
    integer columns ``int64`` (``float64`` when a value is missing), bool columns ``True`` /
    ``False`` / NaN (``object``).
    """
    by_column = list(zip(*records)) if len(records) else [()] * len(COLUMNS)
    data = {}
    for column, values in zip(COLUMNS, by_column):
        if column in TEXT_COLUMNS:
            data[column] = pd.Series(["" if v is None else v for v in values], dtype=str)
        elif column in BOOL_COLUMNS:
            data[column] = pd.Series(
                [np.nan if v is None else bool(v) for v in values], dtype=object
            )
        elif column in INTEGER_COLUMNS and None not in values:
            data[column] = pd.Series(np.array(values, dtype=np.int64))
        else:
            data[column] = pd.Series(np.array(values, dtype=np.float64))
    return pd.DataFrame(data, columns=list(COLUMNS))
