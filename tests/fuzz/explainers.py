"""Fuzz targets of the Explainer entry points: fit, explain, explain_topk, predict, set_params."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn
from torch.utils.data import TensorDataset

from dattr_eval import explainers
from dattr_eval.contract import check_attributions, check_topk
from dattr_eval.testing import assert_topk_matches, tiny_problem
from tests.fuzz import NOT_INT, Bad, Items, Target


@functools.cache
def fitted(name: str) -> Any:
    """A fitted explainer on the tiny problem (13 training points, 6 features, 3 classes)."""
    problem = tiny_problem()
    return explainers.create(name).fit(problem.model, problem.train_dataset)


N_TRAIN_FUZZ, N_FEATURES_FUZZ, N_CLASSES_FUZZ = 13, 6, 3
FLOAT_DTYPES = st.sampled_from([np.float16, np.float32, np.float64])


@st.composite
def _inputs(draw, min_rows: int = 0, max_rows: int = 5):
    n = draw(st.integers(min_rows, max_rows))
    x = draw(hnp.arrays(FLOAT_DTYPES, (n, N_FEATURES_FUZZ), elements=st.floats(-10, 10, width=16)))
    return torch.from_numpy(x)


@st.composite
def _targets(draw, n: int):
    values = draw(st.lists(st.integers(0, N_CLASSES_FUZZ - 1), min_size=n, max_size=n))
    kind = draw(st.sampled_from(["none", "tensor", "list", "numpy"]))
    if kind == "none":
        return None
    if kind == "list":
        return values
    if kind == "numpy":
        return np.array(values, dtype=np.int64).reshape(n)
    return torch.tensor(values, dtype=torch.long).reshape(n)


@st.composite
def _explain_valid(draw):
    x = draw(_inputs())
    return draw(st.sampled_from(["random", "feature_similarity"])), x, draw(_targets(len(x)))


def _explain_check(case, out):
    name, x, targets = case
    check_attributions(out, len(x), N_TRAIN_FUZZ)
    assert out.dtype == torch.float32
    xpl = fitted(name)
    for i in range(len(x)):  # a row does not depend on the rest of the batch
        alone = xpl.explain(x[i : i + 1], None if targets is None else [int(targets[i])])
        torch.testing.assert_close(alone[0], out[i], rtol=1e-5, atol=1e-5)


@st.composite
def _bad_inputs(draw):
    """Inputs that break the explainer's input rules, and the word the error must name."""
    x = draw(_inputs(min_rows=1))
    kind = draw(st.sampled_from(["nan", "int", "list", "numpy", "features", "single", "extra"]))
    if kind == "nan":
        x = x.clone()
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = draw(
            st.sampled_from([float("nan"), float("inf"), -float("inf")])
        )
    elif kind == "int":
        x = x.long() if draw(st.booleans()) else x > 0
    elif kind == "list":
        x = x.tolist()
    elif kind == "numpy":
        x = x.numpy()
    elif kind == "features":
        x = torch.zeros(len(x), draw(st.integers(1, 12).filter(lambda d: d != N_FEATURES_FUZZ)))
    elif kind == "single":
        x = x[0]
    else:
        x = x[..., None]
    return x


@st.composite
def _bad_targets(draw, n: int):
    kind = draw(st.sampled_from(["range", "negative", "float", "length", "bool", "2d"]))
    if n == 0 and kind in ("range", "negative"):  # no entry to put out of range
        kind = "length"
    if kind == "range":
        return torch.full((n,), draw(st.integers(N_CLASSES_FUZZ, 10**6)))
    if kind == "negative":
        return torch.full((n,), draw(st.integers(-(10**6), -1)))
    if kind == "float":
        return torch.zeros(n) + draw(st.floats(0, 2))
    if kind == "length":
        return torch.zeros(n + draw(st.integers(1, 3)), dtype=torch.long)
    if kind == "bool":
        return torch.zeros(n, dtype=torch.bool)
    return torch.zeros(n, 1, dtype=torch.long)


@st.composite
def _explain_invalid(draw):
    name = draw(st.sampled_from(["random", "feature_similarity"]))
    if draw(st.booleans()):
        return Bad((name, draw(_bad_inputs()), None), "inputs")
    x = draw(_inputs())
    return Bad((name, x, draw(_bad_targets(len(x)))), "targets")


@st.composite
def _topk_call_valid(draw):
    x = draw(_inputs())
    return (
        draw(st.sampled_from(["random", "feature_similarity"])),
        x,
        draw(st.integers(1, N_TRAIN_FUZZ)),
        draw(_targets(len(x))),
        draw(st.integers(1, 20)),
        draw(st.none() | st.integers(1, 8)),
    )


def _explain_topk(case):
    name, x, k, targets, chunk_size, batch_size = case
    return fitted(name).explain_topk(x, k, targets, chunk_size=chunk_size, batch_size=batch_size)


def _explain_topk_check(case, out):
    name, x, k, targets, _, _ = case
    check_topk(out, len(x), N_TRAIN_FUZZ)
    assert_topk_matches(out, fitted(name).explain(x, targets), k)


