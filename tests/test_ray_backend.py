"""Evaluator on Ray: same scores as local, worker deaths retried, resume, parallel batches, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch

from dattr_eval.benchmarks import REGISTRY as BENCHMARKS
from dattr_eval.benchmarks import BenchmarkSpec
from dattr_eval.cli import build_parser, main
from dattr_eval.evaluation import Evaluator, evaluate, read_results
from dattr_eval.evaluation.ray_executor import RayExecutor
from dattr_eval.explainers.random_baseline import RandomExplainer
from dattr_eval.parallel import current_backend
from tests.test_evaluator import (
    Broken,
    FailingFit,
    OutputDot,
    RandomizedGap,
    SelfInfluenceSum,
    Top1Class,
    _bench,
    _cells,
)

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
#: the columns that must agree between backends (profile columns are timings and memory)
SCORE_COLUMNS = [
    "benchmark",
    "explainer",
    "metric",
    "status",
    "score",
    "score_std",
    "n_scored",
    "error",
]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """A local 2-CPU Ray cluster whose workers import this repository (for the test classes)."""
    ray.init(
        num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}
    )
    yield
    ray.shutdown()


class DiesTimes(RandomExplainer):
    """Random scores; the first ``deaths`` fits (``where="fit"``) or explains kill their worker process.

    Deaths are counted in ``counter`` (a file), so they span processes.
    """

    def __init__(
        self, seed: int = 0, counter: str = "", deaths: int = 1, where: str = "fit"
    ) -> None:
        super().__init__(seed=seed)
        self.counter, self.deaths, self.where = counter, deaths, where

    def _maybe_die(self, where: str) -> None:
        path = Path(self.counter)
        died = len(path.read_text()) if path.exists() else 0
        if where == self.where and died < self.deaths:
            path.write_text("x" * (died + 1))
            os._exit(1)

    def _fit(self, model, train_dataset):
        self._maybe_die("fit")

    def _explain(self, inputs, targets):
        self._maybe_die("explain")
        return super()._explain(inputs, targets)


class LoggedRandom(RandomExplainer):
    """Random scores; each fit appends ``n_train`` and the active parallel backend to ``log``."""

    def __init__(self, seed: int = 0, log: str = "") -> None:
        super().__init__(seed=seed)
        self.log = log

    def _fit(self, model, train_dataset):
        with open(self.log, "a") as fh:
            fh.write(f"{len(train_dataset)} {current_backend().name}\n")


class TinySpec(BenchmarkSpec):
    """A registered benchmark for the CLI test: the evaluator tests' toy benchmark."""

    summary = "toy benchmark of the Ray CLI test"
    metrics = ("identical_class",)

    def build(self, *, cache_dir=None, data_dir=None, device=None):
        return _bench(self.name, metrics=self.metrics)


class BrokenSpec(TinySpec):
    """A benchmark whose data cannot be loaded."""

    name = "broken-spec"

    def build(self, *, cache_dir=None, data_dir=None, device=None):
        raise RuntimeError("no data here")


