"""Write the leaderboard of an evaluation's results: CSV, Markdown, JSON, an interactive HTML page
and figures.

``report(out_dir)`` reads ``out_dir/results.csv`` (and the bootstrap draws, where the results
store provides them) and writes beside it:

- ``leaderboard.csv`` / ``leaderboard.md``: the wide board (``leaderboard.leaderboard``);
- ``leaderboard.json``: the machine-readable leaderboard (schema ``leaderboard_json.SCHEMA_FILE``);
- ``leaderboard.html``: one self-contained page (sortable, filterable, per-benchmark tabs, metric
  and benchmark cards, figures embedded; works offline);
- with ``figures``: ``heatmap.png``, ``runtime_vs_rank.png``, ``metric_agreement.png`` (Kendall's
  tau between the metrics' explainer rankings), ``memory.png`` and one ``topk_<benchmark>.png``
  per panel passed in ``panels``.

Where ``out_dir`` holds a meta-evaluation (``meta.csv``, ``dattr_eval.meta_evaluate``), the
Markdown and HTML pages add its table (noise resilience, adversarial reactivity, flags); shortcut
localisation rows (``evaluation.xda_localisation``) get their own table.

The ranking rules (quality metrics only, reference rows, rank intervals, significance marks,
SNR) are documented in ``dattr_eval.evaluation.leaderboard``.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from dattr_eval.evaluation.html_report import render_html
from dattr_eval.evaluation.leaderboard import (
    LEVEL,
    Draws,
    cards_table,
    context_table,
    diagnostics_table,
    leaderboard,
    localisation_table,
    normalise_results,
    problems_table,
    rank_table,
    snr_table,
    to_markdown,
    xda_table,
)
from dattr_eval.evaluation.leaderboard_json import leaderboard_document
from dattr_eval.evaluation.meta_table import cost_multiples, meta_summary, read_meta
from dattr_eval.evaluation.store import read_bootstrap, read_results

__all__ = ["leaderboard", "rank_table", "report", "to_markdown"]


def report(
    out_dir: str | Path,
    *,
    figures: bool = True,
    draws: Draws | None = None,
    panels: Mapping[str, Any] | None = None,
    level: float = LEVEL,
) -> pd.DataFrame:
    """Write the leaderboard of ``out_dir/results.csv`` beside it and return the wide board.

    Args:
        out_dir: the evaluation's output directory.
        figures: also draw the PNG figures (and embed them in the HTML page).
        draws: paired bootstrap draws ``{(benchmark, explainer, metric): (n_resamples,)}``;
            ``None`` reads them from the store (``store.read_bootstrap``).
        panels: ``{benchmark: matplotlib Figure}``, e.g. from
            ``figures.topk_panel_from_explainers``, shown on that benchmark's tab.
        level: confidence level of the rank intervals.

    Returns:
        ``leaderboard.leaderboard(results, draws)``.

    Raises:
        FileNotFoundError: ``out_dir`` holds no results.
    """
    out_dir = Path(out_dir)
    raw = read_results(out_dir)
    if raw.empty:
        raise FileNotFoundError(
            f"no results in {out_dir} (expected {out_dir / 'results.csv'}); run an evaluation first"
        )
    results = normalise_results(raw)
    draws = read_bootstrap(out_dir) if draws is None else draws
    board = leaderboard(results, draws, level)
    board.to_csv(out_dir / "leaderboard.csv")
    meta = read_meta(out_dir)
    document = leaderboard_document(results, draws, level, meta=meta)
    (out_dir / "leaderboard.json").write_text(
        json.dumps(document, indent=1, allow_nan=False) + "\n", encoding="utf-8"
    )
    images = _figures(results, board, panels or {}, out_dir) if figures else {}
    (out_dir / "leaderboard.md").write_text(
        _markdown(results, board, images, meta), encoding="utf-8"
    )
    (out_dir / "leaderboard.html").write_text(render_html(document, images), encoding="utf-8")
    return board


def _figures(
    results: pd.DataFrame, board: pd.DataFrame, panels: Mapping[str, Any], out_dir: Path
) -> dict[str, str]:
    """Save each figure as ``out_dir/<name>.png``; return ``{name: base64 PNG}``."""
    from dattr_eval.evaluation import figures

    drawn = {
        "runtime_vs_rank": figures.runtime_figure(board),
        "heatmap": figures.heatmap_figure(results, list(board.index)),
        "metric_agreement": figures.agreement_figure(results),
        "memory": figures.memory_figure(results),
        **{f"topk_{bench}": fig for bench, fig in panels.items()},
    }
    images = {}
    for name, fig in drawn.items():
        if fig is None:
            continue
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        (out_dir / f"{name}.png").write_bytes(buffer.getvalue())
        images[name] = base64.b64encode(buffer.getvalue()).decode("ascii")
    return images


_NOTES = (
    "Ranks: 1 = best among the methods on each benchmark × metric (ties averaged); avg rank over "
    "the ranked (non-sanity) metrics, with its 95 % bootstrap interval in brackets where the "
    "results carry draws. Reference rows (role `reference`) show the rank they would take among "
    "the methods and never shift the methods' ranks. `score ± h`: h = half-width of the 95 % CI. "
    "Sanity checks: score and `passed` (✓/✗), not ranked. Runtime = fit + explain + "
    "self-influence seconds summed over benchmarks. Peak RSS + = the largest resident set size "
    "during the cell minus the RSS at its start, maximum over benchmarks. '–' = failed, skipped "
    "or not applicable. leaderboard.html shows the same with rank intervals, significance marks "
    "and metric cards."
)


_SNR_NOTES = (
    "SNR = standard deviation over the methods of their mean score / mean within-method standard "
    "deviation over the benchmark's replicate seeds (reference rows left out). `flagged`: SNR "
    "below 3, i.e. the replicate noise is a sizeable part of the differences between methods: "
    "do not read that column's ranking as a finding."
)
_CARD_NOTES = (
    "1-p: the model's 1 − p(label) on the training set (median, 5 % quantile); tiny values mean an "
    "over-confident model whose loss gradients vanish. flipped_fitted: share of flipped labels "
    "the model predicts; loss_auroc: detection of the flipped labels by training loss alone. "
    "shortcut_rate: share of marked other-class test images predicted as the shortcut class. "
    "flags: degenerate set-ups (see dattr_eval.benchmarks.card)."
)
_DIAGNOSTIC_NOTES = (
    "What the fitted explainers report about themselves (`diagnostics_`). DualView: C_ = the fitted "
    "SVM C; support_fraction = training points with a non-zero dual variable; bound_fraction = "
    "points at the box bound, whose self-influence is C ||phi||^2 and carries no label "
    "information (a warning is raised when most are); attribution_error_bound = certified "
    "relative error of the surrogate weights, bounding every attribution row sum's error."
)
_META_NOTES = (
    "MetaQuantus' protocol (Hedström et al., TMLR 2023) per benchmark × metric, over the method "
    "explainers: noise resilience = mean(IAC_NR, IEC_NR) under weight noise on the model (scores "
    "should not move), adversarial reactivity = mean(IAC_AR, IEC_AR) under shuffled attribution "
    "columns, a randomised model and equal-norm noise (scores should drop); IAC = Wilcoxon "
    "p-value (NR) or 1 − p (AR) of the per-unit scores (changes within 1 % of their standard "
    "deviation count as none), IEC_NR = chance-corrected agreement of the per-unit explainer "
    "rankings, IEC_AR = share of units whose score dropped; ar_* = reactivity "
    "to each disruption. All in [0, 1], 1 ideal; flagged: either criterion below 0.5 "
    "(dattr_eval.meta.scores)."
)
_LOCALISATION_NOTES = (
    "Quantus localisation metrics of LRP heatmaps on the shortcut mark (an exact segmentation), for "
    "test points predicted as the shortcut class with another true label: `test` = the pair "
    "heatmap of the test image with each top-k proponent, `train` = the pair heatmap of a marked "
    "proponent, `decision` = plain LRP of the decision. `chance` = the mark's share of the image "
    "(the expected score of a random heatmap); ± = half-width of the 95 % bootstrap CI over "
    "heatmaps."
)


def _markdown(
    results: pd.DataFrame,
    board: pd.DataFrame,
    images: Mapping[str, str],
    meta: pd.DataFrame | None = None,
) -> str:
    context, problems, xda = context_table(results), problems_table(results), xda_table(results)
    localisation = localisation_table(results)
    md = ["# Leaderboard", "", to_markdown(board), "", _NOTES, ""]
    snr = snr_table(results)
    if not snr.empty:
        snr = snr.reset_index(level="metric")
        snr["flagged"] = snr["flagged"].map({True: "⚠ SNR < 3", False: ""})
        md += ["## Signal-to-noise over replicates", "", to_markdown(snr), "", _SNR_NOTES, ""]
    if not context.empty:
        md += ["## Benchmarks", "", to_markdown(context), ""]
    cards = cards_table(results)
    if not cards.empty:
        md += ["## Benchmark cards", "", to_markdown(cards), "", _CARD_NOTES, ""]
    diagnostics = diagnostics_table(results)
    if not diagnostics.empty:
        diagnostics = diagnostics.reset_index(level="explainer")
        md += ["## Explainer diagnostics", "", to_markdown(diagnostics), "", _DIAGNOSTIC_NOTES, ""]
    summary = meta_summary(meta) if meta is not None else pd.DataFrame()
    if not summary.empty:
        cost = ", ".join(f"{b} × {m:.1f}" for b, m in cost_multiples(meta).items())
        md += ["## Meta-evaluation", "", to_markdown(summary), "", _META_NOTES, ""]
        md += [f"Cost of the meta run relative to the unperturbed run: {cost}.", ""]
    if not xda.empty:
        md += ["## Feature-level (XDA) scores", "", to_markdown(xda), ""]
    if not localisation.empty:
        md += [
            "## Shortcut localisation",
            "",
            to_markdown(localisation),
            "",
            _LOCALISATION_NOTES,
            "",
        ]
    if not problems.empty:
        md += ["## Failed or skipped", "", to_markdown(problems.set_index("benchmark")), ""]
    md += [f"![{name}]({name}.png)" for name in images]
    return "\n".join(md) + "\n"
