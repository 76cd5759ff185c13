"""Score stability of the digits leaderboard: signal-to-noise per metric before and after the
trustworthy-scores protocols, the LDS noise ceiling, and the rank intervals.

Run by hand (minutes to an hour on 2 cores)::

    python benchmarks/score_stability.py --replicates 3 --before 9ddd642

- *before*: the evaluator of commit ``--before`` (the protocols of v0.1.0: LDS over 16 single-seed
  subsets, coreset/pruning by the raw descending order, ...) run in a temporary git worktree, once
  per benchmark seed ``0 .. R-1`` (the benchmark's seed rebuilds its perturbation, model, test subset
  and LDS subsets);
- *after*: this checkout, ``evaluate(..., replicates=R)``.

Per digits benchmark × metric: SNR = spread of the methods' mean scores over the replicates / mean
within-method replicate spread (``statistics.signal_to_noise``; reference rows left out), flagged
below ``statistics.SNR_THRESHOLD``. Writes ``benchmarks/results/score_stability.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = (
    "digits-class",
    "digits-subclass",
    "digits-mislabel",
    "digits-shortcut",
    "digits-fidelity",
)
#: the v0.1.0 leaderboard's explainers and its influence settings (its defaults were too slow)
BEFORE_EXPLAINERS = (
    "{'random': 'random', 'dualview': 'dualview', 'representer': 'representer', "
    "'tracin': 'tracin', 'trak': 'trak', 'grad_dot': 'grad_dot', 'grad_cos': 'grad_cos', "
    "'feature_similarity': 'feature_similarity', 'influence': explainers.create('influence', "
    "solver='arnoldi', arnoldi_iter=30, params='last_layer')}"
)
REFERENCES = {"random", "loss"}


def run_before(commit: str, replicates: int, work: Path) -> pd.DataFrame:
    """Scores of the old evaluator, one row per (seed, benchmark, explainer, metric)."""
    tree = work / "before"
    # a rerun with the same --work resumes: the old evaluator reuses each seed's finished cells
    subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=ROOT, check=True)
    try:
        frames = []
        for seed in range(replicates):
            out = work / f"before-{seed}"
            code = (
                "import torch; torch.set_num_threads(1)\n"
                "from dattr_eval import benchmarks, explainers\n"
                "from dattr_eval.evaluation import evaluate\n"
                f"specs = [benchmarks.create(n, seed={seed}) for n in {list(BENCHMARKS)!r}]\n"
                f"evaluate(specs, {BEFORE_EXPLAINERS}, out_dir={str(out)!r}, "
                f"cache_dir={str(work / 'before-cache')!r}, progress=False)\n"
            )
            env = {**os.environ, "PYTHONPATH": str(tree)}
            subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True)
            df = pd.read_csv(out / "results.csv")
            df = df[(df.kind == "metric") & (df.status == "ok")].copy()
            df["benchmark"] = df["benchmark"].str.replace(r"\(seed=\d+\)", "", regex=True)
            df["seed"] = seed
            frames.append(df[["seed", "benchmark", "explainer", "metric", "score"]])
        return pd.concat(frames)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)


def run_after(replicates: int, work: Path) -> pd.DataFrame:
    """This checkout's results with ``replicates`` benchmark seeds (replicate_scores per row)."""
    from dattr_eval.evaluation import evaluate

    return evaluate(
        list(BENCHMARKS),
        "all",
        out_dir=work / "after",
        cache_dir=work / "after-cache",
        replicates=replicates,
        progress=False,
    )


def snr_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """SNR per (benchmark, metric) of a long table (seed, benchmark, explainer, metric, score)."""
    from dattr_eval.statistics import SNR_THRESHOLD, signal_to_noise

    rows = []
    methods = scores[~scores.explainer.isin(REFERENCES)]
    for (bench, metric), group in methods.groupby(["benchmark", "metric"]):
        matrix = group.pivot_table(index="explainer", columns="seed", values="score").to_numpy()
        snr = signal_to_noise(matrix)
        rows.append(
            {"benchmark": bench, "metric": metric, "snr": snr, "flagged": snr < SNR_THRESHOLD}
        )
    return pd.DataFrame(rows).set_index(["benchmark", "metric"])


def long_after(results: pd.DataFrame) -> pd.DataFrame:
    rows = results[(results.kind == "metric") & (results.status == "ok")]
    out = []
    for r in rows.itertuples():
        for seed, score in enumerate(json.loads(r.replicate_scores)):
            if score is not None:
                out.append(
                    {
                        "seed": seed,
                        "benchmark": r.benchmark,
                        "explainer": r.explainer,
                        "metric": r.metric,
                        "score": score,
                    }
                )
    return pd.DataFrame(out)


def markdown(df: pd.DataFrame, floatfmt: str = ".3g") -> str:
    header = "| " + " | ".join([*df.index.names, *df.columns]) + " |"
    lines = [header, "|" + "---|" * (len(df.index.names) + len(df.columns))]
    for idx, row in df.iterrows():
        idx = idx if isinstance(idx, tuple) else (idx,)
        cells = [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join([*map(str, idx), *cells]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=3)
    parser.add_argument("--before", default="9ddd642", help="commit of the v0.1.0 protocols")
    parser.add_argument(
        "--work", type=Path, default=None, help="work directory (default: a temp dir)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "score_stability.md"
    )
    args = parser.parse_args()
    import torch

    from dattr_eval.evaluation.leaderboard import average_ranks, normalise_results
    from dattr_eval.evaluation.store import read_bootstrap

    work = args.work or Path(tempfile.mkdtemp(prefix="score-stability-"))
    start = time.perf_counter()
    before = snr_rows(run_before(args.before, args.replicates, work))
    before_s = time.perf_counter() - start
    after_results = run_after(args.replicates, work)
    after_s = time.perf_counter() - start - before_s
    after = snr_rows(long_after(after_results))
    table = before.join(after, how="outer", lsuffix=" before", rsuffix=" after")
    ceiling = after_results[(after_results.metric == "lds") & (after_results.kind == "metric")]
    ranks = average_ranks(normalise_results(after_results), read_bootstrap(work / "after"))
    lines = [
        "# Score stability: signal-to-noise before and after the trustworthy-scores protocols",
        "",
        (
            f"- date: {dt.datetime.now().isoformat(timespec='minutes')}; machine: {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end; torch threads {torch.get_num_threads()}"
        ),
        f"- command: `python benchmarks/score_stability.py --replicates {args.replicates} --before {args.before}`",
        f"- wall time: before {before_s / 60:.1f} min, after {after_s / 60:.1f} min",
        "",
        "## Signal-to-noise per digits benchmark × metric",
        "",
        (
            "SNR = standard deviation over methods of their mean score / mean within-method standard "
            f"deviation over {args.replicates} benchmark seeds (reference rows left out); flagged below 3. "
            "*before*: the v0.1.0 protocols at commit "
            f"`{args.before}`; *after*: this checkout. Metrics renamed by the redesign: fidelity → lds; "
            "mislabel_detection's global ranking is mislabel_detection_global."
        ),
        "",
        markdown(table),
        "",
        "## LDS noise ceiling (after)",
        "",
        markdown(ceiling.set_index("explainer")[["score", "ci_low", "ci_high", "noise_ceiling"]]),
        "",
        "## Rank intervals of the digits leaderboard (after; 95 % bootstrap)",
        "",
        markdown(
            ranks[["role", "avg rank", "avg rank low", "avg rank high"]].sort_values("avg rank")
        ),
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
