"""DualView x LRP ("DuaLRP", Yolcu et al.): heatmaps that show which features tie a test input to a training sample.

For a test input ``x`` explained for class ``c`` and a training sample ``j`` the attribution is
``A[x, j] = a[j, c] * <phi(x), phi(x_j)>`` (``a`` = DualView's dual coefficients, ``phi`` = the
input of the classifier layer). Its summands

    R_k = a[j, c] * phi_k(x) * phi_k(x_j),      sum_k R_k = A[x, j],

are the initial relevance on the features; LRP carries the same ``R`` down to the pixels of ``x``
(the *test heatmap*: what in ``x`` looks like ``x_j`` to the model) and of ``x_j`` (the *train
heatmap*: what in ``x_j`` matters). With a conserving composite each heatmap sums to ``A[x, j]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from zennit.core import Composite

from dattr_eval.contract import topk
from dattr_eval.data.loading import subset_inputs
from dattr_eval.explainers.base import Explainer
from dattr_eval.explainers.features import FeatureExtractor
from dattr_eval.validation import check_labels, check_positive, check_tensor
from dattr_eval.xda.lrp import decision_heatmaps, feature_relevance_heatmaps


def dual_coefficients(explainer: Explainer) -> torch.Tensor:
    """The kernel coefficients ``a (n_train, n_classes)`` of a fitted feature-kernel explainer.

    DualView's ``dual_coef_``; representer points' ``alpha_`` has the same form and works too.

    Raises:
        NotFittedError: the explainer is not fitted.
        TypeError: the explainer has no such coefficients.
        ValueError: the explainer z-scores its features (``normalize=True``): the kernel then is
            not a sum over the classifier's input units, so there is no relevance to start LRP with.
    """
    explainer._check_fitted()
    if getattr(explainer, "normalize", False):
        raise ValueError(
            "dualview must be fitted with normalize=False: XDA heatmaps decompose "
            "a_jc <phi(x), phi(x_j)> over the raw classifier inputs phi"
        )
    for attr in ("dual_coef_", "alpha_"):
        coef = getattr(explainer, attr, None)
        if isinstance(coef, torch.Tensor) and coef.ndim == 2:
            return coef
    raise TypeError(
        f"dualview must be a fitted feature-kernel explainer with dual_coef_ (n_train, n_classes) "
        f"such as 'dualview' (or alpha_ as 'representer'), got {type(explainer).__name__}"
    )


@dataclass
class PairHeatmaps:
    """Heatmaps of (test, train) pairs; leading dims ``P`` are e.g. ``(k,)`` or ``(n_test, k)``.

    train_indices: ``P`` int64 training-set indices.
    scores: ``P`` float32 attributions ``A[x, j]``.
    test_heatmaps, train_heatmaps: ``(*P, *S)`` with ``S`` the input's spatial shape ``(H, W)``
        (channels summed) or, for non-image inputs, the input shape.
    train_inputs: ``(*P, ...)`` the training samples; train_labels: ``P`` their labels.
    """

    train_indices: torch.Tensor
    scores: torch.Tensor
    test_heatmaps: torch.Tensor
    train_heatmaps: torch.Tensor
    train_inputs: torch.Tensor
    train_labels: torch.Tensor


@dataclass
class XDAResult:
    """Feature-level explanations of ``n_test`` inputs (see :func:`explain_topk`).

    inputs: ``(n_test, ...)``; targets: ``(n_test,)`` the explained classes.
    decision_heatmaps: ``(n_test, *S)`` plain LRP of the decision (output relevance ``onehot(c)``).
    proponents / opponents: :class:`PairHeatmaps` with ``P = (n_test, k)``, the ``k`` most positive /
        most negative attributions of each test input, strongest first.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    decision_heatmaps: torch.Tensor
    proponents: PairHeatmaps
    opponents: PairHeatmaps


