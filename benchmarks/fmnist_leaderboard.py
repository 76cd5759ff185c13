"""The Fashion-MNIST leaderboard at paper scale: five tasks, the fast explainers, one command.

Run from the repository root (``make leaderboard-fmnist`` runs this)::

    .venv/bin/python benchmarks/fmnist_leaderboard.py [--out results/fmnist] \\
        [--cache-dir DIR] [--workers 2] [--results benchmarks/results/fmnist_leaderboard.md]

What it runs: the five ``fmnist-*`` benchmarks (60,000 training images, BasicConv; 1,000 test
points each) x ``EXPLAINERS`` (below), with the benchmarks' own metrics, in ``--workers``
processes of one torch thread each (on a shared 2-core machine one process with two OpenMP
threads collapses when another job takes a core; two single-threaded processes do not). Phases:

1. models: the four benchmark models (class = fidelity, subclass, mislabel, shortcut) are trained
   into the model cache, the workers taking them in turn;
2. cells: each worker runs ``dattr_eval.evaluate`` on the same output directory with the
   benchmarks in its own order (the results store's claims split the grid cell by cell, so a
   worker never computes a cell the other holds; the retraining outputs are shared through the
   cache directory);
3. report: ``dattr_eval.report`` writes ``leaderboard.{md,html,json}`` into ``--out``;
4. the representer check on fmnist-mislabel (``representer_mislabel``), outside the wall time.

``--results`` gets the Markdown summary: the table with 95 % CIs, wall and CPU time, the machine
load, the profile (where the time goes), every cell's estimated and measured peak memory, the
benchmark cards and the representer section. A rerun resumes (finished cells are reused); use an
empty ``--out`` and ``--cache-dir`` to time a run from scratch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BENCHMARKS = (
    "fmnist-class",
    "fmnist-subclass",
    "fmnist-mislabel",
    "fmnist-shortcut",
    "fmnist-fidelity",
)
#: the benchmarks whose models are trained in phase 1 (fidelity uses the class model)
MODEL_BENCHMARKS = ("fmnist-class", "fmnist-mislabel", "fmnist-subclass", "fmnist-shortcut")
#: row label -> (registry name, hyperparameters): the fast explainers at paper scale
EXPLAINERS: dict[str, tuple[str, dict[str, Any]]] = {
    "random": ("random", {}),
    "loss": ("loss", {}),
    "dualview": ("dualview", {}),
    "dualview_dense": ("dualview_dense", {}),
    "dualview_sparse": ("dualview_sparse", {}),
    "representer": ("representer", {}),
    "feature_similarity": ("feature_similarity", {}),
    "grad_dot": ("grad_dot", {"params": "last_layer"}),
    "grad_cos": ("grad_cos", {"params": "last_layer"}),
    "trak": ("trak", {"params": "last_layer"}),
}
DEFAULT_OUT = Path("results/fmnist")
APT_HINT = "sudo apt-get install dataset-fashion-mnist"


# ---------------------------------------------------------------- workers (fresh processes)
def single_thread() -> None:
    """One torch (and OpenMP) thread in this process."""
    import torch

    torch.set_num_threads(1)


def train_models(names: Sequence[str], cache_dir: str) -> dict[str, float]:
    """Build ``names`` (training their models into the cache); seconds per benchmark."""
    single_thread()
    from dattr_eval import benchmarks

    seconds = {}
    for name in names:
        start = time.perf_counter()
        benchmarks.create(name).build(cache_dir=cache_dir)
        seconds[name] = time.perf_counter() - start
    return seconds


def evaluate_grid(names: Sequence[str], out: str, cache_dir: str) -> float:
    """``dattr_eval.evaluate`` of ``names`` x ``EXPLAINERS`` into ``out``; returns the seconds."""
    single_thread()
    import warnings

    import dattr_eval
    from dattr_eval import explainers

    warnings.simplefilter("ignore")  # the workers' warnings are in the results rows
    grid = {
        label: explainers.create(name, **params) for label, (name, params) in EXPLAINERS.items()
    }
    start = time.perf_counter()
    dattr_eval.evaluate(list(names), grid, out_dir=out, cache_dir=cache_dir, progress=False)
    return time.perf_counter() - start


def run_in_workers(fn, jobs: list[tuple], workers: int) -> list[Any]:
    """``fn(*job)`` for each job in a pool of ``workers`` fresh processes (spawned: no state shared)."""
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return pool.starmap(fn, jobs, chunksize=1)


def worker_orders(workers: int) -> list[tuple[str, ...]]:
    """Each worker's benchmark order: worker 0 starts with fidelity (the retraining), the others
    from the other end, so they meet late and split the last benchmarks' cells."""
    first = ("fmnist-fidelity", *BENCHMARKS[:-1])
    orders = [first]
    for w in range(1, workers):
        rest = list(reversed(BENCHMARKS[:-1]))
        shift = (w - 1) % len(rest)
        orders.append((*rest[shift:], *rest[:shift], "fmnist-fidelity"))
    return orders


