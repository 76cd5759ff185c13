"""Every registered metric passes ``dattr_eval.testing.check_metric``; broken metrics are caught."""

from __future__ import annotations

import pytest
import torch

from dattr_eval import metrics
from dattr_eval.metrics.base import Metric
from dattr_eval.testing import check_metric

#: settings small enough for the tiny problem (n_train = 9)
SETTINGS: dict[str, dict] = {
    "leave_k_out": {"top_k": 2},
    "lds": {"n_subsets": 5, "n_seeds": 2},
    "coreset_selection": {"n_fractions": 2, "n_orders": 2},
    "data_pruning": {"n_fractions": 2, "n_orders": 2},
}


@pytest.mark.parametrize("name", metrics.names(plugins=False))
def test_registered_metric_conforms(name):
    check_metric(metrics.create(name, **SETTINGS.get(name, {})))


class Base(Metric):
    name = "probe"
    summary = "a probe"
    category = "property"

    def __init__(self) -> None:
        super().__init__()

    def score_batch(self, attributions, truth):
        return attributions.double().mean(1)


class MutatesRequires(Base):
    def __init__(self) -> None:
        super().__init__()
        self.requires = ("train_labels",)


class UndeclaredState(Base):
    """Keeps a running total outside the declared state: merge loses it."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0.0

    def _update(self, attributions, truth):
        self.total += float(attributions.sum())
        self.per_unit.append(torch.full((attributions.shape[0],), self.total, dtype=torch.float64))


class ScoreIsNotStatistic(Base):
    def compute(self):
        result = super().compute()
        return self.result(result.units, score=result.score + 1)


class UnknownField(Base):
    requires = ("labels_of_everything",)


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        (MutatesRequires, "metadata"),
        (UnknownField, "metadata"),
        (UndeclaredState, "merge"),
        (ScoreIsNotStatistic, "determinism and statistic"),
    ],
)
def test_broken_metrics_fail_the_named_check(broken, check):
    with pytest.raises(AssertionError, match=rf"^\[{check}\]"):
        check_metric(broken)
