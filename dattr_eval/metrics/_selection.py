"""Selections of training samples for the coreset-selection and data-pruning protocols.

Pure helpers (torch, CPU): orders of a global ranking with ties broken at random, class-stratified
top/bottom selections, the random baseline on the same units, and the fraction grid of the curve
with its area.

- ``tie_broken_orders``: several descending orders of one score vector, ties shuffled per order.
- ``stratified_selection``: the top (or bottom) of an order, class by class, each class keeping its
  share of the training set.
- ``random_selection``: the random-selection baseline of the same size (stratified by default).
- ``fraction_grid`` / ``selection_sizes`` / ``curve_area``: the curve's training-set fractions,
  their subset sizes, and the area under the curve.
"""

from __future__ import annotations

import torch

from dattr_eval.validation import check_choice, check_labels, check_positive, check_tensor


def _generator(seed: int) -> torch.Generator:
    check_positive(seed, "seed", allow_zero=True, integer=True)
    return torch.Generator().manual_seed(seed)


def _check_size(size: int, n: int) -> int:
    check_positive(size, "size", allow_zero=True, integer=True)
    if size > n:
        raise ValueError(f"size must be <= the number of labelled samples {n}, got {size}")
    return size


def tie_broken_orders(scores: torch.Tensor, n_orders: int, seed: int) -> torch.Tensor:
    """Descending orders of ``scores`` whose ties are broken by a seeded random permutation.

    Order ``r`` sorts ``scores`` descending; samples with equal scores appear in the order of an
    independent uniform random permutation drawn for that order, so averaging a protocol over the
    orders averages out the tie order instead of favouring low indices. Samples with distinct
    scores keep their relative (descending) order in every order.

    Args:
        scores: ``(n,)`` finite global scores of the training samples (higher = ranked first).
        n_orders: number of orders.
        seed: seed of the tie-breaking permutations.

    Returns:
        ``(n_orders, n)`` int64 on the CPU, each row a permutation of ``0..n-1``.
    """
    scores = check_tensor(scores, "scores", ndim=1, finite=True)
    check_positive(n_orders, "n_orders", integer=True)
    generator = _generator(seed)
    n = scores.numel()
    shuffles = torch.argsort(torch.rand(n_orders, n, generator=generator, dtype=torch.float64), 1)
    shuffled_scores = scores.detach().cpu()[shuffles]
    within = torch.sort(shuffled_scores, dim=1, descending=True, stable=True).indices
    return shuffles.gather(1, within)


def class_quotas(labels: torch.Tensor, size: int) -> torch.Tensor:
    """How many of ``size`` selected samples each class gets: its share, largest-remainder rounded.

    Class ``c`` with ``n_c`` of the ``n`` samples gets ``floor(size·n_c/n)``, and the
    ``size − Σ floor`` samples left over go one each to the classes with the largest remainders
    ``size·n_c mod n`` (exact integer arithmetic; equal remainders: lower class index first). The
    quotas sum to ``size`` exactly and each is within 1 of the exact share, never above ``n_c``.

    Args:
        labels: ``(n,)`` int class labels.
        size: number of samples to select, ``0 <= size <= n``.

    Returns:
        ``(n_classes,)`` int64 with ``n_classes = labels.max() + 1`` (absent classes get 0).
    """
    labels = check_labels(labels, "labels").cpu()
    n = labels.numel()
    _check_size(size, n)
    counts = torch.bincount(labels)
    exact = size * counts
    quotas = exact // n
    left = size - int(quotas.sum())
    by_remainder = torch.sort(exact % n, descending=True, stable=True).indices
    quotas[by_remainder[:left]] += 1
    return quotas


def stratified_selection(
    order: torch.Tensor, labels: torch.Tensor, size: int, keep: str = "top"
) -> torch.Tensor:
    """The top (or bottom) ``size`` samples of a descending order, class by class.

    Each class ``c`` contributes ``class_quotas(labels, size)[c]`` samples (its share of the
    training set, largest-remainder rounded): the first ones of class ``c`` in ``order``
    (``keep="top"``, the coreset) or the last ones (``keep="bottom"``, what pruning keeps).

    Args:
        order: ``(n,)`` int64 permutation of the training indices ``0..n-1``, best first.
        labels: ``(n,)`` int class label of each training sample (indexed by training index).
        size: number of samples to select, ``0 <= size <= n``.
        keep: ``"top"`` or ``"bottom"``.

    Returns:
        ``(size,)`` int64 training indices, in the order they appear in ``order``.
    """
    labels = check_labels(labels, "labels").cpu()
    order = check_tensor(order, "order", ndim=1, floating=False, length=labels.numel()).cpu()
    check_choice(keep, "keep", ("top", "bottom"))
    if not torch.equal(torch.sort(order).values, torch.arange(order.numel())):
        raise ValueError("order must be a permutation of 0..n-1 (n = len(labels))")
    quotas = class_quotas(labels, size)
    counts = torch.bincount(labels, minlength=quotas.numel())
    ordered_labels = labels[order]
    by_class = torch.sort(ordered_labels, stable=True).indices
    class_start = torch.cumsum(counts, 0) - counts
    rank_in_class = torch.empty_like(by_class)
    rank_in_class[by_class] = torch.arange(order.numel()) - class_start[ordered_labels[by_class]]
    if keep == "top":
        chosen = rank_in_class < quotas[ordered_labels]
    else:
        chosen = rank_in_class >= (counts - quotas)[ordered_labels]
    return order[chosen]


