"""Fit and explain time and peak memory of every registered explainer, beside the peer implementations.

Run from the repository root in a venv with the ``peers`` extra (``.ci/peers`` makes one,
``.venv-peers``); peers are included where importable, through their registered adapters
(``captum.tracin``, ``traker.trak``, ``captum.arnoldi``, ``kronfluence.ekfac``)::

    .venv-peers/bin/python benchmarks/explainers_speed.py

Setup: scikit-learn digits, 1,000 training images and 200 test images, the small CNN of
``benchmarks/digits_cnn.py`` (18,346 parameters) trained by SGD with 3 checkpoints; the 200 test
points are explained (one ``explain`` call) for the final model's predictions. Each run (one
explainer with one setting, or one peer) executes in its own subprocess, one after the other, so
its peak memory is its own: peak resident set size during fit + explain minus the RSS before fit
(``dattr_eval.evaluation.profiling.MemorySampler``, sampled every 5 ms) in the first of up to
``--repeats`` runs; seconds are the fastest wall clock (``PhaseTimer``) over those runs (repeats stop
once 60 s are spent). A run past ``--timeout`` seconds is reported as such. The machine is shared with
other jobs, so compare rows of the same run (the ratio column), not absolute seconds across runs;
the load average before and after the runs is recorded. The attributions of our EK-FAC and
kronfluence's are kept, and their Pearson correlation is reported.
Writes ``benchmarks/results/explainers_speed.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from dattr_eval import explainers
from dattr_eval.evaluation.grid import builtin_explainers
from dattr_eval.evaluation.profiling import MemorySampler, PhaseTimer

sys.path.insert(0, str(Path(__file__).parent))
from _child import interpreter, run_child
from digits_cnn import accuracy, digits, digits_cnn, machine_line, train_with_checkpoints

N_TRAIN, N_TEST, TRAK_DIM = 1000, 200, 512
#: kronfluence's default ``damping_factor`` (ScoreArguments), used by our EK-FAC run too
KRONFLUENCE_DAMPING = 1e-8
RESULTS = Path(__file__).parent / "results" / "explainers_speed.md"

#: settings of our explainers beyond their defaults: run id -> (registry name, hyperparameters);
#: "<checkpoints>" / "<learning_rates>" are filled with the saved checkpoints
OURS: dict[str, tuple[str, dict]] = {
    # the default (memory_budget 128 MiB): the training gradients (3 x 1000 x 18,346 floats,
    # 210 MiB) are recomputed per explain call, as Captum's TracInCP does
    "tracin": ("tracin", {"checkpoints": "<checkpoints>", "learning_rates": "<learning_rates>"}),
    # the same scores with the training gradients stored (faster repeated explain calls)
    "tracin stored": (
        "tracin",
        {
            "checkpoints": "<checkpoints>",
            "learning_rates": "<learning_rates>",
            "memory_budget": 2**30,
        },
    ),
    "trak": ("trak", {"projection_dim": TRAK_DIM}),
    "influence exact (last layer)": ("influence", {"solver": "exact", "params": "last_layer"}),
    # CG and LiSSA shortened from their defaults (100 iterations, depth 1000), which need far more
    # than the timeout on this CNN with 200 test points
    "influence cg": ("influence", {"solver": "cg", "cg_max_iter": 30}),
    "influence lissa": ("influence", {"solver": "lissa", "lissa_depth": 200}),
    "influence arnoldi": ("influence", {"solver": "arnoldi"}),
    "influence kfac": ("influence", {"solver": "kfac", "damping": KRONFLUENCE_DAMPING}),
    "influence ekfac": ("influence", {"solver": "ekfac", "damping": KRONFLUENCE_DAMPING}),
}
#: runs whose attributions are saved, and the pairs whose Pearson correlation is reported
KEEP_SCORES = {"influence ekfac": "kronfluence EK-FAC"}
#: peer run id -> (registered adapter, hyperparameters, the runs of ours it is compared with,
#: description); "<checkpoints>" / "<learning_rates>" / "<final>" filled as for ours
PEERS: dict[str, tuple[str, dict, tuple[str, ...], str]] = {
    "Captum TracInCP": (
        "captum.tracin",
        {"checkpoints": "<checkpoints>", "learning_rates": "<learning_rates>"},
        ("tracin", "tracin stored"),
        "3 checkpoints, per-sample gradients by loop",
    ),
    "traker": (
        "traker.trak",
        {"projection_dim": TRAK_DIM},
        ("trak",),
        f"BasicProjector (CPU), k={TRAK_DIM}, float32",
    ),
    "Captum ArnoldiInfluenceFunction": (
        "captum.arnoldi",
        {"projection_dim": 20, "arnoldi_dim": 100, "hessian_reg": 1e-3},
        ("influence arnoldi",),
        (
            "arnoldi_dim 100, projection_dim 20, hessian_reg 1e-3 (= ours: 100 iterations, top 20, "
            "damping 1e-3)"
        ),
    ),
    "kronfluence EK-FAC": (
        "kronfluence.ekfac",
        {"damping": KRONFLUENCE_DAMPING},
        ("influence ekfac",),
        "EK-FAC factors from sampled labels, damping_factor 1e-8 (= ours), pairwise scores",
    ),
}
PEER_MODULES = {
    "Captum TracInCP": "captum",
    "traker": "trak",
    "Captum ArnoldiInfluenceFunction": "captum",
    "kronfluence EK-FAC": "kronfluence",
}


def our_runs() -> dict[str, tuple[str, dict]]:
    """Every built-in explainer with attributions at its defaults, with ``OURS``'s settings where given.

    Peer adapters run as peers; ``loss`` has no ``explain`` (a reference row).
    """
    runs: dict[str, tuple[str, dict]] = {}
    for name in builtin_explainers():
        if name == "loss":
            continue
        variants = {k: v for k, v in OURS.items() if v[0] == name}
        runs.update(variants or {name: (name, {})})
    return runs


# ---------------------------------------------------------------- child: one run
def run_once(run: str, setup: dict, timer: PhaseTimer) -> torch.Tensor:
    """Fit and explain once, timing the two phases with ``timer``; the ``(n_test, n_train)`` scores."""
    model = digits_cnn()
    model.load_state_dict(setup["state"])
    model.eval()
    train, x_test, targets = setup["train"], setup["x_test"], setup["targets"]
    name, hyper = PEERS[run][:2] if run in PEERS else our_runs()[run]
    fill = {"<checkpoints>": setup["checkpoints"], "<learning_rates>": setup["lrs"]}
    hyper = {k: fill.get(v, v) if isinstance(v, str) else v for k, v in hyper.items()}
    xpl = explainers.create(name, **hyper)
    with timer("fit"):
        xpl.fit(model, TensorDataset(*train))
    with timer("explain"):
        return xpl.explain(x_test, targets)


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def scores_path(setup_path: str | Path, run: str) -> Path:
    return Path(setup_path).parent / f"scores_{run.replace(' ', '_')}.pt"


def child(run: str, setup_path: str, repeats: int) -> None:
    """Up to ``repeats`` runs (fewer once 60 s are spent): the fastest fit and explain, the first run's memory."""
    setup = torch.load(setup_path, weights_only=False)
    cpu_before = process_cpu_seconds()
    with MemorySampler() as memory:
        first = PhaseTimer()
        scores = run_once(run, setup, first)
    cpu = process_cpu_seconds() - cpu_before
    if run in KEEP_SCORES or run in KEEP_SCORES.values():
        torch.save(scores.detach().float(), scores_path(setup_path, run))
    fits, explains = [first.seconds["fit"]], [first.seconds["explain"]]
    spent = fits[0] + explains[0]
    while len(fits) < repeats and spent < 60:
        timer = PhaseTimer()
        run_once(run, setup, timer)
        fits.append(timer.seconds["fit"])
        explains.append(timer.seconds["explain"])
        spent += fits[-1] + explains[-1]
    print(
        json.dumps(
            {
                "fit": min(fits),
                "explain": min(explains),
                "rss": memory.rss_increase_mb,
                "cpu": cpu,
                "n": len(fits),
            }
        )
    )


