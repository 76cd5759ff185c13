"""Support-vector fraction of DualView's SVM surrogate over C, on digits MLP features.

Trains a small seeded MLP (64-32-10, ReLU) on 1,500 digits, extracts the classifier-layer input
(d = 32, post-ReLU, raw), and fits ``CrammerSingerSVC`` at each C. Writes
``benchmarks/results/dualview_sparsity.md``.

    .venv/bin/python benchmarks/dualview_sparsity.py
"""

from __future__ import annotations

import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from dattr_eval.explainers.features import extract_features
from dattr_eval.explainers.svm import ConvergenceWarning, CrammerSingerSVC

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
MAX_ITER = 3000
N_TRAIN = 1500


def digits_model() -> tuple[nn.Module, torch.utils.data.TensorDataset]:
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x[:N_TRAIN] / 16.0, dtype=torch.float32)
    y = torch.tensor(y[:N_TRAIN], dtype=torch.long)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), torch.utils.data.TensorDataset(x, y)


def main() -> None:
    torch.manual_seed(0)
    model, train = digits_model()
    phi, logits = extract_features(model, train)
    y = train.tensors[1]
    model_pred = logits.argmax(1)
    rows = []
    for C in C_GRID:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            svm = CrammerSingerSVC(C=C, tol=1e-3, max_iter=MAX_ITER).fit(phi, y)
        pred = svm.predict(phi).cpu()
        alpha = svm.dual_coef_
        rows.append(
            (
                C,
                svm.support_.numel() / len(y),
                float((alpha != 0).any(1).double().mean()),
                float((pred == y).double().mean()),
                float((pred == model_pred).double().mean()),
                svm.duality_gap_,
                svm.n_iter_,
                svm.fit_seconds_,
                "no" if caught else "yes",
            )
        )
        print(rows[-1], flush=True)
    header = (
        "| C | support fraction (max|alpha| >= 1e-6 C) | any alpha != 0 | surrogate train acc "
        "| agreement with model | rel. duality gap | epochs | fit s | converged |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {c:g} | {sf:.3f} | {nz:.3f} | {acc:.3f} | {agr:.3f} | {gap:.1e} | {it} | {sec:.2f} | {conv} |\n"
        for c, sf, nz, acc, agr, gap, it, sec, conv in rows
    )
    out = Path(__file__).parent / "results" / "dualview_sparsity.md"
    out.write_text(
        f"# DualView surrogate sparsity over C (digits MLP features)\n\n"
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}, GPU: none.\n"
        f"Command: `.venv/bin/python {' '.join(sys.argv)}`\n\n"
        f"Features: input of the last Linear of a 64-32-10 ReLU MLP trained on the first {N_TRAIN} "
        f"digits (pixels / 16), d = 32, raw (normalize=False), fit_intercept=False, tol=1e-3, max_iter={MAX_ITER} epochs (not converged = hit the cap). "
        f"Model train accuracy {float((model_pred == y).double().mean()):.3f}.\n\n" + header + body
    )
    print(out.read_text())


if __name__ == "__main__":
    main()
