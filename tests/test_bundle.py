"""Results bundles and the baseline workflow: score a new method against a stored board.

A match copies the stored cells and computes only the new ones (counted); any difference in the
conditions (version, data, model state, seed, metric params) refuses before a cell runs, naming
the benchmark and the field.
"""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

import dattr_eval
from dattr_eval import metrics
from dattr_eval.benchmarks import Benchmark, BenchmarkSpec
from dattr_eval.evaluation import Evaluator, read_results
from dattr_eval.evaluation.bundle import (
    FINGERPRINTS_DIR,
    MODELS_DIR,
    BaselineMismatchError,
    export_bundle,
    load_bundle,
    read_manifests,
)
from dattr_eval.evaluation.fingerprint import benchmark_fingerprint
from dattr_eval.explainers.random_baseline import RandomExplainer
from tests.test_evaluator import OutputDot, Top1Class, _bench


class Mine(RandomExplainer):
    """The "new method": random scores, counting its fits."""

    fits: ClassVar[list[int]] = []

    def _fit(self, model, train_dataset):
        Mine.fits.append(len(train_dataset))


BOARD = {"random": RandomExplainer(seed=1), "dot": OutputDot()}


def scores(df):
    rows = df[df.kind == "metric"]
    return rows.set_index(["explainer", "metric"])["score"].to_dict()


@pytest.fixture
def board(tmp_path):
    """A stored board: two explainers on one benchmark, and that benchmark."""
    bench = _bench()
    out = tmp_path / "board"
    dattr_eval.evaluate([bench], BOARD, {"m": Top1Class()}, out_dir=out, progress=False)
    return out, bench


def test_every_results_directory_holds_the_manifest_of_its_benchmarks(board):
    out, bench = board
    manifests = read_manifests(out)
    fingerprint = benchmark_fingerprint(bench)
    assert list(manifests) == [fingerprint]
    assert (out / FINGERPRINTS_DIR / f"{fingerprint}.json").is_file()
    manifest = manifests[fingerprint]
    assert manifest.benchmark == "toy" and manifest.version == dattr_eval.__version__
    assert manifest.n_train == bench.n_train and manifest.parts["seed"] == "0"
    stored = set(read_results(out).benchmark_fingerprint)
    assert stored == {fingerprint}


def test_matching_baseline_computes_only_the_new_cells(board, tmp_path):
    out, bench = board
    Mine.fits = []
    run = Evaluator(
        [bench],
        {"mine": Mine()},
        {"m": Top1Class()},
        tmp_path / "mine",
        progress=False,
        baseline=out,
    )
    results = run.run()
    assert (run.computed, run.from_baseline, run.reused) == (1, 2, 0)
    assert Mine.fits == [bench.n_train]
    merged, stored = scores(results), scores(read_results(out))
    assert set(merged) == {("random", "m"), ("dot", "m"), ("mine", "m")}
    assert {k: merged[k] for k in stored} == stored  # the board's rows, unchanged
    # the same command again: nothing copied, nothing computed
    again = Evaluator(
        [bench],
        {"mine": Mine()},
        {"m": Top1Class()},
        tmp_path / "mine",
        progress=False,
        baseline=out,
    )
    again.run()
    assert (again.computed, again.from_baseline, again.reused) == (0, 0, 1)
    assert len(Mine.fits) == 1


def test_grid_explainers_in_the_baseline_are_reused_or_recomputed_by_key(board, tmp_path):
    out, bench = board
    same = Evaluator(
        [bench],
        {"random": RandomExplainer(seed=1), "mine": Mine()},
        {"m": Top1Class()},
        tmp_path / "same",
        progress=False,
        baseline=out,
    )
    same.run()
    assert (same.computed, same.from_baseline, same.reused) == (1, 2, 1)
    other = Evaluator(
        [bench],
        {"random": RandomExplainer(seed=2), "mine": Mine()},
        {"m": Top1Class()},
        tmp_path / "other",
        progress=False,
        baseline=out,
    )
    results = other.run()
    # random with another seed is another configuration: computed, not copied
    assert (other.computed, other.from_baseline) == (2, 1)
    assert (
        results.loc[results.explainer == "random", "explainer_params"]
        .str.contains('"seed": 2')
        .all()
    )


def _with_other_weights():
    bench = _bench()
    with torch.no_grad():
        next(bench.model.parameters()).add_(0.5)
    return bench


@pytest.mark.parametrize(
    ("make_bench", "metric", "field"),
    [
        (_with_other_weights, Top1Class(), "model state"),
        (lambda: _bench(seed=1), Top1Class(), "seed"),
        (lambda: _bench(n_train=130), Top1Class(), "training data"),
    ],
    ids=["model state", "seed", "data"],
)
def test_a_benchmark_that_differs_is_refused_naming_the_field(
    board, tmp_path, make_bench, metric, field
):
    out, _ = board
    Mine.fits = []
    run = Evaluator(
        [make_bench()],
        {"mine": Mine()},
        {"m": metric},
        tmp_path / "mine",
        progress=False,
        baseline=out,
    )
    with pytest.raises(BaselineMismatchError) as info:
        run.run()
    assert info.value.benchmark == "toy" and field in info.value.fields
    assert "'toy'" in str(info.value) and field in str(info.value)
    assert Mine.fits == [] and run.computed == 0
    assert read_results(tmp_path / "mine").empty