@contextmanager
def one_thread():
    """Torch on one thread, as in a Ray worker of ``num_cpus=1``: float reductions depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fits(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _scores(df: pd.DataFrame) -> pd.DataFrame:
    rows = df[df.kind == "metric"][SCORE_COLUMNS]
    return rows.sort_values(["benchmark", "explainer", "metric"]).reset_index(drop=True)


GRID_METRICS = {
    "top1": Top1Class(),
    "self_influence_sum": SelfInfluenceSum(),
    "randomized_gap": RandomizedGap(),
    "identical_class": ("identical_class", {"top_k": 3}),
    "model_randomization": "model_randomization",
    "top_k_cardinality": "top_k_cardinality",
    "sparsity": "sparsity",
    "mislabel": "mislabel_detection",
    "mislabel_global": "mislabel_detection_global",
    "broken": Broken(),
}


def _grid():
    truth = {"mislabeled_indices": torch.arange(0, 90, 7)}
    benches = [
        _bench("toy-a", n_train=100, truth=truth),
        _bench("toy-b", n_train=90, seed=1, truth=truth),
    ]
    explainers = {
        "random": RandomExplainer(seed=3),
        "dot": OutputDot(),
        "features": "feature_similarity",
        "bad": FailingFit(),
    }
    return benches, explainers


def test_ray_grid_equals_local_grid_with_and_without_parallel_batches(tmp_path):
    benches, explainers = _grid()
    kwargs = {"metrics": GRID_METRICS, "batch_size": 10, "progress": False}
    with pytest.warns(UserWarning), one_thread():
        local = evaluate(benches, explainers, out_dir=tmp_path / "local", **kwargs)
    expected = _scores(local)
    assert len(expected) == 2 * 4 * len(GRID_METRICS)
    assert (expected[expected.explainer != "bad"].status != "error").sum() == 2 * 3 * (
        len(GRID_METRICS) - 1
    )
    for parallel in (False, True):
        with pytest.warns(UserWarning) as record:  # the driver re-raises the workers' warnings
            got = evaluate(
                benches,
                explainers,
                out_dir=tmp_path / f"ray-{parallel}",
                executor=RayExecutor(parallel_batches=parallel),
                **kwargs,
            )
        assert any("cannot fit this" in str(w.message) for w in record)
        pd.testing.assert_frame_equal(_scores(got), expected, check_exact=True)
        profile = got[got.kind == "profile"]
        assert len(profile) == 8 and (profile[profile.explainer != "bad"].explain_s > 0).all()


def test_killed_workers_are_retried_and_a_cell_that_keeps_dying_is_an_error_row(tmp_path):
    bench = _bench(metrics=(Top1Class(), "sparsity"))
    explainers = {
        "dies_in_fit": DiesTimes(seed=3, counter=str(tmp_path / "fit"), deaths=1, where="fit"),
        "dies_in_explain": DiesTimes(
            seed=3, counter=str(tmp_path / "explain"), deaths=1, where="explain"
        ),
        "dies_twice": DiesTimes(seed=3, counter=str(tmp_path / "twice"), deaths=2, where="fit"),
    }
    with pytest.warns(UserWarning, match="dies_twice"):
        df = evaluate(
            [bench],
            explainers,
            out_dir=tmp_path / "out",
            executor=RayExecutor(max_retries=1, parallel_batches=True),
            batch_size=10,
            progress=False,
        )
    assert [len((tmp_path / n).read_text()) for n in ("fit", "explain", "twice")] == [1, 1, 2]
    rows = _scores(df).set_index(["explainer", "metric"])
    with one_thread():
        reference = _scores(
            evaluate(
                [bench], {"r": RandomExplainer(seed=3)}, out_dir=tmp_path / "ref", progress=False
            )
        )
    for label in (
        "dies_in_fit",
        "dies_in_explain",
    ):  # retried: every row there, scores as without deaths
        assert rows.loc[label].status.tolist() == ["ok", "ok"]
        assert rows.loc[label].score.tolist() == reference.score.tolist()
    assert (rows.loc["dies_twice"].status == "error").all()
    assert rows.loc[("dies_twice", "top1_class"), "error"].startswith("worker: WorkerCrashedError")
    profile = df[df.kind == "profile"].set_index("explainer")
    assert (
        profile.loc["dies_twice", "status"] == "error"
        and profile.loc["dies_in_fit", "status"] == "ok"
    )


def test_resume_skips_finished_cells_on_ray(tmp_path):
    benches = [_bench("first", n_train=100), _bench("second", n_train=90)]
    log = tmp_path / "fits.log"
    explainers = {"logged": LoggedRandom(log=str(log))}
    evaluate(benches[:1], explainers, out_dir=tmp_path / "out", progress=False)  # finished locally
    evaluate(benches, explainers, out_dir=tmp_path / "out", executor="ray", progress=False)
    assert _fits(log) == ["100 local", "90 local"]  # only the unfinished cell ran, on a Ray worker
    evaluate(benches, explainers, out_dir=tmp_path / "out", executor="ray", progress=False)
    assert len(_fits(log)) == 2  # everything finished: no task submitted
    all_rows = _cells(read_results(tmp_path / "out", latest=False))
    assert len(all_rows) == len(_cells(read_results(tmp_path / "out"))) == 4  # no row written twice


def test_cells_submitted_before_a_benchmark_fails_to_build_are_kept(tmp_path):
    with pytest.raises(RuntimeError, match="no data here"):
        evaluate(
            [_bench("first"), BrokenSpec()],
            "random",
            out_dir=tmp_path,
            executor="ray",
            progress=False,
        )
    assert set(_cells(read_results(tmp_path)).benchmark) == {"first"}


def test_shard_passes_run_each_cell_inside_the_ray_backend(tmp_path):
    bench = _bench()
    log = tmp_path / "fits.log"
    explainers = {"logged": LoggedRandom(log=str(log)), "grad_dot": "grad_dot"}
    with one_thread():
        local = evaluate([bench], explainers, out_dir=tmp_path / "local", progress=False)
    sharded = evaluate(
        [bench],
        explainers,
        out_dir=tmp_path / "ray",
        executor=RayExecutor(shard_passes=True),
        progress=False,
    )
    assert _fits(log) == [f"{bench.n_train} local", f"{bench.n_train} ray"]
    expected, got = _scores(local), _scores(sharded)
    pd.testing.assert_frame_equal(got.drop(columns="score"), expected.drop(columns="score"))
    assert got.score.tolist() == pytest.approx(expected.score.tolist(), abs=1e-6)


def test_bad_executor_arguments():
    bench = _bench()
    with pytest.raises(ValueError, match="executor must be one of"):
        Evaluator([bench], "random", executor="spark", progress=False)
    with pytest.raises(TypeError, match="executor must be"):
        Evaluator([bench], "random", executor=42, progress=False)
    with pytest.raises(ValueError, match="num_gpus=0"):
        RayExecutor(parallel_batches=True, num_gpus=1)
    with pytest.raises(ValueError, match="num_cpus"):
        RayExecutor(num_cpus=0)
    with pytest.raises(ValueError, match="needs num_gpus > 0"):
        RayExecutor().check_device(torch.device("cuda"))


def test_local_backend_does_not_import_ray(tmp_path):
    code = (
        "import sys; from tests.test_evaluator import _bench; from dattr_eval.evaluation import evaluate; "
        f"evaluate([_bench()], 'random', out_dir={str(tmp_path)!r}, progress=False); "
        "import dattr_eval.cli; assert 'ray' not in sys.modules, 'ray was imported'"
    )
    subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, timeout=120
    )


def test_cli_backend_ray_parses_and_runs(tmp_path, monkeypatch, capsys):
    args = build_parser().parse_args(
        [
            "run",
            "--benchmark",
            "b",
            "--explainers",
            "random",
            "--out",
            "o",
            "--backend",
            "ray",
            "--address",
            "ray://head:10001",
            "--num-cpus",
            "2",
            "--num-gpus",
            "0.5",
        ]
    )
    assert (args.backend, args.address, args.num_cpus, args.num_gpus) == (
        "ray",
        "ray://head:10001",
        2.0,
        0.5,
    )
    monkeypatch.setitem(BENCHMARKS._classes, "ray-cli-toy", TinySpec)
    monkeypatch.setattr(TinySpec, "name", "ray-cli-toy")
    out = tmp_path / "out"
    # Ray is initialised in this process, so the evaluator reuses it whatever --address says
    assert (
        main(
            [
                "run",
                "--benchmark",
                "ray-cli-toy",
                "--explainers",
                "random,dualview",
                "--out",
                str(out),
                "--backend",
                "ray",
                "--address",
                "auto",
                "--num-cpus",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    results = _cells(read_results(out))
    assert set(results.explainer) == {"random", "dualview"} and (results.status == "ok").all()
    assert "| random |" in capsys.readouterr().out
