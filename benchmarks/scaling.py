"""How fit time, explain time and peak memory grow with n_train, in-process and on a Ray cluster.

Run from the repository root (writes ``benchmarks/results/scaling.md``)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scaling.py \\
        --methods dualview,grad_dot --sizes 10000,100000,1000000 --grad-sizes 10000,100000,1000000

One torch thread per process: on a shared 2-core machine two OpenMP threads per process collapse
under load (a 256x64 @ 64x64 product took 5 ms with 2 threads vs 0.03 ms with 1 at load ~8).

Setup (seeded, synthetic): inputs ``x (n, 64)`` = a class centre (10 classes, centres N(0, I))
plus N(0, 1.5^2) noise, labels uniform; the model is ``Linear(64, 64) - ReLU - Linear(64, 10)``
trained with Adam for 300 steps of 256 samples (the same weights for every size). DualView fits on
its 64-d penultimate features with its defaults (C = 1e-3, tol = 1e-3); ``grad_dot`` takes the
logit gradients of all 4,810 parameters projected to 128 dimensions (seeded Gaussian projection).
``--n-test`` test inputs (default 1,000) are explained by ``explain_topk(k=10)`` (streamed over
training chunks of 16,384 columns in test batches of 256), for the model's predictions.

Each (method, n_train, backend) runs in its own subprocess, one after the other, so its memory is
its own: peak resident set size (``dattr_eval.evaluation.profiling.MemorySampler``, 5 ms sampling)
minus the RSS just before the phase (freed heap returned to the OS first with glibc's
``malloc_trim``), for fit and for explain separately. Under Ray only the
driver process is sampled (the workers' and the object store's memory are not in the figure).
Backends: ``local`` = this process with torch's default threads (``OMP_NUM_THREADS``); ``ray`` =
``ray.init(num_cpus=2)`` local cluster, training-set passes as 2 tasks of 1 CPU each (workers
warmed up before timing by one task per worker that imports the explainers and calls
``torch.func`` once, as in a long-lived cluster; ``ray.init`` not timed). The explain phase is the same
code under both (test batches run in the driver). Slopes: least-squares fit of
``log(seconds) = slope * log(n_train) + c`` over the sizes run (1 = linear growth), and the slope
between the two largest sizes (where fixed costs matter least).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _child import run_child  # benchmarks/ is on sys.path when this script runs
from torch import nn
from torch.utils.data import TensorDataset

RESULTS = Path(__file__).parent / "results" / "scaling.md"
DIM, HIDDEN, N_CLASSES, K, CHUNK, BATCH = 64, 64, 10, 10, 16384, 256
METHODS = {
    "dualview": {},
    "grad_dot": {"projection_dim": 128, "batch_size": 256},
}


# ---------------------------------------------------------------- data and model
def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x (n, DIM)`` float32 = centre of its class + N(0, 1.5^2) noise, labels ``(n,)`` uniform."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(N_CLASSES, DIM, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, N_CLASSES, (n,), generator=gen)
    return centres[y] + 1.5 * torch.randn(n, DIM, generator=gen), y


def trained_model() -> nn.Module:
    """The MLP, trained with Adam (seeded; 300 steps of 256 samples)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, N_CLASSES))
    x, y = synthetic(300 * 256, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for i in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(
            model(x[i * 256 : (i + 1) * 256]), y[i * 256 : (i + 1) * 256]
        ).backward()
        opt.step()
    return model.eval()


# ---------------------------------------------------------------- child: one run
def release_free_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``), so a phase's RSS increase counts
    its own allocations rather than reusing what the previous phase freed; no-op elsewhere."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def warm_up(shard: TensorDataset) -> int:
    """A first Ray task per worker: imports the explainers and calls torch.func once (the first
    per-sample-gradient call in a fresh process took about 7 s here, later ones 0.25 s)."""
    from dattr_eval.explainers.gradients import per_sample_gradients

    per_sample_gradients(nn.Linear(2, 2), (torch.zeros(1, 2), torch.zeros(1, dtype=torch.long)))
    return len(shard)


def child(method: str, n_train: int, backend: str, n_test: int) -> dict:
    """Fit and ``explain_topk`` once; seconds and RSS increase of each phase."""
    from dattr_eval import explainers
    from dattr_eval.evaluation.profiling import MemorySampler
    from dattr_eval.parallel import map_shards, use_backend

    model = trained_model()
    train = TensorDataset(*synthetic(n_train, seed=2))
    x_test, _ = synthetic(n_test, seed=3)
    options = {}
    if backend == "ray":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        options = {"n_shards": 2, "num_cpus": 1}
        with use_backend("ray", **options):  # start the workers (and their imports) before timing
            map_shards(warm_up, TensorDataset(torch.zeros(2)))
    xpl = explainers.create(method, **METHODS[method])
    with use_backend(backend, **options):
        release_free_memory()
        with MemorySampler() as fit_mem:
            t0 = time.perf_counter()
            xpl.fit(model, train)
            fit_s = time.perf_counter() - t0
        release_free_memory()
        with MemorySampler() as explain_mem:
            t0 = time.perf_counter()
            top = xpl.explain_topk(x_test, K, chunk_size=CHUNK, batch_size=BATCH)
            explain_s = time.perf_counter() - t0
    assert top.indices.shape == (n_test, K)
    out = {
        "fit_s": fit_s,
        "explain_s_per_1000": explain_s * 1000 / n_test,
        "fit_mb": fit_mem.rss_increase_mb,
        "explain_mb": explain_mem.rss_increase_mb,
    }
    if method == "dualview":
        out["support"] = int(xpl.support_.numel())
        out["solver_s"] = xpl.fit_seconds_
        out["feature_s"] = xpl.feature_seconds_
        out["gap"] = float(xpl.duality_gap_)
    return out


