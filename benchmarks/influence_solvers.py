"""Influence-function solvers: agreement with closed forms, and seconds, on digits (CPU).

1. Multinomial logistic regression (one ``nn.Linear``, L2 = damping = 1e-2, at its optimum) on
   200 digits, 30 test digits: each solver against the closed form ``G_test H^{-1} G_train^T``
   built by hand in numpy (``tests/test_influence.py``).
2. A 64-16-10 ReLU MLP (same data, damping 0.1): Arnoldi against the exact solver, and plain
   gradient dot products as the control.
3. Fit / explain seconds of every solver, representer and feature_similarity on 1,000 train x
   50 test digits with a small CNN (3,018 parameters), one torch thread, side by side in one run.

Writes ``benchmarks/results/influence_solvers.md``.

    .venv/bin/python benchmarks/influence_solvers.py
"""

from __future__ import annotations

import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests._digits_models

from dattr_eval import explainers
from tests._digits_models import digits_split, logistic_regression, pearson, small_mlp
from tests.test_influence import L2, N_TEST, N_TRAIN, SETTINGS, closed_form_influence


def agreement() -> str:
    train, x_test, _ = digits_split(N_TRAIN, N_TEST)
    model = logistic_regression(train, weight_decay=L2)
    targets = model(x_test).argmax(1)
    x, y = (t.numpy() for t in train.tensors)
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    ref = closed_form_influence(x, y, x_test.numpy(), targets.numpy(), w, b, L2)
    big = np.abs(ref) > 0.1 * np.abs(ref).max()
    rows = []
    for solver in ("exact", "cg", "lissa", "arnoldi"):
        bs = 64 if solver == "lissa" else N_TRAIN
        xpl = explainers.create(
            "influence", solver=solver, damping=L2, batch_size=bs, **SETTINGS[solver]
        )
        a = xpl.fit(model, train).explain(x_test, targets).numpy()
        rows.append(
            f"| {solver} | {SETTINGS[solver] or '-'} | {pearson(a, ref):.5f} "
            f"| {spearmanr(a.ravel(), ref.ravel())[0]:.4f} "
            f"| {np.mean(np.sign(a[big]) == np.sign(ref[big])):.4f} "
            f"| {np.abs(a - ref).max() / np.abs(ref).max():.1e} |\n"
        )
    return (
        "## 1. Logistic regression: solvers vs the closed form\n\n"
        f"{N_TRAIN} train x {N_TEST} test digits, damping = L2 = {L2}.\n\n"
        "| solver | settings | Pearson | Spearman | sign agreement (entries > 10% of max) "
        "| max abs err / max abs |\n|---|---|---|---|---|---|\n" + "".join(rows)
    )


def arnoldi_vs_exact() -> str:
    train, x_test, _ = digits_split(N_TRAIN, N_TEST)
    model = small_mlp(train, weight_decay=L2)
    hyper = {"damping": 0.1, "batch_size": N_TRAIN}
    exact = explainers.create("influence", solver="exact", **hyper).fit(model, train)
    a0 = exact.explain(x_test).numpy()

    def mean_spearman(a: np.ndarray) -> float:
        return float(np.mean([spearmanr(r, e)[0] for r, e in zip(a, a0)]))

    rows = []
    for it, k in ((100, 50), (150, 100), (200, 150)):
        xpl = explainers.create(
            "influence", solver="arnoldi", arnoldi_iter=it, arnoldi_top_k=k, **hyper
        )
        a = xpl.fit(model, train).explain(x_test).numpy()
        rows.append(
            f"| arnoldi, {it} iterations, top {k} | {mean_spearman(a):.4f} | {pearson(a, a0):.4f} |\n"
        )
    grad_dot = (exact._gradients((x_test, exact.predict(x_test))) @ exact.train_rep_.T).numpy()
    rows.append(
        f"| control: gradient dot product | {mean_spearman(grad_dot):.4f} | {pearson(grad_dot, a0):.4f} |\n"
    )
    return (
        "## 2. MLP (64-16-10, 1,226 parameters): Arnoldi vs exact\n\n"
        "Damping 0.1; mean over test rows of the Spearman correlation with the exact solver.\n\n"
        "| method | mean row Spearman | Pearson |\n|---|---|---|\n" + "".join(rows)
    )


def timings() -> str:
    train, x_test, _ = digits_split(1000, 50)
    train = TensorDataset(train.tensors[0].view(-1, 1, 8, 8), train.tensors[1])
    x_test = x_test.view(-1, 1, 8, 8)
    torch.manual_seed(0)
    cnn = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 2), nn.ReLU(),
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10),
    )  # fmt: skip
    opt = torch.optim.Adam(cnn.parameters(), 1e-2, weight_decay=1e-3)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(cnn(train.tensors[0]), train.tensors[1]).backward()
        opt.step()
    cnn.eval()
    cases = [
        ("influence", {"solver": "exact", "damping": 0.01}),
        ("influence", {"solver": "cg", "damping": 0.01}),
        ("influence", {"solver": "lissa", "damping": 0.01, "lissa_depth": 300}),
        ("influence", {"solver": "arnoldi", "damping": 0.01}),
        ("representer", {}),
        ("feature_similarity", {}),
    ]
    rows, exact = [], None
    for name, hyper in cases:
        xpl = explainers.create(name, **hyper)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            xpl.fit(cnn, train)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            a = xpl.explain(x_test)
            explain_s = time.perf_counter() - start
        exact = a if exact is None else exact
        agree = f"{pearson(a, exact):.4f}" if name == "influence" else "-"
        notes = "; ".join(
            sorted({str(w.message)[:60] for w in caught if w.category is UserWarning})
        )
        rows.append(
            f"| {name} | {hyper or '-'} | {fit_s:.2f} | {explain_s:.2f} | {agree} | {notes or '-'} |\n"
        )
        print(rows[-1], end="", flush=True)
    return (
        "## 3. Seconds: 1,000 train x 50 test digits, small CNN (3,018 parameters)\n\n"
        "Defaults otherwise (batch_size 256, cg_max_iter 100, cg_tol 1e-4, arnoldi 100 iterations, "
        "top 20). Noisy: the 2 cores are shared with other jobs; compare rows, not runs.\n\n"
        "| explainer | hyperparameters | fit s | explain s (50 test) | Pearson vs exact | warnings |\n"
        "|---|---|---|---|---|---|\n" + "".join(rows)
    )


def main() -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", FutureWarning)
    sections = [agreement(), arnoldi_vs_exact(), timings()]
    out = Path(__file__).parent / "results" / "influence_solvers.md"
    out.write_text(
        "# Influence-function solvers: agreement and cost (digits, CPU)\n\n"
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores (shared), torch threads 1, GPU: none.\n"
        f"Command: `.venv/bin/python {' '.join(sys.argv)}`\n\n" + "\n\n".join(sections) + "\n"
    )
    print(out.read_text())


if __name__ == "__main__":
    main()
