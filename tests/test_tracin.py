"""tracin: checked against per-sample autograd gradients at each checkpoint, and Captum's TracInCP."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dattr_eval import explainers
from dattr_eval.contract import check_attributions
from dattr_eval.explainers.gradients import make_projector
from tests._digits_models import digits_split, pearson
from tests._grad_reference import OUTPUTS, loop_gradients, perturbed, tiny_mlp

N_TRAIN, N_TEST = 40, 7
LRS = [0.3, 0.1]


@pytest.fixture(scope="module")
def setup():
    train, x_test, y_test = digits_split(N_TRAIN, N_TEST)
    model = tiny_mlp()
    ckpts = [perturbed(model, 0.2, 1), model.state_dict()]
    return model, train, x_test, y_test, ckpts


def reference(model, ckpts, lrs, x_test, t_test, x_train, y_train, loss="ce"):
    """``sum_t lr_t G_test,t G_train,t^T`` from one backward per sample at each checkpoint."""
    total = torch.zeros(x_test.shape[0], x_train.shape[0])
    for state, lr in zip(ckpts, lrs):
        m = tiny_mlp()
        m.load_state_dict(state)
        g_test = loop_gradients(m, x_test, t_test, OUTPUTS[loss])
        g_train = loop_gradients(m, x_train, y_train, OUTPUTS[loss])
        total += lr * g_test @ g_train.T
    return total


def test_matches_the_checkpoint_sum_of_autograd_inner_products(setup):
    model, train, x_test, y_test, ckpts = setup
    xpl = explainers.create("tracin", checkpoints=ckpts, learning_rates=LRS, batch_size=16)
    a = xpl.fit(model, train).explain(x_test, y_test)
    check_attributions(a, N_TEST, N_TRAIN)
    assert a.shape == (N_TEST, N_TRAIN)
    want = reference(model, ckpts, LRS, x_test, y_test, *train.tensors)
    torch.testing.assert_close(a, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


def test_default_targets_are_predictions_and_logit_loss(setup):
    model, train, x_test, _, _ = setup
    xpl = explainers.create("tracin", loss="logit", learning_rates=2.0).fit(model, train)
    pred = model(x_test).argmax(1)
    want = reference(model, [model.state_dict()], [2.0], x_test, pred, *train.tensors, loss="logit")
    torch.testing.assert_close(xpl.explain(x_test), want, rtol=1e-4, atol=1e-6)


def test_self_influence_is_the_diagonal_of_explaining_the_training_set(setup):
    model, train, _, _, ckpts = setup
    xpl = explainers.create("tracin", checkpoints=ckpts, learning_rates=LRS).fit(model, train)
    si = xpl.self_influence()
    assert si.shape == (N_TRAIN,)
    diag = torch.diagonal(xpl.explain(*train.tensors))
    torch.testing.assert_close(si, diag, rtol=1e-4, atol=1e-6)
    assert bool((si > 0).all())


def test_checkpoint_paths_and_projection(setup, tmp_path):
    model, train, x_test, y_test, ckpts = setup
    paths = []
    for i, state in enumerate(ckpts):
        paths.append(tmp_path / f"ckpt{i}.pt")
        torch.save(state, paths[-1])
    exact = explainers.create("tracin", checkpoints=ckpts, learning_rates=LRS).fit(model, train)
    from_files = explainers.create("tracin", checkpoints=paths, learning_rates=LRS).fit(
        model, train
    )
    torch.testing.assert_close(from_files.explain(x_test, y_test), exact.explain(x_test, y_test))

    proj = explainers.create(
        "tracin", checkpoints=ckpts, learning_rates=LRS, projection_dim=64, seed=3
    ).fit(model, train)
    got = proj.explain(x_test, y_test)
    # the same seeded projector applied to the exact gradients
    p = make_projector(model, None, 64, "gaussian", 3).matrix()
    want = torch.zeros_like(got)
    for state, lr in zip(ckpts, LRS):
        m = tiny_mlp()
        m.load_state_dict(state)
        g_test = loop_gradients(m, x_test, y_test, OUTPUTS["ce"]) @ p
        want += lr * g_test @ (loop_gradients(m, *train.tensors, OUTPUTS["ce"]) @ p).T
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
    assert pearson(got, exact.explain(x_test, y_test)) > 0.8


def test_hyperparameters_and_errors(setup):
    model, train, *_ = setup
    xpl = explainers.create("tracin", projection_dim=8)
    assert xpl.get_params()["projection_dim"] == 8
    with pytest.raises(ValueError, match="learning_rates"):
        explainers.create("tracin", checkpoints=[model.state_dict()], learning_rates=[1, 2]).fit(
            model, train
        )
    with pytest.raises(ValueError, match="projection_kind"):
        explainers.create("tracin", projection_kind="sparse").fit(model, train)


@pytest.mark.peers
def test_agrees_with_captum_tracincp(setup, tmp_path):
    pytest.importorskip("captum")
    model, train, x_test, y_test, ckpts = setup
    paths = []
    for i, state in enumerate(ckpts):
        paths.append(str(tmp_path / f"ckpt{i}.pt"))
        torch.save(state, paths[-1])
    peer = explainers.create("captum.tracin", checkpoints=paths, learning_rates=LRS, batch_size=16)
    peer.fit(model, train)
    theirs, their_si = peer.explain(x_test, y_test), peer.self_influence()
    ours = explainers.create("tracin", checkpoints=paths, learning_rates=LRS).fit(model, train)
    a = ours.explain(x_test, y_test)
    assert theirs.shape == a.shape == (N_TEST, N_TRAIN)
    assert pearson(a, theirs) >= 0.99
    np.testing.assert_allclose(
        a.numpy(), theirs.numpy(), rtol=1e-3, atol=1e-5 * float(a.abs().max())
    )
    torch.testing.assert_close(ours.self_influence(), their_si, rtol=1e-3, atol=1e-6)