def topk_bound_mb(n_test: int, n_train: int, d: int) -> float:
    """The stated bound on ``explain_topk``'s extra memory (MiB), see the results file."""
    per_batch = BATCH * CHUNK * 28 + n_train * 9 + BATCH * d * 4
    return (n_test * K * 12 * 2 + per_batch) / 2**20


# ---------------------------------------------------------------- parent
def run_one(method: str, n: int, backend: str, n_test: int, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", f"{method},{n},{backend},{n_test}"]
    t0 = time.perf_counter()
    result = run_child(cmd, timeout)
    if result["status"] == "ok":
        result["wall_s"] = time.perf_counter() - t0
    return result


def slope(points: list[tuple[int, float]]) -> str:
    """Least-squares slope of log(seconds) on log(n_train), or '—' with fewer than 2 points."""
    if len(points) < 2:
        return "—"
    n, s = np.log([p[0] for p in points]), np.log([p[1] for p in points])
    return f"{np.polyfit(n, s, 1)[0]:.2f}"


def slopes(points: list[tuple[int, float]]) -> str:
    """``all-sizes slope (two largest: slope)``."""
    last = f" ({slope(points[-2:])})" if len(points) > 2 else ""
    return slope(points) + last


def fmt(value: float, digits: int = 2) -> str:
    return (
        "—"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.{digits}f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--methods", default="dualview,grad_dot", help=f"from {list(METHODS)}")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="n_train of DualView")
    parser.add_argument("--grad-sizes", default="10000,100000", help="n_train of gradient methods")
    parser.add_argument("--backends", default="local,ray")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument(
        "--memory-tests",
        default="1000,4000",
        help="n_test values for the explain_topk memory check at the largest DualView size",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    if args.child:
        method, n, backend, n_test = args.child.split(",")
        print(json.dumps(child(method, int(n), backend, int(n_test))))
        return

    from digits_cnn import machine_line  # benchmarks/ helper for the header line

    start = time.perf_counter()
    loads = [os.getloadavg()[0]]
    rows = []
    for method in args.methods.split(","):
        sizes = args.sizes if method == "dualview" else args.grad_sizes
        for n in [int(s) for s in sizes.split(",") if s]:
            for backend in args.backends.split(","):
                result = run_one(method, n, backend, args.n_test, args.timeout)
                print(method, n, backend, result, flush=True)
                rows.append((method, n, backend, result))
                loads.append(os.getloadavg()[0])
    memory_rows = []
    dv_sizes = [int(s) for s in args.sizes.split(",") if s]
    if "dualview" in args.methods.split(",") and dv_sizes:
        n = max(dv_sizes)
        for n_test in [int(s) for s in args.memory_tests.split(",") if s]:
            if n_test == args.n_test and "local" in args.backends.split(","):
                result = next(
                    r for m, s, b, r in rows if m == "dualview" and s == n and b == "local"
                )
            else:
                result = run_one("dualview", n, "local", n_test, args.timeout)
                print("memory", n, n_test, result, flush=True)
                loads.append(os.getloadavg()[0])
            memory_rows.append((n, n_test, result))
    write_results(args, rows, memory_rows, loads, time.perf_counter() - start, machine_line())


def solver_line() -> str:
    """The commit of the DualView solver measured (and whether the file has uncommitted changes)."""
    path = "dattr_eval/explainers/svm.py"
    log = subprocess.run(
        ["git", "log", "-1", "--format=%h (%ad) %s", "--date=format:%Y-%m-%d %H:%M", "--", path],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "--", path], check=False).returncode != 0
    return f"`{path}` at commit {log or 'unknown'}{' plus uncommitted changes' if dirty else ''}"


def write_results(args, rows, memory_rows, loads, total_s, machine) -> None:
    command = (
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} .venv/bin/python "
        f"benchmarks/scaling.py --methods {args.methods} --sizes {args.sizes} --grad-sizes "
        f"{args.grad_sizes} --backends {args.backends} --n-test {args.n_test} "
        f"--memory-tests {args.memory_tests}"
    )
    lines = [
        "# Scaling with n_train: DualView and grad_dot, local vs Ray",
        "",
        (
            f"Date / machine: {machine}. 1-minute load average between runs: {min(loads):.1f} to "
            f"{max(loads):.1f} (the machine is shared with other jobs: compare rows of this run, as "
            "ratios, not absolute seconds across runs)."
        ),
        "",
        f"DualView solver measured: {solver_line()}.",
        "",
        f"Command: `{command}` (total {total_s:.0f} s).",
        "",
        (__doc__ or "")[(__doc__ or "").index("Setup (seeded") :].strip(),
        "",
        "## Time and memory per n_train",
        "",
        (
            "Sharded pass = the training-set pass that Ray splits into tasks: DualView's feature "
            "extraction (`feature_seconds_`; the rest of its fit is the solver, in the driver under "
            "both backends), grad_dot's whole fit (per-sample gradients)."
        ),
        "",
        (
            "| method | n_train | backend | fit s | sharded pass s | Ray / local: fit | Ray / local: "
            "sharded pass | explain s / 1,000 tests | fit RSS +MiB | explain RSS +MiB | notes |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    local = {(m, n): r for m, n, b, r in rows if b == "local" and r["status"] == "ok"}
    for method, n, backend, r in rows:
        if r["status"] != "ok":
            lines.append(f"| {method} | {n:,} | {backend} | {r['status']} |" + " |" * 7)
            continue
        r["pass_s"] = r.get("feature_s", r["fit_s"])
        ratios = ["", ""]
        if backend != "local" and (method, n) in local:
            base = local[(method, n)]
            ratios = [f"{r[key] / base[key]:.2f}" for key in ("fit_s", "pass_s")]
        notes = ""
        if method == "dualview":
            rest = r["fit_s"] - r["feature_s"] - r["solver_s"]
            notes = (
                f"solver {r['solver_s']:.1f} s, rest {rest:.1f} s, gap {r['gap']:.1e}, "
                f"support {r['support']:,} ({r['support'] / n:.0%})"
            )
        lines.append(
            f"| {method} | {n:,} | {backend} | {fmt(r['fit_s'])} | {fmt(r['pass_s'])} | "
            f"{ratios[0]} | {ratios[1]} | {fmt(r['explain_s_per_1000'], 3)} | "
            f"{fmt(r['fit_mb'], 0)} | {fmt(r['explain_mb'], 0)} | {notes} |"
        )
    lines += [
        "",
        "## Growth with n_train (slope of log seconds on log n_train)",
        "",
        "Least-squares slope over all sizes, in parentheses between the two largest.",
        "",
        "| method | backend | sizes | fit slope | explain slope |",
        "|---|---|---|---|---|",
    ]
    for method in dict.fromkeys(m for m, *_ in rows):
        for backend in dict.fromkeys(b for _, _, b, _ in rows):
            ok = [
                (n, r)
                for m, n, b, r in rows
                if m == method and b == backend and r["status"] == "ok"
            ]
            if ok:
                lines.append(
                    f"| {method} | {backend} | {', '.join(f'{n:,}' for n, _ in ok)} | "
                    f"{slopes([(n, r['fit_s']) for n, r in ok])} | "
                    f"{slopes([(n, r['explain_s_per_1000']) for n, r in ok])} |"
                )
    if memory_rows:
        lines += [
            "",
            "## explain_topk memory at the largest n_train: bounded, not growing with n_test",
            "",
            (
                f"Bound on the extra memory of `explain_topk` (bytes), with test batch b = {BATCH}, "
                f"chunk c = {CHUNK} columns, k = {K}, feature dimension d = {HIDDEN}:"
            ),
            "",
            "```",
            "  24 * n_test * k            (the TopK result, float32 values + int64 indices, and its concatenation)",
            "+ 28 * b * c                 (one chunk: its float32 scores, finiteness and selection masks;",
            "                              on rows tied at the k-th value a copy, two masks and an int64",
            "                              running count: about 21 bytes an entry, rounded up)",
            "+ 9 * n_train                (DualView: mask and indices of the zero columns outside the support)",
            "+ 4 * b * d                  (the test batch's features)",
            "```",
            "",
            (
                "The only n_test term is the result itself (24 bytes x k per test input): "
                f"{24 * K * 1000 / 2**20:.2f} MiB per 1,000 tests at k = {K}. The dense path instead needs "
                f"4 * b * n_train bytes per batch ({4 * BATCH * 1_000_000 / 2**20:.0f} MiB at n_train = 1,000,000)."
            ),
            "",
            "| n_train | n_test | explain RSS +MiB (measured) | bound MiB | explain s |",
            "|---|---|---|---|---|",
        ]
        for n, n_test, r in memory_rows:
            if r["status"] != "ok":
                lines.append(f"| {n:,} | {n_test:,} | {r['status']} | | |")
                continue
            lines.append(
                f"| {n:,} | {n_test:,} | {fmt(r['explain_mb'], 1)} | {topk_bound_mb(n_test, n, HIDDEN):.1f} | "
                f"{r['explain_s_per_1000'] * n_test / 1000:.2f} |"
            )
    Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
