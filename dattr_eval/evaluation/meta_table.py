"""The meta table on disk (``meta.csv``) and its short summary for reports (pandas only)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

#: the meta-evaluation's file in an evaluation's output directory
META_FILE = "meta.csv"

#: the meta-evaluation measures of a benchmark × metric, in order (``meta.scores``)
MEASURE_COLUMNS = (
    "noise_resilience",
    "adversarial_reactivity",
    "iac_nr",
    "iec_nr",
    "iac_ar",
    "iec_ar",
    "meta_consistency",
)
#: the columns a report shows, in order
SUMMARY_COLUMNS = (*MEASURE_COLUMNS, "flagged")


#: how reports show the ``flagged`` column
FLAG_TEXT = {True: "⚠ yes", False: "no"}


def read_meta(out_dir: str | Path) -> pd.DataFrame | None:
    """``out_dir/meta.csv`` as a DataFrame, or ``None`` when the directory has none."""
    path = Path(out_dir) / META_FILE
    if not path.exists():
        return None
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    if "flagged" in table:
        table["flagged"] = table["flagged"].map(
            {True: True, False: False, "True": True, "False": False}
        )
    return table


def meta_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The scored rows of a meta table, indexed by ``benchmark/metric``, with
    :data:`SUMMARY_COLUMNS` and the ``ar_<perturbation>`` columns (empty if none scored);
    ``flagged`` reads ``"⚠ yes"`` or ``"no"``."""
    ok = table[table["status"] == "ok"]
    if ok.empty:
        return pd.DataFrame()
    columns = [*SUMMARY_COLUMNS, *(c for c in ok.columns if c.startswith("ar_"))]
    summary = ok[columns].copy()
    summary["flagged"] = [FLAG_TEXT[bool(v)] for v in summary["flagged"]]
    summary.index = list(ok["benchmark"] + "/" + ok["metric"])
    summary.index.name = "benchmark/metric"
    return summary


def cost_multiples(table: pd.DataFrame) -> pd.Series:
    """Per benchmark: the meta run's seconds over the unperturbed run's (``cost_multiple``)."""
    return table.groupby("benchmark", sort=False)["cost_multiple"].first()


__all__ = [
    "FLAG_TEXT",
    "META_FILE",
    "SUMMARY_COLUMNS",
    "cost_multiples",
    "meta_summary",
    "read_meta",
]
