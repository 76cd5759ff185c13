"""A seeded synthetic results table (schema v2) with paired bootstrap draws, for report pages."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from dattr_eval.evaluation.store import COLUMNS

EXPLAINERS = {  # name -> (role, quality in [0, 1], runtime seconds)
    "dualview": ("method", 0.80, 12.0),
    "representer": ("method", 0.72, 2.0),
    "trak": ("method", 0.70, 30.0),
    "tracin": ("method", 0.55, 8.0),
    "grad_dot": ("method", 0.54, 7.5),
    "grad_cos": ("method", 0.60, 7.8),
    "feature_similarity": ("method", 0.45, 0.5),
    "random": ("reference", 0.10, 0.01),
    "loss": ("reference", 0.30, 0.2),
}
BENCHMARKS = {  # name -> [(metric, category, higher_is_better)]
    "digits-class": [
        ("identical_class", "ground-truth", True),
        ("fidelity", "retraining", True),
        ("model_randomization", "sanity", False),
    ],
    "digits-mislabel": [
        ("mislabel_detection", "ground-truth", True),
        ("coreset_selection", "retraining", False),
        ("top_k_cardinality", "sanity", True),
    ],
}


def synthetic_results(seed: int = 0, n_units: int = 40, n_draws: int = 300):
    """``(results DataFrame, draws)``: per-unit scores around each explainer's quality, CIs and
    draws from a paired bootstrap of the units, three replicates, one card per benchmark."""
    rng = np.random.default_rng(seed)
    rows, draws = [], {}
    for bench, metrics in BENCHMARKS.items():
        for metric, category, hib in metrics:
            resample = rng.integers(0, n_units, size=(n_draws, n_units))  # shared: paired draws
            for name, (role, quality, _) in EXPLAINERS.items():
                mean = quality if hib else 1 - quality
                units = np.clip(rng.normal(mean, 0.25, n_units), -1, 2)
                boot = units[resample].mean(axis=1)
                draws[(bench, name, metric)] = boot
                score = float(units.mean())
                replicate = [score + float(e) for e in rng.normal(0, 0.03, 3)]
                rows.append(
                    {
                        "benchmark": bench,
                        "explainer": name,
                        "metric": metric,
                        "kind": "metric",
                        "status": "ok",
                        "score": score,
                        "ci_low": float(np.quantile(boot, 0.025)),
                        "ci_high": float(np.quantile(boot, 0.975)),
                        "ci_method": "percentile",
                        "score_std": float(units.std()),
                        "n_scored": n_units,
                        "unit": "test point",
                        "higher_is_better": hib,
                        "category": category,
                        "passed": (score < 0.5) == (not hib) if category == "sanity" else None,
                        "explainer_role": role,
                        "replicate_scores": json.dumps(replicate),
                        "noise_ceiling": 0.62 if metric == "fidelity" else None,
                        "explainer_params": "{}",
                    }
                )
        for name, (role, _, runtime) in EXPLAINERS.items():
            rows.append(
                {
                    "benchmark": bench,
                    "explainer": name,
                    "metric": "",
                    "kind": "profile",
                    "status": "ok",
                    "fit_s": runtime / 2,
                    "explain_s": runtime / 2,
                    "explain_s_per_sample": runtime / 100,
                    "rss_increase_mb": 20 + 10 * runtime,
                    "n_train": 1347,
                    "n_test": n_units,
                    "device": "cpu",
                    "explainer_role": role,
                }
            )
        card = {"test_accuracy": 0.97, "median_1_minus_p": 2e-4, "seeds": [0], "flags": []}
        rows.append({"benchmark": bench, "explainer": "", "metric": "", "kind": "card",
                     "status": "ok", "card": json.dumps(card)})  # fmt: skip
    rows[0].update(status="error", score=None, ci_low=None, ci_high=None, error="RuntimeError: x")
    return pd.DataFrame(rows), draws


def write_results(out_dir, results: pd.DataFrame) -> None:
    """``results`` as ``out_dir/results.csv`` with the store's columns first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = [*COLUMNS, *(c for c in results.columns if c not in COLUMNS)]
    results.reindex(columns=columns).to_csv(out_dir / "results.csv", index=False)
