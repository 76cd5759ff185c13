"""Every registered metric: merging the states of two workers equals one run over all batches."""

import pytest
import torch

from dattr_eval import metrics
from dattr_eval.ground_truth import GroundTruth

N_TEST, N_TRAIN = 6, 9
g = torch.Generator().manual_seed(0)
A = torch.randn(N_TEST, N_TRAIN, generator=g)
W = torch.randn(N_TEST, N_TRAIN, generator=g)
MASKS = torch.rand(5, N_TRAIN, generator=g) < 0.5


def retrain_fn(train_indices: torch.Tensor) -> torch.Tensor:
    return W[:, train_indices].sum(1)


TRUTH = GroundTruth(
    train_labels=torch.arange(N_TRAIN) % 3,
    train_fine_labels=torch.arange(N_TRAIN) % 5,
    mislabeled_indices=torch.tensor([1, 4, 6]),
    marked_train_indices=torch.tensor([0, 2, 5]),
    shortcut_class=2,
    self_influence=torch.randn(N_TRAIN, generator=g),
    subset_masks=MASKS,
    retrain_fn=retrain_fn,
    test_labels=torch.tensor([0, 1, 2, 0, 1, 0]),
    test_targets=torch.tensor([0, 1, 2, 2, 1, 0]),
    test_predictions=torch.tensor([2, 2, 2, 2, 1, 2]),
    test_fine_labels=torch.tensor([0, 1, 2, 3, 4, 0]),
    test_positions=torch.arange(N_TEST),
    randomized_attributions=torch.randn(N_TEST, N_TRAIN, generator=g),
    subset_outputs=(MASKS.float() @ W.T) + torch.randn(5, N_TEST, generator=g),
)

CONFIGS = [(name, {}) for name in metrics.names()] + [
    ("mislabel_detection", {"ranking": "global"}),
    ("fidelity", {"mode": "leave_k_out", "top_k": 2}),
    ("identical_class", {"top_k": 3}),
    ("sparsity", {"measure": "near_zero"}),
]


def run(metric, parts):
    for part in parts:
        attributions = A[part] if metric.needs_attributions else None
        metric.update(attributions, TRUTH.select(part))
    return metric


@pytest.mark.parametrize(("name", "kwargs"), CONFIGS, ids=[f"{n}{k}" for n, k in CONFIGS])
def test_merge_equals_single_run(name, kwargs):
    first, second = slice(0, 4), slice(4, N_TEST)
    single = run(metrics.create(name, **kwargs), [first, second]).compute()
    merged = (
        run(metrics.create(name, **kwargs), [first])
        .merge(run(metrics.create(name, **kwargs), [second]))
        .compute()
    )
    assert merged.score == pytest.approx(single.score, nan_ok=True)
    if single.per_sample is not None:
        torch.testing.assert_close(merged.per_sample, single.per_sample, equal_nan=True)
    for key, value in single.extras.items():
        assert merged.extras[key] == pytest.approx(value, nan_ok=True), key


def test_merge_refuses_other_settings_and_implicit_positions():
    with pytest.raises(ValueError, match="same class and settings"):
        metrics.create("identical_class", top_k=1).merge(metrics.create("identical_class", top_k=2))
    a, b = metrics.create("coreset_selection"), metrics.create("coreset_selection")
    a.update(A[:3], retrain_fn=retrain_fn)
    b.update(A[3:], retrain_fn=retrain_fn)
    with pytest.raises(ValueError, match="test_positions"):
        a.merge(b)