@st.composite
def _topk_call_invalid(draw):
    name, x, k, targets, chunk_size, batch_size = draw(_topk_call_valid())
    kind = draw(st.sampled_from(["k", "chunk_size", "batch_size", "inputs", "targets"]))
    bad_int = st.one_of(st.integers(max_value=0), NOT_INT)
    if kind == "k":
        k = draw(bad_int | st.integers(N_TRAIN_FUZZ + 1))
    elif kind == "chunk_size":
        chunk_size = draw(bad_int)
    elif kind == "batch_size":
        batch_size = draw(bad_int.filter(lambda v: v is not None))
    elif kind == "inputs":
        x = draw(_bad_inputs())
        targets = None
    else:
        targets = draw(_bad_targets(len(x)))
    return Bad((name, x, k, targets, chunk_size, batch_size), kind)


@st.composite
def _fit_valid(draw):
    n = draw(st.integers(1, 12))
    dtype = draw(st.sampled_from([torch.float16, torch.float32, torch.float64]))
    x = torch.from_numpy(draw(hnp.arrays(np.float32, (n, 4), elements=st.floats(-5, 5, width=16))))
    y = torch.tensor(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=torch.long)
    name = draw(st.sampled_from(["random", "feature_similarity"]))
    return name, TensorDataset(x.to(dtype), y)


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))


def _fit(case):
    name, dataset, *params = case
    return explainers.create(name, **(params[0] if params else {})).fit(_linear(), dataset)


def _fit_check(case, out):
    _, dataset = case
    assert out.n_train_ == len(dataset) and out.n_classes_ == N_CLASSES_FUZZ
    assert torch.equal(out.train_labels_, dataset.tensors[1])
    check_attributions(out.explain(torch.zeros(2, 4)), 2, len(dataset))


@st.composite
def _fit_invalid(draw):
    name, dataset = draw(_fit_valid())
    x, y = dataset.tensors
    kind = draw(
        st.sampled_from(
            [
                "float labels",
                "negative",
                "range",
                "items",
                "empty",
                "features",
                "param",
                "labels 2d",
            ]
        )
    )
    if kind == "float labels":
        return Bad((name, TensorDataset(x, y.float() + draw(st.floats(0, 0.99)))), "label")
    if kind == "negative":
        y = y.clone()
        y[draw(st.integers(0, len(y) - 1))] = -draw(st.integers(1, 100))
        return Bad((name, TensorDataset(x, y)), "labels")
    if kind == "range":
        y = y.clone()
        y[draw(st.integers(0, len(y) - 1))] = draw(st.integers(3, 10**6))
        return Bad((name, TensorDataset(x, y)), "labels")
    if kind == "labels 2d":
        return Bad((name, TensorDataset(x, y[:, None])), "label")
    if kind == "items":
        item = draw(
            st.sampled_from(
                [
                    torch.zeros(4),
                    (torch.zeros(4),),
                    (torch.zeros(4), 0, 1),
                    ("x", 0),
                    (torch.zeros(4), "a"),
                ]
            )
        )
        return Bad((name, Items(item)), "train_dataset[0]")
    if kind == "empty":
        return Bad((name, TensorDataset(x[:0], y[:0])), "train_dataset")
    if kind == "features":
        d = draw(st.integers(1, 8).filter(lambda v: v != 4))
        return Bad((name, TensorDataset(torch.zeros(len(y), d), y)), "model")
    param, value = draw(
        st.sampled_from(
            [
                ("device", "tpu"),
                ("device", "meta"),
                ("device", "cuda:7"),
                ("device", "xyz"),
                ("seed", 2.5),
                ("seed", -1),
                ("seed", True),
            ]
        )
    )
    if name == "feature_similarity" and param == "seed":
        param, value = "batch_size", draw(st.sampled_from([0, -2, 2.5, True]))
    return Bad((name, dataset, {param: value}), param)


@st.composite
def _set_params_invalid(draw):
    name = draw(st.sampled_from(["random", "feature_similarity", "dualview", "grad_dot"]))
    bad = draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
    if bad in explainers.get(name)._param_names():
        bad = bad + "_x"
    return Bad((name, {bad: 1}), bad)


def _predict_check(case, out):
    assert out.shape == (len(case),) and out.dtype == torch.long, out
    assert bool(((out >= 0) & (out < N_CLASSES_FUZZ)).all()), out


def _set_params_check(case, out):
    assert all(out.get_params()[k] == v for k, v in case[1].items()), out


def _set_params(case):
    name, params = case
    return explainers.create(name).set_params(**params)


EXPLAINERS = [
    Target(
        "Explainer.explain",
        "explainers",
        lambda c: fitted(c[0]).explain(c[1], c[2]),
        _explain_valid(),
        _explain_invalid(),
        _explain_check,
        weight=0.5,
    ),
    Target(
        "Explainer.explain_topk",
        "explainers",
        _explain_topk,
        _topk_call_valid(),
        _topk_call_invalid(),
        _explain_topk_check,
        weight=0.5,
    ),
    Target(
        "Explainer.predict",
        "explainers",
        lambda c: fitted("random").predict(c),
        _inputs(),
        _bad_inputs().map(lambda x: Bad(x, "inputs")),
        _predict_check,
    ),
    Target(
        "Explainer.fit", "explainers", _fit, _fit_valid(), _fit_invalid(), _fit_check, weight=0.5
    ),
    Target(
        "Explainer.set_params",
        "explainers",
        _set_params,
        st.sampled_from(
            [("random", {"seed": 3}), ("dualview", {"C": 0.5}), ("grad_dot", {"batch_size": 4})]
        ),
        _set_params_invalid(),
        _set_params_check,
    ),
]
