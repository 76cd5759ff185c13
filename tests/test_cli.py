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