# ---------------------------------------------------------------- driver
def load_average() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def check_data() -> None:
    """Exit with the install command when the Fashion-MNIST files are missing."""
    from dattr_eval.data import load_fashion_mnist

    try:
        load_fashion_mnist()
    except FileNotFoundError as exc:
        sys.exit(f"Fashion-MNIST is missing ({exc}).\nInstall it with: {APT_HINT}")


def run_leaderboard(out: Path, cache_dir: Path, workers: int) -> dict[str, Any]:
    """Phases 1-3; wall seconds per phase and the workers' CPU seconds."""
    import dattr_eval

    timing: dict[str, Any] = {"load_before": load_average()}
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    model_jobs = [(MODEL_BENCHMARKS[w::workers], str(cache_dir)) for w in range(workers)]
    per_model = run_in_workers(train_models, model_jobs, workers)
    timing["models_s"] = time.perf_counter() - start
    timing["model_build_s"] = {k: v for part in per_model for k, v in part.items()}
    cells_start = time.perf_counter()
    grid_jobs = [(order, str(out), str(cache_dir)) for order in worker_orders(workers)]
    timing["worker_s"] = run_in_workers(evaluate_grid, grid_jobs, workers)
    timing["cells_s"] = time.perf_counter() - cells_start
    report_start = time.perf_counter()
    dattr_eval.report(out)
    timing["report_s"] = time.perf_counter() - report_start
    timing["wall_s"] = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    timing["cpu_s"] = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    timing["load_after"] = load_average()
    return timing


