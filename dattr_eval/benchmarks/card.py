"""Benchmark cards: what the benchmark's model learned, and flags for set-ups that measure nothing.

A card is a JSON-serialisable dict computed from a built ``Benchmark`` alone (its model, training
set, explained test inputs and ground truth). The flags name set-ups in which a metric's score
says more about the model or the data than about the attribution method:

- over-confidence — median ``1 − p(train label)`` below ``OVERCONFIDENT_MEDIAN`` = 1e-6 on the
  training set, or on the samples a metric looks for (flipped labels, marked images). A sample's
  cross-entropy gradient is ``softmax − onehot``; float32 resolves ``p`` near 1 only in steps of
  2⁻²⁴ ≈ 6e-8, so at ``1 − p`` = 1e-6 the label component of that gradient carries ~6 % rounding
  error, and its size is 1e-6 of a misfit sample's: loss-gradient methods (TracIn, influence,
  TRAK, representer points, grad-cos) rank those samples by rounding and weight them by nearly
  nothing. (The threshold is the issue's; the audit's marked images sat at ~1e-8.)
- shortcut not learned — fewer than ``SHORTCUT_MIN_RATE`` = 20 % of the marked test images of
  other classes predicted as the shortcut class: the model barely uses the mark, so shortcut and
  domain-mismatch metrics look for training samples that do not drive the predictions explained.
- flipped labels not learned — the model fits (predicts the flipped label of) fewer than
  ``FLIPPED_MIN_FIT`` = 50 % of the flipped training labels. An unfitted flipped sample has
  ``1 − p(label) ≥ 0.5``, above nearly every clean sample, so when most flipped labels are unfitted
  training loss alone finds most of them before any clean sample, and mislabel detection ranks
  methods by how loss-like they are (the audit: 23 % fitted, the loss scores 0.967). The card also
  reports ``flipped_loss_auroc``: how well ``1 − p`` alone separates flipped from clean samples.

``1 − p`` is computed from the logits in float64 as ``exp(logsumexp(z_{≠y}) − logsumexp(z))``, so
values far below float32's resolution near 1 are exact.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from dattr_eval.benchmarks.base import Benchmark, model_outputs, predict
from dattr_eval.data.loading import dataset_labels, make_loader

#: flag when the median ``1 − p(train label)`` (training set; flipped; marked) is below this
OVERCONFIDENT_MEDIAN = 1e-6
#: flag when fewer marked other-class test images than this share are predicted as the shortcut class
SHORTCUT_MIN_RATE = 0.2
#: flag when the model fits fewer than this share of the flipped training labels
FLIPPED_MIN_FIT = 0.5
#: quantiles of ``1 − p`` reported on the card
QUANTILES = (0.05, 0.5, 0.95)


def one_minus_p(logits: Tensor, labels: Tensor) -> Tensor:
    """``1 − softmax(logits)[label]`` per row, computed stably in float64.

    Args:
        logits: ``(n, n_classes)``.
        labels: ``(n,)`` int64.

    Returns:
        ``(n,)`` float64 in ``[0, 1]``.
    """
    z = logits.double()
    others = z.scatter(1, labels.view(-1, 1), float("-inf"))
    return torch.exp(torch.logsumexp(others, 1) - torch.logsumexp(z, 1))


def quantile_summary(values: Tensor) -> dict[str, float]:
    """``{"q05": ..., "median": ..., "q95": ...}`` of ``values`` (linear interpolation)."""
    q = torch.quantile(values.double(), torch.tensor(QUANTILES, dtype=torch.float64))
    return {"q05": float(q[0]), "median": float(q[1]), "q95": float(q[2])}


def auroc(positive: Tensor, negative: Tensor) -> float | None:
    """P(a random ``positive`` score > a random ``negative`` one), ties counted half (ROC AUC)."""
    if positive.numel() == 0 or negative.numel() == 0:
        return None
    from sklearn.metrics import roc_auc_score

    scores = torch.cat([positive, negative]).double().numpy()
    is_positive = [1] * positive.numel() + [0] * negative.numel()
    return float(roc_auc_score(is_positive, scores))


def train_logits(bench: Benchmark, batch_size: int = 512) -> Tensor:
    """The benchmark model's logits on its training set: ``(n_train, n_classes)`` float32."""
    return torch.cat(
        [
            model_outputs(bench.model, x, batch_size)
            for x, _ in make_loader(bench.train_dataset, batch_size)
        ]
    )


