"""How fit time, explain time and peak memory of every built-in explainer grow with n_train on
Fashion-MNIST, and what they would be at 1M training points.

Run from the repository root (run by hand; writes the "Scaling" section of
``benchmarks/results/fmnist_leaderboard.md``)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fmnist_scaling.py [--sizes 10000,60000] \\
        [--cases dualview,trak_last_layer] [--cache-dir DIR]

Setup: the fmnist-class benchmark model (BasicConv, the fmnist recipe in
``dattr_eval.benchmarks.builtin``, trained into ``--cache-dir`` if absent); the training set is the
first ``n_train`` of the 60,000 training images; ``--n-test`` (default 1,000) of the benchmark's
test points are explained for the model's predictions in batches of 64, as the evaluator does.
Each (case, n_train) runs in its own subprocess with one torch thread: a warm-up fit on 64
samples (compiled kernels, lazily imported code and thread pools are then loaded, as in a long
run), then ``fit``, then ``explain`` of the test points, then ``self_influence``, each under
``MemorySampler`` (5 ms RSS sampling) after glibc's ``malloc_trim`` returned freed heap to the
OS, so each phase's RSS increase counts its own allocations. Checkpoints (TracIn, TRAK) are the
benchmark model's (the fmnist recipe saves one, the final model).

Projection to 1M: per case and quantity, through the two measured sizes, ``t = a + b n``
(linear) when the log-log slope between them is below 1.5, else ``t = a + c n^2`` (quadratic);
memory is always linear. The slope from two sizes on a shared machine is rough: the "model"
column says which form was used.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from _child import run_child  # benchmarks/ is on sys.path when this script runs
from fmnist_leaderboard import EXPLAINERS

RESULTS = Path(__file__).parent / "results" / "fmnist_leaderboard.md"
HEADING = "## Scaling"
PROJECT_TO = 1_000_000
BATCH = 64
#: case label -> (registry name, hyperparameters): the leaderboard's grid (``fmnist_leaderboard``;
#: last-layer settings labelled ``<name>_last_layer``), then the other built-in explainers, so that
#: every built-in explainer is measured at least once
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    **{
        f"{label}_last_layer" if params.get("params") == "last_layer" else label: (name, params)
        for label, (name, params) in EXPLAINERS.items()
    },
    "grad_dot_projected": ("grad_dot", {"projection_dim": 128}),
    "trak": ("trak", {}),
    "tracin_projected": ("tracin", {"projection_dim": 128}),
    "influence": ("influence", {}),
    "influence_ekfac": ("influence", {"solver": "ekfac", "params": None}),
}


# ---------------------------------------------------------------- child: one run
def release_free_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``); no-op elsewhere."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def child(case: str, n_train: int, n_test: int, cache_dir: str) -> dict[str, Any]:
    """Warm-up, then fit / explain / self_influence once; seconds and RSS increase of each."""
    import torch
    from torch.utils.data import Subset

    torch.set_num_threads(1)
    from dattr_eval import benchmarks, explainers
    from dattr_eval.evaluation.profiling import MemorySampler
    from dattr_eval.evaluation.providers import attach_training_run
    from dattr_eval.explainers import NotApplicableError
    from dattr_eval.explainers.memory import estimate_explainer_memory

    bench = benchmarks.create("fmnist-class").build(cache_dir=cache_dir)
    train = Subset(bench.train_dataset, range(min(n_train, bench.n_train)))
    x, targets = bench.test_inputs[:n_test], bench.truth.test_targets[:n_test]
    name, params = CASES[case]

    def make():
        return attach_training_run(explainers.create(name, **params), bench.checkpoints)

    warm = make().fit(bench.model, Subset(bench.train_dataset, range(64)))
    try:
        warm.explain(x[:2], targets[:2])
    except NotApplicableError:
        pass
    del warm
    xpl = make()
    out: dict[str, Any] = {
        "estimate_mb": (estimate_explainer_memory(xpl, bench.model, train, n_test, BATCH) or 0)
        / 2**20
    }
    release_free_memory()
    with MemorySampler() as memory:
        start = time.perf_counter()
        xpl.fit(bench.model, train)
        out["fit_s"] = time.perf_counter() - start
    out["fit_mb"] = memory.rss_increase_mb
    release_free_memory()
    with MemorySampler() as memory:
        start = time.perf_counter()
        try:
            for lo in range(0, n_test, BATCH):
                xpl.explain(x[lo : lo + BATCH], targets[lo : lo + BATCH])
            out["explain_s"] = (time.perf_counter() - start) * 1000 / n_test
        except NotApplicableError:
            out["explain_s"] = None
    out["explain_mb"] = memory.rss_increase_mb
    release_free_memory()
    start = time.perf_counter()
    try:
        xpl.self_influence()
        out["self_influence_s"] = time.perf_counter() - start
    except NotApplicableError:
        out["self_influence_s"] = None
    out["peak_mb"] = memory.peak_rss_mb
    return out


# ---------------------------------------------------------------- projection
def log_slope(n: list[int], t: list[float]) -> float | None:
    """The log-log slope between the first and last point (``None`` when not positive)."""
    if len(n) < 2 or min(t) <= 0:
        return None
    return math.log(t[-1] / t[0]) / math.log(n[-1] / n[0])


def project(n: list[int], t: list[float], quadratic_allowed: bool = True) -> tuple[float, str]:
    """``(value at PROJECT_TO, model)`` through the first and last point: linear ``a + b n``, or
    quadratic ``a + c n^2`` when the log-log slope is 1.5 or more (and allowed)."""
    slope = log_slope(n, t)
    power = 2 if quadratic_allowed and slope is not None and slope >= 1.5 else 1
    n0, n1 = n[0] ** power, n[-1] ** power
    rate = (t[-1] - t[0]) / (n1 - n0)
    value = t[-1] + rate * (PROJECT_TO**power - n1)
    return max(value, t[-1]), "quadratic" if power == 2 else "linear"


# ---------------------------------------------------------------- parent
def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def section(runs: dict[str, dict[int, dict]], sizes: list[int], header: list[str]) -> list[str]:
    """The Markdown "Scaling" section: one row per case."""
    cols = []
    for n in sizes:
        k = f"{n // 1000}k"
        cols += [f"fit s {k}", f"explain s/1k test {k}", f"fit MiB {k}", f"explain MiB {k}"]
    lines = [
        HEADING,
        "",
        *header,
        "",
        "| case | settings | "
        + " | ".join(cols)
        + " | fit 1M (model) | explain s/1k test 1M (model) | memory MiB 1M (linear) |",
        "|---|---|" + "---:|" * (len(cols) + 3),
    ]
    for case, by_n in runs.items():
        name, params = CASES[case]
        settings = name + (
            " (" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")" if params else ""
        )
        cells, ok = [], [n for n in sizes if by_n.get(n, {}).get("status") == "ok"]
        for n in sizes:
            r = by_n.get(n, {})
            if r.get("status") != "ok":
                cells += [r.get("status", "not run")] + ["–"] * 3
                continue
            cells += [fmt(r["fit_s"]), fmt(r["explain_s"]), fmt(r["fit_mb"]), fmt(r["explain_mb"])]
        proj = ["–", "–", "–"]
        if len(ok) >= 2:
            first, last = by_n[ok[0]], by_n[ok[-1]]
            fit, fit_model = project(ok, [first["fit_s"], last["fit_s"]])
            proj[0] = f"{fmt(fit)} s ({fit_model})"
            if first["explain_s"] is not None:
                exp, exp_model = project(ok, [first["explain_s"], last["explain_s"]])
                proj[1] = f"{fmt(exp)} ({exp_model})"
            mem = max(first["fit_mb"], 0.0), max(last["fit_mb"], 0.0)
            proj[2] = fmt(project(ok, list(mem), quadratic_allowed=False)[0])
        lines.append(f"| {case} | {settings} | " + " | ".join(cells + proj) + " |")
    return lines + [""]


def replace_section(path: Path, lines: list[str]) -> None:
    """Write ``lines`` as the ``HEADING`` section of ``path`` (replacing it, or appended)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    before, found, after = text.partition(HEADING + "\n")
    rest = ""
    if found:
        nxt = after.find("\n## ")
        rest = after[nxt + 1 :] if nxt >= 0 else ""
    body = before.rstrip("\n") + ("\n\n" if before.strip() else "") + "\n".join(lines)
    path.write_text(body + ("\n" + rest if rest else ""), encoding="utf-8")


