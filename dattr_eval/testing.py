"""Conformance checks for explainers and metrics (like scikit-learn's ``check_estimator``).

``check_explainer(MyExplainer)`` fits the explainer on a tiny seeded problem (or the model and
training set you give) and checks what every explainer must do: the attribution contract with
``n_test != n_train`` (a transposed result cannot pass), seeded determinism, ``explain_topk ==
topk(explain)``, ``self_influence``, the hyperparameter API (``get_params`` / ``set_params`` /
``clone``), clear errors on bad input, and that the caller's model is left as it was.
``check_metric(MyMetric)`` scores a tiny seeded ground truth (:func:`tiny_truth`) and checks the
metric protocol: true class-level metadata, the hyperparameter API, seeded determinism,
``score == statistic(units)``, exact ``merge`` of batch states folded in test order, ``TopK`` input
where accepted, clear errors on bad attributions, and ``compute`` before ``update``.
A failed check raises ``AssertionError`` whose message starts with the check's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from dattr_eval.contract import TopK, check_attributions, check_topk, topk
from dattr_eval.data.loading import stack_dataset
from dattr_eval.explainers.base import Explainer, NotApplicableError, NotFittedError
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics.base import RETRAINED_OUTPUTS, Metric, MetricResult, RetrainingMetric
from dattr_eval.params import clone

#: size of the default problem: n_test != n_train, so a transposed result fails the contract
N_TRAIN, N_TEST, N_FEATURES, N_CLASSES = 13, 5, 6, 3


class Problem(NamedTuple):
    """A model, its training set and test inputs ``(n_test, ...)`` with targets ``(n_test,)``."""

    model: nn.Module
    train_dataset: Dataset
    test_inputs: torch.Tensor
    test_targets: torch.Tensor


def tiny_problem(seed: int = 0) -> Problem:
    """A seeded 3-class problem: 13 training / 5 test points of 6 features, and an MLP
    ``Linear(6, 8) - ReLU - Linear(8, 3)`` trained on it (100 full-batch gradient steps, CPU)."""
    gen = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(N_CLASSES, N_FEATURES, generator=gen)
    labels = torch.arange(N_TRAIN + N_TEST) % N_CLASSES
    x = centres[labels] + torch.randn(N_TRAIN + N_TEST, N_FEATURES, generator=gen)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(N_FEATURES, 8), nn.ReLU(), nn.Linear(8, N_CLASSES))
    params = list(model.parameters())
    for _ in range(100):  # plain gradient descent: torch.optim's first step imports much more
        loss = F.cross_entropy(model(x[:N_TRAIN]), labels[:N_TRAIN])
        with torch.no_grad():
            for param, grad in zip(params, torch.autograd.grad(loss, params)):
                param -= 0.2 * grad
    return Problem(
        model.eval(),
        TensorDataset(x[:N_TRAIN], labels[:N_TRAIN]),
        x[N_TRAIN:],
        labels[N_TRAIN:],
    )


def assert_topk_matches(got: TopK, dense: torch.Tensor, k: int) -> None:
    """Assert ``got == contract.topk(dense, k)`` up to float rounding.

    A matrix product rounds a column differently depending on the other columns computed with it
    (vector lanes), so tied training samples tie exactly in one layout and differ in the last bit
    in another. Indices must match ``topk`` wherever the sorted dense values have no neighbour
    within rounding; at near-ties they must point at a value within rounding.
    """
    if dense.shape[0] == 0:
        assert tuple(got.values.shape) == tuple(got.indices.shape) == (0, k), (
            f"top-k of an empty batch has shape {tuple(got.values.shape)}, expected (0, {k})"
        )
        return
    full = topk(dense, dense.shape[1])
    tol = 1e-6 * float(dense.abs().max()) + 1e-7
    gaps = full.values[:, :-1] - full.values[:, 1:]  # >= 0
    near = torch.zeros_like(full.indices, dtype=torch.bool)
    near[:, :-1] |= gaps <= tol
    near[:, 1:] |= gaps <= tol
    assert got.values.shape == got.indices.shape == (dense.shape[0], k), (
        f"top-k shape {tuple(got.values.shape)}, expected {(dense.shape[0], k)}"
    )
    assert bool(((got.indices == full.indices[:, :k]) | near[:, :k]).all()), (
        "top-k indices differ from topk(explain)"
    )
    torch.testing.assert_close(got.values, full.values[:, :k], rtol=0, atol=tol)
    torch.testing.assert_close(dense.gather(1, got.indices), got.values, rtol=0, atol=tol)
    assert all(len(set(row)) == k for row in got.indices.tolist()), "top-k repeats an index"


@contextmanager
def _check(name: str) -> Iterator[None]:
    """Prefix any failure inside the block with the check's name."""
    try:
        yield
    except AssertionError as err:
        raise AssertionError(f"[{name}] {err}") from err
    except Exception as err:
        raise AssertionError(f"[{name}] raised {type(err).__name__}: {err}") from err


