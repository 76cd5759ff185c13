"""The evaluator estimates each cell's memory before running it; a cell over the limit is an error row."""

from __future__ import annotations

import pytest

from dattr_eval.evaluation import Evaluator
from dattr_eval.evaluation.evaluator import parse_memory_limit
from dattr_eval.explainers.memory import estimate_explainer_memory
from dattr_eval.explainers.random_baseline import RandomExplainer
from tests.test_evaluator import _bench


class Greedy(RandomExplainer):
    """Random scores, but claims to need 1 TiB."""

    def estimate_memory(self, model, train_dataset, n_test, batch_size):
        return 2**40


class Fitted(RandomExplainer):
    """Records that it was fitted (a cell over the limit must never be)."""

    fits = 0

    def estimate_memory(self, model, train_dataset, n_test, batch_size):
        return 2**40

    def _fit(self, model, train_dataset):
        Fitted.fits += 1


def test_a_cell_over_the_limit_is_an_error_row_and_the_others_finish(tmp_path):
    bench = _bench()
    Fitted.fits = 0
    with pytest.warns(UserWarning, match="exceeds memory_limit"):
        df = Evaluator(
            [bench],
            {"greedy": Greedy(), "never_fitted": Fitted(), "random": RandomExplainer()},
            out_dir=tmp_path,
            memory_limit="1G",
            progress=False,
        ).run()
    rows = df[df.kind == "metric"].set_index("explainer")
    assert rows.loc["random", "status"] == "ok"
    for label in ("greedy", "never_fitted"):
        assert rows.loc[label, "status"] == "error"
        assert rows.loc[label, "error"].startswith(
            "memory: MemoryError: estimated peak 1024.00 GiB"
        )
    assert Fitted.fits == 0
    profile = df[df.kind == "profile"].set_index("explainer")
    assert profile.loc["greedy", "memory_estimate_mb"] == 2**20
    expected = estimate_explainer_memory(
        RandomExplainer(), bench.model, bench.train_dataset, bench.n_test, 64
    )
    assert profile.loc["random", "memory_estimate_mb"] == pytest.approx(expected / 2**20)


def test_parse_memory_limit():
    assert parse_memory_limit("6G") == 6 * 2**30
    assert parse_memory_limit("500m") == 500 * 2**20
    assert parse_memory_limit(12345) == 12345
    assert parse_memory_limit(None) is None
    auto = parse_memory_limit("auto")
    assert auto is None or auto > 2**28
    for bad in ("six", -1, 0, True, "G"):
        with pytest.raises(ValueError, match="memory_limit"):
            parse_memory_limit(bad)
