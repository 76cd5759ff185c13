"""Which metrics can be trusted on digits: MetaQuantus' meta-evaluation of every digits benchmark ×
metric, the metric-agreement matrix, and the localisation of XDA heatmaps on the shortcut mark.

One ``dattr_eval.meta_evaluate`` run over the five digits benchmarks (their own metrics, default
test subsets) with a ``LocalisationHook``; optionally (``--replicates R``) a plain evaluation with R
replicate seeds for the signal-to-noise ratio of each metric (the leaderboard's SNR), so the two
views of reliability can be compared side by side.

Writes ``benchmarks/results/meta_evaluation.md`` (date, machine, load, the exact command, the
measured cost multiple of the meta run) and keeps the raw results in ``--out``.
Run: ``.venv/bin/python benchmarks/meta_evaluation.py --draws 2 --replicates 3``
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

from dattr_eval.evaluation import evaluate, read_results
from dattr_eval.evaluation.leaderboard import (
    format_value,
    localisation_table,
    normalise_results,
    snr_table,
    to_markdown,
)
from dattr_eval.evaluation.meta_table import FLAG_TEXT, meta_summary
from dattr_eval.evaluation.xda_localisation import LocalisationHook, LocalisationSettings
from dattr_eval.meta import meta_evaluate, metric_agreement

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = [
    "digits-class",
    "digits-subclass",
    "digits-mislabel",
    "digits-shortcut",
    "digits-fidelity",
]
#: influence is left out: its cells took > 6 min each at load 15 on 2 cores (a refit per draw)
EXPLAINERS = "dualview,representer,trak,tracin,grad_dot,grad_cos,feature_similarity,random"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def markdown_table(frame: pd.DataFrame, index_name: str) -> str:
    frame = frame.copy()
    frame.index.name = index_name
    return to_markdown(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS))
    parser.add_argument("--explainers", default=EXPLAINERS)
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--replicates", type=int, default=0, help="also run R seeds for the SNR")
    parser.add_argument("--localisation-n-test", type=int, default=16)
    parser.add_argument("--out", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "meta_eval"))
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results/meta_evaluation.md"))
    args = parser.parse_args()
    command = "python benchmarks/meta_evaluation.py " + shlex.join(sys.argv[1:])
    explainers, benchmarks = args.explainers.split(","), args.benchmarks.split(",")
    started, load_before = datetime.datetime.now(), load()

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = meta_evaluate(
            benchmarks,
            explainers,
            out_dir=Path(args.out) / "meta",
            n_draws=args.draws,
            hooks=[LocalisationHook(LocalisationSettings(n_test=args.localisation_n_test))],
            progress=False,
        )
    meta_seconds = time.perf_counter() - t0
    load_after_meta = load()
    results = normalise_results(read_results(Path(args.out) / "meta"))

    snr = pd.DataFrame()
    if args.replicates > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            replicated = evaluate(
                benchmarks,
                explainers,
                out_dir=Path(args.out) / "replicates",
                replicates=args.replicates,
                progress=False,
            )
        snr = snr_table(normalise_results(replicated))

    summary = meta_summary(table)
    scored = table[table["status"] == "ok"].set_index(["benchmark", "metric"])
    total_base, total_meta = table.groupby("benchmark")[["base_s", "meta_s"]].first().sum()
    lines = [
        "# Meta-evaluation of the digits metrics (MetaQuantus) and shortcut localisation",
        "",
        f"- date: {started:%Y-%m-%d %H:%M}; machine: {machine()}",
        (
            f"- load (1/5/15 min) at start: {load_before}; after the meta run: {load_after_meta}; "
            f"at the end: {load()} (the machine is shared by several agents)"
        ),
        f"- command: `{command}`",
        (
            f"- explainers: {', '.join(explainers)} (`random` is a reference: run unperturbed only, "
            "not scored); each benchmark's own metrics and test subset"
        ),
        (
            f"- perturbations: weight noise σ = 0.001 (minor, {args.draws} draws, refit); shuffled "
            f"columns, equal-norm noise (disruptive, post hoc, {args.draws} draws each); randomised "
            f"model (disruptive, refit, {args.draws} draws)"
        ),
        (
            f"- meta run: {meta_seconds / 60:.1f} min wall clock; cells: {total_base / 60:.1f} min "
            f"unperturbed + {total_meta / 60:.1f} min perturbed = **cost multiple "
            f"{(total_base + total_meta) / total_base:.1f}×** an unperturbed run of the same grid"
        ),
        "",
        "## Meta table",
        "",
        markdown_table(summary, "benchmark/metric"),
        "",
        "Cost multiple per benchmark: "
        + ", ".join(
            f"{b} {format_value(m)}×"
            for b, m in table.groupby("benchmark", sort=False)["cost_multiple"].first().items()
        )
        + ". Share of test predictions unchanged by the weight noise: "
        + ", ".join(
            f"{b} {format_value(v)}"
            for b, v in table.groupby("benchmark", sort=False)["prediction_agreement"]
            .first()
            .items()
        )
        + ".",
        "",
    ]
    if not snr.empty:
        joined = scored[["noise_resilience", "adversarial_reactivity", "flagged"]].join(
            snr[["snr", "flagged"]].rename(columns={"flagged": "snr_flagged"}), how="left"
        )
        for column in ("flagged", "snr_flagged"):
            joined[column] = [FLAG_TEXT[bool(v)] if pd.notna(v) else "–" for v in joined[column]]
        joined.index = [f"{b}/{m}" for b, m in joined.index]
        lines += [
            f"## Meta-evaluation vs. signal-to-noise ratio ({args.replicates} replicate seeds)",
            "",
            markdown_table(joined, "benchmark/metric"),
            "",
        ]
    tau = metric_agreement(results)
    if not tau.empty:
        lines += [
            "## Metric agreement (Kendall's tau of the method rankings)",
            "",
            markdown_table(tau, ""),
        ]
        lines += [""]
    loc = localisation_table(results)
    if not loc.empty:
        lines += [
            "## Shortcut localisation (digits-shortcut)",
            "",
            markdown_table(loc, "benchmark / explainer"),
            "",
        ]
    lines += ["## Notes", "", "(written by hand after the run)", ""]
    Path(args.results).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