# ---------------------------------------------------------------- representer on fmnist-mislabel
def representer_section(cache_dir: Path, figure: Path) -> list[str]:
    """Why representer's default self-influence scores far below chance on fmnist-mislabel.

    Refits ``representer`` (``fit_to="model"``, the default) and ``fit_to="labels"`` on the
    cached fmnist-mislabel model and splits the flipped samples into those the model fits
    (predicts the flipped label) and those it does not; for each group: where its
    self-influence falls among the clean samples', and the detection score of each variant.
    Writes a histogram figure to ``figure``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from dattr_eval import benchmarks, explainers
    from dattr_eval.benchmarks.card import train_logits
    from dattr_eval.metrics.mislabel_detection import normalised_detection_auc

    single_thread()
    bench = benchmarks.create("fmnist-mislabel").build(cache_dir=cache_dir)
    labels = bench.truth.train_labels
    flipped = torch.zeros(bench.n_train, dtype=torch.bool)
    flipped[bench.truth.mislabeled_indices] = True
    logits = train_logits(bench)
    fitted = logits.argmax(1) == labels  # the model predicts the (flipped) training label
    loss = -torch.log_softmax(logits, 1).gather(1, labels[:, None])[:, 0].double()
    groups = {
        "clean": ~flipped,
        "flipped, fitted by the model": flipped & fitted,
        "flipped, not fitted": flipped & ~fitted,
    }
    rows, percentiles = [], {}
    for fit_to in ("model", "labels"):
        start = time.perf_counter()
        si = explainers.create("representer", fit_to=fit_to).fit(bench.model, bench.train_dataset)
        si = si.self_influence().double()
        seconds = time.perf_counter() - start
        clean_sorted = torch.sort(si[~flipped]).values
        # percentile of each sample's self-influence among the clean samples' (0-100)
        pct = torch.searchsorted(clean_sorted, si).double() / clean_sorted.numel() * 100
        percentiles[fit_to] = pct
        units = torch.stack([si, flipped.double()], 1).numpy()
        score = normalised_detection_auc(units)
        cells = []
        for mask in groups.values():
            p = pct[mask]
            cells.append(
                f"{int(mask.sum())}: median percentile {p.median():.0f}, "
                f"{(p < 50).double().mean():.0%} below the clean median"
            )
        rows.append(
            f"| fit_to={fit_to!r} | {score:.3f} | " + " | ".join(cells[1:]) + f" | {seconds:.0f} |"
        )
    loss_score = normalised_detection_auc(torch.stack([loss, flipped.double()], 1).numpy())
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
    for ax, (fit_to, pct) in zip(axes, percentiles.items()):
        for name, mask in groups.items():
            ax.hist(
                pct[mask].numpy(),
                bins=40,
                range=(0, 100),
                histtype="step",
                density=True,
                label=name,
            )
        ax.set_title(f"representer fit_to={fit_to!r}")
        ax.set_xlabel("self-influence percentile among clean samples")
    axes[0].set_ylabel("density")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figure, dpi=110)
    plt.close(fig)
    n_flip, n_fit = int(flipped.sum()), int((flipped & fitted).sum())
    return [
        "## Representer on fmnist-mislabel",
        "",
        (
            f"The model fits {n_fit} of {n_flip} flipped labels ({n_fit / n_flip:.1%}; the benchmark card's "
            f"'flipped labels fitted'); training loss alone scores {loss_score:.3f}."
        ),
        "",
        "| variant | mislabel detection | flipped, fitted by the model | flipped, not fitted | fit s |",
        "|---|---:|---|---|---:|",
        *rows,
        "",
        f"![self-influence percentiles]({figure.name})",
        "",
    ]


# ---------------------------------------------------------------- the Markdown summary
def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"
    return str(value)


def score_tables(results: pd.DataFrame) -> list[str]:
    """Per benchmark: explainers x metrics, ``score [ci_low, ci_high]``."""
    metric_rows = results[results["kind"] == "metric"]
    lines: list[str] = []
    for bench in BENCHMARKS:
        rows = metric_rows[metric_rows["benchmark"] == bench]
        if rows.empty:
            continue
        metrics = list(dict.fromkeys(rows["metric"]))
        lines += [f"### {bench}", "", "| explainer | " + " | ".join(metrics) + " |"]
        lines.append("|---|" + "---:|" * len(metrics))
        for label in EXPLAINERS:
            cells = []
            for metric in metrics:
                row = rows[(rows["explainer"] == label) & (rows["metric"] == metric)]
                if row.empty:
                    cells.append("–")
                    continue
                r = row.iloc[-1]
                if r["status"] != "ok":
                    cells.append("n/a" if r["status"] == "not_applicable" else str(r["status"]))
                    continue
                cells.append(f"{fmt(r['score'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def profile_rows(results: pd.DataFrame) -> pd.DataFrame:
    prof = results[results["kind"] == "profile"].copy()
    prof["benchmark"] = pd.Categorical(prof["benchmark"], BENCHMARKS, ordered=True)
    prof["explainer"] = pd.Categorical(prof["explainer"], list(EXPLAINERS), ordered=True)
    return prof.sort_values(["benchmark", "explainer"])


PHASES = ("fit_s", "explain_s", "self_influence_s", "randomized_s", "metrics_s", "retrain_s")


def profile_tables(results: pd.DataFrame, timing: dict[str, Any]) -> list[str]:
    """Where the time goes (per phase, per benchmark) and every cell's profile row."""
    prof = profile_rows(results)
    sums = {p: float(prof[p].astype(float).fillna(0).sum()) for p in PHASES}
    models = sum(timing.get("model_build_s", {}).values())
    total = sum(sums.values()) + models
    lines = [
        "### Where the time goes (seconds of one worker thread, summed over cells)",
        "",
        "| phase | seconds | share |",
        "|---|---:|---:|",
        f"| model training (4 benchmark models, incl. data loading) | {models:.0f} | {models / total:.0%} |",
    ]
    names = {
        "fit_s": "explainer fit",
        "explain_s": "explain (1,000 test points per cell)",
        "self_influence_s": "self-influence",
        "randomized_s": "refit + explain on the randomised model (class task)",
        "metrics_s": "metrics (update + compute)",
        "retrain_s": "retraining (fidelity task)",
    }
    for phase in PHASES:
        lines.append(f"| {names[phase]} | {sums[phase]:.0f} | {sums[phase] / total:.0%} |")
    lines += [f"| total | {total:.0f} | 100% |", ""]
    lines += ["Per benchmark (cell seconds summed over explainers):", ""]
    lines += ["| benchmark | " + " | ".join(names[p] for p in PHASES) + " | cells |"]
    lines.append("|---|" + "---:|" * (len(PHASES) + 1))
    for bench, rows in prof.groupby("benchmark", observed=True):
        vals = [float(rows[p].astype(float).fillna(0).sum()) for p in PHASES]
        lines.append(
            f"| {bench} | " + " | ".join(f"{v:.0f}" for v in vals) + f" | {sum(vals):.0f} |"
        )
    lines += ["", "### Every cell: seconds and peak memory", ""]
    cols = (
        "fit_s",
        "explain_s",
        "self_influence_s",
        "randomized_s",
        "metrics_s",
        "retrain_s",
        "cell_s",
    )
    mem = ("memory_estimate_mb", "rss_increase_mb", "peak_rss_mb")
    lines.append(
        "| benchmark | explainer | fit | explain | self-infl. | randomised | metrics | retrain | "
        "cell | estimate MiB | RSS increase MiB | peak RSS MiB | status |"
    )
    lines.append("|---|---|" + "---:|" * (len(cols) + len(mem)) + "---|")
    for _, r in prof.iterrows():
        secs = " | ".join(fmt(float(r[c]), 3) if pd.notna(r[c]) else "–" for c in cols)
        mems = " | ".join(f"{float(r[c]):.0f}" if pd.notna(r[c]) else "–" for c in mem)
        lines.append(f"| {r['benchmark']} | {r['explainer']} | {secs} | {mems} | {r['status']} |")
    peak = prof["peak_rss_mb"].astype(float).max()
    lines += ["", f"Largest peak RSS of any cell: {peak:.0f} MiB (budget 6 GB = 5,722 MiB).", ""]
    return lines


