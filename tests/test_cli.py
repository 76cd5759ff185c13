"""CLI: list, run, report, errors (run on the bundled digits data)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from dattr_eval.cli import main
from dattr_eval.evaluation.store import ResultStore


def test_list_shows_explainers_metrics_and_benchmarks(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "explainers:" in out and "metrics:" in out and "benchmarks:" in out
    assert "random" in out and "seeded uniform random scores" in out
    assert main(["list", "explainers"]) == 0
    assert "benchmarks:" not in capsys.readouterr().out


def test_report_command_writes_files(tmp_path, capsys):
    ResultStore(tmp_path).append(
        [
            {
                "benchmark": "b",
                "explainer": "e",
                "metric": "m",
                "kind": "metric",
                "status": "ok",
                "score": 0.5,
                "higher_is_better": True,
            },
            {
                "benchmark": "b",
                "explainer": "e",
                "metric": "",
                "kind": "profile",
                "status": "ok",
                "fit_s": 1.0,
                "explain_s": 1.0,
                "rss_increase_mb": 3.0,
                "n_train": 5,
                "n_test": 2,
            },
        ]
    )
    assert main(["report", str(tmp_path)]) == 0
    assert "| e |" in capsys.readouterr().out
    assert (tmp_path / "leaderboard.html").exists() and (tmp_path / "heatmap.png").exists()


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no results" in capsys.readouterr().err
    assert (
        main(
            [
                "run",
                "--benchmark",
                "no-such-bench",
                "--explainers",
                "random",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "unknown benchmark" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--explainers", "random", "--out", str(tmp_path)])  # --benchmark is required


def test_python_dash_m_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "dattr_eval.cli", "list", "explainers"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "random" in out


@pytest.mark.slow
def test_run_then_report_on_digits_mislabel(tmp_path, capsys):
    out = tmp_path / "d"
    args = [
        "run",
        "--benchmark",
        "digits-mislabel",
        "--explainers",
        "random,dualview",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
    ]
    assert main(args) == 0
    results = pd.read_csv(out / "results.csv")
    results = results[results.kind != "card"]
    assert set(results.explainer) == {"random", "dualview"} and (results.status == "ok").all()
    assert main(["report", str(out)]) == 0
    for name in (
        "leaderboard.html",
        "leaderboard.md",
        "heatmap.png",
        "runtime_vs_rank.png",
        "memory.png",
    ):
        assert (out / name).stat().st_size > 0
    before = len(results)
    assert main(args) == 0  # rerun: everything finished, nothing appended
    assert len(pd.read_csv(out / "results.csv")) == before


def test_set_parses_explainer_hyperparameters():
    from dattr_eval.cli import CLIError, parse_assignments

    assert parse_assignments(
        ["influence.solver=arnoldi", "influence.arnoldi_iter=30", "random.seed=2"]
    ) == {"influence": {"solver": "arnoldi", "arnoldi_iter": 30}, "random": {"seed": 2}}
    # several assignments in one --set, and commas inside a value
    assert parse_assignments(["dualview.C=1e-3,random.seed=1", "tracin.checkpoints=[1, 2]"]) == {
        "dualview": {"C": 1e-3},
        "random": {"seed": 1},
        "tracin": {"checkpoints": [1, 2]},
    }
    with pytest.raises(CLIError, match="EXPLAINER.PARAM=VALUE"):
        parse_assignments(["solver=arnoldi"])


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("dualview.c=1e-3", "no hyperparameter 'c'; did you mean 'C'"),
        ("dualview.bogus=1", "no hyperparameter 'bogus'"),
        ("random.seed=2.5", "seed"),
    ],
)
def test_set_is_validated_before_any_work(tmp_path, capsys, assignment, message):
    name = assignment.split(".")[0]
    args = ["run", "--benchmark", "digits-class", "--explainers", name, "--set", assignment]
    assert main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results.csv").exists()


def test_set_for_an_explainer_not_run_is_an_error(tmp_path, capsys):
    args = [
        "run",
        "--benchmark",
        "digits-class",
        "--explainers",
        "random",
        "--set",
        "dualview.C=1.0",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 2
    assert "not in --explainers" in capsys.readouterr().err


def test_address_without_the_ray_backend_is_an_error(tmp_path, capsys):
    args = [
        "run",
        "--benchmark",
        "digits-class",
        "--explainers",
        "random",
        "--out",
        str(tmp_path),
        "--address",
        "auto",
    ]
    assert main(args) == 2
    assert "--address needs --backend ray" in capsys.readouterr().err
    assert not (tmp_path / "results.csv").exists()


# ------------------------------------------------------------------ defaults, baseline, compare
@pytest.fixture
def fake_fmnist_default_dir(tmp_path, monkeypatch):
    """Tiny Fashion-MNIST files in a fake default directory (what `apt-get install
    dataset-fashion-mnist` provides), so `--benchmark fmnist-*` needs no --data-dir."""
    from dattr_eval import data
    from tests.test_data import make_mnist_dir

    root = tmp_path / "fashion-mnist"
    root.mkdir()
    make_mnist_dir(root, n_train=60, n_test=12)
    monkeypatch.setattr(data.load_fashion_mnist, "__defaults__", (str(root),))
    return root


def test_fmnist_default_dir_baseline_report_and_compare(fake_fmnist_default_dir, tmp_path, capsys):
    common = [
        "--benchmark",
        "fmnist-class",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
    ]
    board, mine = tmp_path / "board", tmp_path / "mine"
    # no --data-dir: the default directory is read; the report is written at the end
    assert main(["run", *common, "--explainers", "random", "--out", str(board)]) == 0
    out = capsys.readouterr().out
    assert "1 cell(s) computed" in out and f"report: {board}/leaderboard.html" in out
    assert (board / "leaderboard.html").stat().st_size > 0
    assert set(pd.read_csv(board / "results.csv").n_train.dropna()) == {60}
    # a new method given as module:Class, scored against the stored board: only its cell runs
    spec = "dattr_eval.explainers.feature_similarity:FeatureSimilarity"
    args = ["run", *common, "--explainers", spec, "--baseline", str(board), "--out", str(mine)]
    assert main([*args, "--no-report"]) == 0
    out = capsys.readouterr().out
    assert f"1 cell(s) computed, 0 reused from {mine}" in out
    assert f"1 copied from the baseline {board}" in out
    assert not (mine / "leaderboard.html").exists()  # --no-report
    rows = pd.read_csv(mine / "results.csv")
    rows = rows[rows.kind != "card"]  # the benchmark card row has no explainer
    assert set(rows.explainer) == {"random", spec}
    # compare two explainers of one directory, and the two directories
    assert main(["compare", str(mine), "--between", spec, "random"]) == 0
    out = capsys.readouterr().out
    assert f"{spec} - random [CI]" in out and "identical_class" in out
    assert main(["compare", str(board), str(mine)]) == 0
    out = capsys.readouterr().out
    assert f"A = {board}, B = {mine}" in out
    assert "4 score(s) in both: A better on 0, B better on 0" in out
    assert main(["compare", str(board)]) == 2
    assert "compare takes DIR_A DIR_B" in capsys.readouterr().err


def test_baseline_mismatch_is_one_line_naming_benchmark_and_field(
    fake_fmnist_default_dir, tmp_path, capsys
):
    common = [
        "--benchmark",
        "fmnist-class",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
    ]
    board = tmp_path / "board"
    assert main(["run", *common, "--explainers", "random", "--out", str(board), "--no-report"]) == 0
    capsys.readouterr()
    # other training data under the same benchmark name
    from tests.test_data import make_mnist_dir

    make_mnist_dir(fake_fmnist_default_dir, n_train=61, n_test=12)
    args = ["run", *common, "--explainers", "grad_dot", "--baseline", str(board)]
    assert main([*args, "--out", str(tmp_path / "mine")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "benchmark 'fmnist-class' differs from the baseline in training data" in err


def test_list_shows_hyperparameters_and_data_requirements(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "(seed=0, device=None)" in out  # random's hyperparameters with defaults
    assert "data: Fashion-MNIST files from Debian's default directory or --data-dir" in out
    assert "data: CIFAR-10 files from --data-dir" in out


def test_explainers_accept_all_and_class_specs_together():
    from dattr_eval.cli import CLIError, build_explainers, explainer_names
    from dattr_eval.evaluation.grid import builtin_explainers

    names = explainer_names("all,tests.test_evaluator:OutputDot,random")
    assert names == [*builtin_explainers(), "tests.test_evaluator:OutputDot"]
    built = build_explainers(["tests.test_evaluator:OutputDot"], {})
    assert type(built["tests.test_evaluator:OutputDot"]).__name__ == "OutputDot"
    with pytest.raises(CLIError, match="not a subclass of dattr_eval.explainers.Explainer"):
        build_explainers(["tests.test_evaluator:Top1Class"], {})
    with pytest.raises(CLIError, match="cannot import module 'nope_pkg'"):
        build_explainers(["nope_pkg:X"], {})


def test_explainers_all_uses_fast_defaults_and_lists_hyperparameters(capsys):
    import dattr_eval
    from dattr_eval.evaluation.grid import resolve_explainers

    # influence's defaults are the leaderboard's (Arnoldi on the last layer): no --set needed
    params = resolve_explainers("all")["influence"].get_params()
    assert {k: params[k] for k in ("solver", "arnoldi_iter", "params")} == {
        "solver": "arnoldi",
        "arnoldi_iter": 30,
        "params": "last_layer",
    }
    assert dattr_eval.describe_explainers()["influence"]["hyperparameters"]["solver"] == "arnoldi"
    assert main(["list", "explainers"]) == 0
    assert "solver='arnoldi'" in capsys.readouterr().out
