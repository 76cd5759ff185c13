"""Tiny seeded digits models shared by the explainer tests (influence, representer, feature similarity)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Iterator[None]:
    """One intra-op thread while a module runs: tiny models only lose from threads on shared cores.

    Import it into a test module to apply it there (``from tests._digits_models import single_thread``).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def digits_split(n_train: int, n_test: int) -> tuple[TensorDataset, torch.Tensor, torch.Tensor]:
    """The first ``n_train`` digits (pixels / 16) as a dataset, and the next ``n_test`` as tensors."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    train = TensorDataset(x[:n_train], y[:n_train])
    return train, x[n_train : n_train + n_test], y[n_train : n_train + n_test]


def fit_full_batch(
    model: nn.Module, data: TensorDataset, weight_decay: float, steps: int = 5
) -> nn.Module:
    """Minimise ``mean CE + weight_decay / 2 * ||theta||^2`` with full-batch L-BFGS (seeded init by caller)."""
    x, y = data.tensors
    opt = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=500,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss = loss + weight_decay / 2 * sum((p * p).sum() for p in model.parameters())
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return model.eval()


def logistic_regression(train: TensorDataset, weight_decay: float) -> nn.Linear:
    """Multinomial logistic regression (one ``nn.Linear``) at the optimum of its L2-regularised loss."""
    torch.manual_seed(0)
    return fit_full_batch(nn.Linear(train.tensors[0].shape[1], 10), train, weight_decay)


def small_mlp(train: TensorDataset, weight_decay: float, hidden: int = 16) -> nn.Sequential:
    """``Linear(64, hidden) - ReLU - Linear(hidden, 10)`` trained to a (local) optimum."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(train.tensors[0].shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 10)
    )
    return fit_full_batch(model, train, weight_decay)


def pearson(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Pearson correlation of two arrays, flattened."""
    return float(
        np.corrcoef(
            np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
        )[0, 1]
    )
