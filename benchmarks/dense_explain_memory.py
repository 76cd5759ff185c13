"""Peak memory of a dense ``explain`` relative to its output (issue: at most ~1.5x the output).

Run from the repository root (by hand; about a minute)::

    python benchmarks/dense_explain_memory.py [--n-test 1000 --n-train 100000]

Setup: a tiny MLP ``Linear(32, 64) - ReLU - Linear(64, 10)`` and ``n_train`` random training
inputs; each explainer is fitted, then ``explain`` of ``n_test`` random test inputs is measured in
its own subprocess: peak resident set size during ``explain`` minus the RSS before it
(``dattr_eval.evaluation.profiling.MemorySampler``, sampled every 5 ms), divided by the output's
``n_test * n_train * 4`` bytes. Two settings per explainer: the explainer's ``batch_size`` of 256
(``explain`` fills a preallocated output one test batch at a time) and ``batch_size = n_test``
(one batch: the explainer computes the whole output at once and it is returned as is; the rest
of the peak is then the explainer's own intermediates).
Rewrites the "Dense explain memory" section of ``benchmarks/results/reliability.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # this checkout's dattr_eval, then helpers

from report_sections import replace_section

RESULTS = ROOT / "benchmarks" / "results" / "reliability.md"
SECTION = "## Dense explain memory"
EXPLAINERS = {"feature_similarity": {"metric": "dot"}, "random": {}}


def child(name: str, batch_size: int, n_test: int, n_train: int) -> dict:
    """Fit ``name`` and measure one dense explain (runs in a fresh process)."""
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    import dattr_eval
    from dattr_eval import explainers
    from dattr_eval.evaluation.profiling import MemorySampler

    assert Path(dattr_eval.__file__).resolve().is_relative_to(ROOT), dattr_eval.__file__

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    train = TensorDataset(torch.randn(n_train, 32), torch.randint(0, 10, (n_train,)))
    params = dict(EXPLAINERS[name])
    xpl = explainers.create(name, **params).fit(model, train)
    xpl.batch_size = batch_size  # the test batch of explain (a common hyperparameter)
    x = torch.randn(n_test, 32)
    targets = torch.randint(0, 10, (n_test,))
    start = time.perf_counter()
    with MemorySampler() as memory:
        out = xpl.explain(x, targets)
    seconds = time.perf_counter() - start
    output_mb = out.numel() * out.element_size() / 2**20
    return {"increase_mb": memory.rss_increase_mb, "output_mb": output_mb, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--n-train", type=int, default=100_000)
    parser.add_argument("--child", nargs=2, metavar=("EXPLAINER", "BATCH_SIZE"))
    args = parser.parse_args()
    if args.child:
        result = child(args.child[0], int(args.child[1]), args.n_test, args.n_train)
        print(json.dumps(result))
        return
    load_before = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = []
    for name in EXPLAINERS:
        for batch_size in (256, args.n_test):
            command = [sys.executable, __file__, "--child", name, str(batch_size)]
            command += ["--n-test", str(args.n_test), "--n-train", str(args.n_train)]
            done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append((name, batch_size, result))
            print(name, batch_size, result, flush=True)
    lines = [
        SECTION,
        "",
        (
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; machine: "
            f"{os.cpu_count()} CPU cores ({platform.machine()}), 1 torch thread per run"
        ),
        (
            f"- command: `python benchmarks/dense_explain_memory.py --n-test {args.n_test} "
            f"--n-train {args.n_train}`"
        ),
        f"- load average (1, 5, 15 min) before: {load_before}; after: "
        + ", ".join(f"{v:.2f}" for v in os.getloadavg()),
        (
            "- peak RSS increase during one `explain` of an `(n_test, n_train)` float32 output, each "
            "run in its own process (MemorySampler, 5 ms); test batch 256: the output is filled "
            "batch by batch; test batch = n_test: one batch, its result returned as is (the "
            "remaining peak is the explainer's own intermediates)."
        ),
        "",
        "| explainer | test batch | output MiB | peak increase MiB | peak / output | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for name, batch_size, r in rows:
        ratio = r["increase_mb"] / r["output_mb"]
        lines.append(
            f"| `{name}` | {batch_size} | {r['output_mb']:.0f} | {r['increase_mb']:.0f} | "
            f"{ratio:.2f} | {r['seconds']:.2f} |"
        )
    replace_section(RESULTS, SECTION, "\n".join(lines) + "\n\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
