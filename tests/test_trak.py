"""trak: checked against a float64 numpy evaluation of Park et al.'s formula, and the traker package."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dattr_eval import explainers
from dattr_eval.contract import check_attributions
from dattr_eval.explainers.adapters.traker import traker_projection
from dattr_eval.explainers.gradients import grad_dim
from dattr_eval.explainers.trak import TRAK
from tests._digits_models import digits_split, pearson
from tests._grad_reference import OUTPUTS, loop_gradients, perturbed, tiny_mlp

N_TRAIN, N_TEST = 70, 9
# the classifier layer (50 parameters); its margin gradients are rank-deficient (the margin ignores a
# shift of all logits), so the exact test regularises the kernel
LAST = ["2.weight", "2.bias"]
REG = 1e-2


@pytest.fixture(scope="module")
def setup():
    train, x_test, y_test = digits_split(N_TRAIN, N_TEST)
    model = tiny_mlp(seed=1)
    return model, train, x_test, y_test, [model.state_dict(), perturbed(model, 0.3, 5)]


def numpy_trak(states, x_test, t_test, x_train, y_train, names, projections=None, reg=0.0):
    """``mean_m phi_m (Phi_m^T Phi_m + reg I)^{-1} Phi_m^T * mean_m (1 - p_y)``, float64, autograd loop."""
    scores, q = 0.0, 0.0
    for m, state in enumerate(states):
        net = tiny_mlp()
        net.load_state_dict(state)
        big = loop_gradients(net, x_train, y_train, OUTPUTS["margin"], names).double().numpy()
        small = loop_gradients(net, x_test, t_test, OUTPUTS["margin"], names).double().numpy()
        if projections is not None:
            big, small = big @ projections[m], small @ projections[m]
        scores = scores + small @ np.linalg.solve(big.T @ big + reg * np.eye(big.shape[1]), big.T)
        with torch.no_grad():
            p = net(x_train).double().softmax(1).gather(1, y_train[:, None]).squeeze(1).numpy()
        q = q + (1 - p)
    return scores / len(states) * (q / len(states))


def test_matches_the_formula_without_projection(setup):
    model, train, x_test, y_test, states = setup
    xpl = explainers.create(
        "trak", projection_dim=None, params=LAST, regularization=REG, batch_size=16
    )
    a = xpl.fit(model, train).explain(x_test, y_test)
    check_attributions(a, N_TEST, N_TRAIN)
    assert a.shape == (N_TEST, N_TRAIN)
    want = numpy_trak(states[:1], x_test, y_test, *train.tensors, LAST, reg=REG)
    np.testing.assert_allclose(a.numpy(), want, rtol=2e-3, atol=2e-4 * np.abs(want).max())


def test_ensemble_of_checkpoints_with_projection(setup):
    model, train, x_test, y_test, states = setup
    xpl = explainers.create("trak", checkpoints=states, projection_dim=24, seed=7).fit(model, train)
    a = xpl.explain(x_test, y_test)
    assert a.shape == (N_TEST, N_TRAIN)
    mats = [p.matrix().double().numpy() for p in xpl.projectors_]
    assert not np.allclose(mats[0], mats[1])  # one projection per ensemble member
    want = numpy_trak(states, x_test, y_test, *train.tensors, None, mats)
    np.testing.assert_allclose(a.numpy(), want, rtol=2e-3, atol=2e-4 * np.abs(want).max())


@pytest.mark.parametrize("n_models", [1, 2])
def test_self_influence_is_the_diagonal(setup, n_models):
    model, train, _, _, states = setup
    xpl = explainers.create("trak", checkpoints=states[:n_models], projection_dim=16).fit(
        model, train
    )
    si = xpl.self_influence()
    assert si.shape == (N_TRAIN,)
    diag = torch.diagonal(xpl.explain(*train.tensors))
    torch.testing.assert_close(si, diag, rtol=1e-3, atol=1e-6)
    assert bool((si >= 0).all())  # leverage x (1 - p) is non-negative


def test_singular_kernel_warns_and_regularization_fixes_it(setup):
    model, train, x_test, y_test, _ = setup
    with pytest.warns(UserWarning, match="singular"):
        explainers.create("trak", projection_dim=100).fit(model, train)  # k > n_train
    reg = explainers.create("trak", projection_dim=100, regularization=1e-3).fit(model, train)
    assert torch.isfinite(reg.explain(x_test, y_test)).all()
    with pytest.raises(ValueError, match="regularization"):
        explainers.create("trak", regularization=-1.0).fit(model, train)


@pytest.mark.peers
@pytest.mark.parametrize("n_models", [1, 2])
def test_agrees_with_traker_on_the_same_projection(setup, n_models):
    pytest.importorskip("trak")
    model, train, x_test, y_test, states = setup
    states = states[:n_models]
    theirs = explainers.create(
        "traker.trak", checkpoints=states, projection_dim=32, seed=3, block_size=10
    )
    theirs = theirs.fit(model, train).explain(x_test, y_test)

    class TRAKWithTrakerProjection(TRAK):
        """Ours, projecting with traker's matrices (to separate the formula from the randomness)."""

        def _projector(self, model, member):
            matrix = traker_projection(grad_dim(model, self.params), 32, 3, member, block_size=10)
            return lambda g: g @ matrix.to(g.device)

    ours = TRAKWithTrakerProjection(projection_dim=32, seed=3, checkpoints=states).fit(model, train)
    a = ours.explain(x_test, y_test)
    assert theirs.shape == a.shape == (N_TEST, N_TRAIN)
    # traker divides (Phi_m^T Phi_m)^{-1} by the mean |entry| of that inverse (for float16): with one
    # model a constant factor, with several a weighting of the members that ours does not apply
    if n_models == 1:
        assert pearson(a, theirs) > 0.9999
        return
    assert pearson(a, theirs) > 0.95
    weighted = 0.0
    for m, features in enumerate(ours.train_features_):
        phi = ours._gradients(train.tensors, m).double()
        weight = 1 / torch.linalg.inv(phi.T @ phi).abs().mean()
        weighted = weighted + weight * (
            ours._gradients((x_test, y_test), m).double() @ features.T.double()
        )
    assert pearson(weighted * ours.out_to_loss_, theirs) > 0.9999
