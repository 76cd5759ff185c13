"""Leaderboards from an evaluation's results: a DataFrame, Markdown, standalone HTML and figures.

``report(out_dir)`` reads ``out_dir/results.csv`` and writes beside it ``leaderboard.csv``,
``leaderboard.md``, ``leaderboard.html`` (figures embedded, no external files needed) and the
figures as PNG: ``heatmap.png`` (metric × explainer), ``runtime_vs_rank.png`` (log time axis,
as the DualView paper plots it) and ``memory.png`` (peak memory per explainer).

Ranks: on each benchmark × metric the explainers are ranked 1 (best, respecting the metric's
``higher_is_better``) to n, ties sharing their average rank; a failed or skipped score gets no
rank. "avg rank <benchmark>" averages an explainer's ranks over that benchmark's metrics,
"avg rank" over all scored benchmark × metric pairs.
Runtime = fit + explain + self-influence seconds, summed over benchmarks (the randomised-model
explanations that model randomisation needs and metric-side retraining are not counted).
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import pandas as pd

from dattr_eval.evaluation.store import read_results

RUNTIME_PARTS = ("fit_s", "explain_s", "self_influence_s")


def scores_table(results: pd.DataFrame) -> pd.DataFrame:
    """Scores with explainers as rows and ``(benchmark, metric)`` columns (NaN where not ``ok``)."""
    rows = results[(results.kind == "metric") & (results.status == "ok")]
    return rows.pivot_table(
        index="explainer", columns=["benchmark", "metric"], values="score", aggfunc="last"
    )


def rank_table(results: pd.DataFrame) -> pd.DataFrame:
    """Ranks (1 = best) per ``(benchmark, metric)`` column, respecting ``higher_is_better``."""
    scores = scores_table(results)
    direction = (
        results[results.kind == "metric"]
        .dropna(subset=["higher_is_better"])
        .groupby(["benchmark", "metric"])["higher_is_better"]
        .last()
    )
    ranks = scores.copy()
    for col in scores.columns:
        ranks[col] = scores[col].rank(
            ascending=not bool(direction.get(col, True)), method="average"
        )
    return ranks


def profile_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per explainer: runtime seconds (summed over benchmarks), per-sample explain seconds, peak memory."""
    prof = results[(results.kind == "profile") & (results.status == "ok")].copy()
    if prof.empty:
        return pd.DataFrame(
            columns=["runtime_s", "explain_ms_per_sample", "peak_rss_increase_mb", "cuda_peak_mb"]
        )
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


def leaderboard(results: pd.DataFrame) -> pd.DataFrame:
    """One row per explainer, best average rank first.

    Columns: ``avg rank``, ``avg rank <benchmark>`` per benchmark, ``<benchmark>/<metric>``
    scores, ``runtime [s]``, ``explain [ms/sample]``, ``peak RSS + [MiB]`` and, on CUDA,
    ``CUDA peak [MiB]``.
    """
    scores, ranks = scores_table(results), rank_table(results)
    explainers = sorted(set(results.loc[results.kind.isin(["metric", "profile"]), "explainer"]))
    board = pd.DataFrame(index=pd.Index(explainers, name="explainer"))
    board["avg rank"] = ranks.mean(axis=1)
    for bench in _benchmarks(results):
        if bench in ranks.columns.get_level_values(0):
            board[f"avg rank {bench}"] = ranks[bench].mean(axis=1)
    for bench, metric in scores.columns:
        board[f"{bench}/{metric}"] = scores[(bench, metric)]
    prof = profile_table(results)
    board["runtime [s]"] = prof["runtime_s"]
    board["explain [ms/sample]"] = prof["explain_ms_per_sample"]
    board["peak RSS + [MiB]"] = prof["peak_rss_increase_mb"]
    if prof["cuda_peak_mb"].notna().any():
        board["CUDA peak [MiB]"] = prof["cuda_peak_mb"]
    return board.sort_values("avg rank", na_position="last")


def _benchmarks(results: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(results.loc[results.benchmark != "", "benchmark"]))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def to_markdown(board: pd.DataFrame) -> str:
    """A GitHub Markdown table of ``board`` (index as the first column)."""
    header = [board.index.name or "", *map(str, board.columns)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(board.columns)) + "|",
    ]
    for name, row in board.iterrows():
        lines.append("| " + " | ".join([str(name), *(_fmt(v) for v in row.tolist())]) + " |")
    return "\n".join(lines)