def _resolve(explainer: Explainer, model: nn.Module | None) -> nn.Module:
    dual_coefficients(explainer)
    return explainer.model_ if model is None else model.to(explainer.device_).eval()


def _pair_heatmaps(
    explainer: Explainer,
    model: nn.Module,
    test_inputs: torch.Tensor,
    targets: torch.Tensor,
    train_indices: torch.Tensor,
    composite: str | Composite,
    batch_size: int,
) -> PairHeatmaps:
    """Heatmaps for the pairs ``(test_inputs[p], train_indices[p])``, ``p < P``, in chunks of ``batch_size``.

    Each chunk is one LRP pass over the stacked test and train inputs with the same ``R`` rows.
    """
    coef = dual_coefficients(explainer)
    layer = getattr(explainer, "layer", None)
    extractor = FeatureExtractor(model, layer)
    parts: list[tuple[torch.Tensor, ...]] = []
    for start in range(0, train_indices.shape[0], batch_size):
        idx = train_indices[start : start + batch_size]
        xs = test_inputs[start : start + batch_size]
        xj, yj = subset_inputs(explainer.train_dataset_, idx.tolist())
        xj = xj.to(xs)
        stacked = torch.cat([xs, xj])
        phi = extractor(stacked)[0]
        n = xs.shape[0]
        a = coef[idx.to(coef.device), targets[start : start + batch_size].to(coef.device)]
        relevance = a.to(phi)[:, None] * phi[:n] * phi[n:]  # (n, d), R_k = a_jc phi_k(x) phi_k(x_j)
        heat = feature_relevance_heatmaps(
            model, stacked, torch.cat([relevance, relevance]), composite, layer=extractor.layer_name
        )
        parts.append((relevance.sum(1).float(), heat[:n], heat[n:], xj, yj))
    return PairHeatmaps(train_indices.cpu(), *(torch.cat(p).cpu() for p in zip(*parts)))


def _check_train_indices(j: object, n_train: int) -> torch.Tensor:
    idx = torch.as_tensor(j)
    if idx.is_floating_point() or idx.dtype == torch.bool or idx.ndim > 1:
        raise TypeError(f"j must be an int training index or a 1-D list of them, got {j!r}")
    idx = idx.reshape(-1).long()
    if idx.numel() == 0:
        raise ValueError("j must name at least one training index")
    bad = (idx < 0) | (idx >= n_train)
    if bool(bad.any()):
        raise IndexError(f"j must be in [0, n_train={n_train}), got {int(idx[bad][0])}")
    return idx


def _check_single_input(explainer: Explainer, x: torch.Tensor) -> torch.Tensor:
    x = check_tensor(x, "x", floating=True, finite=True)
    expected = tuple(torch.as_tensor(explainer.train_dataset_[0][0]).shape)
    if tuple(x.shape) != expected:
        raise ValueError(
            f"x must be one input shaped like a training input {expected} (no batch dim), "
            f"got shape {tuple(x.shape)}"
        )
    return x.to(explainer.device_)


def explain_pairs(
    dualview: Explainer,
    model: nn.Module | None,
    x: torch.Tensor,
    j: object,
    composite: str | Composite = "epsilon_plus",
    *,
    target: int | None = None,
    batch_size: int = 64,
) -> PairHeatmaps:
    """Pair heatmaps of one test input ``x`` with the training samples ``j`` (an int or a list).

    Args:
        dualview: a fitted DualView (or another explainer with ``dual_coef_`` / ``alpha_``).
        model: the network to propagate through; ``None`` = ``dualview.model_``.
        x: one test input shaped like a training input, e.g. ``(C, H, W)``.
        j: training index or indices ``(k,)``.
        composite: LRP rules: ``"epsilon_plus"``, ``"epsilon_plus_flat"``, ``"epsilon_alpha2_beta1"``,
            ``"epsilon_alpha2_beta1_flat"``, ``"epsilon"`` or a zennit ``Composite``.
        target: the class to explain; ``None`` = the model's prediction for ``x``.

    Returns:
        :class:`PairHeatmaps` with ``P = (k,)``: heatmaps ``(k, *S)``, scores ``A[x, j]`` ``(k,)``.
    """
    model = _resolve(dualview, model)
    x = _check_single_input(dualview, x)
    idx = _check_train_indices(j, dualview.n_train_)
    if target is None:
        c = dualview.predict(x[None])
    else:
        c = check_labels([target], "target", n_classes=dual_coefficients(dualview).shape[1])
    check_positive(batch_size, "batch_size", integer=True)
    k = idx.shape[0]
    return _pair_heatmaps(
        dualview, model, x[None].expand(k, *x.shape), c.expand(k), idx, composite, batch_size
    )


