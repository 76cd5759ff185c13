"""Report: leaderboard ranks by hand, files written, figures are PNGs, HTML is standalone."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import dattr_eval
from dattr_eval.evaluation.report import leaderboard, rank_table, to_markdown
from dattr_eval.evaluation.store import ResultStore, read_results

# benchmark b1: metric up (higher better), metric down (lower better); benchmark b2: metric up
SCORES = {
    ("b1", "up"): {"a": 0.9, "b": 0.5, "c": 0.5},
    ("b1", "down"): {"a": 0.3, "b": 0.1, "c": 0.2},
    ("b2", "up"): {"a": 0.2, "b": 0.8, "c": None},  # c failed here
}
PROFILE = {  # explainer -> (fit_s, explain_s, self_influence_s, rss_increase_mb) per benchmark
    "a": (1.0, 2.0, None, 10.0),
    "b": (0.1, 0.2, 0.3, 30.0),
    "c": (10.0, 20.0, None, 5.0),
}


def _write(out_dir):
    store = ResultStore(out_dir)
    rows = []
    for (bench, metric), by_expl in SCORES.items():
        for expl, score in by_expl.items():
            row = {
                "benchmark": bench,
                "explainer": expl,
                "metric": metric,
                "kind": "metric",
                "higher_is_better": metric == "up",
                "explainer_params": "{}",
            }
            row.update(status="ok", score=score) if score is not None else row.update(
                status="error", error="Boom: x"
            )
            rows.append(row)
    for bench in ("b1", "b2"):
        for expl, (fit, explain, si, rss) in PROFILE.items():
            rows.append(
                {
                    "benchmark": bench,
                    "explainer": expl,
                    "metric": "",
                    "kind": "profile",
                    "status": "ok",
                    "fit_s": fit,
                    "explain_s": explain,
                    "self_influence_s": si,
                    "rss_increase_mb": rss,
                    "explain_s_per_sample": explain / 10,
                    "n_train": 100,
                    "n_test": 10,
                    "device": "cpu",
                    "device_name": "test cpu",
                }
            )
    store.append(rows[:3])
    store.append(rows[3:])  # appended in two steps, as cells finish


def test_ranks_and_leaderboard_by_hand(tmp_path):
    _write(tmp_path)
    results = read_results(tmp_path)
    ranks = rank_table(results)
    assert ranks[("b1", "up")].to_dict() == {
        "a": 1.0,
        "b": 2.5,
        "c": 2.5,
    }  # tie shares the average rank
    assert ranks[("b1", "down")].to_dict() == {"a": 3.0, "b": 1.0, "c": 2.0}  # lower is better
    assert ranks[("b2", "up")]["a"] == 2.0 and ranks[("b2", "up")]["b"] == 1.0
    assert math.isnan(ranks[("b2", "up")]["c"])  # a failed score gets no rank
    board = leaderboard(results)
    assert board.loc["a", "avg rank"] == pytest.approx((1 + 3 + 2) / 3)
    assert board.loc["b", "avg rank"] == pytest.approx((2.5 + 1 + 1) / 3)
    assert board.loc["c", "avg rank"] == pytest.approx((2.5 + 2) / 2)
    assert board.loc["a", "avg rank b1"] == pytest.approx(2.0)
    assert list(board.index) == ["b", "a", "c"]  # best average rank first
    assert board.loc["b", "runtime [s]"] == pytest.approx(2 * (0.1 + 0.2 + 0.3))
    assert board.loc["a", "runtime [s]"] == pytest.approx(2 * 3.0)
    assert board.loc["b", "peak RSS + [MiB]"] == 30.0
    assert board.loc["b", "explain [ms/sample]"] == pytest.approx(20.0)
    assert board.loc["a", "b1/up"] == 0.9 and math.isnan(board.loc["c", "b2/up"])
    assert "CUDA peak [MiB]" not in board.columns


def test_report_writes_markdown_html_and_png_figures(tmp_path):
    _write(tmp_path)
    board = dattr_eval.report(tmp_path)
    assert isinstance(board, pd.DataFrame) and len(board) == 3
    for name in ("heatmap", "runtime_vs_rank", "memory"):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    html = (tmp_path / "leaderboard.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "<table" in html
    assert "Boom: x" in html  # the failure is listed
    md = (tmp_path / "leaderboard.md").read_text()
    assert md.startswith("# Leaderboard") and "| b | " in md and "![heatmap](heatmap.png)" in md
    assert pd.read_csv(tmp_path / "leaderboard.csv", index_col=0).shape == board.shape


def test_rerun_rows_supersede_and_markdown_format(tmp_path):
    _write(tmp_path)
    ResultStore(tmp_path).append(
        [
            {
                "benchmark": "b2",
                "explainer": "c",
                "metric": "up",
                "kind": "metric",
                "status": "ok",
                "score": 0.9,
                "higher_is_better": True,
            }
        ]
    )
    board = leaderboard(read_results(tmp_path))
    assert board.loc["c", "b2/up"] == 0.9
    assert len(read_results(tmp_path, latest=False)) == len(read_results(tmp_path)) + 1
    md = to_markdown(board[["avg rank"]])
    assert md.splitlines()[0] == "| explainer | avg rank |" and len(md.splitlines()) == 5


def test_report_without_results_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results"):
        dattr_eval.report(tmp_path)