def random_selection(
    labels: torch.Tensor, size: int, seed: int, stratified: bool = True
) -> torch.Tensor:
    """The random-selection baseline: ``size`` training samples drawn without replacement.

    With ``stratified=True`` each class keeps its share exactly as in ``stratified_selection``
    (the same quotas), so the baseline differs from an attribution's selection only by which
    samples of each class are chosen.

    Args:
        labels: ``(n,)`` int class label of each training sample.
        size: number of samples, ``0 <= size <= n``.
        seed: seed of the draw.
        stratified: keep each class's share.

    Returns:
        ``(size,)`` int64 training indices, in the random draw's order.
    """
    labels = check_labels(labels, "labels").cpu()
    shuffle = torch.randperm(labels.numel(), generator=_generator(seed))
    if stratified:
        return stratified_selection(shuffle, labels, size, keep="top")
    return shuffle[: _check_size(size, labels.numel())]


def fraction_grid(n_fractions: int = 10, low: float = 0.05, high: float = 0.5) -> torch.Tensor:
    """The training-set fractions of a coreset / pruning curve: ``n_fractions`` from low to high.

    Evenly spaced, default ``0.05, 0.10, ..., 0.50``. 1.0 is left out: at 1.0 both protocols
    train on the whole training set whatever the ranking, so that point carries seed noise and no
    signal. Fractions above 0.5 are left out too: there the top and bottom selections overlap
    (both contain the middle of the ranking), so coreset and pruning stop measuring opposite ends
    and the curve flattens towards the full-data model; small budgets are where a selection
    matters. 0.05 still leaves each class a few samples on the smallest built-in training set
    (digits: 67 of 1,347 samples, about 7 per class).

    Args:
        n_fractions: number of points, ``>= 2``.
        low, high: first and last fraction, ``0 < low < high <= 1``.

    Returns:
        ``(n_fractions,)`` float64, increasing.
    """
    check_positive(n_fractions, "n_fractions", integer=True)
    if n_fractions < 2:
        raise ValueError(f"n_fractions must be >= 2 (a curve), got {n_fractions}")
    if not 0 < low < high <= 1:
        raise ValueError(f"fractions must satisfy 0 < low < high <= 1, got low={low}, high={high}")
    return torch.linspace(low, high, n_fractions, dtype=torch.float64)


def selection_sizes(fractions: torch.Tensor, n: int) -> list[int]:
    """Subset size for each fraction of ``n`` training samples: ``round(f·n)``, at least 1.

    Args:
        fractions: ``(k,)`` fractions in ``(0, 1]``.
        n: training-set size.

    Returns:
        ``k`` sizes in ``[1, n]``.
    """
    fractions = check_tensor(fractions, "fractions", ndim=1, floating=True, finite=True)
    check_positive(n, "n", integer=True)
    if bool((fractions <= 0).any() or (fractions > 1).any()):
        raise ValueError(f"fractions must lie in (0, 1], got {fractions.tolist()}")
    return [min(n, max(1, round(float(f) * n))) for f in fractions]


def curve_area(fractions: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Area under a curve over training-set fractions, normalised by the fraction span.

    Trapezoid rule divided by ``fractions[-1] − fractions[0]``: the curve's mean height, in the
    units of ``values`` (a constant curve at ``v`` has area ``v``).

    Args:
        fractions: ``(k,)`` strictly increasing, ``k >= 2``.
        values: ``(..., k)`` the curve (e.g. test loss) at each fraction; leading dims are batched
            (per test point, per order, per replicate).

    Returns:
        ``(...)`` float64.
    """
    fractions = check_tensor(fractions, "fractions", ndim=1, floating=True, finite=True)
    values = check_tensor(values, "values", min_ndim=1, floating=True)
    if fractions.numel() < 2 or bool((fractions.diff() <= 0).any()):
        raise ValueError(
            f"fractions must be strictly increasing with >= 2 points, got {fractions.tolist()}"
        )
    if values.shape[-1] != fractions.numel():
        raise ValueError(
            f"values must have {fractions.numel()} points along the last dim (one per fraction), "
            f"got shape {tuple(values.shape)}"
        )
    x = fractions.double().to(values.device)
    return torch.trapezoid(values.double(), x, dim=-1) / (x[-1] - x[0])