def explain_pair(
    dualview: Explainer,
    model: nn.Module | None,
    x: torch.Tensor,
    j: int,
    composite: str | Composite = "epsilon_plus",
    *,
    target: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Heatmaps of the pair (test input ``x``, training sample ``j``) and their attribution score.

    Returns:
        ``(test_heatmap, train_heatmap, score)``: two ``S``-shaped float32 tensors (``(H, W)`` for
        images, channels summed) and ``A[x, j] = a[j, c] <phi(x), phi(x_j)>``. With a conserving
        composite each heatmap sums to about ``score``.
    """
    if isinstance(j, bool) or not isinstance(j, int):
        raise TypeError(
            f"j must be an int training index, got {j!r} (use explain_pairs for several)"
        )
    pairs = explain_pairs(dualview, model, x, j, composite, target=target)
    return pairs.test_heatmaps[0], pairs.train_heatmaps[0], float(pairs.scores[0])


def explain_topk(
    dualview: Explainer,
    model: nn.Module | None,
    inputs: torch.Tensor,
    k: int = 3,
    composite: str | Composite = "epsilon_plus",
    *,
    targets: torch.Tensor | None = None,
    batch_size: int = 64,
) -> XDAResult:
    """Pair heatmaps of each test input with its ``k`` strongest proponents and opponents.

    Args:
        inputs: ``(n_test, ...)`` test inputs.
        k: number of proponents and of opponents per test input (``<= n_train``).
        targets: ``(n_test,)`` classes to explain; ``None`` = the model's predictions.

    Returns:
        :class:`XDAResult`: decision heatmaps ``(n_test, *S)`` and pair heatmaps ``(n_test, k, *S)``.
        Cost: one ``dualview.explain`` and ``4 k n_test`` LRP passes, batched.
    """
    model = _resolve(dualview, model)
    check_positive(k, "k", integer=True)
    check_positive(batch_size, "batch_size", integer=True)
    if k > dualview.n_train_:
        raise ValueError(f"k must be <= n_train={dualview.n_train_}, got {k}")
    inputs = check_tensor(inputs, "inputs", min_ndim=2, floating=True, finite=True).to(
        dualview.device_
    )
    targets = (
        dualview.predict(inputs)
        if targets is None
        else check_labels(
            targets,
            "targets",
            length=inputs.shape[0],
            n_classes=dual_coefficients(dualview).shape[1],
        ).to(dualview.device_)
    )
    attributions = dualview.explain(inputs, targets)
    n_test = inputs.shape[0]
    sides = []
    for sign in (1.0, -1.0):
        best = topk(sign * attributions, k).indices  # (n_test, k)
        rows = torch.arange(n_test, device=inputs.device).repeat_interleave(k)
        pairs = _pair_heatmaps(
            dualview,
            model,
            inputs[rows],
            targets[rows],
            best.reshape(-1).cpu(),
            composite,
            batch_size,
        )
        sides.append(
            PairHeatmaps(*(t.reshape(n_test, k, *t.shape[1:]) for t in vars(pairs).values()))
        )
    decision = decision_heatmaps(model, inputs, targets, composite)
    return XDAResult(inputs.cpu(), targets.cpu(), decision.cpu(), *sides)
