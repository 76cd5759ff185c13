"""Shared rank helpers against scipy / scikit-learn, with ties."""

import numpy as np
import pytest
import torch
from scipy.stats import rankdata, spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

from dattr_eval.ranking import (
    average_precision_rows,
    average_ranks,
    descending_order,
    detection_curve,
    spearman_rows,
)


@pytest.fixture
def tied():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 4, (7, 23), generator=g).double(), torch.randn(
        7, 23, generator=g
    ).double()


def test_average_ranks_match_scipy_with_ties(tied):
    x, _ = tied
    np.testing.assert_allclose(average_ranks(x).numpy(), rankdata(x.numpy(), axis=1))


def test_spearman_matches_scipy_with_ties(tied):
    x, y = tied
    expected = [spearmanr(x[i], y[i]).statistic for i in range(7)]
    np.testing.assert_allclose(spearman_rows(x, y).numpy(), expected, atol=1e-12)


def test_spearman_of_constant_row_is_nan():
    out = spearman_rows(torch.ones(1, 5), torch.arange(5.0)[None])
    assert torch.isnan(out).all()


def test_average_precision_matches_sklearn_with_ties(tied):
    x, _ = tied
    positives = torch.arange(23) % 5 == 0
    expected = [average_precision_score(positives.numpy(), x[i].numpy()) for i in range(7)]
    np.testing.assert_allclose(average_precision_rows(x, positives).numpy(), expected, atol=1e-12)


def test_average_precision_by_hand():
    # order 0, 1, 3, 2, 4; positives {1, 3} at ranks 2 and 3: AP = (1/2 + 2/3) / 2 = 7/12
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.7, 0.0]])
    positives = torch.tensor([False, True, False, True, False])
    assert average_precision_rows(scores, positives).item() == pytest.approx(7 / 12)
    with pytest.raises(ValueError, match="positives"):
        average_precision_rows(scores, torch.zeros(5, dtype=torch.bool))


def test_detection_curve_area_is_roc_auc_with_ties(tied):
    # Σ_k d_k − (n_c+1)/2 over (N − n_c) equals the ROC AUC (ties counted as 1/2).
    x, _ = tied
    positives = torch.arange(23) % 4 == 1
    n, n_c = 23, int(positives.sum())
    for row in x:
        area = (detection_curve(row, positives).sum().item() - (n_c + 1) / 2) / (n - n_c)
        assert area == pytest.approx(roc_auc_score(positives.numpy(), row.numpy()), abs=1e-12)


def test_descending_order_ties_go_to_lower_index():
    assert descending_order(torch.tensor([1.0, 2.0, 2.0, 1.0])).tolist() == [1, 2, 0, 3]
