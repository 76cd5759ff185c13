"""Every registered metric: merging the states of two workers equals one run over all batches."""

import numpy as np
import pytest
import torch

from dattr_eval import metrics
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics.base import RetrainingMetric

N_TEST, N_TRAIN = 6, 9
g = torch.Generator().manual_seed(0)
A = torch.randn(N_TEST, N_TRAIN, generator=g)
W = torch.randn(N_TEST, N_TRAIN, generator=g)

TRUTH = GroundTruth(
    train_labels=torch.arange(N_TRAIN) % 3,
    train_fine_labels=torch.arange(N_TRAIN) % 5,
    mislabeled_indices=torch.tensor([1, 4, 6]),
    marked_train_indices=torch.tensor([0, 2, 5]),
    shortcut_class=2,
    self_influence=torch.randn(N_TRAIN, generator=g),
    test_labels=torch.tensor([0, 1, 2, 0, 1, 0]),
    test_targets=torch.tensor([0, 1, 2, 2, 1, 0]),
    test_predictions=torch.tensor([2, 2, 2, 2, 1, 2]),
    test_fine_labels=torch.tensor([0, 1, 2, 3, 4, 0]),
    test_positions=torch.arange(N_TEST),
    randomized_attributions=torch.randn(N_TEST, N_TRAIN, generator=g),
)

CONFIGS = [
    (name, {})
    for name in metrics.names()
    if name not in ("lds", "coreset_selection", "data_pruning", "leave_k_out")
] + [
    ("lds", {"n_subsets": 5, "n_seeds": 2}),
    ("coreset_selection", {"n_fractions": 2, "n_orders": 2}),
    ("data_pruning", {"n_fractions": 2, "n_orders": 2}),
    ("leave_k_out", {"top_k": 2}),
    ("identical_class", {"top_k": 3}),
    ("sparsity", {"measure": "near_zero"}),
]


def run(metric, parts):
    for part in parts:
        attributions = A[part] if metric.needs_attributions else None
        metric.update(attributions, TRUTH.select(part))
    return metric


def compute(metric):
    if not isinstance(metric, RetrainingMetric):
        return metric.compute()
    outputs = torch.stack(
        [W[:, r.indices].sum(1) + 0.01 * r.seed for r in metric.retrain_requests()]
    )
    return metric.compute(outputs)


@pytest.mark.parametrize(("name", "kwargs"), CONFIGS, ids=[f"{n}{k}" for n, k in CONFIGS])
def test_merge_equals_single_run(name, kwargs):
    first, second = slice(0, 4), slice(4, N_TEST)
    single = compute(run(metrics.create(name, **kwargs), [first, second]))
    merged = compute(
        run(metrics.create(name, **kwargs), [first]).merge(
            run(metrics.create(name, **kwargs), [second])
        )
    )
    assert merged.score == pytest.approx(single.score, nan_ok=True)
    if single.units is not None:
        np.testing.assert_array_equal(merged.units, single.units)
    for key, value in single.extras.items():
        assert merged.extras[key] == pytest.approx(value, nan_ok=True), key


def test_merge_refuses_other_settings_and_inconsistent_ground_truth():
    with pytest.raises(ValueError, match="same class and settings"):
        metrics.create("identical_class", top_k=1).merge(metrics.create("identical_class", top_k=2))
    a, b = metrics.create("mislabel_detection"), metrics.create("mislabel_detection")
    a.update(None, TRUTH)
    b.update(None, TRUTH, mislabeled_indices=torch.tensor([0]))
    with pytest.raises(ValueError, match="were given different flipped"):
        a.merge(b)


def test_reset_restores_declared_defaults():
    m = metrics.create("identical_class")
    m.update(A, TRUTH)
    assert m.n_updates == 1 and len(m.per_unit) == 1
    m.reset()
    assert m.n_updates == 0 and m.per_unit == []
    with pytest.raises(RuntimeError, match="before any update"):
        m.compute()
