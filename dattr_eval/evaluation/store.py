"""The results file of an evaluation: one CSV in ``out_dir``, appended as cells finish.

One row per benchmark × explainer × metric (``kind="metric"``) plus one profile row per
benchmark × explainer (``kind="profile"``, ``metric=""``). Reruns append; when a key appears
several times the last row wins (``read_results(latest=True)``), so a rerun that recomputes a
failed cell supersedes the old error row.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

RESULTS_FILE = "results.csv"

#: the fixed column set of the results file, in order
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
    "hubness",
    "error",
    "explainer_class",
    "explainer_params",
    "metric_params",
    "diagnostics",
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
)
KEY = ("benchmark", "explainer", "metric", "kind")


def to_json(value: Any) -> str:
    """A deterministic JSON string of hyperparameters (non-JSON values via ``repr``)."""
    return json.dumps(value, sort_keys=True, default=repr)


class ResultStore:
    """Appends rows to ``out_dir/results.csv`` and answers which cells are finished."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / RESULTS_FILE

    def append(self, rows: Iterable[dict[str, Any]], draws: dict[str, Any] | None = None) -> None:
        """Write ``rows`` (dicts with keys from ``COLUMNS``) and flush them to disk.

        ``draws`` (bootstrap draws per metric label) are not stored yet.
        """
        rows = list(rows)
        unknown = {k for row in rows for k in row} - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown result column(s) {sorted(unknown)}; known: {list(COLUMNS)}")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
            for row in rows:
                writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
            fh.flush()
            os.fsync(fh.fileno())

    def read(self, latest: bool = True) -> pd.DataFrame:
        """The results as a DataFrame (empty with ``COLUMNS`` when no file yet)."""
        return read_results(self.out_dir, latest=latest)

    def finished(self) -> set[tuple[str, str]]:
        """``(cell_key, metric_key)`` of rows with status ok / skipped / not_applicable (profile: ``""``)."""
        df = self.read()
        ok = df[df["status"].isin(("ok", "skipped", "not_applicable"))]
        return {(str(r.cell_key), str(r.metric_key)) for r in ok.itertuples(index=False)}

    def claim(self, cell_key: str) -> bool:
        """Whether this process may compute the cell (claims across processes come with the v2 store)."""
        return True

    def release(self, cell_key: str) -> None:
        """Drop this process's claim of the cell."""


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return value


def read_results(out_dir: str | os.PathLike[str], latest: bool = True) -> pd.DataFrame:
    """Read ``out_dir/results.csv``.

    Args:
        out_dir: the evaluation's output directory.
        latest: keep only the last row per (benchmark, explainer, metric, kind).

    Returns:
        A DataFrame with the columns ``COLUMNS``; ``metric`` is ``""`` on profile rows.
    """
    path = Path(out_dir) / RESULTS_FILE
    if not path.exists():
        return pd.DataFrame(columns=list(COLUMNS))
    df = pd.read_csv(
        path, keep_default_na=False, na_values={c: [""] for c in COLUMNS if c not in _TEXT}
    )
    for col in _TEXT:
        df[col] = df[col].astype(str)
    df["higher_is_better"] = df["higher_is_better"].map(
        {"True": True, "False": False, True: True, False: False}
    )
    if latest and len(df):
        df = df.drop_duplicates(subset=list(KEY), keep="last").reset_index(drop=True)
    return df


_TEXT = (
    "higher_is_better",
    "passed",
    "ci_method",
    "unit",
    "explainer_role",
    "replicate_scores",
    "diagnostics",
    "cell_key",
    "metric_key",
    "benchmark_fingerprint",
    "card",
    "benchmark",
    "explainer",
    "metric",
    "kind",
    "status",
    "category",
    "error",
    "explainer_class",
    "explainer_params",
    "metric_params",
    "device",
    "device_name",
    "timestamp",
    "version",
)
