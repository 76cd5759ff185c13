"""Resume keys: a finished cell is reused only when nothing that determines its rows changed."""

from __future__ import annotations

import textwrap
from typing import ClassVar

import pytest
import torch

from dattr_eval import metrics
from dattr_eval.evaluation import Evaluator, read_results
from dattr_eval.evaluation.fingerprint import code_version
from dattr_eval.explainers.random_baseline import RandomExplainer
from tests.test_evaluator import _bench


class Counting(RandomExplainer):
    """Random scores; counts its fits."""

    fits: ClassVar[list[int]] = []

    def _fit(self, model, train_dataset):
        Counting.fits.append(len(train_dataset))


def run(tmp_path, benches, metric, explainer=None, **kwargs):
    ev = Evaluator(
        benches,
        {"c": explainer or Counting()},
        {"m": metric},
        out_dir=tmp_path,
        progress=False,
        **kwargs,
    )
    rows = ev.run()
    return ev, rows[rows.kind == "metric"].set_index("metric")


def test_metric_params_benchmark_data_and_force_invalidate_finished_cells(tmp_path):
    Counting.fits = []
    bench = _bench()
    ev, rows = run(tmp_path, [bench], metrics.create("identical_class", top_k=1))
    top1 = rows.loc["m", "score"]
    assert ev.computed == 1 and Counting.fits == [bench.n_train]
    ev, _ = run(tmp_path, [bench], metrics.create("identical_class", top_k=1))
    assert (ev.computed, ev.reused) == (0, 1) and len(Counting.fits) == 1  # reused
    # other metric settings: recomputed, and the new row says top_k=10
    ev, rows = run(tmp_path, [bench], metrics.create("identical_class", top_k=10))
    assert ev.computed == 1 and len(Counting.fits) == 2
    assert '"top_k": 10' in rows.loc["m", "metric_params"] and rows.loc["m", "score"] != top1
    # a benchmark whose training set grew (same name): recomputed
    ev, _ = run(tmp_path, [_bench(n_train=130)], metrics.create("identical_class", top_k=10))
    assert ev.computed == 1 and Counting.fits[-1] == 130
    # force recomputes a finished cell
    ev, _ = run(
        tmp_path, [_bench(n_train=130)], metrics.create("identical_class", top_k=10), force=True
    )
    assert ev.computed == 1 and len(Counting.fits) == 4
    assert len(read_results(tmp_path, latest=False)) > len(read_results(tmp_path))


def test_model_weights_are_part_of_the_benchmark_fingerprint(tmp_path):
    Counting.fits = []
    bench = _bench()
    run(tmp_path, [bench], "identical_class")
    with torch.no_grad():
        next(bench.model.parameters()).add_(1.0)  # the same benchmark, retrained differently
    ev, _ = run(tmp_path, [bench], "identical_class")
    assert ev.computed == 1 and len(Counting.fits) == 2


def _user_class(tmp_path, body: str):
    """A user explainer class defined in a module file (as a user's package would)."""
    import importlib.util

    path = tmp_path / f"user_{abs(hash(body))}.py"
    path.write_text(
        "from dattr_eval.explainers.random_baseline import RandomExplainer\n\n"
        "class Mine(RandomExplainer):\n" + textwrap.indent(body, "    ")
    )
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Mine


def test_user_code_changes_change_the_code_version(tmp_path):
    a = _user_class(
        tmp_path,
        "def _explain(self, inputs, targets):\n    return super()._explain(inputs, targets)\n",
    )
    b = _user_class(
        tmp_path,
        "def _explain(self, inputs, targets):\n    return 2 * super()._explain(inputs, targets)\n",
    )
    assert code_version(a) != code_version(b) and code_version(a).startswith("user ")
    assert code_version(RandomExplainer).startswith("dattr_eval ")
    ev, _ = run(tmp_path / "out", [_bench()], "identical_class", explainer=a())
    ev, _ = run(tmp_path / "out", [_bench()], "identical_class", explainer=b())
    assert ev.computed == 1  # the edited explainer is not answered with the old rows


def test_the_evaluator_reports_what_it_reused(tmp_path):
    ev, _ = run(tmp_path, [_bench("a"), _bench("b")], "identical_class")
    assert (ev.computed, ev.reused) == (2, 0)
    ev, _ = run(tmp_path, [_bench("a"), _bench("b"), _bench("c")], "identical_class")
    assert (ev.computed, ev.reused) == (1, 2)


def test_replicates_need_recipes(tmp_path):
    with pytest.raises(ValueError, match="replicates=2"):
        Evaluator([_bench()], "random", out_dir=tmp_path, replicates=2, progress=False)
