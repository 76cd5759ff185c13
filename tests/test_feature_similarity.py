"""feature_similarity: checked against features computed by hand (no hook) and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import cosine_similarity

from dattr_eval import explainers
from dattr_eval.contract import check_attributions
from tests._digits_models import (
    digits_split,
    single_thread,  # noqa: F401 (autouse fixture)
    small_mlp,
)

N_TRAIN, N_TEST = 120, 17


@pytest.fixture(scope="module")
def setup():
    train, x_test, _ = digits_split(N_TRAIN, N_TEST)
    model = small_mlp(train, weight_decay=1e-3)
    penultimate = lambda x: model[1](model[0](x)).detach().numpy()
    return model, train, x_test, penultimate


@pytest.mark.parametrize("metric", ["dot", "cos"])
def test_matches_direct_computation(setup, metric):
    model, train, x_test, penultimate = setup
    a = explainers.create("feature_similarity", metric=metric).fit(model, train).explain(x_test)
    check_attributions(a, N_TEST, N_TRAIN)
    f_test, f_train = penultimate(x_test), penultimate(train.tensors[0])
    expected = f_test @ f_train.T if metric == "dot" else cosine_similarity(f_test, f_train)
    np.testing.assert_allclose(a.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_targets_do_not_change_the_rows(setup):
    model, train, x_test, _ = setup
    xpl = explainers.create("feature_similarity").fit(model, train)
    zeros = torch.zeros(N_TEST, dtype=torch.long)
    torch.testing.assert_close(xpl.explain(x_test, zeros), xpl.explain(x_test, zeros + 3))


@pytest.mark.parametrize("metric", ["dot", "cos"])
def test_self_influence_is_the_diagonal(setup, metric):
    model, train, _, _ = setup
    xpl = explainers.create("feature_similarity", metric=metric).fit(model, train)
    x, y = train.tensors
    diag = torch.diagonal(xpl.explain(x, y))
    torch.testing.assert_close(xpl.self_influence(), diag, rtol=1e-5, atol=1e-5)


def test_named_layer(setup):
    model, train, x_test, _ = setup
    a = (
        explainers.create("feature_similarity", metric="dot", layer="0")
        .fit(model, train)
        .explain(x_test)
    )
    np.testing.assert_allclose(
        a.numpy(), (x_test @ train.tensors[0].T).numpy(), rtol=1e-5, atol=1e-4
    )


def test_unknown_metric_names_the_choices(setup):
    model, train, _, _ = setup
    with pytest.raises(ValueError, match=r"metric must be one of \['cos', 'dot'\]"):
        explainers.create("feature_similarity", metric="l2").fit(model, train)


def test_get_params():
    assert explainers.create("feature_similarity", metric="dot").get_params() == {
        "metric": "dot",
        "layer": None,
        "batch_size": 256,
        "device": None,
    }


def test_empty_test_batch_gives_an_empty_row_block(setup):
    model, train, x_test, _ = setup
    a = explainers.create("feature_similarity").fit(model, train).explain(x_test[:0])
    assert a.shape == (0, N_TRAIN) and a.dtype == torch.float32