# ---------------------------------------------------------------- parent
def run_one(run: str, setup_path: Path, timeout: float, repeats: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        run,
        "--setup",
        str(setup_path),
        "--repeats",
        str(repeats),
    ]
    return run_child(cmd, timeout)


def fmt(result: dict, key: str, digits: int = 2) -> str:
    return f"{result[key]:.{digits}f}" if result.get("status") == "ok" else "—"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per run")
    parser.add_argument("--only", help="comma-separated run ids (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per explainer (fastest kept)")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.setup, args.repeats)
        return

    start_all = time.perf_counter()
    load_before = os.getloadavg()
    ours = our_runs()
    peers = {}
    for peer, module in PEER_MODULES.items():
        try:
            __import__(module)
            peers[peer] = PEERS[peer]
        except ImportError:
            pass
    runs = [*ours, *peers]
    if args.only:
        runs = [r for r in runs if r in set(args.only.split(","))]
    # the expensive influence solvers last, so a timeout there costs the rest nothing
    runs.sort(key=lambda r: r in ("influence cg", "influence lissa"))

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        train, test = digits(N_TRAIN, N_TEST)
        model, paths, lrs = train_with_checkpoints(train, tmp)
        targets = model(test[0]).argmax(1)
        setup_path = Path(tmp) / "setup.pt"
        torch.save(
            {
                "state": model.state_dict(),
                "train": train,
                "x_test": test[0],
                "targets": targets,
                "checkpoints": [str(p) for p in paths],
                "lrs": lrs,
            },
            setup_path,
        )
        for run in runs:
            results[run] = run_one(run, setup_path, args.timeout, args.repeats)
            print(run, results[run], flush=True)
        agreement = {}
        for ours_run, peer in KEEP_SCORES.items():
            paths = [scores_path(setup_path, r) for r in (ours_run, peer)]
            if all(p.exists() for p in paths):
                a, b = (torch.load(p, weights_only=True).double().numpy().ravel() for p in paths)
                agreement[(ours_run, peer)] = float(np.corrcoef(a, b)[0, 1])
    load_after = os.getloadavg()

    lines = [
        "# Explainer speed and memory on digits (1,000 train x 200 test, small CNN)",
        "",
        f"- date: {machine_line()}",
        (
            f"- command: `{interpreter()} benchmarks/explainers_speed.py"
            f"{' --only ' + args.only if args.only else ''}` "
            f"({time.perf_counter() - start_all:.0f} s in all, timeout {args.timeout:.0f} s per run)"
        ),
        (
            "- load average (1, 5, 15 min) before: "
            + ", ".join(f"{x:.2f}" for x in load_before)
            + "; after: "
            + ", ".join(f"{x:.2f}" for x in load_after)
        ),
        (
            f"- setup: digits CNN (18,346 parameters), plain SGD, test accuracy "
            f"{accuracy(model, test):.3f}; 3 checkpoints (epochs 4, 8, 12, lr 0.1) for TracIn; the "
            "200 test points explained in one `explain` call for the model's predictions. Each run in "
            "its own subprocess, sequentially; seconds = the fastest of `runs` repetitions; memory = "
            "peak RSS during the first fit + explain minus RSS before (MiB, sampled every 5 ms); "
            "CPU s = user + system CPU seconds of that first fit + explain (all threads). Other "
            "jobs share the 2 cores: compare rows of this run, not across runs; under a heavy "
            "load the CPU seconds compare methods better than wall-clock seconds."
        ),
        "",
        "## Ours",
        "",
        "| explainer | settings | fit s | explain s | total s | CPU s | peak memory MiB | runs | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run, (name, hyper) in ours.items():
        if run not in results:
            continue
        r = results[run]
        total = f"{r['fit'] + r['explain']:.2f}" if r["status"] == "ok" else "—"
        settings = ", ".join(f"{k}={v}" for k, v in hyper.items() if not str(v).startswith("<"))
        if name == "tracin":
            settings = "3 checkpoints, exact gradients" + (f", {settings}" if settings else "")
        lines.append(
            f"| `{name}` | {settings or 'defaults'} | {fmt(r, 'fit')} | {fmt(r, 'explain')} | "
            f"{total} | {fmt(r, 'cpu', 1)} | {fmt(r, 'rss', 0)} | {r.get('n', '—')} | {r['status']} |"
        )
    lines += [
        "",
        "## Side by side with the peers",
        "",
        (
            "Memory ratio = our peak memory / the peer's (<= 1.0x: ours needs no more); time "
            "ratios = the peer's total wall-clock (CPU) seconds / ours (> 1: ours is faster)."
        ),
        "",
        "| peer | settings | total s | CPU s | memory MiB | ours | ours total s | ours CPU s | ours memory MiB | peer / ours time | peer / ours CPU | ours / peer memory |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for peer, (_, _, mine_runs, desc) in peers.items():
        for mine in mine_runs:
            if peer not in results or mine not in results:
                continue
            p, o = results[peer], results[mine]
            ok = p["status"] == "ok" and o["status"] == "ok"
            p_total = p["fit"] + p["explain"] if p["status"] == "ok" else float("nan")
            o_total = o["fit"] + o["explain"] if o["status"] == "ok" else float("nan")
            failed = p["status"] if p["status"] != "ok" else o["status"]
            time_ratio = f"{p_total / o_total:.1f}x" if ok else failed
            memory_ratio = f"{o['rss'] / p['rss']:.2f}x" if ok else failed
            cpu_ratio = f"{p['cpu'] / o['cpu']:.1f}x" if ok else failed
            lines.append(
                f"| {peer} | {desc} | {p_total:.2f} | {fmt(p, 'cpu', 1)} | {fmt(p, 'rss', 0)} | "
                f"`{mine}` | {o_total:.2f} | {fmt(o, 'cpu', 1)} | {fmt(o, 'rss', 0)} | "
                f"{time_ratio} | {cpu_ratio} | {memory_ratio} |"
            )
    lines += [
        "",
        (
            "CG and LiSSA solve for all test gradients of an `explain` call at once: each "
            "iteration is one streamed pass over the training set whose Hessian-vector products "
            "are vectorised (`vmap`) over the 200 right-hand sides, so the number of passes is "
            "that of one solve, but the compute of each pass grows with the number of test "
            "points. At damping 1e-3 this SGD-trained CNN's `H + damping I` is indefinite (it "
            "is not at a minimum): CG meets negative curvature and does not converge in 30 "
            "iterations, so its row measures time only. K-FAC / EK-FAC approximate the Fisher "
            "(Gauss-Newton) matrix instead, which is positive semi-definite by construction."
        ),
        "",
    ]
    for (ours_run, peer), r in agreement.items():
        lines.append(
            f"Agreement: Pearson correlation of all {N_TEST} x {N_TRAIN} scores of `{ours_run}` "
            f"and {peer} = {r:.4f} (each samples its own Fisher labels from the model; with true "
            "labels both give the same scores, `tests/test_kfac.py::test_ekfac_matches_kronfluence`)."
        )
    lines.append("")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