def keep_section(path: Path) -> list[str]:
    """The current ``HEADING`` section of ``path`` as lines (empty when absent)."""
    if not path.exists():
        return []
    _, found, after = path.read_text(encoding="utf-8").partition(HEADING + "\n")
    if not found:
        return []
    nxt = after.find("\n## ")
    return [HEADING, *(after[:nxt] if nxt >= 0 else after).rstrip("\n").split("\n"), ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--cases", default=",".join(CASES), help=f"from {list(CASES)}")
    parser.add_argument("--sizes", default="10000,60000")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--cache-dir", default=None, help="model cache (default: the library's)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per run")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    if args.child:
        case, n, n_test, cache_dir = args.child.split(",")
        print(json.dumps(child(case, int(n), int(n_test), cache_dir)))
        return
    from dattr_eval.models.cache import default_cache_dir

    cache_dir = args.cache_dir or str(default_cache_dir())
    sizes = [int(s) for s in args.sizes.split(",")]
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        sys.exit(f"unknown cases {unknown}; known: {list(CASES)}")
    loads, runs, started = [os.getloadavg()[0]], {}, time.perf_counter()
    for case in cases:
        runs[case] = {}
        for n in sizes:
            cmd = [sys.executable, __file__, "--child", f"{case},{n},{args.n_test},{cache_dir}"]
            runs[case][n] = run_child(cmd, args.timeout)
            loads.append(os.getloadavg()[0])
            print(case, n, json.dumps(runs[case][n]), flush=True)
    import torch

    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "OMP_NUM_THREADS=1 python " + " ".join(sys.argv)
    header = [
        (
            f"Date: {now}. Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared), one "
            f"torch thread per run, torch {torch.__version__}. 1-minute load average between runs "
            f"{min(loads):.1f} to {max(loads):.1f} (compare rows as ratios; absolute seconds drift "
            f"with the load). Total {time.perf_counter() - started:.0f} s."
        ),
        f"Command: `{command}`.",
        "",
        (__doc__ or "").split("Setup: ", 1)[1].strip(),
        "",
        (
            "Columns: fit seconds; explain seconds per 1,000 test points; RSS increase (MiB) of the "
            "fit phase and of the explain phase; projections to 1M training points."
        ),
    ]
    replace_section(Path(args.output), section(runs, sizes, header))
    print(f"wrote the {HEADING!r} section of {args.output}")


if __name__ == "__main__":
    main()