def _expect_error(
    call: Callable[[], Any], errors: tuple[type[BaseException], ...], argument: str
) -> None:
    """``call()`` must raise one of ``errors`` with a message naming ``argument``."""
    try:
        call()
    except errors as err:
        assert argument in str(err), f"{type(err).__name__} does not name {argument!r}: {err}"
        return
    except Exception as err:
        raise AssertionError(
            f"expected {'/'.join(e.__name__ for e in errors)} naming {argument!r}, got "
            f"{type(err).__name__}: {err}"
        ) from err
    raise AssertionError(f"expected {'/'.join(e.__name__ for e in errors)} naming {argument!r}")


def _same_params(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for name, x in a.items():
        y = b[name]
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            if not (
                isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and torch.equal(x, y)
            ):
                return False
        elif x is not y and x != y:
            return False
    return True


def _model_state(model: nn.Module) -> tuple[list[bool], dict[str, torch.Tensor]]:
    flags = [m.training for m in model.modules()]
    return flags, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_untouched(
    before: tuple[list[bool], dict[str, torch.Tensor]], model: nn.Module, when: str
) -> None:
    flags, state = _model_state(model)
    assert flags == before[0], f"{when} changed the model's train/eval flags"
    for name, value in before[1].items():
        assert torch.equal(state[name], value), f"{when} changed the model's {name}"


def check_explainer(
    explainer: Explainer | type[Explainer],
    *,
    model: nn.Module | None = None,
    train_dataset: Dataset | None = None,
) -> None:
    """Run the conformance suite on an explainer (an instance, or a class built with defaults).

    Args:
        explainer: the explainer to check; an instance is cloned for each fit, never fitted itself.
        model: a classifier mapping ``(b, *input_shape)`` to ``(b, n_classes)`` logits; ``None``
            (with ``train_dataset=None``) = :func:`tiny_problem`'s MLP, trained on CPU.
        train_dataset: the training set of ``model``; test inputs are its first samples, passed
            through a seeded perturbation.

    Raises:
        AssertionError: ``[check name] what went wrong`` for the first check that fails.
        ValueError: only one of ``model`` / ``train_dataset`` given.
    """
    if (model is None) != (train_dataset is None):
        raise ValueError("give both model and train_dataset, or neither (a tiny default is built)")
    problem = tiny_problem() if model is None else _problem_from(model, train_dataset)
    prototype = explainer() if isinstance(explainer, type) else explainer
    n_train = len(problem.train_dataset)
    x, y = problem.test_inputs, problem.test_targets

    with _check("params"):
        _check_params(prototype)
    with _check("not fitted"):
        fresh = clone(prototype)
        _expect_error(lambda: fresh.explain(x, y), (NotFittedError,), "fit")
        _expect_error(fresh.self_influence, (NotFittedError,), "fit")

    before = _model_state(problem.model)
    with _check("fit"):
        fitted = clone(prototype).fit(problem.model, problem.train_dataset)
        assert fitted.n_train_ == n_train, f"n_train_={fitted.n_train_}, expected {n_train}"
    with _check("model untouched"):
        _assert_untouched(before, problem.model, "fit")
    if _training_only(fitted, x, y):  # a training-sample ranking only (e.g. ``loss``)
        _check_training_only(fitted, x, y, n_train)
        return
    with _check("contract"):
        dense = fitted.explain(x, y)
        check_attributions(dense, len(x), n_train)
        assert dense.dtype == torch.float32, f"explain returned {dense.dtype}, expected float32"
        predicted = fitted.explain(x)
        check_attributions(predicted, len(x), n_train)
        empty = fitted.explain(x[:0], [])
        assert tuple(empty.shape) == (0, n_train), f"empty batch gave {tuple(empty.shape)}"
    with _check("determinism"):
        again = clone(prototype).fit(problem.model, problem.train_dataset).explain(x, y)
        torch.testing.assert_close(again, dense, rtol=1e-5, atol=1e-6)
    with _check("explain_topk"):
        for k in sorted({1, min(3, n_train), n_train}):
            got = fitted.explain_topk(x, k, y)
            check_topk(got, len(x), n_train)
            assert_topk_matches(got, dense, k)
    with _check("self_influence"):
        scores = fitted.self_influence()
        assert tuple(scores.shape) == (n_train,), (
            f"shape {tuple(scores.shape)}, expected ({n_train},)"
        )
        assert scores.dtype == torch.float32 and bool(torch.isfinite(scores).all())
    with _check("dtype"):
        cast = fitted.explain(x.double(), y)
        torch.testing.assert_close(cast, dense, rtol=1e-4, atol=1e-5 * float(dense.abs().max()))
    with _check("bad input"):
        _check_bad_inputs(fitted, x, y)
    with _check("model untouched"):
        _assert_untouched(before, problem.model, "explain, explain_topk or self_influence")
    with _check("clone of fitted"):
        twin = clone(fitted)
        assert not hasattr(twin, "model_"), "clone of a fitted explainer is fitted"
        assert _same_params(twin.get_params(), fitted.get_params()), "clone changed the params"


def _training_only(fitted: Explainer, x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether ``explain`` refuses with ``NotApplicableError`` (other failures are the contract check's)."""
    try:
        fitted.explain(x, y)
    except NotApplicableError:
        return True
    except Exception:  # noqa: BLE001 (reported by the contract check that follows)
        return False
    return False


def _check_training_only(fitted: Explainer, x: torch.Tensor, y: torch.Tensor, n_train: int) -> None:
    """An explainer without per-test attributions: both queries refuse alike, ``self_influence`` works."""
    with _check("not applicable"):
        _expect_error(lambda: fitted.explain_topk(x, 1, y), (NotApplicableError,), "self_influence")
    with _check("self_influence"):
        scores = fitted.self_influence()
        assert tuple(scores.shape) == (n_train,), (
            f"shape {tuple(scores.shape)}, expected ({n_train},)"
        )
        assert scores.dtype == torch.float32 and bool(torch.isfinite(scores).all())


def _problem_from(model: nn.Module, train_dataset: Dataset) -> Problem:
    """Test points from a given training set: its first (up to 5) samples, slightly perturbed."""
    inputs, labels = stack_dataset(train_dataset)
    n_test = min(N_TEST, len(labels) - 1) if len(labels) > 1 else 1
    gen = torch.Generator().manual_seed(0)
    noise = 0.01 * torch.randn(inputs[:n_test].shape, generator=gen, dtype=inputs.dtype)
    return Problem(model, train_dataset, inputs[:n_test] + noise, labels[:n_test])


def _check_params(explainer: Explainer) -> None:
    params = explainer.get_params()
    rebuilt = type(explainer)(**params)
    assert _same_params(rebuilt.get_params(), params), (
        "__init__ must store each argument unchanged under its own name "
        f"({params} rebuilt as {rebuilt.get_params()})"
    )
    assert explainer.set_params(**params) is explainer, "set_params must return self"
    _expect_error(
        lambda: clone(explainer).set_params(no_such_param_=1), (ValueError,), "no_such_param_"
    )
    twin = clone(explainer)
    assert type(twin) is type(explainer) and twin is not explainer
    assert _same_params(twin.get_params(), params), "clone changed the params"


def _check_bad_inputs(fitted: Explainer, x: torch.Tensor, y: torch.Tensor) -> None:
    n_classes = fitted.n_classes_
    bad_targets = y.clone()
    bad_targets[0] = n_classes
    nan_inputs = x.clone()
    nan_inputs.view(-1)[0] = float("nan")
    value_errors = (ValueError,)
    _expect_error(lambda: fitted.explain(x[0], y[:1]), value_errors, "inputs")  # no batch dim
    _expect_error(lambda: fitted.explain(x[..., None], y), value_errors, "inputs")
    _expect_error(lambda: fitted.explain(nan_inputs, y), value_errors, "inputs")
    _expect_error(lambda: fitted.explain(x.long(), y), (TypeError,), "inputs")
    _expect_error(lambda: fitted.explain(x, bad_targets), value_errors, "targets")
    _expect_error(lambda: fitted.explain(x, y[:-1]), value_errors, "targets")
    _expect_error(lambda: fitted.explain(x, y.float()), (TypeError,), "targets")
    _expect_error(lambda: fitted.explain_topk(x, 0, y), value_errors, "k")
    _expect_error(lambda: fitted.explain_topk(x, fitted.n_train_ + 1, y), value_errors, "k")


# ---------------------------------------------------------------------- metrics
#: the metric categories listings and reports know
METRIC_CATEGORIES = ("ground-truth", "retraining", "sanity", "property")
#: the ground-truth names the evaluator provides besides the benchmark's fields
PROVIDED = ("self_influence", "randomized_attributions", RETRAINED_OUTPUTS)


class Truth(NamedTuple):
    """Attributions ``(n_test, n_train)``, every ground-truth field, and a linear datamodel
    ``weights`` ``(n_test, n_train)`` that answers retraining requests (the model trained on S
    outputs ``Σ_{i∈S} weights[t, i]``)."""

    attributions: torch.Tensor
    truth: GroundTruth
    weights: torch.Tensor


def tiny_truth(seed: int = 0, n_test: int = 6, n_train: int = 9) -> Truth:
    """A seeded ground truth with every field set (3 classes, 5 fine classes, 3 flipped and 3
    marked training samples, shortcut class 2), its attributions and a linear datamodel."""
    gen = torch.Generator().manual_seed(seed)
    attributions = torch.randn(n_test, n_train, generator=gen)
    truth = GroundTruth(
        train_labels=torch.arange(n_train) % 3,
        train_fine_labels=torch.arange(n_train) % 5,
        mislabeled_indices=torch.tensor([1, 4, 6]),
        marked_train_indices=torch.tensor([0, 2, 5]),
        shortcut_class=2,
        n_classes=3,
        self_influence=torch.randn(n_train, generator=gen),
        test_labels=torch.arange(n_test) % 3,
        test_targets=(torch.arange(n_test) + 1) % 3,
        test_predictions=torch.full((n_test,), 2),
        test_fine_labels=torch.arange(n_test) % 5,
        test_positions=torch.arange(n_test),
        randomized_attributions=torch.randn(n_test, n_train, generator=gen),
    )
    return Truth(attributions, truth, torch.randn(n_test, n_train, generator=gen))


def score_metric(metric: Metric, problem: Truth, parts: list[slice] | None = None) -> MetricResult:
    """Update ``metric`` with ``problem``'s batches ``parts`` (default one batch) and compute it;
    retraining requests are answered by the problem's linear datamodel."""
    for part in parts or [slice(None)]:
        a = problem.attributions[part] if metric.needs_attributions else None
        metric.update(a, problem.truth.select(part))
    return _compute(metric, problem)


def _compute(metric: Metric, problem: Truth) -> MetricResult:
    if not isinstance(metric, RetrainingMetric):
        return metric.compute()
    requests = metric.retrain_requests()
    outputs = torch.stack([problem.weights[:, r.indices].sum(1) + 0.01 * r.seed for r in requests])
    return metric.compute(outputs)


def check_metric(metric: Metric | type[Metric], problem: Truth | None = None) -> None:
    """Run the conformance suite on a metric (an instance, or a class built with defaults).

    Args:
        metric: the metric to check; an instance is cloned for each run, never updated itself.
        problem: attributions and ground truth to score (default :func:`tiny_truth`).

    Raises:
        AssertionError: ``[check name] what went wrong`` for the first check that fails.
    """
    problem = problem or tiny_truth()
    prototype = metric() if isinstance(metric, type) else metric
    cls = type(prototype)
    n_test = problem.attributions.shape[0]
    with _check("metadata"):
        assert cls.category in METRIC_CATEGORIES, (
            f"category {cls.category!r} not in {METRIC_CATEGORIES}"
        )
        assert isinstance(cls.higher_is_better, bool), "higher_is_better must be a bool"
        assert isinstance(cls.requires, tuple), "requires must be a tuple of names"
        fields = set(GroundTruth.__dataclass_fields__) | set(PROVIDED)
        unknown = [r for r in cls.requires if r not in fields]
        assert not unknown, f"requires names no ground truth: {unknown}"
        assert isinstance(cls.unit, str) and cls.unit, "unit must name what the units are"
        assert cls.summary, "summary (one line) is missing"
        assert prototype.requires == cls.requires, "an instance changed its class-level requires"
        if isinstance(prototype, RetrainingMetric):
            assert RETRAINED_OUTPUTS in cls.requires, (
                "a RetrainingMetric must require retrained_outputs"
            )
        if cls.accepts_topk:
            assert isinstance(prototype.top_k_needed, int), "accepts_topk needs an int top_k_needed"
        if cls.category == "sanity":
            assert cls.sanity_threshold is not None, "a sanity check needs its sanity_threshold"
    with _check("params"):
        _check_params(prototype)
    with _check("determinism and statistic"):
        first = score_metric(clone(prototype), problem)
        second = score_metric(clone(prototype), problem)
        assert _same_result(first, second), "two runs on the same input differ"
        if first.units is not None and len(first.units):
            assert _close(first.statistic(first.units), first.score), (
                f"score {first.score} != statistic(units) {first.statistic(first.units)}"
            )
    with _check("merge"):
        cut = n_test // 2
        parts = [slice(0, cut), slice(cut, n_test)]
        merged = clone(prototype)
        for part in parts:
            one = clone(prototype)
            a = problem.attributions[part] if one.needs_attributions else None
            one.update(a, problem.truth.select(part))
            merged.merge(one)
        sequential = score_metric(clone(prototype), problem, parts)
        assert _same_result(_compute(merged, problem), sequential), (
            "merged batch states != the same batches updated in order"
        )
    if cls.accepts_topk and prototype.needs_attributions:
        with _check("topk"):
            streamed = clone(prototype)
            streamed.update(topk(problem.attributions, prototype.top_k_needed), problem.truth)
            assert _same_result(_compute(streamed, problem), first), (
                "TopK input gave another result"
            )
    if prototype.needs_attributions:
        with _check("bad input"):
            for bad in (
                problem.attributions[:, :-1],
                problem.attributions.T,
                problem.attributions.long(),
            ):
                _expect_error(
                    lambda b=bad: clone(prototype).update(b, problem.truth),
                    (ValueError,),
                    "attributions",
                )
            nan = problem.attributions.clone()
            nan[0, 0] = float("nan")
            _expect_error(lambda: clone(prototype).update(nan, problem.truth), (ValueError,), "NaN")
    with _check("compute before update"):
        fresh = clone(prototype)
        try:
            _compute(fresh, problem)
        except RuntimeError as err:
            assert "update" in str(err), f"RuntimeError does not say to call update: {err}"
        else:
            raise AssertionError("compute() before update() must raise RuntimeError")


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _same_result(a: MetricResult, b: MetricResult) -> bool:
    if not _close(a.score, b.score):
        return False
    if (a.units is None) != (b.units is None):
        return False
    if a.units is None:
        return True
    return a.units.shape == b.units.shape and bool(np.array_equal(a.units, b.units, equal_nan=True))
