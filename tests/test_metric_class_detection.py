"""identical_class / identical_subclass on hand-built attributions."""

import pytest
import torch

from dattr_eval import metrics
from dattr_eval.contract import AttributionContractError, topk
from dattr_eval.metrics import MissingGroundTruthError

TRAIN_LABELS = torch.tensor([0, 0, 1, 1, 2])


def test_aliases_and_registry():
    assert metrics.get("class_detection") is metrics.get("identical_class")
    assert metrics.get("subclass_detection") is metrics.get("identical_subclass")
    assert metrics.create("identical_class").top_k == 1


def test_perfect_and_inverted_top1():
    # n_test=2 != n_train=5; the largest entry sits on a same-class (resp. other-class) sample.
    a = torch.tensor([[0.5, 0.9, 0.1, 0.2, 0.0], [0.5, 0.1, 0.2, 0.3, 0.9]])
    targets = torch.tensor([0, 2])
    assert (
        metrics.create("identical_class")(a, train_labels=TRAIN_LABELS, test_targets=targets).score
        == 1.0
    )
    assert (
        metrics.create("identical_class")(-a, train_labels=TRAIN_LABELS, test_targets=targets).score
        == 0.0
    )


def test_top2_by_hand():
    # row 0: top-2 = {1 (label 0), 2 (label 1)}, target 0 -> 1/2; row 1: {4, 0} labels {2, 0}, target 2 -> 1/2
    a = torch.tensor([[0.1, 0.9, 0.8, 0.0, 0.2], [0.5, 0.1, 0.2, 0.3, 0.9]])
    result = metrics.create("identical_class", top_k=2)(
        a, train_labels=TRAIN_LABELS, test_targets=torch.tensor([0, 2])
    )
    assert result.per_sample.tolist() == [0.5, 0.5]
    assert result.score == 0.5 and result.settings == {"top_k": 2} and result.higher_is_better


def test_ties_go_to_lower_index():
    # all equal: top-1 is sample 0 (label 0); top-3 is {0, 1, 2}: 2/3 of label 0
    a = torch.zeros(2, 5)
    truth = {"train_labels": TRAIN_LABELS, "test_targets": torch.tensor([0, 1])}
    assert metrics.create("identical_class")(a, **truth).per_sample.tolist() == [1.0, 0.0]
    assert metrics.create("identical_class", top_k=3)(
        a, **truth
    ).per_sample.tolist() == pytest.approx([2 / 3, 1 / 3])


def test_topk_input_equals_dense():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(6, 5, generator=g)
    truth = {"train_labels": TRAIN_LABELS, "test_targets": torch.randint(0, 3, (6,), generator=g)}
    dense = metrics.create("identical_class", top_k=2)(a, **truth)
    sparse = metrics.create("identical_class", top_k=2)(topk(a, 3), **truth)
    assert torch.equal(dense.per_sample, sparse.per_sample)
    assert metrics.create("identical_class", top_k=2).top_k_needed == 2


@pytest.mark.parametrize("seed", range(5))
def test_random_attributions_score_one_over_n_classes(seed):
    # 10 balanced classes: a random top-5 hits the target class with probability 1/10;
    # 200 test points x 5 = 1000 draws, sd ~ 0.0095, band 0.1 +- 0.04.
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(100) % 10
    a = torch.rand(200, 100, generator=g)
    score = metrics.create("identical_class", top_k=5)(
        a, train_labels=labels, test_targets=torch.randint(0, 10, (200,), generator=g)
    ).score
    assert abs(score - 0.1) < 0.04


def test_subclass_uses_fine_labels():
    fine_train = torch.tensor([0, 1, 2, 3, 4])
    a = torch.tensor([[0.0, 0.9, 0.1, 0.2, 0.3], [0.0, 0.1, 0.2, 0.9, 0.3]])
    truth = {"train_fine_labels": fine_train, "test_fine_labels": torch.tensor([1, 2])}
    result = metrics.create("identical_subclass")(a, **truth)
    assert result.per_sample.tolist() == [1.0, 0.0]
    with pytest.raises(MissingGroundTruthError, match="test_fine_labels"):
        metrics.create("identical_subclass")(
            a, train_fine_labels=fine_train, test_labels=torch.tensor([1, 2])
        )


def test_bad_input():
    a = torch.rand(2, 5)
    m = metrics.create("identical_class")
    with pytest.raises(MissingGroundTruthError, match="train_labels"):
        m(a, test_targets=torch.tensor([0, 1]))
    with pytest.raises(AttributionContractError, match="transposed"):
        m(a.T.contiguous(), train_labels=TRAIN_LABELS, test_targets=torch.tensor([0, 1]))
    bad = a.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(AttributionContractError, match="NaN"):
        m(bad, train_labels=TRAIN_LABELS, test_targets=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="test_targets"):
        m(
            a,
            train_labels=TRAIN_LABELS,
            test_targets=torch.tensor([0, 1, 2]),
            test_labels=torch.tensor([0, 1]),
        )
    with pytest.raises(ValueError, match="top_k"):
        metrics.create("identical_class", top_k=0)
    with pytest.raises(ValueError, match="exceeds"):
        metrics.create("identical_class", top_k=3)(
            topk(a, 2), train_labels=TRAIN_LABELS, test_targets=torch.tensor([0, 1])
        )
