"""The gradient-kernel base: stored and streamed training gradients give the same scores."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from dattr_eval import explainers
from dattr_eval.contract import topk
from dattr_eval.explainers.gradient_kernel import GradientKernelExplainer
from tests._digits_models import digits_split, single_thread  # noqa: F401
from tests._grad_reference import perturbed, tiny_mlp

N_TRAIN, N_TEST = 30, 6

CASES = [
    ("tracin", {"learning_rates": [0.5, 0.2], "checkpoints": "<two>"}),
    ("grad_dot", {"loss": "ce"}),
    ("grad_cos", {"projection_dim": 8}),
    ("influence", {"solver": "ekfac", "damping": 1e-3}),
    ("influence", {"solver": "arnoldi", "arnoldi_iter": 20, "arnoldi_top_k": 5}),
    ("influence", {"solver": "cg", "cg_max_iter": 50, "damping": 1.0}),
]


@pytest.fixture(scope="module")
def setup():
    train, x_test, y_test = digits_split(N_TRAIN, N_TEST)
    model = tiny_mlp(seed=1)
    return model, train, x_test, y_test, [perturbed(model, 0.1, 2), model.state_dict()]


def make(name, hyper, ckpts, **extra):
    hyper = {k: (ckpts if v == "<two>" else v) for k, v in hyper.items()}
    return explainers.create(name, **hyper, **extra)


@pytest.mark.parametrize(("name", "hyper"), CASES)
def test_streamed_training_gradients_give_the_stored_scores(setup, name, hyper):
    model, train, x_test, y_test, ckpts = setup
    stored = make(name, hyper, ckpts).fit(model, train)
    # 64 bytes: every block holds a column or two and every gradient chunk one sample
    streamed = make(name, hyper, ckpts, memory_budget=64 * 8).fit(model, train)
    assert isinstance(stored, GradientKernelExplainer)
    assert stored.stores_train_features_ and stored.train_features_ is not None
    assert not streamed.stores_train_features_ and streamed.train_features_ is None
    assert streamed._block_columns() < N_TRAIN  # really cut into several blocks
    want = stored.explain(x_test, y_test)
    torch.testing.assert_close(streamed.explain(x_test, y_test), want, rtol=1e-4, atol=1e-6)
    got_topk = streamed.explain_topk(x_test, 5, y_test, chunk_size=7)
    torch.testing.assert_close(got_topk.values, topk(want, 5).values, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        streamed.self_influence(), stored.self_influence(), rtol=1e-4, atol=1e-6
    )


def test_memory_budget_is_a_checked_hyperparameter(setup):
    model, train, *_ = setup
    xpl = explainers.create("grad_dot", memory_budget=123)
    assert xpl.get_params()["memory_budget"] == 123
    with pytest.raises(ValueError, match="memory_budget"):
        explainers.create("grad_dot", memory_budget=0).fit(model, train)


@pytest.mark.parametrize("name", ["tracin", "grad_dot", "grad_cos", "trak", "representer"])
def test_a_bare_linear_model_with_last_layer_params(setup, name):
    """A model that is just its classifier ``nn.Linear`` (issue: params='last_layer' was refused)."""
    _, train, x_test = setup[:3]
    torch.manual_seed(0)
    model = nn.Linear(64, 10).eval()
    hyper = {"params": "last_layer"} if name != "representer" else {}
    if name == "trak":
        hyper["projection_dim"] = 16
    a = explainers.create(name, **hyper).fit(model, TensorDataset(*train.tensors)).explain(x_test)
    assert a.shape == (N_TEST, N_TRAIN) and bool(torch.isfinite(a).all())
