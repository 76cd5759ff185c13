"""The ``loss`` reference row: self-influence is the training loss; per-test attributions refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from dattr_eval import explainers
from dattr_eval.explainers import NotApplicableError
from tests._digits_models import digits_split
from tests._grad_reference import tiny_mlp


def test_self_influence_is_the_cross_entropy_of_the_training_label():
    train, _, _ = digits_split(25, 3)
    model = tiny_mlp(seed=4)
    xpl = explainers.create("loss", batch_size=7).fit(model, train)
    y = train.tensors[1].numpy()
    with torch.no_grad():
        logits = model(train.tensors[0]).double().numpy()
    # -log softmax by hand (log-sum-exp shifted by the row max)
    shifted = logits - logits.max(1, keepdims=True)
    want = np.log(np.exp(shifted).sum(1)) - shifted[np.arange(len(y)), y]
    np.testing.assert_allclose(xpl.self_influence().numpy(), want, rtol=1e-5, atol=1e-6)


def test_flipped_labels_rank_first():
    train, _, _ = digits_split(40, 0)
    model = tiny_mlp(seed=4)
    with torch.no_grad():
        pred = model(train.tensors[0]).argmax(1)
    # labels equal to the prediction except 5 flipped ones: those have the largest losses
    labels = pred.clone()
    flipped = torch.arange(0, 40, 8)
    labels[flipped] = (pred[flipped] + 1) % 10
    xpl = explainers.create("loss").fit(model, TensorDataset(train.tensors[0], labels))
    top = set(xpl.self_influence().argsort(descending=True)[:5].tolist())
    assert top == set(flipped.tolist())


def test_per_test_attributions_are_not_applicable():
    train, x_test, y_test = digits_split(20, 3)
    xpl = explainers.create("loss").fit(tiny_mlp(), train)
    with pytest.raises(NotApplicableError, match="no per-test attributions"):
        xpl.explain(x_test, y_test)
    with pytest.raises(NotApplicableError):
        xpl.explain_topk(x_test, 2)
    assert issubclass(NotApplicableError, RuntimeError)
