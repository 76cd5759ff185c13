"""The "implementations" leaderboard: each native explainer beside the peer implementation of the same method.

Runs ``dattr_eval.evaluate`` on digits benchmarks with pairs (ours, peer) sharing their
hyperparameters, and writes ``benchmarks/results/implementations.md`` (scores, fit / explain
seconds, peak memory). Needs the ``peers`` extra (captum, traker, kronfluence, dualxda):
``.ci/peers`` makes ``.venv-peers`` with it::

    .venv-peers/bin/python benchmarks/implementations.py

Timings: one process, cells run one after another on shared cores; compare rows of one run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import dattr_eval
import dattr_eval.benchmarks
from dattr_eval import explainers as E
from dattr_eval.evaluation import read_results

RESULTS = Path(__file__).parent / "results" / "implementations.md"

ARNOLDI = {"projection_dim": 20, "arnoldi_dim": 60}
#: (method, native label, native explainer, peer label, peer explainer)
PAIRS = [
    (
        "TracInCP (3 checkpoints)",
        "tracin",
        E.create("tracin"),
        "captum.tracin",
        E.create("captum.tracin"),
    ),
    (
        "TracInCP, last-layer weight",
        "tracin[classifier.weight]",
        E.create("tracin", params=["classifier.weight"]),
        "captum.tracin_fast",
        E.create("captum.tracin_fast"),
    ),
    (
        "influence, Arnoldi top-20 of 60",
        "influence[arnoldi]",
        E.create("influence", solver="arnoldi", damping=1e-3, arnoldi_top_k=20, arnoldi_iter=60),
        "captum.arnoldi",
        E.create("captum.arnoldi", hessian_reg=1e-3, **ARNOLDI),
    ),
    (
        "influence, EK-FAC vs our Arnoldi",
        "influence[arnoldi]",
        None,
        "kronfluence.ekfac",
        E.create("kronfluence.ekfac", damping=1e-3),
    ),
    (
        "TRAK k=512 (3 checkpoints as ensemble)",
        "trak",
        E.create("trak", projection_dim=512),
        "traker.trak",
        E.create("traker.trak", projection_dim=512),
    ),
    (
        "DualView C=1e-3, intercept",
        "dualview[intercept]",
        E.create("dualview", C=1e-3, fit_intercept=True),
        "dualxda.dualview",
        E.create("dualxda.dualview", C=1e-3),
    ),
]
BENCHMARKS = ("digits-class", "digits-mislabel")
N_TEST = 64  # one test batch: Captum and kronfluence recompute every training gradient per batch
METRICS = ("identical_class", "mislabel_detection")


def run(out_dir: Path) -> pd.DataFrame:
    explainers = {}
    for _, native_label, native, peer_label, peer in PAIRS[::-1]:  # the slowest (Captum) last
        if native is not None:
            explainers[native_label] = native
        explainers[peer_label] = peer
    return dattr_eval.evaluate(
        [dattr_eval.benchmarks.get(b)(n_test=N_TEST) for b in BENCHMARKS],
        explainers,
        metrics=list(METRICS),
        out_dir=out_dir,
        progress=False,
    )


def table(results: pd.DataFrame) -> str:
    """One row per (method, implementation, benchmark): the metric score and the cell's profile."""
    scores = results[(results["kind"] == "metric") & (results["status"] != "skipped")]
    profiles = results[results["kind"] == "profile"]
    lines = [
        (
            "| method | implementation | benchmark | metric | score | fit s | explain s / sample "
            "| self-influence s | RSS increase MB | status |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(value, fmt: str) -> str:
        return "" if pd.isna(value) else format(value, fmt)

    for method, native_label, _, peer_label, _ in PAIRS:
        for label in (native_label, peer_label):
            for _, r in scores[scores["explainer"] == label].iterrows():
                prof = profiles[
                    (profiles["explainer"] == label) & (profiles["benchmark"] == r["benchmark"])
                ]
                p = prof.iloc[-1] if len(prof) else pd.Series(dtype=object)
                lines.append(
                    f"| {method} | `{label}` | {r['benchmark']} | {r['metric']} | {f(r['score'], '.4f')} | "
                    f"{f(p.get('fit_s'), '.2f')} | {f(p.get('explain_s_per_sample'), '.4f')} | "
                    f"{f(p.get('self_influence_s'), '.2f')} | {f(p.get('rss_increase_mb'), '.0f')} | "
                    f"{r['status']} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out-dir", default=None, help="results directory (default: a temporary one)"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the table from OUT_DIR/results.csv as it stands (e.g. of an interrupted run)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    start = time.time()
    out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="implementations_"))
    results = read_results(out_dir) if args.report_only else run(out_dir)
    seconds = time.time() - start
    import captum  # versions for the header
    import dualxda
    import kronfluence
    import trak

    header = [
        "# Implementations: our explainers beside the peer implementations of the same method",
        "",
        (
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: "
            f"{os.cpu_count()} CPU cores ({platform.machine()}), GPU: none; torch {torch.__version__}; "
            f"captum {captum.__version__}, traker {getattr(trak, '__version__', '0.3.2')}, "
            f"kronfluence {getattr(kronfluence, '__version__', '?')}, dualxda {getattr(dualxda, '__version__', '0.1.0')}"
        ),
        "- command: `.venv-peers/bin/python benchmarks/implementations.py`"
        + (
            " (table written with `--report-only` from an interrupted run: missing rows did not finish)"
            if args.report_only
            else f" ({seconds:.0f} s in all)"
        ),
        (
            f"- benchmarks: {', '.join(BENCHMARKS)} (digits CNN of the benchmark registry, its 3 training "
            f"checkpoints given to tracin/trak and their peers), {N_TEST} test samples each; metrics: {', '.join(METRICS)}; "
            "evaluator `dattr_eval.evaluate`, test batches of 64."
        ),
        "- Other jobs share the cores: compare rows of this run, as ratios.",
        "",
    ]
    RESULTS.write_text("\n".join(header) + table(results) + "\n")
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
