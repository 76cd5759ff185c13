"""The attribution contract: the one rule every explainer and metric shares.

An attribution tensor ``A`` is a float ``torch.Tensor`` of shape ``(n_test, n_train)``;
``A[i, j]`` is how much training sample ``j`` supports the model's output for the
explained class of test sample ``i`` (positive supports, negative opposes, 0 = none).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


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
    finite = torch.isfinite(a)
    if not bool(finite.all()):
        nan = torch.isnan(a)
        n_nan = int(nan.sum())
        n_inf = int((~finite).sum()) - n_nan
        first = _first_bad_position(~finite)
        raise AttributionContractError(
            f"{name} contains {n_nan} NaN and {n_inf} inf value(s); first at "
            f"[test {first[0]}, train {first[1]}]"
        )
    return a


def topk(a: torch.Tensor | TopK, k: int) -> TopK:
    """Return the ``k`` largest attributions per row as ``TopK(values, indices)``, each ``(n_test, k)``.

    Ties are broken towards the smaller training index, so results are deterministic.
    A ``TopK`` with at least ``k`` columns is accepted too and truncated, so metrics work on
    streamed top-k results as well as on dense attributions.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if isinstance(a, TopK):
        if a.values.shape[1] < k:
            raise ValueError(
                f"k={k} exceeds the {a.values.shape[1]} entries kept per row of the TopK"
            )
        return TopK(a.values[:, :k], a.indices[:, :k])
    check_attributions(a)
    if k > a.shape[1]:
        raise ValueError(f"k={k} exceeds n_train={a.shape[1]}")
    return fast_topk(a, k)


def merge_topk(first: TopK, second: TopK, k: int, offset: int = 0) -> TopK:
    """Merge two top-k results over disjoint column blocks; ``second``'s indices are shifted by ``offset``.

    Used to stream top-k over chunks of the training set: memory stays ``(n_test, k)``.
    """
    values = torch.cat([first.values, second.values], dim=1)
    indices = torch.cat([first.indices, second.indices + offset], dim=1)
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
    """
    if values.shape != indices.shape or values.ndim != 2:
        raise ValueError(
            f"values and indices must both be (n_test, m), got {tuple(values.shape)} and {tuple(indices.shape)}"
        )
    if not 1 <= k <= values.shape[1]:
        raise ValueError(f"k={k} must be between 1 and the {values.shape[1]} candidates per row")
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


def check_topk(t: object, n_test: int | None = None, n_train: int | None = None) -> TopK:
    """Validate a ``TopK`` (values ``(n_test, k)`` float finite, indices ``(n_test, k)`` int64 in
    ``[0, n_train)``) and return it unchanged; ``n_test`` / ``n_train`` of ``None`` skip those checks.

    Raises:
        AttributionContractError: naming what is wrong.
    """
    if not isinstance(t, TopK):
        raise AttributionContractError(f"expected a TopK(values, indices), got {type(t).__name__}")
    values = check_attributions(t.values, n_test, None, name="TopK.values")
    idx = t.indices
    if not isinstance(idx, torch.Tensor) or idx.shape != values.shape:
        shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise AttributionContractError(
            f"TopK.indices must be a tensor of the values' shape {tuple(values.shape)}, got {shape}"
        )
    if idx.is_floating_point() or idx.dtype == torch.bool or idx.is_complex():
        raise AttributionContractError(f"TopK.indices must be integers, got {idx.dtype}")
    if idx.numel():
        low, high = int(idx.min()), int(idx.max())
        if low < 0 or (n_train is not None and high >= n_train):
            bound = f"[0, n_train={n_train})" if n_train is not None else ">= 0"
            raise AttributionContractError(
                f"TopK.indices must lie in {bound}, got values in [{low}, {high}]"
            )
    return t
