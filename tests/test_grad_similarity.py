"""grad_dot / grad_cos: checked against per-sample autograd gradients (logit and loss)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dattr_eval import explainers
from dattr_eval.contract import check_attributions
from dattr_eval.explainers.gradients import make_projector
from tests._digits_models import digits_split
from tests._grad_reference import OUTPUTS, loop_gradients, tiny_mlp

N_TRAIN, N_TEST = 36, 5


@pytest.fixture(scope="module")
def setup():
    train, x_test, y_test = digits_split(N_TRAIN, N_TEST)
    model = tiny_mlp(seed=2)
    return model, train, x_test, y_test


@pytest.mark.parametrize("loss", ["logit", "ce"])
def test_grad_dot_and_cos_match_autograd(setup, loss):
    model, train, x_test, y_test = setup
    g_test = loop_gradients(model, x_test, y_test, OUTPUTS[loss])
    g_train = loop_gradients(model, *train.tensors, OUTPUTS[loss])
    dot = explainers.create("grad_dot", loss=loss, batch_size=8).fit(model, train)
    cos = explainers.create("grad_cos", loss=loss, batch_size=8).fit(model, train)
    a_dot, a_cos = dot.explain(x_test, y_test), cos.explain(x_test, y_test)
    for a in (a_dot, a_cos):
        check_attributions(a, N_TEST, N_TRAIN)
        assert a.shape == (N_TEST, N_TRAIN)
    want_dot = g_test @ g_train.T
    torch.testing.assert_close(a_dot, want_dot, rtol=1e-4, atol=1e-5 * float(want_dot.abs().max()))
    want_cos = F.cosine_similarity(g_test[:, None], g_train[None], dim=2)
    torch.testing.assert_close(a_cos, want_cos, rtol=1e-4, atol=1e-5)
    assert float(a_cos.abs().max()) <= 1 + 1e-5


def test_default_loss_is_the_logit_and_targets_default_to_predictions(setup):
    model, train, x_test, _ = setup
    xpl = explainers.create("grad_dot").fit(model, train)
    assert xpl.get_params()["loss"] == "logit"
    assert "checkpoints" not in xpl.get_params()
    pred = model(x_test).argmax(1)
    want = (
        loop_gradients(model, x_test, pred, OUTPUTS["logit"])
        @ loop_gradients(model, *train.tensors, OUTPUTS["logit"]).T
    )
    torch.testing.assert_close(xpl.explain(x_test), want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["grad_dot", "grad_cos"])
def test_self_influence_is_the_diagonal(setup, name):
    model, train, *_ = setup
    xpl = explainers.create(name, loss="ce").fit(model, train)
    si = xpl.self_influence()
    assert si.shape == (N_TRAIN,)
    torch.testing.assert_close(
        si, torch.diagonal(xpl.explain(*train.tensors)), rtol=1e-4, atol=1e-5
    )
    if name == "grad_cos":
        torch.testing.assert_close(si, torch.ones(N_TRAIN))
    else:
        g = loop_gradients(model, *train.tensors, OUTPUTS["ce"])
        torch.testing.assert_close(si, (g * g).sum(1), rtol=1e-4, atol=1e-7)


def test_projected_cosine_uses_the_seeded_projection(setup):
    model, train, x_test, y_test = setup
    xpl = explainers.create("grad_cos", projection_dim=16, projection_kind="rademacher", seed=4)
    got = xpl.fit(model, train).explain(x_test, y_test)
    p = make_projector(model, None, 16, "rademacher", 4).matrix()
    g_test = loop_gradients(model, x_test, y_test, OUTPUTS["logit"]) @ p
    g_train = loop_gradients(model, *train.tensors, OUTPUTS["logit"]) @ p
    want = F.cosine_similarity(g_test[:, None], g_train[None], dim=2)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