def xda_table(results: pd.DataFrame) -> pd.DataFrame:
    """XDA scores (``kind="xda"`` rows): one row per benchmark × explainer, one column per
    ``xda/<quantus metric>/<side>`` (empty when the evaluation ran without ``xda``)."""
    rows = results[(results.kind == "xda") & (results.status == "ok")]
    if rows.empty:
        return pd.DataFrame()
    table = rows.pivot_table(
        index=["benchmark", "explainer"], columns="metric", values="score", aggfunc="last"
    )
    table.columns.name = None
    table.index = [f"{b} / {e}" for b, e in table.index]
    table.index.name = "benchmark / explainer"
    return table


def _problems(results: pd.DataFrame) -> pd.DataFrame:
    bad = results[results.status.isin(["error", "skipped"])]
    return bad[["benchmark", "explainer", "metric", "status", "error"]].reset_index(drop=True)


def _context(results: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark: n_train, n_test and the devices used."""
    prof = results[results.kind == "profile"]
    if prof.empty:
        return pd.DataFrame()
    return prof.groupby("benchmark").agg(
        n_train=("n_train", "max"),
        n_test=("n_test", "max"),
        device=("device", lambda s: ", ".join(sorted(set(s)))),
        device_name=("device_name", lambda s: ", ".join(sorted(set(s)))),
    )


# ---------------------------------------------------------------------- figures
def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    return fig, fig.subplots()


def heatmap_figure(results: pd.DataFrame, order: list[str] | None = None):
    """Metric × explainer heatmap: colour = rank within the row (1 = best), text = raw score.

    ``order``: explainer column order (default: alphabetical).
    """
    import seaborn as sns

    scores, ranks = scores_table(results), rank_table(results)
    if scores.empty:
        return None
    if order is not None:
        scores, ranks = (
            scores.reindex([e for e in order if e in scores.index]),
            ranks.reindex([e for e in order if e in ranks.index]),
        )
    labels = [f"{b}/{m}" for b, m in scores.columns]
    raw = scores.T.set_axis(labels)
    n = ranks.T.count(axis=1).clip(lower=2)
    quality = ((n.values[:, None] - ranks.T.values) / (n.values[:, None] - 1)).clip(0, 1)
    quality = pd.DataFrame(quality, index=labels, columns=raw.columns)
    fig, ax = _figure(max(6.0, 3.0 + 0.9 * raw.shape[1]), max(3.0, 1.5 + 0.45 * raw.shape[0]))
    sns.heatmap(
        quality,
        annot=raw.map(_fmt).values,
        fmt="",
        cmap="viridis",
        vmin=0,
        vmax=1,
        ax=ax,
        cbar_kws={"label": "relative rank in row (1 = best)"},
    )
    ax.set_xlabel("explainer")
    ax.set_ylabel("benchmark / metric")
    ax.set_title("Score (text); colour: rank within the metric")
    fig.tight_layout()
    return fig


def runtime_figure(board: pd.DataFrame):
    """Runtime (log axis) against average rank, one point per explainer."""
    import seaborn as sns

    data = board[["runtime [s]", "avg rank"]].dropna().reset_index()
    if data.empty:
        return None
    fig, ax = _figure(6.5, 4.5)
    sns.scatterplot(
        data=data, x="runtime [s]", y="avg rank", hue="explainer", s=80, ax=ax, legend=False
    )
    for _, row in data.iterrows():
        ax.annotate(
            row["explainer"],
            (row["runtime [s]"], row["avg rank"]),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("runtime: fit + explain + self-influence [s] (log)")
    ax.set_ylabel("average rank (1 = best)")
    ax.set_title("Runtime vs. average rank")
    fig.tight_layout()
    return fig


def memory_figure(results: pd.DataFrame):
    """Peak RSS increase (and CUDA peak where measured) per explainer and benchmark."""
    import seaborn as sns

    prof = results[(results.kind == "profile") & (results.status == "ok")]
    if prof.empty:
        return None
    cuda = prof["cuda_peak_mb"].notna().any()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.2 * (2 if cuda else 1)), dpi=110)
    axes = fig.subplots(2 if cuda else 1, 1, squeeze=False)[:, 0]
    sns.barplot(data=prof, x="explainer", y="rss_increase_mb", hue="benchmark", ax=axes[0])
    axes[0].set_ylabel("peak RSS increase [MiB]")
    axes[0].set_title("Peak process memory during the cell (RSS above its start)")
    if cuda:
        sns.barplot(data=prof, x="explainer", y="cuda_peak_mb", hue="benchmark", ax=axes[1])
        axes[1].set_ylabel("torch.cuda.max_memory_allocated [MiB]")
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def _png(fig, path: Path) -> str:
    fig.savefig(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# ---------------------------------------------------------------------- entry point
_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.note{color:#555;font-size:13px}"""


def report(out_dir: str | Path, *, figures: bool = True) -> pd.DataFrame:
    """Write the leaderboard of ``out_dir/results.csv`` beside it and return it.

    Writes ``leaderboard.csv``, ``leaderboard.md``, ``leaderboard.html`` and (with ``figures``)
    ``heatmap.png``, ``runtime_vs_rank.png``, ``memory.png``.

    Raises:
        FileNotFoundError: ``out_dir`` holds no results.
    """
    out_dir = Path(out_dir)
    results = read_results(out_dir)
    if results.empty:
        raise FileNotFoundError(
            f"no results in {out_dir} (expected {out_dir / 'results.csv'}); run an evaluation first"
        )
    board = leaderboard(results)
    board.to_csv(out_dir / "leaderboard.csv")
    context, problems, xda = _context(results), _problems(results), xda_table(results)
    images = {}
    if figures:
        for name, fig in (
            ("heatmap", heatmap_figure(results, list(board.index))),
            ("runtime_vs_rank", runtime_figure(board)),
            ("memory", memory_figure(results)),
        ):
            if fig is not None:
                images[name] = _png(fig, out_dir / f"{name}.png")
    md = ["# Leaderboard", "", to_markdown(board), "", _NOTES, ""]
    if not context.empty:
        md += ["## Benchmarks", "", to_markdown(context), ""]
    if not xda.empty:
        md += ["## Feature-level (XDA) scores", "", to_markdown(xda), "", _XDA_NOTES, ""]
    if not problems.empty:
        md += ["## Failed or skipped", "", to_markdown(problems.set_index("benchmark")), ""]
    md += [f"![{name}]({name}.png)" for name in images]
    (out_dir / "leaderboard.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    (out_dir / "leaderboard.html").write_text(
        _html(board, context, problems, xda, images), encoding="utf-8"
    )
    return board


_NOTES = (
    "Ranks: 1 = best on each benchmark × metric (ties averaged); avg rank over all scored pairs. "
    "Runtime = fit + explain + self-influence seconds summed over benchmarks. Peak RSS + = the "
    "largest resident set size during the cell minus the RSS at its start (sampled every 5 ms from "
    "/proc/self/statm), maximum over benchmarks. '–' = failed, skipped or not applicable."
)


_XDA_NOTES = (
    "Quantus scores of the LRP heatmaps of test points paired with their top-k proponents "
    "(sides test/train) and of the plain decision heatmap; faithfulness_correlation: higher is "
    "better; max_sensitivity and random_logit: lower is better."
)


def _html(
    board: pd.DataFrame,
    context: pd.DataFrame,
    problems: pd.DataFrame,
    xda: pd.DataFrame,
    images: dict[str, str],
) -> str:
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>dattr_eval leaderboard</title>",
        f"<style>{_CSS}</style></head><body><h1>Leaderboard</h1>",
        board.to_html(float_format=_fmt, na_rep="–", escape=True),
        f"<p class='note'>{html.escape(_NOTES)}</p>",
    ]
    if not context.empty:
        parts += ["<h2>Benchmarks</h2>", context.to_html(escape=True)]
    if not xda.empty:
        parts += [
            "<h2>Feature-level (XDA) scores</h2>",
            xda.to_html(float_format=_fmt, na_rep="–", escape=True),
            f"<p class='note'>{html.escape(_XDA_NOTES)}</p>",
        ]
    if not problems.empty:
        parts += ["<h2>Failed or skipped</h2>", problems.to_html(escape=True, index=False)]
    titles = {
        "heatmap": "Scores by metric",
        "runtime_vs_rank": "Runtime vs. average rank",
        "memory": "Peak memory",
    }
    for name, data in images.items():
        parts += [
            f"<h2>{titles[name]}</h2>",
            f"<img alt='{name}' src='data:image/png;base64,{data}'>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)
