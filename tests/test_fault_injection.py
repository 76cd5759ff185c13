"""Fault injection on a real ``dattr-eval run``: SIGKILL at random moments, SIGINT, two runs at once.

After every disruption a rerun finishes the grid; every cell's rows are stored exactly once and the
scores equal an uninterrupted run's. (Kills inside the store's transaction are tested at the store
level in ``tests/test_store.py``.)
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from dattr_eval.evaluation.store import read_results

ROOT = Path(__file__).resolve().parents[1]
GRID = [
    "--benchmark", "tests._fault_grid:Tiny",
    "--benchmark", "tests._fault_grid:Tiny1",
    "--explainers", "random,feature_similarity,representer,grad_dot",
    "--no-progress", "--no-report",
]  # fmt: skip


def start(out: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dattr_eval.cli",
            "run",
            *GRID,
            "--out",
            str(out),
            "--cache-dir",
            str(cache),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(out: Path, cache: Path) -> str:
    proc = start(out, cache)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    return stdout


def scores(out: Path) -> pd.DataFrame:
    df = read_results(out)
    df = df[df.kind == "metric"][
        ["benchmark", "explainer", "metric", "status", "score", "ci_low", "ci_high"]
    ]
    return df.sort_values(["benchmark", "explainer", "metric"]).reset_index(drop=True)


def assert_each_cell_once(out: Path) -> None:
    raw = read_results(out, latest=False)
    raw = raw[raw.kind.isin(["metric", "profile"])]
    counts = raw.groupby(["benchmark", "explainer", "metric", "kind"]).size()
    assert (counts == 1).all(), counts[counts > 1]
    assert len(counts) == 2 * 4 * 4  # 2 benchmarks x 4 explainers x (3 metrics + profile)


def test_sigkill_at_random_moments_then_resume(tmp_path):
    reference = tmp_path / "reference"
    finish(reference, tmp_path / "cache")
    out = tmp_path / "killed"
    rng = random.Random(0)
    for _ in range(10):
        proc = start(out, tmp_path / "cache")
        time.sleep(rng.uniform(1.0, 8.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    finish(out, tmp_path / "cache")
    assert_each_cell_once(out)
    pd.testing.assert_frame_equal(scores(out), scores(reference))


def test_sigint_saves_finished_cells_and_says_how_to_resume(tmp_path):
    out = tmp_path / "out"
    proc = start(out, tmp_path / "cache")
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "results.sqlite").exists():
        time.sleep(0.2)
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    if proc.returncode == 130:  # interrupted mid-grid: one line, what was kept, how to go on
        assert "interrupted;" in stderr and "rerun the same command to resume" in stderr
        assert "Traceback" not in stderr
    else:  # the grid finished before the signal arrived
        assert proc.returncode == 0
    finish(out, tmp_path / "cache")
    assert_each_cell_once(out)


def test_two_concurrent_runs_split_the_grid(tmp_path):
    finish(
        tmp_path / "warm", tmp_path / "cache"
    )  # models cached: both runs start computing at once
    out = tmp_path / "shared"
    first, second = start(out, tmp_path / "cache"), start(out, tmp_path / "cache")
    for proc in (first, second):
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
    assert_each_cell_once(out)
    pd.testing.assert_frame_equal(scores(out), scores(tmp_path / "warm"))
