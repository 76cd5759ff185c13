"""feature_shortcut and domain_mismatch on hand-built attributions."""

import pytest
import torch
from sklearn.metrics import average_precision_score

from dattr_eval import metrics
from dattr_eval.contract import topk
from dattr_eval.metrics import MissingGroundTruthError

MARKED = torch.tensor([1, 3])  # n_train = 5, shortcut class 2
# test rows: 0 and 2 are selected (predicted 2, true label != 2); 1 has true label 2; 3 is predicted 0
TRUTH = {
    "marked_train_indices": MARKED,
    "shortcut_class": 2,
    "test_predictions": torch.tensor([2, 2, 2, 0]),
    "test_labels": torch.tensor([0, 2, 1, 0]),
}
A = torch.tensor(
    [
        [0.9, 0.8, 0.1, 0.7, 0.0],  # AP 7/12 (ranks 2, 3); top-1 = 0 (unmarked)
        [0.0, 1.0, 0.0, 1.0, 0.0],  # not selected
        [0.0, 0.5, 0.1, 0.9, 0.2],  # AP 1 (ranks 1, 2); top-1 = 3 (marked)
        [0.0, 1.0, 0.0, 1.0, 0.0],  # not selected
    ]
)


def test_alias():
    assert metrics.get("shortcut_detection") is metrics.get("feature_shortcut")


def test_feature_shortcut_by_hand():
    r = metrics.create("feature_shortcut")(A, **TRUTH)
    assert r.per_sample.tolist() == pytest.approx([7 / 12, 1.0])
    assert r.score == pytest.approx((7 / 12 + 1) / 2)
    sk = [average_precision_score([0, 1, 0, 1, 0], A[i].numpy()) for i in (0, 2)]
    assert r.per_sample.tolist() == pytest.approx(sk)


def test_feature_shortcut_inverted_and_ties():
    # inverted row 2: marked at ranks 4 and 5 -> AP = (1/4 + 2/5) / 2
    r = metrics.create("feature_shortcut")(-A, **TRUTH)
    assert r.per_sample[1].item() == pytest.approx((1 / 4 + 2 / 5) / 2)
    # all tied: one threshold, precision = 2/5
    assert metrics.create("feature_shortcut")(torch.zeros(4, 5), **TRUTH).score == pytest.approx(
        0.4
    )


def test_filters():
    r = metrics.create("feature_shortcut", filter_by_prediction=False, filter_by_class=False)(
        A, **TRUTH
    )
    assert r.per_sample.numel() == 4


def test_random_band():
    # 30 of 300 marked: random AP ~ 0.1 (+ a small-sample upward bias); 50 rows, band [0.07, 0.16]
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        truth = {
            "marked_train_indices": torch.randperm(300, generator=g)[:30],
            "shortcut_class": 2,
            "test_predictions": torch.full((50,), 2),
            "test_labels": torch.zeros(50, dtype=torch.long),
        }
        s = metrics.create("feature_shortcut")(torch.rand(50, 300, generator=g), **truth).score
        assert 0.07 < s < 0.16


def test_domain_mismatch_by_hand():
    r = metrics.create("domain_mismatch")(A, **TRUTH)
    assert r.per_sample.tolist() == [0.0, 1.0] and r.score == 0.5
    assert metrics.create("domain_mismatch").top_k_needed == 1
    assert metrics.create("domain_mismatch")(topk(A, 1), **TRUTH).per_sample.tolist() == [0.0, 1.0]


def test_no_selected_point_is_nan_with_warning():
    truth = {**TRUTH, "test_predictions": torch.zeros(4, dtype=torch.long)}
    for name in ("feature_shortcut", "domain_mismatch"):
        with pytest.warns(UserWarning, match="no selected test point"):
            r = metrics.create(name)(A, **truth)
        assert r.score != r.score and r.n_scored == 0


def test_bad_input():
    with pytest.raises(MissingGroundTruthError, match="marked_train_indices"):
        metrics.create("feature_shortcut")(
            A, **{k: v for k, v in TRUTH.items() if k != "marked_train_indices"}
        )
    with pytest.raises(MissingGroundTruthError, match="test_predictions"):
        metrics.create("domain_mismatch")(
            A, **{k: v for k, v in TRUTH.items() if k != "test_predictions"}
        )
    with pytest.raises(ValueError, match="marked_train_indices"):
        metrics.create("feature_shortcut")(
            A, **{**TRUTH, "marked_train_indices": torch.tensor([9])}
        )
    with pytest.raises(ValueError, match="test_predictions"):
        metrics.create("feature_shortcut")(A, **{**TRUTH, "test_predictions": torch.tensor([2, 2])})
    bad = A.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="inf"):
        metrics.create("feature_shortcut")(bad, **TRUTH)