def test_other_metric_params_are_refused_naming_the_metric(tmp_path):
    bench = _bench()
    board = tmp_path / "board"
    top1 = {"m": metrics.create("identical_class", top_k=1)}
    dattr_eval.evaluate([bench], BOARD, top1, out_dir=board, progress=False)
    top10 = {"m": metrics.create("identical_class", top_k=10)}
    run = Evaluator(
        [bench], {"mine": Mine()}, top10, tmp_path / "mine", progress=False, baseline=board
    )
    with pytest.raises(BaselineMismatchError, match=r"metric 'm'.*top_k.*10") as info:
        run.run()
    assert info.value.fields == ("metric params",)


def test_another_dattr_eval_version_is_refused(board, tmp_path, monkeypatch):
    out, bench = board
    monkeypatch.setattr(dattr_eval, "__version__", "9.9.9")
    run = Evaluator(
        [bench],
        {"mine": Mine()},
        {"m": Top1Class()},
        tmp_path / "mine",
        progress=False,
        baseline=out,
    )
    with pytest.raises(BaselineMismatchError, match="9.9.9") as info:
        run.run()
    assert info.value.fields == ("version",)


def test_a_bad_baseline_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_bundle(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no results"):
        load_bundle(tmp_path / "empty")
    bad = tmp_path / "bad"
    export_dir = bad / FINGERPRINTS_DIR
    export_dir.mkdir(parents=True)
    (export_dir / "x.json").write_text(json.dumps({"benchmark": "b"}))
    with pytest.raises(ValueError, match="x.json is not a benchmark manifest"):
        read_manifests(bad)


# ------------------------------------------------------------------ published bundles
class CachedDigits(BenchmarkSpec):
    """A tiny registered-style recipe whose model comes from the model cache (as built-ins do)."""

    name = "cached-digits"
    summary = "200 digits, a 2-epoch CNN from the model cache"
    metrics = (Top1Class(),)

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def build(self, *, cache_dir=None, data_dir=None, device=None):
        from dattr_eval.models import ModelCache, TrainRecipe

        x, y = load_digits(return_X_y=True)
        x = torch.tensor(x / 16, dtype=torch.float32).reshape(-1, 1, 8, 8)
        y = torch.tensor(y)
        train, test = TensorDataset(x[:200], y[:200]), TensorDataset(x[1000:1040], y[1000:1040])
        recipe = TrainRecipe(epochs=2, n_checkpoints=1, seed=self.seed)
        trained = ModelCache(cache_dir / "models").get_or_train(recipe, train, tag=self.label)
        return Benchmark.from_datasets(
            self.label,
            trained.model,
            train,
            test,
            metrics=self.metrics,
            n_test=20,
            seed=self.seed,
            checkpoints=trained.checkpoints,
        )


def test_exported_bundle_brings_its_models_to_a_fresh_cache(tmp_path, monkeypatch):
    board = tmp_path / "board"
    dattr_eval.evaluate(
        [CachedDigits()], BOARD, out_dir=board, cache_dir=tmp_path / "cache_a", progress=False
    )
    published = export_bundle(board, tmp_path / "published")
    (manifest,) = read_manifests(published).values()
    assert manifest.model_dir == f"{MODELS_DIR}/{manifest.model_key}"
    assert (published / manifest.model_dir / "model.pt").is_file()
    assert scores(read_results(published)) == scores(read_results(board))
    with pytest.raises(FileExistsError, match="not empty"):
        export_bundle(board, published)

    def no_training(*args, **kwargs):
        raise AssertionError("the baseline's model should have been installed, not retrained")

    monkeypatch.setattr("dattr_eval.models.cache.train_model", no_training)
    Mine.fits = []
    run = Evaluator(
        [CachedDigits()],
        {"mine": Mine()},
        out_dir=tmp_path / "mine",
        cache_dir=tmp_path / "cache_b",  # empty: another machine
        progress=False,
        baseline=published,
    )
    run.run()
    assert (run.computed, run.from_baseline) == (1, 2) and len(Mine.fits) == 1
    installed = tmp_path / "cache_b" / "models" / manifest.model_key / "model.pt"
    assert installed.read_bytes() == (published / manifest.model_dir / "model.pt").read_bytes()


def test_bundle_keeps_the_bootstrap_draws(board, tmp_path):
    out, _ = board
    published = export_bundle(out, tmp_path / "published")
    before, after = load_bundle(out).draws, load_bundle(published).draws
    assert before and set(before) == set(after)
    for key, draws in before.items():
        np.testing.assert_array_equal(after[key], draws)


def test_only_models_inside_the_bundle_are_installed(tmp_path):
    from dattr_eval.evaluation.bundle import BenchmarkManifest, Bundle, install_models

    outside = tmp_path / "elsewhere" / "k1"
    outside.mkdir(parents=True)
    (outside / "manifest.json").write_text("{}")
    inside = tmp_path / "bundle" / MODELS_DIR / "k2"
    inside.mkdir(parents=True)
    (inside / "manifest.json").write_text("{}")

    def manifest(key, model_dir):
        return BenchmarkManifest("b", key, {}, 0, 1, 1, "v", model_key=key, model_dir=model_dir)

    bundle = Bundle(
        tmp_path / "bundle",
        read_results(tmp_path),
        manifests={
            "1": manifest("k1", str(outside)),  # absolute: a local results directory's cache
            "2": manifest("k1", "../elsewhere/k1"),  # escapes the bundle
            "3": manifest("..", f"{MODELS_DIR}/k2"),  # not a cache key
            "4": manifest("k2", f"{MODELS_DIR}/k2"),
        },
    )
    assert install_models(bundle, tmp_path / "cache") == ["k2"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["k2"]
