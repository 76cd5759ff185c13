"""Benchmark cards on a hand-built benchmark whose model outputs known probabilities."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from dattr_eval.benchmarks.base import Benchmark
from dattr_eval.benchmarks.card import benchmark_card, card_flags, one_minus_p
from dattr_eval.data import ArrayDataset
from dattr_eval.models import TrainRecipe

N_CLASSES = 3


def logits_model() -> nn.Module:
    """A model whose logits are its 3-d input (identity ``nn.Linear``)."""
    model = nn.Linear(N_CLASSES, N_CLASSES)
    with torch.no_grad():
        model.weight.copy_(torch.eye(N_CLASSES))
        model.bias.zero_()
    return model


def rows(classes, margins) -> torch.Tensor:
    """Logit rows ``margin * onehot(class)``: p(class) = e^m / (e^m + 2)."""
    z = torch.zeros(len(classes), N_CLASSES, dtype=torch.float64)
    z[torch.arange(len(classes)), torch.as_tensor(classes)] = torch.as_tensor(margins).double()
    return z.float()


def expected_one_minus_p(label: int, cls: int, margin: float) -> float:
    """Closed form for a row ``margin * onehot(cls)``."""
    denominator = math.exp(margin) + 2
    return 2 / denominator if label == cls else 1 - 1 / denominator


# training set: label, the class the model predicts, margin
TRAIN_LABELS = [0, 1, 2, 0, 1, 2, 0, 1, 2, 2]
TRAIN_CLASSES = [0, 1, 2, 0, 1, 2, 0, 2, 0, 2]  # samples 7 and 8 not fitted
FLIPPED = [1, 4, 7, 8]  # fitted: 1 and 4 → 2 of 4
MARKED = [2, 5]
TEST_LABELS = [0, 0, 1, 1, 2, 2, 0, 1]
TEST_CLASSES = [2, 0, 2, 2, 2, 2, 0, 1]  # other-class tests: 0,1,2,3,6,7; predicted 2: 0,2,3


def build(train_margin: float, shortcut_test_classes=TEST_CLASSES) -> Benchmark:
    margins = [train_margin + 0.5 * i for i in range(len(TRAIN_LABELS))]
    train = ArrayDataset(rows(TRAIN_CLASSES, margins), torch.tensor(TRAIN_LABELS))
    test = ArrayDataset(rows(shortcut_test_classes, [3.0] * 8), torch.tensor(TEST_LABELS))
    return Benchmark.from_datasets(
        "tiny",
        logits_model(),
        train,
        test,
        seed=7,
        truth={
            "mislabeled_indices": torch.tensor(FLIPPED),
            "marked_train_indices": torch.tensor(MARKED),
            "shortcut_class": 2,
        },
    )


def test_one_minus_p_is_exact_far_below_float32_resolution():
    z = rows([0, 1], [30.0, 3.0])
    got = one_minus_p(z, torch.tensor([0, 0]))
    expected = [expected_one_minus_p(0, 0, 30.0), expected_one_minus_p(0, 1, 3.0)]
    assert got.dtype == torch.float64
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=0)
    assert got[0] < 1e-12  # 1 - softmax in float32 would give 0


def test_card_fields_match_closed_form():
    bench = build(train_margin=4.0)
    clean = rows([0, 0, 1, 1, 2, 2, 1, 1], [3.0] * 8)  # all but test 6 correct
    recipe = TrainRecipe(arch="digits_mlp", n_classes=3, epochs=5)
    card = benchmark_card(bench, clean_test_inputs=clean, recipe=recipe, batch_size=3)
    json.dumps(card)  # JSON-serialisable

    margins = [4.0 + 0.5 * i for i in range(10)]
    values = np.array(
        [expected_one_minus_p(y, c, m) for y, c, m in zip(TRAIN_LABELS, TRAIN_CLASSES, margins)]
    )
    assert card["name"] == "tiny" and card["seed"] == 7
    assert (card["n_train"], card["n_test"], card["n_classes"]) == (10, 8, 3)
    assert card["recipe"]["epochs"] == 5
    assert card["test_accuracy"] == pytest.approx(5 / 8)  # tests 1, 4, 5, 6, 7
    assert card["test_accuracy_clean"] == pytest.approx(7 / 8)
    assert card["train_accuracy"] == pytest.approx(8 / 10)
    for key, q in (("q05", 0.05), ("median", 0.5), ("q95", 0.95)):
        assert card["train_one_minus_p"][key] == pytest.approx(np.quantile(values, q), rel=1e-5)
    mislabel = card["mislabel"]
    assert mislabel["n_flipped"] == 4 and mislabel["flipped_fit"] == pytest.approx(0.5)
    assert mislabel["flipped_one_minus_p"]["median"] == pytest.approx(
        np.median(values[FLIPPED]), rel=1e-5
    )
    clean = np.delete(values, FLIPPED)
    pairs = [(f > c) + 0.5 * (f == c) for f in values[FLIPPED] for c in clean]
    assert mislabel["flipped_loss_auroc"] == pytest.approx(np.mean(pairs))
    shortcut = card["shortcut"]
    assert shortcut["shortcut_class"] == 2 and shortcut["n_marked_train"] == 2
    assert shortcut["n_test_other_class"] == 6
    assert shortcut["shortcut_rate"] == pytest.approx(3 / 6)
    assert shortcut["marked_train_one_minus_p"]["median"] == pytest.approx(
        np.median(values[MARKED]), rel=1e-5
    )


def test_card_reads_recipe_and_clean_inputs_from_extras():
    bench = build(train_margin=4.0)
    bench.extras["recipe"] = TrainRecipe(epochs=3)
    bench.extras["clean_test_inputs"] = rows(TEST_LABELS, [3.0] * 8)  # all correct
    card = benchmark_card(bench)
    assert card["recipe"]["epochs"] == 3 and card["test_accuracy_clean"] == 1.0


def test_flags_healthy_and_degenerate():
    assert card_flags(benchmark_card(build(train_margin=4.0))) == []
    # margins 40..44.5: 1-p ~ 1e-18; no other-class test image predicted as the shortcut class
    degenerate = benchmark_card(build(40.0, shortcut_test_classes=[0, 0, 1, 1, 2, 2, 0, 1]))
    flags = " | ".join(degenerate["flags"])
    assert "over-confident" in flags and "shortcut not learned" in flags
    assert "marked training images" in flags
    unfit = dict(degenerate, mislabel=dict(degenerate["mislabel"], flipped_fit=0.1))
    assert any("flipped labels" in f for f in card_flags(unfit))
