"""Conservation of DualView x LRP pair heatmaps: how far each heatmap's sum is from its score A[x, j].

Setting (the issue's acceptance test, at a larger size): digits as (1, 8, 8) images, a bias-free
ReLU CNN (tests/test_xda.py's), DualView fitted on the first 1,000 images; the 5 strongest
proponents and 5 strongest opponents of 20 test images (100 + 100 pairs). For every composite:
median / 90th percentile of |sum(heatmap) - A| / |A| over the pairs, test and train heatmaps,
and the seconds per pair (both heatmaps). Also the same for a CNN *with* biases, where rules that
ignore biases leak the relevance of neurons that fire only through their bias.

Writes ``benchmarks/results/xda_conservation.md``.
Run: ``.venv/bin/python benchmarks/xda_conservation.py``
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from dattr_eval import explainers
from dattr_eval.xda import COMPOSITES, explain_topk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.test_xda import bias_free_cnn, train

N_TRAIN, N_TEST, K = 1000, 20, 5
EXPLAINER = "dualview" if "dualview" in explainers.names() else "representer"


def cnn_with_biases() -> nn.Sequential:
    model = bias_free_cnn()
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.bias = nn.Parameter(
                torch.zeros(m.out_channels if isinstance(m, nn.Conv2d) else m.out_features)
            )
    return model


def measure(model: nn.Module, train_set: TensorDataset, x_test: torch.Tensor) -> list[dict]:
    explainer = explainers.create(EXPLAINER).fit(model, train_set)
    rows = []
    for composite in COMPOSITES:
        start = time.perf_counter()
        result = explain_topk(explainer, None, x_test, k=K, composite=composite)
        seconds = time.perf_counter() - start
        errors = {}
        for side in ("test", "train"):
            errs = []
            for pairs in (result.proponents, result.opponents):
                heat = getattr(pairs, f"{side}_heatmaps")
                ok = pairs.scores.abs() > 0
                errs.append(((heat.sum((-2, -1)) - pairs.scores).abs() / pairs.scores.abs())[ok])
            errors[side] = torch.cat(errs)
        rows.append(
            {
                "composite": composite,
                "pairs": int(errors["test"].numel()),
                "median err test": float(errors["test"].median()),
                "p90 err test": float(errors["test"].quantile(0.9)),
                "median err train": float(errors["train"].median()),
                "p90 err train": float(errors["train"].quantile(0.9)),
                "ms per pair": 1000 * seconds / (2 * K * x_test.shape[0]),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y)
    train_set = TensorDataset(x[:N_TRAIN], y[:N_TRAIN])
    x_test = x[N_TRAIN : N_TRAIN + N_TEST]
    sections = []
    for label, build in (
        ("bias-free ReLU CNN", bias_free_cnn),
        ("same CNN with biases", cnn_with_biases),
    ):
        torch.manual_seed(0)
        model = train(build(), x[:N_TRAIN], y[:N_TRAIN], steps=100)
        acc = float((model(x[N_TRAIN:]).argmax(1) == y[N_TRAIN:]).float().mean())
        sections.append(
            f"### {label} (test accuracy {acc:.3f})\n\n{table(measure(model, train_set, x_test))}"
        )
    text = "\n\n".join(
        [
            "# XDA conservation: |sum(heatmap) - A[x, j]| / |A[x, j]|",
            (
                f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: "
                f"{platform.machine()}, {os.cpu_count()} cores, GPU: none; torch {torch.__version__}; "
                f"explainer: {EXPLAINER}."
            ),
            (
                f"Command: `.venv/bin/python benchmarks/xda_conservation.py`. Digits (1, 8, 8), "
                f"{N_TRAIN} training images, the {K} strongest proponents and {K} opponents of "
                f"{N_TEST} test images; pairs with A = 0 are left out. Timings are noisy (shared machine)."
            ),
            *sections,
        ]
    )
    out = ROOT / "benchmarks" / "results" / "xda_conservation.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
