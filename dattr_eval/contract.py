"""The attribution contract: the one rule every explainer and metric shares.

An attribution tensor ``A`` is a float ``torch.Tensor`` of shape ``(n_test, n_train)``;
``A[i, j]`` is how much training sample ``j`` supports the model's output for the
explained class of test sample ``i`` (positive supports, negative opposes, 0 = none).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np
import torch

from dattr_eval.validation import check_tensor


class AttributionContractError(ValueError):
    """Raised when a tensor breaks the attribution contract (see DESIGN.md)."""


class TopK(NamedTuple):
    """The ``k`` largest attributions per test sample.

    values: ``(n_test, k)`` float, sorted descending along each row.
    indices: ``(n_test, k)`` int64 training-set indices of those values.
    """

    values: torch.Tensor
    indices: torch.Tensor


def _first_bad_position(mask: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(v) for v in mask.nonzero()[0].tolist())


def check_attributions(
    a: object,
    n_test: int | None = None,
    n_train: int | None = None,
    *,
    name: str = "attributions",
) -> torch.Tensor:
    """Validate an attribution tensor against the contract and return it unchanged.

    Args:
        a: the candidate attributions, expected ``torch.Tensor`` of shape ``(n_test, n_train)``.
        n_test: expected number of rows (test samples); ``None`` skips the check.
        n_train: expected number of columns (training samples); ``None`` skips the check.
        name: the argument name used in error messages.

    Raises:
        AttributionContractError: naming what is wrong (type, ndim, shape, dtype, NaN/inf).
    """
    if not isinstance(a, torch.Tensor):
        raise AttributionContractError(
            f"{name} must be a torch.Tensor of shape (n_test, n_train), got {type(a).__name__}"
        )
    if a.ndim != 2:
        raise AttributionContractError(
            f"{name} must be 2-dimensional (n_test, n_train), got ndim={a.ndim} "
            f"with shape {tuple(a.shape)}"
        )
    expected = (
        n_test if n_test is not None else a.shape[0],
        n_train if n_train is not None else a.shape[1],
    )
    if tuple(a.shape) != expected:
        hint = ""
        if tuple(a.shape) == expected[::-1]:
            hint = " (it looks transposed: the contract is (n_test, n_train))"
        raise AttributionContractError(
            f"{name} has shape {tuple(a.shape)}, expected (n_test, n_train) = {expected}{hint}"
        )
    if not a.is_floating_point():
        raise AttributionContractError(f"{name} must have a floating dtype, got {a.dtype}")
    n_nan, n_inf, first = _count_nonfinite(a)
    if first is not None:
        raise AttributionContractError(
            f"{name} contains {n_nan} NaN and {n_inf} inf value(s); first at "
            f"[test {first[0]}, train {first[1]}]"
        )
    return a


def _count_nonfinite(
    a: torch.Tensor, block_elements: int = 1 << 22
) -> tuple[int, int, tuple[int, ...] | None]:
    """NaN and inf counts of a 2-D ``a`` and the first bad ``(row, column)`` (``None``: all finite).

    Scans blocks of rows of about ``block_elements`` entries: ``torch.isfinite`` of the whole
    tensor would allocate 1.75x its size (an ``abs`` copy and two masks).
    """
    step = max(1, block_elements // max(1, a.shape[1]))
    n_nan = n_inf = 0
    first = None
    for start in range(0, a.shape[0], step):
        block = a[start : start + step]
        bad = ~torch.isfinite(block)
        if bool(bad.any()):
            nan = int(torch.isnan(block).sum())
            n_nan, n_inf = n_nan + nan, n_inf + int(bad.sum()) - nan
            if first is None:
                row, col = _first_bad_position(bad)
                first = (start + row, col)
    return n_nan, n_inf, first


def check_topk(
    result: object,
    n_test: int | None = None,
    n_train: int | None = None,
    *,
    name: str = "topk",
) -> TopK:
    """Validate a :class:`TopK` against the contract and return it unchanged.

    Args:
        result: the candidate, expected ``TopK(values, indices)``, both ``(n_test, k)``.
        n_test: expected number of rows; ``None`` skips the check.
        n_train: size of the training set: every index must be in ``[0, n_train)``; ``None``
            checks only that indices are non-negative.
        name: the argument name used in error messages.

    Raises:
        AttributionContractError: naming what is wrong: type, ndim, shapes, dtypes, NaN/inf
            values, values not descending along a row, negative, out-of-range or repeated
            indices within a row.
    """
    if not isinstance(result, TopK):
        raise AttributionContractError(
            f"{name} must be a TopK(values, indices), got {type(result).__name__}"
        )
    values, indices = result
    for part, tensor in (("values", values), ("indices", indices)):
        if not isinstance(tensor, torch.Tensor) or tensor.ndim != 2:
            what = (
                tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            )
            raise AttributionContractError(
                f"{name}.{part} must be a 2-dimensional (n_test, k) tensor, got {what}"
            )
    if values.shape != indices.shape:
        raise AttributionContractError(
            f"{name}: values and indices must have the same (n_test, k) shape, got "
            f"{tuple(values.shape)} and {tuple(indices.shape)}"
        )
    if n_test is not None and values.shape[0] != n_test:
        raise AttributionContractError(
            f"{name} has {values.shape[0]} rows, expected n_test={n_test}"
        )
    if not values.is_floating_point():
        raise AttributionContractError(
            f"{name}.values must have a floating dtype, got {values.dtype}"
        )
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise AttributionContractError(
            f"{name}.indices must have an integer dtype (int64), got {indices.dtype}"
        )
    if values.numel() == 0:
        return result
    if not bool(torch.isfinite(values).all()):
        first = _first_bad_position(~torch.isfinite(values))
        raise AttributionContractError(
            f"{name}.values contains NaN/inf; first at [test {first[0]}, rank {first[1]}]"
        )
    rising = values[:, 1:] > values[:, :-1]
    if bool(rising.any()):
        first = _first_bad_position(rising)
        raise AttributionContractError(
            f"{name}.values must be sorted descending along each row; row {first[0]} rises "
            f"after rank {first[1]}"
        )
    if int(indices.min()) < 0:
        first = _first_bad_position(indices < 0)
        raise AttributionContractError(
            f"{name}.indices contains negative training indices; first at "
            f"[test {first[0]}, rank {first[1]}]: {int(indices[first])}"
        )
    if n_train is not None and int(indices.max()) >= n_train:
        first = _first_bad_position(indices >= n_train)
        raise AttributionContractError(
            f"{name}.indices out of range for n_train={n_train}: {int(indices[first])} at "
            f"[test {first[0]}, rank {first[1]}]"
        )
    ordered = indices.sort(dim=1).values
    repeated = ordered[:, 1:] == ordered[:, :-1]
    if bool(repeated.any()):
        row = int(repeated.nonzero()[0, 0])
        raise AttributionContractError(
            f"{name}.indices repeats a training index within row {row}: each row must name "
            "k distinct training samples"
        )
    return result


def _check_k(k: object, upper: float, what: str) -> int:
    """``k`` as an int in ``[1, upper]``; ``ValueError`` naming ``what`` bounds it."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k > upper:
        raise ValueError(f"k={k} exceeds {what}")
    return int(k)


