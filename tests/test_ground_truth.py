"""GroundTruth: coercion, unknown fields, sizes and test-batch selection."""

import pytest
import torch

from dattr_eval.ground_truth import GroundTruth


def test_coerce_from_dict_and_keywords():
    gt = GroundTruth.coerce({"n_classes": 10}, shortcut_class=2)
    assert gt.n_classes == 10 and gt.shortcut_class == 2
    assert GroundTruth.coerce(None).n_classes is None
    with pytest.raises(TypeError, match="unknown ground-truth field"):
        GroundTruth.coerce(bogus=1)
    with pytest.raises(TypeError, match="truth must be a GroundTruth or dict"):
        GroundTruth.coerce(3)


def test_sizes_missing_and_select():
    gt = GroundTruth(
        train_labels=torch.arange(7),
        test_labels=torch.tensor([0, 1, 2]),
        randomized_attributions=torch.arange(21.0).reshape(3, 7),
    )
    assert gt.n_train == 7 and gt.n_test == 3
    assert gt.missing(("train_labels", "n_classes")) == ["n_classes"]
    sub = gt.select(torch.tensor([2, 0]))
    assert sub.test_labels.tolist() == [2, 0]
    assert sub.randomized_attributions[:, 0].tolist() == [14.0, 0.0]
    assert torch.equal(sub.train_labels, gt.train_labels)
