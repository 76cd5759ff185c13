"""Peer adapters (captum, traker, kronfluence, dualxda) against our native explainers.

Each test skips when its peer package is absent (``pip install "dattr-eval[peers]"``). Shapes use
``n_test != n_train`` (7 x 120) so a transposed result fails. Agreement with the native
implementation of the same method, Pearson over all entries, measured on this setup:
captum.tracin / tracin 1.0; captum.tracin_fast / tracin(last-layer weight) 1.0;
captum.arnoldi / influence(arnoldi, same top-k) 0.99999; traker.trak (no projection) / trak 0.99999;
kronfluence.ekfac(identity) / tracin 1.0 (plumbing), ekfac / influence(exact) ~0.2 (other
Hessian approximation, damping); dualxda.dualview / dualview(fit_intercept) 0.998.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dattr_eval.explainers as E
from dattr_eval.contract import check_attributions
from dattr_eval.explainers.adapters._common import import_peer
from tests._digits_models import digits_split, single_thread  # noqa: F401

N_TRAIN, N_TEST = 120, 7
PEER_NAMES = [
    "captum.tracin",
    "captum.tracin_fast",
    "captum.arnoldi",
    "traker.trak",
    "kronfluence.ekfac",
    "dualxda.dualview",
]


@pytest.fixture(scope="module")
def setup():
    train, xt, yt = digits_split(N_TRAIN, N_TEST)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 4), nn.ReLU(), nn.Linear(4, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = train.tensors
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), train, xt, yt


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().double(), b.flatten().double()]))[0, 1])


def fit_pair(setup, peer: str, peer_kw: dict, native: str, native_kw: dict):
    model, train, xt, yt = setup
    p = E.create(peer, **peer_kw).fit(model, train)
    n = E.create(native, **native_kw).fit(model, train)
    a = p.explain(xt, yt)
    check_attributions(a, N_TEST, N_TRAIN)
    assert a.dtype == torch.float32
    return p, n, a, n.explain(xt, yt)


def test_names_registered_without_importing_peers():
    assert set(PEER_NAMES) <= set(E.names())


def test_missing_peer_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "captum", None)  # import of captum now raises ImportError
    monkeypatch.setitem(sys.modules, "captum.influence", None)
    with pytest.raises(ImportError, match=r'pip install "dattr-eval\[peers\]"'):
        import_peer("captum.influence", "captum.tracin")


@pytest.mark.peers
def test_captum_tracin_matches_native(setup):
    pytest.importorskip("captum")
    p, n, a, b = fit_pair(setup, "captum.tracin", {}, "tracin", {})
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))
    torch.testing.assert_close(p.self_influence(), n.self_influence(), rtol=1e-4, atol=1e-6)


@pytest.mark.peers
def test_captum_tracin_fast_matches_last_layer_tracin(setup):
    pytest.importorskip("captum")
    p, n, a, b = fit_pair(setup, "captum.tracin_fast", {}, "tracin", {"params": ["2.weight"]})
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))
    torch.testing.assert_close(p.self_influence(), n.self_influence(), rtol=1e-4, atol=1e-6)
    # one test input (smaller than the batch size) keeps the (1, n_train) layout
    assert p.explain(setup[2][:1], setup[3][:1]).shape == (1, N_TRAIN)


@pytest.mark.peers
@pytest.mark.slow
def test_captum_arnoldi_matches_native_arnoldi(setup):
    pytest.importorskip("captum")
    _, _, a, b = fit_pair(
        setup,
        "captum.arnoldi",
        {"projection_dim": 10, "arnoldi_dim": 40},
        "influence",
        {
            "solver": "arnoldi",
            "damping": 1e-3,
            "arnoldi_top_k": 10,
            "arnoldi_iter": 40,
            "params": None,  # all parameters, as Captum (the default is the last layer)
        },
    )
    assert pearson(a, b) > 0.999  # measured 0.999998; Captum's Hessian is a sum: scale 1/n_train


@pytest.mark.peers
def test_traker_matches_native_trak_without_projection(setup):
    pytest.importorskip("trak")
    kw = {"projection_dim": None, "regularization": 1e-2}
    p, n, a, b = fit_pair(setup, "traker.trak", kw, "trak", kw)
    assert pearson(a, b) > 0.9999  # traker rescales the kernel inverse by a positive constant
    scale = float((a * b).sum() / (b * b).sum())
    assert scale > 0 and float((a - scale * b).norm() / a.norm()) < 1e-2
    assert pearson(p.self_influence(), n.self_influence()) > 0.9999


@pytest.mark.peers
def test_kronfluence_identity_equals_tracin_and_ekfac_runs(setup):
    pytest.importorskip("kronfluence")
    p, n, a, b = fit_pair(setup, "kronfluence.ekfac", {"strategy": "identity"}, "tracin", {})
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * float(b.abs().max()))
    torch.testing.assert_close(p.self_influence(), n.self_influence(), rtol=1e-3, atol=1e-5)
    model, train, xt, yt = setup
    ekfac = E.create("kronfluence.ekfac").fit(model, train)
    assert ekfac.explain(xt[:1], yt[:1]).shape == (1, N_TRAIN)
    assert ekfac.self_influence().shape == (N_TRAIN,)


@pytest.mark.peers
def test_dualxda_matches_native_dualview(setup):
    pytest.importorskip("dualxda")
    C = 0.1
    p, n, a, b = fit_pair(
        setup,
        "dualxda.dualview",
        {"C": C},
        "dualview",
        {"C": C, "fit_intercept": True, "tol": 1e-5, "max_iter": 20000},
    )
    # row sums = the surrogate's logits without the bias: unique even where alpha is not
    torch.testing.assert_close(
        a.sum(1), b.sum(1), rtol=1e-3, atol=1e-3 * float(b.sum(1).abs().max())
    )
    peer_sv = set((p.dual_coef_.abs() >= 1e-6 * C).any(1).nonzero().flatten().tolist())
    ours_sv = set(n.support_.tolist())
    assert len(peer_sv & ours_sv) / len(peer_sv | ours_sv) >= 0.95
    assert pearson(a, b) > 0.99
    assert pearson(p.self_influence(), n.self_influence()) > 0.99
    assert p.explain(setup[2][:1], setup[3][:1]).shape == (1, N_TRAIN)
