"""The evaluator in-process beside the Ray backend: wall time of a grid and of one explain-heavy cell.

Run from the repository root (writes ``benchmarks/results/ray_grid.md``, or ``--results PATH``)::

    .venv/bin/python benchmarks/ray_grid.py

Two workloads, each run three ways one after the other in this process, into fresh output
directories, with the benchmark models already in the cache (the first run of the script trains
them):

- ``grid``: digits-class, digits-mislabel and digits-shortcut × 9 explainers (27 cells, each
  benchmark's own metrics; influence with Arnoldi on the last layer, as in ``make demo``);
- ``cell``: one explain-heavy cell, influence (CG, 10 iterations, all parameters) on the first
  48 test points of digits-class, scored by identical_class only, in test batches of 12 (4 batches).

Ways: ``local`` = the default executor, this process with torch's default threads; ``local-1t`` =
the same with ``torch.set_num_threads(1)`` (as each Ray worker runs); ``ray`` =
``executor=RayExecutor(num_cpus=1)`` on ``ray.init(num_cpus=2)`` (one cell per task of 1 CPU; each
worker process runs torch with 1 thread); ``ray+batches`` = the same with
``RayExecutor(num_cpus=1, parallel_batches=True)``. ``ray.init`` and
a warm-up that starts two worker processes (importing torch and dattr_eval) are timed apart;
batch tasks need further workers while their cells wait, started during the timed run. Each run's metric rows are compared with the local run's (scores, spreads,
statuses, errors) and must be identical.

Also measured: what the driver ships per benchmark — the pickled size of the built digits-class
benchmark, its build time from the model cache, and the time of ``ray.put`` plus one task that
receives it — the alternative being to build the benchmark in every cell's worker.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import pandas as pd
import ray
import torch

from dattr_eval import benchmarks, explainers
from dattr_eval.evaluation import evaluate
from dattr_eval.evaluation.ray_executor import RayExecutor
from dattr_eval.models.cache import default_cache_dir

sys.path.insert(0, str(Path(__file__).parent))
from digits_cnn import machine_line

RESULTS = Path(__file__).parent / "results" / "ray_grid.md"
ARNOLDI = ("influence", {"solver": "arnoldi", "arnoldi_iter": 30, "params": "last_layer"})
WORKLOADS = {
    "grid": {
        "benchmarks": ["digits-class", "digits-mislabel", "digits-shortcut"],
        "explainers": {
            **{
                n: (n, {})
                for n in (
                    "random",
                    "dualview",
                    "representer",
                    "feature_similarity",
                    "grad_dot",
                    "grad_cos",
                    "trak",
                    "tracin",
                )
            },
            "influence": ARNOLDI,
        },
        "kwargs": {},
    },
    "cell": {
        "benchmarks": ["digits-class[:48]"],
        "explainers": {"influence_cg": ("influence", {"solver": "cg", "cg_max_iter": 10})},
        "kwargs": {"metrics": ["identical_class"], "batch_size": 12},
    },
}
#: each way's keyword arguments to ``evaluate``
WAYS = {
    "local": {"executor": "local"},
    "local-1t": {"executor": "local"},  # torch.set_num_threads(1) for the run
    "ray": {"executor": RayExecutor(num_cpus=1)},
    "ray+batches": {"executor": RayExecutor(num_cpus=1, parallel_batches=True)},
}
COMPARED = ["benchmark", "explainer", "metric", "status", "score", "score_std", "n_scored", "error"]


def build(name: str) -> benchmarks.Benchmark:
    """A registered benchmark from the model cache; ``NAME[:n]`` keeps its first ``n`` test points."""
    name, _, stop = name.partition("[:")
    bench = benchmarks.load(name, cache_dir=default_cache_dir())
    if not stop:
        return bench
    n = int(stop.rstrip("]"))
    return replace(
        bench,
        name=f"{name}[:{n}]",
        test_inputs=bench.test_inputs[:n],
        truth=bench.truth.select(slice(0, n)),
    )


def run(workload: dict, way: dict, out_dir: Path) -> tuple[float, pd.DataFrame]:
    """Wall seconds of one evaluation and its sorted metric rows."""
    benches = [build(name) for name in workload["benchmarks"]]
    made = {
        label: explainers.create(name, **params)
        for label, (name, params) in workload["explainers"].items()
    }
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = evaluate(benches, made, out_dir=out_dir, progress=False, **workload["kwargs"], **way)
    seconds = time.perf_counter() - start
    rows = df[df.kind == "metric"][COMPARED].sort_values(["benchmark", "explainer", "metric"])
    return seconds, rows.reset_index(drop=True)


@ray.remote
def _warm_up() -> None:
    """Import the evaluator in a worker process (held a moment, so two tasks take two workers)."""
    import dattr_eval.evaluation.ray_executor  # noqa: F401

    time.sleep(0.5)


def shipping() -> dict[str, float]:
    """Build time of digits-class from the cache, its pickled size, ``ray.put`` + one receiving task."""
    start = time.perf_counter()
    bench = benchmarks.load("digits-class", cache_dir=default_cache_dir())
    build_s = time.perf_counter() - start
    size_mb = len(ray.cloudpickle.dumps(bench)) / 2**20
    receive = ray.remote(lambda b: b.n_train)
    ray.get(_warm_up.remote())  # a worker is running
    start = time.perf_counter()
    ray.get(receive.remote(ray.put(bench)))
    return {"build_s": build_s, "size_mb": size_mb, "put_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default="grid,cell", help="comma-separated: grid, cell")
    parser.add_argument(
        "--ways",
        default=",".join(WAYS),
        help=f"comma-separated, the first is the reference: {', '.join(WAYS)}",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="add this run to the results file instead of replacing it",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="the results file to write (default: benchmarks/results/ray_grid.md)",
    )
    args = parser.parse_args()
    load = os.getloadavg()
    for wname in args.workloads.split(","):  # train the models before timing
        for name in WORKLOADS[wname]["benchmarks"]:
            build(name)
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False)
    init_s = time.perf_counter() - start
    start = time.perf_counter()
    ray.get([_warm_up.remote() for _ in range(2)])
    warm_s = time.perf_counter() - start
    ship = shipping()
    ways = args.ways.split(",")
    table, identical = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for wname in args.workloads.split(","):
            seconds, reference = {}, None
            for way_name in ways:
                way = WAYS[way_name]
                threads = torch.get_num_threads()
                torch.set_num_threads(1 if way_name == "local-1t" else threads)
                seconds[way_name], rows = run(WORKLOADS[wname], way, Path(tmp) / wname / way_name)
                torch.set_num_threads(threads)
                print(f"{wname} {way_name}: {seconds[way_name]:.1f} s", flush=True)
                if reference is None:
                    reference = rows
                else:
                    differ = rows.compare(reference) if rows.shape == reference.shape else rows
                    explainers_differing = sorted(set(rows.loc[differ.index, "explainer"]))
                    identical.append((wname, way_name, len(differ), explainers_differing))
            table.append((wname, seconds))
    ray.shutdown()
    lines = [
        "" if args.append else "# The evaluator in-process and on Ray (local cluster of 2 CPUs)",
        "",
        f"## Run of {machine_line()[:20]}",
        "",
        f"- date: {machine_line()}",
        (
            f"- load average before the run (1/5/15 min): {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
            "(other jobs share the 2 cores: compare the ratios within a row)"
        ),
        f"- command: `.venv/bin/python benchmarks/ray_grid.py --workloads {args.workloads} --ways {args.ways}"
        + ("" if args.results == RESULTS else f" --results {args.results}")
        + (" --append`" if args.append else "`"),
        f"- `ray.init(num_cpus=2)`: {init_s:.1f} s; starting 2 workers: {warm_s:.1f} s (neither in the times below)",
        "- workloads, ways and what is timed: see the docstring of `benchmarks/ray_grid.py`",
        "",
        "| workload | "
        + " | ".join(f"{w} s" for w in ways)
        + " | "
        + " | ".join(f"{w} / {ways[0]}" for w in ways[1:])
        + " |",
        "|---" * (2 * len(ways)) + "|",
    ]
    for wname, s in table:
        lines.append(
            f"| {wname} | "
            + " | ".join(f"{s[w]:.1f}" for w in ways)
            + " | "
            + " | ".join(f"{s[w] / s[ways[0]]:.2f}" for w in ways[1:])
            + " |"
        )
    lines += [
        "",
        f"Metric rows (scores, spreads, statuses, errors) against the {ways[0]} run's: "
        + "; ".join(
            f"{w} {way}: " + ("identical" if not n else f"{n} rows differ ({', '.join(e)})")
            for w, way, n, e in identical
        ),
        "",
        (
            f"Shipping digits-class from the driver: pickled {ship['size_mb']:.1f} MiB; `ray.put` + one task "
            f"receiving it {ship['put_s']:.2f} s, against {ship['build_s']:.2f} s to build it from the model "
            "cache (the work each worker would repeat if it built the benchmark itself)."
        ),
        "",
    ]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a" if args.append else "w") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
