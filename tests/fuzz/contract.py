"""Fuzz targets of the attribution contract (``dattr_eval.contract``) and the validation helpers."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dattr_eval import validation
from dattr_eval.contract import (
    TopK,
    check_attributions,
    check_topk,
    merge_topk,
    select_topk,
    topk,
)
from tests.fuzz import NOT_INT, Bad, Target, assert_same_topk, matrices, reference_topk


def _columns(a: torch.Tensor) -> torch.Tensor:
    return torch.arange(a.shape[1]).expand(a.shape[0], -1)


def _check_attributions_valid():
    return matrices().map(lambda a: (a, a.shape[0], a.shape[1]))


@st.composite
def _check_attributions_invalid(draw):
    a = draw(matrices(min_rows=1))
    n, m = a.shape
    kind = draw(st.sampled_from(["nan", "inf", "shape", "ndim", "dtype", "type"]))
    if kind in ("nan", "inf"):
        a = a.clone()
        a[draw(st.integers(0, n - 1)), draw(st.integers(0, m - 1))] = (
            float("nan") if kind == "nan" else float("inf")
        )
        return Bad((a, n, m), "NaN" if kind == "nan" else "inf")
    if kind == "shape":
        return Bad((a, n + draw(st.integers(1, 3)), m), "shape")
    if kind == "ndim":
        return Bad((a.reshape(-1), n, m), "dimensional")
    if kind == "dtype":
        return Bad((a.long(), n, m), "dtype")
    return Bad((a.tolist(), n, m), "torch.Tensor")


@st.composite
def _topk_valid(draw):
    a = draw(matrices())
    return a, draw(st.integers(1, a.shape[1]))


@st.composite
def _topk_invalid(draw):
    a = draw(matrices())
    k = draw(st.one_of(st.integers(max_value=0), st.integers(a.shape[1] + 1, 10**6), NOT_INT))
    return Bad((a, k), "k")


def _returns_input(case, out):
    assert out is case[0], "check_attributions must return its input unchanged"


def _topk_check(case, out):
    a, k = case
    assert_same_topk(out, reference_topk(a, _columns(a), k))


@st.composite
def _topk_of_topk_valid(draw):
    a = draw(matrices())
    width = draw(st.integers(1, a.shape[1]))
    return reference_topk(a, _columns(a), width), draw(st.integers(1, width))


@st.composite
def _topk_of_topk_invalid(draw):
    full, k = draw(_topk_of_topk_valid())
    broken = draw(_broken_topk(full))
    return Bad((broken.case, k), broken.argument)


@st.composite
def _broken_topk(draw, result: TopK, n_train: int | None = None):
    """``result`` with one contract violation, and what the error must name."""
    values, indices = result.values.clone(), result.indices.clone()
    n, k = values.shape
    kinds = ["type", "ndim", "dtype"]
    if n:
        kinds += ["negative", "nan"]
        if k > 1:
            kinds += ["repeat", "rising"]
    kind = draw(st.sampled_from(kinds))
    if kind == "type":
        return Bad((values, indices), "TopK")
    if kind == "ndim":
        return Bad(TopK(values.reshape(-1), indices.reshape(-1)), "2-dimensional")
    if kind == "dtype":
        return Bad(TopK(values, indices.float()), "integer dtype")
    row = draw(st.integers(0, n - 1))
    if kind == "negative":
        indices[row, draw(st.integers(0, k - 1))] = -draw(st.integers(1, 10))
        return Bad(TopK(values, indices), "negative")
    if kind == "nan":
        values[row, draw(st.integers(0, k - 1))] = float("nan")
        return Bad(TopK(values, indices), "NaN")
    if kind == "repeat":
        indices[row, 1] = indices[row, 0]
        return Bad(TopK(values, indices), "repeats")
    values[row, 1] = values[row, 0] + 1.0 + abs(float(values[row, 0]))  # a rise after rank 0
    return Bad(TopK(values, indices), "descending")


def _topk_of_topk_check(case, out):
    full, k = case
    assert_same_topk(out, TopK(full.values[:, :k], full.indices[:, :k]))


@st.composite
def _merge_valid(draw):
    """Two top-k blocks of one matrix split at column ``s``; the oracle sorts their union."""
    a = draw(matrices(min_cols=2))
    s = draw(st.integers(1, a.shape[1] - 1))
    k1, k2 = draw(st.integers(1, s)), draw(st.integers(1, a.shape[1] - s))
    first = reference_topk(a[:, :s], _columns(a[:, :s]), k1)
    second = reference_topk(a[:, s:], _columns(a[:, s:]), k2)
    return first, second, draw(st.integers(1, k1 + k2 + 2)), s


def _merge_check(case, out):
    first, second, k, offset = case
    values = torch.cat([first.values, second.values], 1)
    indices = torch.cat([first.indices, second.indices + offset], 1)
    assert_same_topk(out, reference_topk(values, indices, k))


@st.composite
def _merge_invalid(draw):
    first, second, k, offset = draw(_merge_valid())
    kind = draw(st.sampled_from(["k", "offset", "overlap", "rows", "first", "second"]))
    if kind == "k":
        return Bad((first, second, draw(st.one_of(st.integers(max_value=0), NOT_INT)), offset), "k")
    if kind == "offset":
        bad = draw(st.one_of(st.integers(max_value=-1), st.floats(), st.booleans()))
        return Bad((first, second, k, bad), "offset")
    if kind == "overlap" and first.indices.numel():
        # an offset putting second's smallest index at or below first's largest one
        top = int(first.indices.max()) - int(second.indices.min())
        bad = draw(st.integers(0, top)) if top >= 0 else draw(st.integers(max_value=-1))
        return Bad((first, second, k, bad), "offset")
    if kind == "rows":
        extra = TopK(second.values[:0], second.indices[:0])
        if second.values.shape[0] == 0:
            extra = TopK(torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.long))
        return Bad((first, extra, k, offset), "rows")
    broken = draw(_broken_topk(first if kind == "first" else second))
    pair = (broken.case, second) if kind == "first" else (first, broken.case)
    return Bad((*pair, k, offset), broken.argument)


@st.composite
def _select_valid(draw):
    a = draw(matrices())
    rows = [draw(st.permutations(range(a.shape[1]))) for _ in range(a.shape[0])]
    perm = torch.tensor(rows, dtype=torch.long).reshape(a.shape)  # distinct indices, any order
    return a, perm + draw(st.integers(0, 1000)), draw(st.integers(1, a.shape[1]))


def _select_check(case, out):
    values, indices, k = case
    assert_same_topk(out, reference_topk(values, indices, k))


@st.composite
def _select_invalid(draw):
    values, indices, k = draw(_select_valid())
    kind = draw(st.sampled_from(["k", "negative", "shape", "dtype", "nan"]))
    if kind == "k":
        bad = draw(st.one_of(st.integers(max_value=0), st.integers(values.shape[1] + 1), NOT_INT))
        return Bad((values, indices, bad), "k")
    if kind == "negative" and indices.numel():
        return Bad((values, indices - 10**4, k), "indices")
    if kind == "shape":
        return (
            Bad((values, indices[:, :-1], k), "shape")
            if values.shape[1] > 1
            else Bad((values, indices.reshape(-1), k), "indices")
        )
    if kind == "nan" and values.numel():
        values = values.clone()
        values.view(-1)[0] = float("nan")
        return Bad((values, indices, k), "values")
    return Bad((values, indices.float(), k), "indices")


@st.composite
def _check_topk_valid(draw):
    a = draw(matrices())
    k = draw(st.integers(1, a.shape[1]))
    return reference_topk(a, _columns(a), k), a.shape[0], a.shape[1]


@st.composite
def _check_topk_invalid(draw):
    result, n, m = draw(_check_topk_valid())
    kind = draw(st.sampled_from(["broken", "range", "rows"]))
    if kind == "range" and n:
        indices = result.indices.clone()
        indices[0, 0] = m + draw(st.integers(0, 5))
        return Bad((TopK(result.values, indices), n, m), "out of range")
    if kind == "rows":
        return Bad((result, n + 1, m), "rows")
    broken = draw(_broken_topk(result))
    return Bad((broken.case, n, m), broken.argument)


CONTRACT = [
    Target(
        "contract.check_attributions",
        "contract",
        lambda c: check_attributions(*c),
        _check_attributions_valid(),
        _check_attributions_invalid(),
        _returns_input,
    ),
    Target(
        "contract.topk", "contract", lambda c: topk(*c), _topk_valid(), _topk_invalid(), _topk_check
    ),
    Target(
        "contract.topk(TopK)",
        "contract",
        lambda c: topk(*c),
        _topk_of_topk_valid(),
        _topk_of_topk_invalid(),
        _topk_of_topk_check,
    ),
    Target(
        "contract.merge_topk",
        "contract",
        lambda c: merge_topk(*c),
        _merge_valid(),
        _merge_invalid(),
        _merge_check,
    ),
    Target(
        "contract.select_topk",
        "contract",
        lambda c: select_topk(*c),
        _select_valid(),
        _select_invalid(),
        _select_check,
    ),
    Target(
        "contract.check_topk",
        "contract",
        lambda c: check_topk(*c),
        _check_topk_valid(),
        _check_topk_invalid(),
    ),
]


def _positive_check(case, out):
    assert out == case[0] and out > 0 and type(out) is (int if case[1] else float), out


def _seed_check(case, out):
    assert out == case and type(out) is int, out


def _indices_check(case, out):
    assert out.dtype == torch.long and out.tolist() == list(case[0]), out


NUMPY_INT = st.integers(-(2**31), 2**31 - 1).map(np.int64)
VALIDATION = [
    Target(
        "validation.check_positive",
        "validation",
        lambda c: validation.check_positive(c[0], "C", integer=c[1]),
        st.one_of(
            st.tuples(st.floats(1e-300, 1e300), st.just(False)),
            st.tuples(st.integers(1, 2**62) | NUMPY_INT.filter(lambda v: v > 0), st.just(True)),
        ),
        st.one_of(
            st.tuples(
                st.floats(allow_nan=True).filter(lambda v: not 0 < v < float("inf")), st.just(False)
            ),
            st.tuples(st.booleans() | st.text(max_size=2) | st.none(), st.booleans()),
            st.tuples(st.floats(allow_nan=True) | st.integers(max_value=0), st.just(True)),
        ).map(lambda c: Bad(c, "C")),
        _positive_check,
    ),
    Target(
        "validation.check_seed",
        "validation",
        validation.check_seed,
        st.integers(0, 2**63 - 1) | NUMPY_INT.filter(lambda v: v >= 0),
        st.one_of(
            st.integers(max_value=-1), st.integers(min_value=2**63), NOT_INT, st.floats()
        ).map(lambda v: Bad(v, "seed")),
        _seed_check,
    ),
    Target(
        "validation.check_fraction",
        "validation",
        lambda c: validation.check_fraction(c, "fraction"),
        st.floats(0, 1, exclude_min=True, exclude_max=True),
        st.one_of(
            st.floats(allow_nan=True).filter(lambda v: not 0 < v < 1),
            NOT_INT.filter(lambda v: not isinstance(v, float)),
        ).map(lambda v: Bad(v, "fraction")),
    ),
    Target(
        "validation.check_labels",
        "validation",
        lambda c: validation.check_labels(c[0], "targets", n_classes=c[1]),
        st.integers(1, 10).flatmap(
            lambda n: st.tuples(
                st.one_of(
                    st.lists(st.integers(0, n - 1), max_size=6),
                    hnp.arrays(np.int32, st.integers(0, 6), elements=st.integers(0, n - 1)),
                ),
                st.just(n),
            )
        ),
        st.one_of(
            st.tuples(st.lists(st.integers(max_value=-1), min_size=1, max_size=3), st.just(5)),
            st.tuples(st.lists(st.integers(5, 100), min_size=1, max_size=3), st.just(5)),
            st.tuples(st.lists(st.floats(allow_nan=False), min_size=1, max_size=3), st.just(5)),
            st.tuples(hnp.arrays(np.int64, (2, 2)), st.just(5)),
            st.tuples(st.just(torch.tensor([True])), st.just(5)),
        ).map(lambda c: Bad(c, "targets")),
    ),
    Target(
        "validation.check_device",
        "validation",
        validation.check_device,
        st.sampled_from(["cpu", torch.device("cpu")]),
        st.one_of(
            st.sampled_from(["meta", "tpu", "xyz", "cuda:x", "", "gpu"]),
            st.text(max_size=6).filter(lambda s: s.strip() not in ("cpu",)),
            st.integers(-3, 3) if not torch.cuda.is_available() else st.just(-1),
            st.none(),
            st.floats(),
        ).map(lambda v: Bad(v, "device")),
    ),
    Target(
        "validation.check_indices",
        "validation",
        lambda c: validation.check_indices(c[0], "indices", c[1]),
        st.integers(1, 20).flatmap(
            lambda n: st.tuples(st.lists(st.integers(0, n - 1), max_size=8), st.just(n))
        ),
        st.integers(1, 20)
        .flatmap(
            lambda n: st.tuples(
                st.lists(
                    st.integers(n, n + 100) | st.integers(max_value=-1), min_size=1, max_size=4
                )
                | st.lists(st.floats(), min_size=1, max_size=3),
                st.just(n),
            )
        )
        .map(lambda c: Bad(c, "indices")),
        _indices_check,
    ),
    Target(
        "validation.check_sample",
        "validation",
        lambda c: validation.check_sample(c, "train_dataset[0]"),
        st.tuples(
            hnp.arrays(
                st.sampled_from([np.float16, np.float32, np.float64]),
                hnp.array_shapes(max_dims=3, max_side=3),
            ),
            st.integers(0, 100) | st.integers(0, 100).map(torch.tensor),
        ),
        st.one_of(
            st.tuples(
                st.just(torch.zeros(2)),
                st.floats(allow_nan=True) | st.booleans() | st.text(max_size=2),
            ),
            st.tuples(st.just(torch.zeros(2)), st.just(torch.zeros(2, dtype=torch.long))),
            st.tuples(
                st.text(max_size=2) | st.integers() | st.just(torch.zeros(2, dtype=torch.long)),
                st.just(1),
            ),
            st.lists(st.just(1), max_size=4).filter(lambda v: len(v) != 2).map(tuple),
            st.just(torch.zeros(3)),
        ).map(lambda v: Bad(v, "train_dataset[0]")),
    ),
]
