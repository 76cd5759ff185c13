"""Evaluator: grid, streaming, resume, failures, auxiliary ground truth, profiling."""

from __future__ import annotations

import warnings
from typing import ClassVar

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from dattr_eval.benchmarks import Benchmark
from dattr_eval.contract import topk
from dattr_eval.evaluation import Evaluator, evaluate, read_results
from dattr_eval.evaluation.profiling import MemorySampler, PhaseTimer
from dattr_eval.evaluation.providers import randomize_model
from dattr_eval.explainers.base import Explainer
from dattr_eval.explainers.random_baseline import RandomExplainer
from dattr_eval.metrics.base import Metric

N_TRAIN, N_TEST = 120, 37  # n_test != n_train, and not a multiple of the batch size


class Top1Class(Metric):
    """Per-sample: 1 if the top-1 training sample has the test target's label."""

    name = "top1_class"
    requires = ("train_labels", "test_targets")

    def __init__(self) -> None:
        super().__init__()

    def score_batch(self, attributions, truth):
        idx = topk(attributions, 1).indices[:, 0]
        return (truth.train_labels[idx] == truth.test_targets).float()


class BatchShapes(Metric):
    """Records the shape of every batch it sees; score = number of batches."""

    name = "batch_shapes"
    seen: ClassVar[list] = []

    def __init__(self) -> None:
        super().__init__()

    def score_batch(self, attributions, truth):
        BatchShapes.seen.append(tuple(attributions.shape))
        return torch.zeros(attributions.shape[0])


class SelfInfluenceSum(Metric):
    """Global: the sum of self-influence (needs no attributions)."""

    name = "self_influence_sum"
    requires = ("self_influence",)
    needs_attributions = False

    def __init__(self) -> None:
        super().__init__()

    def _update(self, attributions, truth):
        self.per_unit.append(truth.self_influence.sum()[None].double())


class RandomizedGap(Metric):
    """Mean |A - A_randomized| per sample."""

    name = "randomized_gap"
    requires = ("randomized_attributions",)
    higher_is_better = False

    def __init__(self) -> None:
        super().__init__()

    def score_batch(self, attributions, truth):
        return (attributions - truth.randomized_attributions).abs().mean(1)


class Broken(Metric):
    name = "broken"

    def __init__(self) -> None:
        super().__init__()

    def score_batch(self, attributions, truth):
        raise RuntimeError("metric bug")


class NeedsFineLabels(Metric):
    name = "needs_fine"
    requires = ("train_fine_labels",)

    def __init__(self) -> None:
        super().__init__()


class OutputDot(Explainer):
    """Dot product of logits: deterministic, depends on the model's weights."""

    name = "output_dot"

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def _fit(self, model, train_dataset):
        self.train_out_ = model(train_dataset.tensors[0].to(self.device_)).detach()

    def _explain(self, inputs, targets):
        return self.scale * self.model_(inputs).detach() @ self.train_out_.T


class CountingRandom(RandomExplainer):
    """Counts fits per benchmark size; interrupts on the benchmark named in ``interrupt_on``."""

    fits: ClassVar[list] = []
    interrupt_on: int | None = None

    def _fit(self, model, train_dataset):
        CountingRandom.fits.append(len(train_dataset))
        if CountingRandom.interrupt_on == len(train_dataset):
            raise KeyboardInterrupt


class FailingFit(RandomExplainer):
    def _fit(self, model, train_dataset):
        raise ValueError("cannot fit this")


def _bench(name="toy", n_train=N_TRAIN, metrics=None, seed=0, **kwargs) -> Benchmark:
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16, dtype=torch.float32)
    y = torch.tensor(y)
    torch.manual_seed(seed + 100)  # not the randomised model's seed
    model = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))
    train = TensorDataset(x[:n_train], y[:n_train])
    test = TensorDataset(x[1000:1200], y[1000:1200])
    return Benchmark.from_datasets(
        name,
        model,
        train,
        test,
        metrics=metrics if metrics is not None else (Top1Class(),),
        n_test=N_TEST,
        seed=seed,
        **kwargs,
    )


def _metric_rows(df):
    return df[df.kind == "metric"].set_index(["benchmark", "explainer", "metric"])


