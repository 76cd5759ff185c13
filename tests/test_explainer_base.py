"""Explainer base behaviour through the random baseline: fitting, validation, contract."""

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from dattr_eval import explainers
from dattr_eval.explainers.base import NotFittedError


@pytest.fixture
def fitted():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    train = TensorDataset(torch.randn(7, 4), torch.randint(0, 3, (7,)))
    return explainers.create("random", seed=1).fit(model, train), model


def test_shape_range_and_reproducibility(fitted):
    explainer, _ = fitted
    x = torch.randn(5, 4)
    a = explainer.explain(x, torch.zeros(5, dtype=torch.long))
    assert a.shape == (5, 7) and a.dtype == torch.float32
    assert bool(((a >= 0) & (a < 1)).all())
    # a row depends only on the input: alone or in a batch, same values
    assert torch.equal(explainer.explain(x[2:3], torch.zeros(1, dtype=torch.long))[0], a[2])
    other = explainers.create("random", seed=2).fit(explainer.model_, explainer.train_dataset_)
    assert not torch.equal(other.explain(x, torch.zeros(5, dtype=torch.long)), a)
    assert explainer.self_influence().shape == (7,)


def test_default_targets_are_predictions(fitted):
    explainer, model = fitted
    x = torch.randn(4, 4)
    assert torch.equal(explainer.predict(x), model(x).argmax(-1))
    assert explainer.explain(x).shape == (4, 7)


def test_not_fitted():
    explainer = explainers.create("random")
    with pytest.raises(NotFittedError, match="call fit"):
        explainer.explain(torch.randn(2, 4))
    with pytest.raises(NotFittedError):
        explainer.self_influence()


def test_bad_inputs_and_targets(fitted):
    explainer, _ = fitted
    with pytest.raises(TypeError, match="inputs must be a torch.Tensor"):
        explainer.explain([[0.0] * 4])
    with pytest.raises(TypeError, match="inputs must have a floating dtype"):
        explainer.explain(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="inputs contains 1 NaN"):
        explainer.explain(torch.tensor([[0.0, 1.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="targets must have length 2"):
        explainer.explain(torch.zeros(2, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="targets must have an integer dtype"):
        explainer.explain(torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        explainers.create("random").fit("model", explainer.train_dataset_)
    with pytest.raises(ValueError, match="train_dataset is empty"):
        explainers.create("random").fit(
            nn.Linear(4, 3), TensorDataset(torch.zeros(0, 4), torch.zeros(0))
        )