def topk(a: torch.Tensor | TopK, k: int) -> TopK:
    """Return the ``k`` largest attributions per row as ``TopK(values, indices)``, each ``(n_test, k)``.

    Ties are broken towards the smaller training index, so results are deterministic.
    A ``TopK`` with at least ``k`` columns is accepted too (checked by :func:`check_topk`) and
    truncated, so metrics work on streamed top-k results as well as on dense attributions.

    Raises:
        ValueError: ``k`` is not an int in ``[1, n_train]`` (or the TopK's width).
        AttributionContractError: ``a`` breaks the contract.
    """
    if isinstance(a, tuple) and not isinstance(a, TopK):
        raise AttributionContractError(
            f"a must be a torch.Tensor (n_test, n_train) or a TopK(values, indices), got a plain "
            f"{type(a).__name__}: wrap it as TopK(values, indices)"
        )
    if isinstance(a, TopK):
        check_topk(a)
        k = _check_k(
            k, a.values.shape[1], f"the {a.values.shape[1]} entries kept per row of the TopK"
        )
        return TopK(a.values[:, :k], a.indices[:, :k])
    check_attributions(a)
    return fast_topk(a, _check_k(k, a.shape[1], f"n_train={a.shape[1]}"))


def merge_topk(first: TopK, second: TopK, k: int, offset: int = 0) -> TopK:
    """Merge two top-k results over disjoint column blocks; ``second``'s indices are shifted by ``offset``.

    Used to stream top-k over chunks of the training set: memory stays ``(n_test, k)``.
    ``first`` covers the columns before ``second``'s block: after shifting, every index of
    ``second`` must exceed every index of ``first`` (ties then go to ``first``, the smaller index).

    Args:
        first: ``TopK`` of ``(n_test, k1)``, the earlier columns (checked by :func:`check_topk`).
        second: ``TopK`` of ``(n_test, k2)``, the block starting at ``offset`` (checked alike).
        k: entries kept per row, a positive int; ``min(k, k1 + k2)`` are returned (a stream's
            first chunks may hold fewer than ``k`` candidates).
        offset: non-negative int added to ``second``'s indices (the start of its block).

    Raises:
        TypeError: ``offset`` is not an int.
        ValueError: bad ``k`` or ``offset``, or different row counts.
        AttributionContractError: ``first`` or ``second`` breaks the TopK contract.
    """
    check_topk(first, name="first")
    check_topk(second, name="second")
    if first.values.shape[0] != second.values.shape[0]:
        raise ValueError(
            f"first and second must have the same number of rows (test samples), got "
            f"{first.values.shape[0]} and {second.values.shape[0]}"
        )
    k = _check_k(k, math.inf, "")
    if isinstance(offset, (bool, np.bool_)) or not isinstance(offset, numbers.Integral):
        raise TypeError(f"offset must be an int, got {offset!r}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    shifted = second.indices + int(offset)
    if first.indices.numel() and shifted.numel() and int(shifted.min()) <= int(first.indices.max()):
        raise ValueError(
            f"offset={offset} puts second's indices (from {int(shifted.min())}) at or below "
            f"first's (up to {int(first.indices.max())}): the blocks must be disjoint, second after first"
        )
    values = torch.cat([first.values, second.values], dim=1)
    indices = torch.cat([first.indices, shifted], dim=1)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return TopK(values.gather(1, order), indices.gather(1, order))


def select_topk(values: torch.Tensor, indices: torch.Tensor, k: int) -> TopK:
    """The ``k`` largest of candidate attributions per row, ordered as :func:`topk` orders a dense row.

    Args:
        values: ``(n_test, m)`` float candidate attributions, ``m >= k``, in any column order.
        indices: ``(n_test, m)`` int64 training indices of ``values``, distinct within each row.
        k: entries kept per row.

    Returns:
        ``TopK`` of ``(n_test, k)``: values descending, ties towards the smaller training index
        (whatever order the candidates came in, unlike :func:`merge_topk`, which relies on
        ``first``'s indices all being below ``second``'s).

    Raises:
        TypeError: ``values`` is not floating or ``indices`` not integer.
        ValueError: shapes differ or are not 2-D, negative indices, NaN values, bad ``k``.
    """
    check_tensor(values, "values", ndim=2, floating=True, finite=True)
    check_tensor(indices, "indices", ndim=2, floating=False)
    if values.shape != indices.shape:
        raise ValueError(
            f"values and indices must have the same shape (n_test, m), got {tuple(values.shape)} "
            f"and {tuple(indices.shape)}"
        )
    if indices.numel() and int(indices.min()) < 0:
        raise ValueError(f"indices must be non-negative training indices, got {int(indices.min())}")
    k = _check_k(k, values.shape[1], f"the {values.shape[1]} candidates per row")
    by_index = torch.argsort(indices, dim=1, stable=True)
    values, indices = values.gather(1, by_index), indices.gather(1, by_index)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return TopK(values.gather(1, order), indices.gather(1, order))


def fast_topk(a: torch.Tensor, k: int) -> TopK:
    """:func:`topk` of a dense ``a`` without its checks: what a stable descending sort would keep
    (values descending, ties towards the smaller index), by partial selection instead of a full sort.

    For ``a`` of shape ``(n, m)`` already checked against the contract (not re-checked here):
    ``torch.topk`` finds the k-th and (k+1)-th largest values per row; the entries at or above the
    k-th are kept. In rows where the (k+1)-th ties with the k-th, the entries above it are kept and
    the lowest-index entries equal to it fill the remaining places. Only the ``k`` kept entries are
    then sorted. Cost ``O(m)`` per row instead of ``O(m log m)``.
    """
    n, m = a.shape
    if not 1 <= k <= m:
        raise ValueError(f"k={k} must be between 1 and the {m} columns of a")
    top = torch.topk(a, min(k + 1, m), dim=1).values  # (n, k + 1), descending
    kth = top[:, k - 1 : k]
    keep = a >= kth
    if k < m:
        rows = (top[:, k] == top[:, k - 1]).nonzero().squeeze(1)  # more than k entries >= kth
        if rows.numel():
            sub, sub_kth = a[rows], kth[rows]
            above, tied = sub > sub_kth, sub == sub_kth
            need = k - above.sum(1, keepdim=True)
            keep[rows] = above | (tied & (tied.cumsum(1) <= need))
    cols = keep.nonzero()[:, 1].view(n, k)  # row-major: increasing index within a row
    values = a.gather(1, cols)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    return TopK(values.gather(1, order), cols.gather(1, order))