def test_scores_match_direct_computation_and_rows_are_complete(tmp_path):
    bench = _bench(metrics=(Top1Class(), BatchShapes()))
    BatchShapes.seen = []
    df = evaluate(
        [bench],
        {"random": RandomExplainer(seed=3), "dot": OutputDot()},
        out_dir=tmp_path,
        batch_size=10,
        progress=False,
    )
    rows = _metric_rows(df)
    assert len(rows) == 4 and (rows.status == "ok").all()
    for label, expl in {"random": RandomExplainer(seed=3), "dot": OutputDot()}.items():
        a = expl.fit(bench.model, bench.train_dataset).explain(
            bench.test_inputs, bench.truth.test_targets
        )
        expected = (
            (bench.truth.train_labels[a.argmax(1)] == bench.truth.test_targets).float().mean()
        )
        assert rows.loc[("toy", label, "top1_class"), "score"] == pytest.approx(float(expected))
    # streamed: batches of at most 10 rows, each with all n_train columns, covering every test sample
    shapes = BatchShapes.seen[: len(BatchShapes.seen) // 2]
    assert [s[0] for s in shapes] == [10, 10, 10, 7] and {s[1] for s in shapes} == {N_TRAIN}
    profile = df[df.kind == "profile"].set_index("explainer")
    assert (profile.fit_s >= 0).all() and (profile.explain_s > 0).all()
    assert profile.loc["dot", "explain_s_per_sample"] == pytest.approx(
        profile.loc["dot", "explain_s"] / N_TEST
    )
    assert (
        (profile.peak_rss_mb > 0).all()
        and (profile.n_train == N_TRAIN).all()
        and (profile.n_test == N_TEST).all()
    )
    assert read_results(tmp_path).equals(df)


def test_interrupted_run_resumes_without_recomputing_finished_cells(tmp_path):
    benches = [_bench("first", n_train=100), _bench("second", n_train=90)]
    CountingRandom.fits, CountingRandom.interrupt_on = [], 90
    with pytest.raises(KeyboardInterrupt):
        evaluate(benches, {"counting": CountingRandom()}, out_dir=tmp_path, progress=False)
    assert CountingRandom.fits == [100, 90]
    assert set(read_results(tmp_path).benchmark) == {
        "first"
    }  # the first cell was written before the interrupt

    CountingRandom.fits, CountingRandom.interrupt_on = [], None
    df = evaluate(benches, {"counting": CountingRandom()}, out_dir=tmp_path, progress=False)
    assert CountingRandom.fits == [90]  # only the unfinished cell ran again
    assert set(_metric_rows(df).index.get_level_values(0)) == {"first", "second"}

    CountingRandom.fits = []
    evaluate(benches, {"counting": CountingRandom()}, out_dir=tmp_path, progress=False)
    assert CountingRandom.fits == []  # everything finished: nothing recomputed
    # changed hyperparameters make the cell unfinished again
    evaluate(benches[:1], {"counting": CountingRandom(seed=5)}, out_dir=tmp_path, progress=False)
    assert CountingRandom.fits == [100]


def test_failing_explainer_and_metric_are_recorded_and_the_grid_goes_on(tmp_path):
    bench = _bench(metrics=(Top1Class(), Broken()))
    with pytest.warns(UserWarning) as record:
        df = evaluate(
            [bench],
            {"bad": FailingFit(), "good": RandomExplainer()},
            out_dir=tmp_path,
            progress=False,
        )
    messages = " ".join(str(w.message) for w in record)
    assert "cannot fit this" in messages and "metric bug" in messages
    rows = _metric_rows(df)
    assert (rows.loc[("toy", "bad"), "status"] == "error").all()
    assert rows.loc[("toy", "bad", "top1_class"), "error"] == "fit: ValueError: cannot fit this"
    assert rows.loc[("toy", "good", "top1_class"), "status"] == "ok"
    assert rows.loc[("toy", "good", "broken"), "status"] == "error"
    assert "metric bug" in rows.loc[("toy", "good", "broken"), "error"]
    profile = df[df.kind == "profile"].set_index("explainer")
    assert profile.loc["bad", "status"] == "error" and profile.loc["good", "status"] == "ok"

    # a rerun retries the failed cell (now fixed) and keeps the good one
    evaluate(
        [bench],
        {"bad": RandomExplainer(), "good": RandomExplainer()},
        out_dir=tmp_path,
        progress=False,
    )
    rows = _metric_rows(read_results(tmp_path))
    assert rows.loc[("toy", "bad", "top1_class"), "status"] == "ok"


def test_self_influence_and_randomized_attributions_are_provided(tmp_path):
    bench = _bench(metrics=(SelfInfluenceSum(), RandomizedGap()))
    df = evaluate([bench], {"dot": OutputDot()}, out_dir=tmp_path, batch_size=16, progress=False)
    rows = _metric_rows(df)
    fitted = OutputDot().fit(bench.model, bench.train_dataset)
    assert rows.loc[("toy", "dot", "self_influence_sum"), "score"] == pytest.approx(
        float(fitted.self_influence().sum()), rel=1e-5
    )
    randomized = OutputDot().fit(randomize_model(bench.model, bench.seed), bench.train_dataset)
    x, t = bench.test_inputs, bench.truth.test_targets
    gap = (fitted.explain(x, t) - randomized.explain(x, t)).abs().mean(1).mean()
    assert float(gap) > 0
    assert rows.loc[("toy", "dot", "randomized_gap"), "score"] == pytest.approx(
        float(gap), rel=1e-5
    )
    profile = df[df.kind == "profile"].iloc[0]
    assert profile.self_influence_s > 0 and profile.randomized_s > 0


def test_randomize_model_reinitialises_a_copy_reproducibly():
    model = _bench().model
    before = [p.clone() for p in model.parameters()]
    a, b = randomize_model(model, 1), randomize_model(model, 1)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not any(torch.equal(p, q) for p, q in zip(a.parameters(), model.parameters()))


def test_metric_without_its_ground_truth_is_skipped_once(tmp_path):
    bench = _bench(metrics=(Top1Class(), NeedsFineLabels()))
    with pytest.warns(UserWarning, match="needs_fine"):
        df = evaluate([bench], {"r": RandomExplainer()}, out_dir=tmp_path, progress=False)
    rows = _metric_rows(df)
    assert rows.loc[("toy", "r", "needs_fine"), "status"] == "skipped"
    assert "train_fine_labels" in rows.loc[("toy", "r", "needs_fine"), "error"]
    CountingRandom.fits = []
    evaluate(
        [bench], {"r": RandomExplainer()}, out_dir=tmp_path, progress=False
    )  # finished: no warning needed
    assert len(read_results(tmp_path, latest=False)) == len(df)


def test_explainers_all_and_bad_arguments(tmp_path):
    ev = Evaluator([_bench()], "all", out_dir=tmp_path, progress=False)
    assert "random" in ev.explainers
    assert not any(
        type(e).__module__.startswith("dattr_eval.explainers.adapters")
        for e in ev.explainers.values()
    )
    with pytest.raises(KeyError, match="unknown explainer"):
        Evaluator([_bench()], ["no-such-explainer"], progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        Evaluator([_bench()], ["random"], batch_size=0, progress=False)
    with pytest.raises(TypeError, match="benchmarks"):
        Evaluator([42], ["random"], progress=False)


def test_memory_sampler_sees_a_large_allocation_and_timer_accumulates():
    with MemorySampler(interval_s=0.001) as mem:
        block = torch.ones(64 * 1024 * 1024 // 4 * 4)  # 256 MiB, touched
        block += 1
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        del block
    assert mem.rss_increase_mb >= 200
    assert mem.peak_rss_mb >= mem.start_rss_mb + 200
    timer = PhaseTimer()
    for _ in range(2):
        with timer("a"):
            sum(range(10000))
    assert timer.seconds["a"] > 0 and set(timer.seconds) == {"a"}


def test_warnings_not_prints(tmp_path, capsys):
    bench = _bench()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate([bench], {"r": RandomExplainer()}, out_dir=tmp_path, progress=False)
    assert capsys.readouterr().out == ""


class CheckpointProbe(RandomExplainer):
    """Records the checkpoints and learning rates it was fitted with."""

    seen: ClassVar[list] = []

    def __init__(self, seed: int = 0, checkpoints=None, learning_rates=1.0) -> None:
        super().__init__(seed=seed)
        self.checkpoints = checkpoints
        self.learning_rates = learning_rates

    def _fit(self, model, train_dataset):
        CheckpointProbe.seen.append((self.checkpoints, self.learning_rates))


def test_training_checkpoints_are_handed_to_explainers_that_take_them(tmp_path):
    from collections import namedtuple

    Ckpt = namedtuple("Ckpt", "path epoch lr")
    bench = _bench(
        checkpoints=[Ckpt(tmp_path / "e1.pt", 1, 0.1), Ckpt(tmp_path / "e2.pt", 2, 0.01)]
    )
    CheckpointProbe.seen = []
    df = evaluate(
        [bench],
        {"auto": CheckpointProbe(), "own": CheckpointProbe(checkpoints=["mine.pt"])},
        out_dir=tmp_path,
        progress=False,
    )
    assert CheckpointProbe.seen == [
        ([str(tmp_path / "e1.pt"), str(tmp_path / "e2.pt")], [0.1, 0.01]),
        (["mine.pt"], 1.0),
    ]
    # the recorded hyperparameters are the user's, not the attached paths
    assert (
        df[df.explainer == "auto"].explainer_params.iloc[0]
        == '{"checkpoints": null, "learning_rates": 1.0, "seed": 0}'
    )
