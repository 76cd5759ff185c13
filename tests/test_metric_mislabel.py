"""mislabel_detection: hand-derived detection-curve areas, ties, random band, global ranking."""

import pytest
import torch
from sklearn.metrics import roc_auc_score

from dattr_eval import metrics
from dattr_eval.metrics import MissingGroundTruthError

FLIPPED = torch.tensor([3, 4])  # N = 5, n_c = 2


def score(si, flipped=FLIPPED):
    return metrics.create("mislabel_detection")(
        None, self_influence=torch.as_tensor(si, dtype=torch.float32), mislabeled_indices=flipped
    )


def test_perfect_ranking():
    # curve [1/2, 1, 1, 1, 1]: Σ = 4.5, normalised (4.5 - 1.5) / 3 = 1; quanda trapezoid: (4.5 - 0.75) / 5 = 0.75;
    # paper: AUC = 0.9, min 2/10, max (1.5 + 3)/5 = 0.9 -> 1.
    r = score([0.0, 0.1, 0.2, 0.9, 0.8])
    assert r.score == pytest.approx(1.0)
    assert r.extras["raw_auc"] == pytest.approx(0.75)
    assert r.extras["paper_normalised"] == pytest.approx(1.0)
    assert r.extras["curve"] == pytest.approx([0.5, 1, 1, 1, 1])


def test_inverted_ranking():
    # curve [0, 0, 0, 1/2, 1]: Σ = 1.5 -> 0; trapezoid 1.5 - 0.5 = 1 -> 0.2; paper (0.3 - 0.2) / 0.7 = 1/7.
    r = score([0.9, 0.8, 0.7, 0.1, 0.0])
    assert r.score == pytest.approx(0.0)
    assert r.extras["raw_auc"] == pytest.approx(0.2)
    assert r.extras["paper_normalised"] == pytest.approx(1 / 7)


def test_middle_ranking_by_hand():
    # flipped {0, 3}, order 0..4: hits [1,0,0,1,0], curve [.5,.5,.5,1,1], Σ = 3.5 -> (3.5 - 1.5) / 3 = 2/3
    assert score([5, 4, 3, 2, 1], torch.tensor([0, 3])).score == pytest.approx(2 / 3)


def test_ties_count_at_expectation():
    assert score([1.0] * 5).score == pytest.approx(0.5)
    # groups {0,1} (one flipped) and {2,3,4} (one flipped): shares .5,.5,1/3,1/3,1/3 ->
    # curve .25,.5,2/3,5/6,1, Σ = 3.25 -> (3.25 - 1.5) / 3 = 7/12
    assert score([1, 1, 0, 0, 0], torch.tensor([0, 3])).score == pytest.approx(7 / 12)


def test_equals_roc_auc():
    g = torch.Generator().manual_seed(3)
    si = torch.randint(0, 6, (40,), generator=g).float()
    flipped = torch.tensor([1, 5, 7, 20, 33])
    labels = torch.zeros(40, dtype=torch.bool)
    labels[flipped] = True
    assert score(si, flipped).score == pytest.approx(roc_auc_score(labels.numpy(), si.numpy()))


def test_random_band():
    # random self-influence: normalised area = ROC AUC, mean 0.5, sd ~ 0.068 for N = 200, n_c = 20
    scores = []
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        s = score(torch.rand(200, generator=g), torch.randperm(200, generator=g)[:20]).score
        assert abs(s - 0.5) < 0.25
        scores.append(s)
    assert abs(sum(scores) / len(scores) - 0.5) < 0.06


def test_global_ranking_from_attributions():
    # rows normalised by their max |A|: [.5, 1, .25, 0] + [0, 1/3, 0, 1] -> s = [.5, 4/3, .25, 1]
    a = torch.tensor([[2.0, -4.0, 1.0, 0.0], [0.0, 1.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    m = metrics.create("mislabel_detection_global")
    assert m.needs_attributions and m.requires == ("mislabeled_indices",)
    assert m(a, mislabeled_indices=torch.tensor([1, 3])).score == pytest.approx(1.0)
    # flipped {0, 2}: ranks 3 and 4 of 4 -> curve [0, 0, .5, 1], Σ = 1.5 = (n_c+1)/2 -> 0
    assert m(a, mislabeled_indices=torch.tensor([0, 2])).score == pytest.approx(0.0)
    assert metrics.create("mislabel_detection").needs_attributions is False


def test_bad_input():
    with pytest.raises(MissingGroundTruthError, match="self_influence"):
        metrics.create("mislabel_detection")(None, mislabeled_indices=FLIPPED)
    with pytest.raises(MissingGroundTruthError, match="mislabeled_indices"):
        metrics.create("mislabel_detection")(None, self_influence=torch.rand(5))
    with pytest.raises(ValueError, match="NaN"):
        score([0.0, float("nan"), 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="mislabeled_indices"):
        score([0.0] * 5, torch.tensor([7]))
    with pytest.raises(ValueError, match="between 1"):
        score([0.0] * 5, torch.tensor([], dtype=torch.long))
    with pytest.raises(TypeError, match="ranking"):  # the two rankings are two metrics now
        metrics.create("mislabel_detection", ranking="global")
    with pytest.raises(ValueError, match="different self_influence"):
        m = metrics.create("mislabel_detection")
        m.update(None, self_influence=torch.rand(5), mislabeled_indices=FLIPPED)
        m.update(None, self_influence=torch.rand(5), mislabeled_indices=FLIPPED)


def test_bootstrap_statistic_resamples_training_points():
    from dattr_eval.statistics import bootstrap

    g = torch.Generator().manual_seed(3)
    flipped = torch.randperm(300, generator=g)[:30]
    si = torch.rand(300, generator=g)
    si[flipped] += 0.5  # informative: flipped samples score higher
    r = metrics.create("mislabel_detection")(None, self_influence=si, mislabeled_indices=flipped)
    assert r.unit == "training point" and r.units.shape == (300, 2)
    assert r.statistic(r.units) == pytest.approx(r.score)
    ci = bootstrap(r.units, r.statistic, n_resamples=200, seed=0)
    assert ci.ci_low < r.score < ci.ci_high and 0.5 < ci.ci_low
