"""Meta-evaluation: which metrics can be trusted (MetaQuantus' protocol for data attribution).

- :func:`meta_evaluate` / :class:`MetaExecutor` / :func:`meta_table` (``runner.py``): run a grid
  unperturbed and under minor and disruptive perturbations, write ``meta.csv``;
- the perturbations (``perturbations.py``): weight noise (minor); shuffled attribution columns,
  a randomised model, equal-norm noise (disruptive);
- the scores (``scores.py``): intra- and inter-consistency, noise resilience, adversarial
  reactivity, meta-consistency;
- :func:`metric_agreement` (``evaluation/agreement.py``, re-exported here): Kendall's tau between
  the explainer rankings of every two metrics;
- ``meta.csv`` on disk (``evaluation/meta_table.py``, re-exported here: the report reads it
  without importing the runner).

Imported on first use (PEP 562): ``import dattr_eval.meta`` loads no submodule.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "meta_evaluate": "dattr_eval.meta.runner",
    "meta_table": "dattr_eval.meta.runner",
    "MetaExecutor": "dattr_eval.meta.runner",
    "MetaSettings": "dattr_eval.meta.runner",
    "META_COLUMNS": "dattr_eval.meta.runner",
    "PERTURBATIONS": "dattr_eval.meta.perturbations",
    "PerturbedExplainer": "dattr_eval.meta.perturbations",
    "perturb_weights": "dattr_eval.meta.perturbations",
    "MetaScores": "dattr_eval.meta.scores",
    "meta_scores": "dattr_eval.meta.scores",
    "unit_qualities": "dattr_eval.meta.scores",
    "metric_agreement": "dattr_eval.evaluation.agreement",
    "META_FILE": "dattr_eval.evaluation.meta_table",
    "read_meta": "dattr_eval.evaluation.meta_table",
    "meta_summary": "dattr_eval.evaluation.meta_table",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dattr_eval.meta' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "META_COLUMNS",
    "META_FILE",
    "PERTURBATIONS",
    "MetaExecutor",
    "MetaScores",
    "MetaSettings",
    "PerturbedExplainer",
    "meta_evaluate",
    "meta_scores",
    "meta_summary",
    "meta_table",
    "metric_agreement",
    "perturb_weights",
    "read_meta",
    "unit_qualities",
]
