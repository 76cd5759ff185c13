"""Rank statistics shared by the metrics and the statistics module, written once and vectorised over rows.

- ``average_ranks``: ranks with ties given their mean rank (scipy's ``rankdata(method="average")``).
- ``spearman_rows``: row-wise Spearman correlation (Pearson correlation of average ranks).
- ``average_precision_rows``: row-wise area under the precision-recall curve, step-wise
  (scikit-learn's ``average_precision_score``; tied scores form one threshold).
- ``detection_curve``: the cumulative share of positives found in the top-k of a ranking, with tied
  scores counted at their expected value under a random order.
- ``descending_order``: a deterministic descending order (ties: lower index first).
"""

from __future__ import annotations

import torch


def descending_order(scores: torch.Tensor) -> torch.Tensor:
    """Indices sorting the last dimension of ``scores`` descending; ties keep the lower index first."""
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices


def _tie_bounds(sorted_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For rows sorted along the last dim: first and last position of each element's tie group.

    Args:
        sorted_values: ``(r, n)`` each row sorted (either direction).

    Returns:
        ``(first, last)``, both ``(r, n)`` int64 positions.
    """
    r, n = sorted_values.shape
    pos = torch.arange(n, device=sorted_values.device).expand(r, n)
    new = torch.ones_like(sorted_values, dtype=torch.bool)
    new[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
    if bool(new.all()):  # no ties (the common case for float scores): every group is one element
        return pos, pos
    end = torch.ones_like(new)
    end[:, :-1] = new[:, 1:]
    first = torch.where(new, pos, torch.zeros_like(pos)).cummax(dim=1).values
    last = torch.where(end, pos, torch.full_like(pos, n)).flip(1).cummin(dim=1).values.flip(1)
    return first, last


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks ``1..n`` along the last dimension of ``(r, n)`` ``x``, ties sharing their mean rank (float64).

    The ranks depend only on the order of the values, not on their dtype (pass float32 scores
    as they are: sorting them is faster than sorting a float64 copy, with the same ranks).
    """
    values, order = torch.sort(x, dim=1)  # tied values get one rank: their order is irrelevant
    first, last = _tie_bounds(values)
    sorted_ranks = (first + last).double() / 2 + 1
    return torch.empty_like(sorted_ranks).scatter_(1, order, sorted_ranks)


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation between matching rows of ``a`` and ``b``, both ``(r, n)``.

    Returns ``(r,)`` float64; a row where either side is constant has no defined correlation: NaN.
    """
    ra, rb = average_ranks(a), average_ranks(b)
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    denom = ra.norm(dim=1) * rb.norm(dim=1)
    corr = (ra * rb).sum(1) / denom
    return torch.where(denom > 0, corr, torch.full_like(corr, float("nan")))


def average_precision_rows(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Area under the precision-recall curve of each row of ``scores`` against ``positives``.

    ``AP = Σ_t (R_t − R_{t−1}) P_t`` over the distinct score thresholds ``t`` in descending order
    (scikit-learn's ``average_precision_score``); equivalently the mean, over positives, of the
    precision at the end of the positive's tie group.

    Args:
        scores: ``(r, n)`` float, one ranking per row.
        positives: ``(n,)`` bool, the relevant items (at least one).

    Returns:
        ``(r,)`` float64 in ``[0, 1]``.
    """
    if not bool(positives.any()):
        raise ValueError("positives must contain at least one True entry")
    # a tie group counts at its end, so the order within it is irrelevant: no stable sort needed
    values, order = torch.sort(scores, dim=1, descending=True)
    hits = positives.to(scores.device)[order].double()
    _, last = _tie_bounds(values)
    tp_at_end = hits.cumsum(1).gather(1, last)
    precision_at_end = tp_at_end / (last + 1).double()
    return (hits * precision_at_end).sum(1) / hits.sum(1)


def detection_curve(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Share of positives among the top-k of ``scores`` (descending), for ``k = 1..n``.

    Tied scores are counted at their expectation under a uniformly random order within the tie
    (each tied position holds the group's share of positives), so the curve does not depend on
    index order; without ties this is the plain ``cumsum(hit) / n_positives``.

    Args:
        scores: ``(n,)`` float ranking scores.
        positives: ``(n,)`` bool.

    Returns:
        ``(n,)`` float64, non-decreasing, ending at 1.
    """
    order = descending_order(scores)
    values = scores[order][None]
    hits = positives.to(scores.device)[order].double()[None]
    first, last = _tie_bounds(values)
    csum = torch.cat([torch.zeros_like(hits[:, :1]), hits.cumsum(1)], dim=1)
    group_share = (csum.gather(1, last + 1) - csum.gather(1, first)) / (last - first + 1).double()
    return (group_share.cumsum(1) / hits.sum())[0]
