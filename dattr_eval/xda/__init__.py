"""Feature-level explanations: DualView × LRP heatmaps for (test, train) pairs, scored with Quantus.

- :func:`explain_pair` / :func:`explain_pairs` / :func:`explain_topk`: pair heatmaps (``pairs.py``)
- :func:`decision_heatmaps`, :func:`feature_relevance_heatmaps`, composites (``lrp.py``)
- :func:`plot_xda`, :func:`save_xda_figures` (``plotting.py``)
- :func:`score_xda`, :func:`xda_explain_func`, :class:`PairScoreModel` (``scoring.py``; Quantus is
  imported on first use)
"""

from __future__ import annotations

from dattr_eval.xda.lrp import (
    COMPOSITES,
    decision_heatmaps,
    feature_relevance_heatmaps,
    make_composite,
)
from dattr_eval.xda.pairs import (
    PairHeatmaps,
    XDAResult,
    dual_coefficients,
    explain_pair,
    explain_pairs,
    explain_topk,
)
from dattr_eval.xda.plotting import plot_xda, save_xda_figures
from dattr_eval.xda.scoring import PairScoreModel, score_xda, xda_explain_func

__all__ = [
    "COMPOSITES",
    "PairHeatmaps",
    "PairScoreModel",
    "XDAResult",
    "decision_heatmaps",
    "dual_coefficients",
    "explain_pair",
    "explain_pairs",
    "explain_topk",
    "feature_relevance_heatmaps",
    "make_composite",
    "plot_xda",
    "save_xda_figures",
    "score_xda",
    "xda_explain_func",
]