def card_lines(results: pd.DataFrame) -> list[str]:
    """The benchmark cards as the report shows them (``leaderboard.cards_table``), in grid order."""
    from dattr_eval.evaluation.leaderboard import cards_table, normalise_results, to_markdown

    cards = cards_table(normalise_results(results))
    return [to_markdown(cards.reindex([b for b in BENCHMARKS if b in cards.index]))]


def write_summary(
    path: Path, out: Path, timing: dict[str, Any], command: str, extra: list[str]
) -> None:
    import torch

    from dattr_eval.benchmarks.builtin import FAMILIES
    from dattr_eval.evaluation.store import read_results

    results = read_results(out)
    family = next(f for f in FAMILIES if f.prefix == "fmnist")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    settings = ", ".join(
        f"{label}" + (f" ({', '.join(f'{k}={v!r}' for k, v in p.items())})" if p else "")
        for label, (_, p) in EXPLAINERS.items()
    )
    lines = [
        "# Fashion-MNIST leaderboard at paper scale",
        "",
        (
            f"Date: {now}. Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other "
            f"jobs), {timing['workers']} worker processes of 1 torch thread, GPU: none. torch "
            f"{torch.__version__}. Load average (1/5/15 min) {timing['load_before']} before, "
            f"{timing['load_after']} after."
        ),
        f"Command: `{command}` (empty output and cache directories: everything trained from scratch).",
        "",
        (
            f"**Wall time: {timing['wall_s']:.0f} s ({timing['wall_s'] / 60:.1f} min)**, of which model "
            f"training {timing['models_s']:.0f} s, cells {timing['cells_s']:.0f} s, report "
            f"{timing['report_s']:.0f} s. CPU time of the workers: {timing['cpu_s']:.0f} s "
            f"({timing['cpu_s'] / timing['wall_s']:.2f} cores busy on average)."
        ),
        "",
        (
            "Setup: 60,000 training images, 1,000 explained test points per benchmark; BasicConv recipe "
            f"{dict(family.recipe)}; retraining recipe {dict(family.retrain_recipe)} with "
            f"min_samples={family.retrain_min_samples}; fidelity metrics "
            f"{ {k: dict(v) for k, v in family.fidelity_params} }, lds n_subsets={family.lds_subsets}. "
            f"Explainers: {settings}."
        ),
        "",
        "## Leaderboard (score [95 % CI])",
        "",
        *score_tables(results),
        "## Benchmark cards",
        "",
        *card_lines(results),
        "",
        "## Profile",
        "",
        *profile_tables(results, timing),
        *extra,
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="results directory")
    parser.add_argument("--cache-dir", default=None, help="model cache (default: the library's)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (1 thread each)")
    parser.add_argument(
        "--results", default=None, help="Markdown summary (default OUT/fmnist_leaderboard.md)"
    )
    parser.add_argument("--skip-representer", action="store_true")
    args = parser.parse_args()
    from dattr_eval.models.cache import default_cache_dir

    check_data()
    out = Path(args.out)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    timing = run_leaderboard(out, cache_dir, args.workers)
    timing["workers"] = args.workers
    (out / "timing.json").write_text(json.dumps(timing, indent=1), encoding="utf-8")
    print(f"wall {timing['wall_s']:.0f} s, CPU {timing['cpu_s']:.0f} s", flush=True)
    results = Path(args.results) if args.results else out / "fmnist_leaderboard.md"
    extra: list[str] = []
    if not args.skip_representer:
        extra = representer_section(cache_dir, results.with_name("fmnist_representer.png"))
    command = " ".join(["python", *sys.argv])
    write_summary(results, out, timing, command, extra)
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