def benchmark_card(
    bench: Benchmark,
    *,
    clean_test_inputs: Tensor | None = None,
    recipe: Any = None,
    batch_size: int = 512,
) -> dict[str, Any]:
    """The card of a built benchmark (JSON-serialisable).

    Args:
        bench: the built benchmark.
        clean_test_inputs: ``(n_test, ...)`` the explained test points without the shortcut mark
            (shortcut benchmarks, whose test inputs all carry it): adds ``test_accuracy_clean``.
            Default: ``bench.extras["clean_test_inputs"]`` when present.
        recipe: the model's training recipe (a dataclass such as ``TrainRecipe``, or a dict), copied to the
            card. Default: ``bench.extras["recipe"]`` when present.
        batch_size: inputs per forward pass.

    Returns:
        ``name``, ``seed``, ``n_train``, ``n_test``, ``n_classes``, ``recipe`` (or None),
        ``test_accuracy`` (explained test points, as given), ``train_accuracy`` and
        ``train_one_minus_p`` (quantiles of ``1 − p(train label)``); for mislabel benchmarks
        ``mislabel`` (``n_flipped``, ``flipped_fit``: share of flipped samples predicted as their
        flipped label, ``flipped_one_minus_p`` quantiles, ``flipped_loss_auroc``: AUROC of
        ``1 − p`` separating flipped from clean samples); for shortcut benchmarks ``shortcut``
        (``shortcut_class``, ``n_marked_train``, ``marked_train_one_minus_p`` quantiles,
        ``n_test_other_class``, ``shortcut_rate``: share of the explained test points whose label
        is not the shortcut class and that are predicted as it); and ``flags`` (``card_flags``).
    """
    truth = bench.truth
    if clean_test_inputs is None:
        clean_test_inputs = bench.extras.get("clean_test_inputs")
    if recipe is None:
        recipe = bench.extras.get("recipe")
    logits = train_logits(bench, batch_size)
    labels = (
        truth.train_labels
        if truth.train_labels is not None
        else dataset_labels(bench.train_dataset)
    )
    train_p = one_minus_p(logits, labels)
    card: dict[str, Any] = {
        "name": bench.name,
        "seed": bench.seed,
        "n_train": bench.n_train,
        "n_test": bench.n_test,
        "n_classes": int(logits.shape[1]),
        "recipe": recipe_fields(recipe),
        "test_accuracy": share(truth.test_predictions == truth.test_labels),
        "train_accuracy": share(logits.argmax(1) == labels),
        "train_one_minus_p": quantile_summary(train_p),
    }
    if clean_test_inputs is not None:
        clean_predictions = predict(bench.model, clean_test_inputs, batch_size)
        card["test_accuracy_clean"] = share(clean_predictions == truth.test_labels)
    if truth.mislabeled_indices is not None and len(truth.mislabeled_indices) > 0:
        flipped = truth.mislabeled_indices
        is_clean = torch.ones(len(labels), dtype=torch.bool)
        is_clean[flipped] = False
        card["mislabel"] = {
            "n_flipped": len(flipped),
            "flipped_fit": share(logits[flipped].argmax(1) == labels[flipped]),
            "flipped_one_minus_p": quantile_summary(train_p[flipped]),
            "flipped_loss_auroc": auroc(train_p[flipped], train_p[is_clean]),
        }
    if truth.shortcut_class is not None:
        other = truth.test_labels != truth.shortcut_class
        marked = truth.marked_train_indices
        card["shortcut"] = {
            "shortcut_class": int(truth.shortcut_class),
            "n_marked_train": len(marked) if marked is not None else 0,
            "marked_train_one_minus_p": quantile_summary(train_p[marked])
            if marked is not None and len(marked) > 0
            else None,
            "n_test_other_class": int(other.sum()),
            "shortcut_rate": share(truth.test_predictions[other] == truth.shortcut_class),
        }
    card["flags"] = card_flags(card)
    return card


def recipe_fields(recipe: Any) -> dict[str, Any] | None:
    """A recipe (dataclass or dict) as a plain dict for the card (``None`` stays ``None``)."""
    if recipe is None or isinstance(recipe, dict):
        return recipe
    return dataclasses.asdict(recipe)


def card_flags(card: dict[str, Any]) -> list[str]:
    """Human-readable flags for the degenerate set-ups a card shows (thresholds: module constants)."""
    flags = []
    medians = {"training samples": card["train_one_minus_p"]["median"]}
    mislabel, shortcut = card.get("mislabel"), card.get("shortcut")
    if mislabel is not None:
        medians["flipped training labels"] = mislabel["flipped_one_minus_p"]["median"]
    if shortcut is not None and shortcut["marked_train_one_minus_p"] is not None:
        medians["marked training images"] = shortcut["marked_train_one_minus_p"]["median"]
    for which, median in medians.items():
        if median < OVERCONFIDENT_MEDIAN:
            flags.append(
                f"over-confident on {which}: median 1-p(train label) = {median:.1e} "
                f"< {OVERCONFIDENT_MEDIAN:.0e}; their loss gradients vanish"
            )
    if shortcut is not None:
        rate = shortcut["shortcut_rate"]
        if rate is None or rate < SHORTCUT_MIN_RATE:
            shown = "no test image of another class" if rate is None else f"{rate:.0%}"
            flags.append(
                f"shortcut not learned: {shown} of marked other-class test images predicted as "
                f"class {shortcut['shortcut_class']} (< {SHORTCUT_MIN_RATE:.0%})"
            )
    if mislabel is not None and mislabel["flipped_fit"] < FLIPPED_MIN_FIT:
        flags.append(
            f"flipped labels not learned: the model fits {mislabel['flipped_fit']:.0%} of them "
            f"(< {FLIPPED_MIN_FIT:.0%}); training loss alone finds the others"
        )
    return flags


def share(hits: Tensor) -> float | None:
    """Mean of a boolean tensor as a float (``None`` when empty)."""
    return float(hits.float().mean()) if hits.numel() > 0 else None


__all__ = [
    "FLIPPED_MIN_FIT",
    "OVERCONFIDENT_MEDIAN",
    "QUANTILES",
    "SHORTCUT_MIN_RATE",
    "benchmark_card",
    "card_flags",
    "one_minus_p",
    "quantile_summary",
]
