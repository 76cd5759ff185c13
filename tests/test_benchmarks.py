"""Benchmarks: a user's own benchmark in a few lines, lazy recipes, the registry, built-in digits tasks."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

import dattr_eval
from dattr_eval import benchmarks
from dattr_eval.benchmarks import Benchmark, BenchmarkSpec
from dattr_eval.benchmarks.base import select_test_indices
from dattr_eval.evaluation import read_results
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics.base import Metric


def _data(n_train=150, n_test=60):
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16, dtype=torch.float32)
    y = torch.tensor(y)
    return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(
        x[500 : 500 + n_test], y[500 : 500 + n_test]
    )


def _model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10))


def test_user_benchmark_from_datasets_fills_the_ground_truth():
    train, test = _data()
    model = _model()
    bench = Benchmark.from_datasets("mine", model, train, test, n_test=25, seed=3)
    expected_idx = select_test_indices(60, 25, 3)
    assert (
        torch.equal(bench.truth.test_indices, expected_idx)
        and bench.n_test == 25
        and bench.n_train == 150
    )
    assert torch.equal(bench.test_inputs, test.tensors[0][expected_idx])
    assert torch.equal(bench.truth.test_labels, test.tensors[1][expected_idx])
    with torch.no_grad():
        preds = model(bench.test_inputs).argmax(1)
    assert torch.equal(bench.truth.test_predictions, preds) and torch.equal(
        bench.truth.test_targets, preds
    )
    assert torch.equal(bench.truth.train_labels, train.tensors[1]) and bench.truth.n_classes == 10
    by_label = Benchmark.from_datasets(
        "mine", model, train, test, targets="label", truth={"shortcut_class": 2}
    )
    assert (
        torch.equal(by_label.truth.test_targets, test.tensors[1])
        and by_label.truth.shortcut_class == 2
    )


def test_select_test_indices_is_seeded_sorted_and_complete_when_large():
    a = select_test_indices(100, 10, 0)
    assert torch.equal(a, select_test_indices(100, 10, 0)) and not torch.equal(
        a, select_test_indices(100, 10, 1)
    )
    assert torch.equal(a, a.sort().values) and len(set(a.tolist())) == 10
    assert torch.equal(select_test_indices(7, None, 0), torch.arange(7))
    assert torch.equal(select_test_indices(7, 50, 0), torch.arange(7))


def test_benchmark_validates_its_fields():
    train, test = _data()
    x = test.tensors[0][:5]
    truth = GroundTruth(
        train_labels=train.tensors[1], test_targets=torch.zeros(4, dtype=torch.long)
    )
    with pytest.raises(ValueError, match="4 test samples but test_inputs has 5"):
        Benchmark("b", _model(), train, x, truth)
    with pytest.raises(ValueError, match="test_targets"):
        Benchmark("b", _model(), train, x, GroundTruth(train_labels=train.tensors[1]))
    with pytest.raises(ValueError, match="targets must be one of"):
        Benchmark.from_datasets("b", _model(), train, test, targets="truth")
    with pytest.raises(TypeError, match="model"):
        Benchmark.from_datasets("b", "not a model", train, test)


class Top1Class(Metric):
    name = "top1_class"
    requires = ("train_labels", "test_targets")

    def __init__(self) -> None:
        super().__init__()

    def score_batch(self, attributions, truth):
        return (truth.train_labels[attributions.argmax(1)] == truth.test_targets).float()


class ToySpec(BenchmarkSpec):
    """An unregistered recipe counting its builds."""

    name = "toy-spec"
    summary = "toy"
    metrics = (Top1Class(),)
    builds = 0

    def __init__(self, n_test: int = 20, seed: int = 0) -> None:
        self.n_test = n_test
        self.seed = seed

    def build(self, *, cache_dir=None, data_dir=None, device=None):
        ToySpec.builds += 1
        train, test = _data()
        return Benchmark.from_datasets(
            self.label,
            _model(),
            train,
            test,
            n_test=self.n_test,
            seed=self.seed,
            metrics=self.metrics,
        )


def test_spec_label_and_finished_cells_are_reused(tmp_path):
    assert ToySpec().label == "toy-spec" and ToySpec(n_test=5).label == "toy-spec(n_test=5)"
    ToySpec.builds = 0
    dattr_eval.evaluate(
        [ToySpec(), ToySpec(n_test=5)], ["random"], out_dir=tmp_path, progress=False
    )
    assert ToySpec.builds == 2
    ev = dattr_eval.Evaluator(
        [ToySpec(), ToySpec(n_test=5)], ["random"], out_dir=tmp_path, progress=False
    )
    ev.run()
    # finished cells are recognised by content (the built benchmark's fingerprint), so the
    # benchmarks are built (from the model cache) but no cell is computed again
    assert ToySpec.builds == 4 and ev.reused == 2 and ev.computed == 0
    results = read_results(tmp_path)
    assert set(results.benchmark) == {"toy-spec", "toy-spec(n_test=5)"}
    assert sorted(results[results.kind == "profile"].n_test) == [5, 20]


def test_registry_lists_builtin_families_with_summaries():
    names = benchmarks.names()
    for family in ("digits", "mnist5k", "fmnist", "cifar10"):
        for task in ("class", "subclass", "mislabel", "shortcut", "fidelity"):
            assert f"{family}-{task}" in names
    summaries = benchmarks.summaries()
    assert all(summaries[n] for n in names)
    spec = benchmarks.create("digits-mislabel")  # constructing is free: nothing loaded or trained
    assert isinstance(spec, BenchmarkSpec) and spec.label == "digits-mislabel"
    with pytest.raises(KeyError, match="digits-mislabel"):
        benchmarks.create("digits-mislabl")


@pytest.mark.slow
def test_random_scores_at_chance_and_dualview_beats_it_on_digits(tmp_path):
    names = ["digits-class", "digits-mislabel", "digits-shortcut"]
    metrics = ["identical_class", "mislabel_detection", "feature_shortcut"]
    df = dattr_eval.evaluate(
        names,
        ["random", "dualview", "dualview_dense"],
        metrics=metrics,
        out_dir=tmp_path,
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    ok = (
        df[(df.kind == "metric") & (df.status == "ok")]
        .set_index(["benchmark", "explainer", "metric"])
        .score
    )
    cls = benchmarks.load("digits-class", cache_dir=tmp_path / "cache")  # cached: no retraining
    # identical class, random top-1: P(label of a uniform training sample == target), averaged over test
    p = (
        (cls.truth.train_labels[None, :] == cls.truth.test_targets[:, None])
        .float()
        .mean(1)
        .mean()
        .item()
    )
    tol = 4 * (p * (1 - p) / cls.n_test) ** 0.5
    assert ok[("digits-class", "random", "identical_class")] == pytest.approx(p, abs=tol)
    assert ok[("digits-mislabel", "random", "mislabel_detection")] == pytest.approx(0.5, abs=0.06)
    short = benchmarks.load("digits-shortcut", cache_dir=tmp_path / "cache")
    prevalence = len(short.truth.marked_train_indices) / short.n_train  # AUPRC of a random ranking
    assert ok[("digits-shortcut", "random", "feature_shortcut")] == pytest.approx(
        prevalence, abs=0.05
    )
    # the default regime for class and mislabel tasks; the dense regime finds the shortcut
    # (benchmarks/results/dualview_regimes.md: the paper reports the regimes as separate rows)
    chosen = {
        "digits-class": "dualview",
        "digits-mislabel": "dualview",
        "digits-shortcut": "dualview_dense",
    }
    for bench, metric in zip(names, metrics):
        assert ok[(bench, chosen[bench], metric)] > ok[(bench, "random", metric)] + 0.02


def test_fidelity_uses_the_class_model_and_the_familys_fidelity_params(tmp_path):
    """The fidelity task trains no model of its own: same data and recipe as the class task, so
    it reads the class task's cache entry; a family's fidelity_params reach the metrics and its
    retrain_min_samples the retrainer."""
    import dataclasses

    from dattr_eval.benchmarks.builtin import FAMILIES, FidelityTask

    light = dataclasses.replace(
        FAMILIES[0],  # digits, trained for 2 epochs here
        recipe=(("epochs", 2),),
        retrain_min_samples=500,
        fidelity_params=(("lds", (("n_seeds", 2),)), ("data_pruning", (("n_orders", 1),))),
    )
    assert FidelityTask.metrics_for(light) == (
        ("lds", {"n_subsets": light.lds_subsets, "n_seeds": 2}),
        "coreset_selection",
        ("data_pruning", {"n_orders": 1}),
    )

    def build(name):
        spec = type("Light", (benchmarks.get(name),), {"family": light})()
        return spec.build(cache_dir=tmp_path)

    cls, fid = build("digits-class"), build("digits-fidelity")
    assert len([p for p in (tmp_path / "models").iterdir() if p.is_dir()]) == 1
    for a, b in zip(cls.model.state_dict().values(), fid.model.state_dict().values()):
        assert torch.equal(a, b)
    assert cls.retrain is None and fid.retrain.min_samples == 500
