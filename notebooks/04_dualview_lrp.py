# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # DualView × LRP: which pixels tie a test input to a training sample
#
# DualView attributes a test input `x` (explained for class `c`) to a training sample `j` with
# `A[x, j] = a[j, c] · <φ(x), φ(x_j)>`, where `φ` is the input of the classifier layer and `a` are
# the dual coefficients of a Crammer–Singer SVM fitted on `φ`. The summands
# `R_k = a[j, c] φ_k(x) φ_k(x_j)` add up to `A[x, j]`; LRP (zennit) carries this relevance down to the
# pixels of `x` (**test heatmap**: what in `x` looks like `x_j` to the model) and of `x_j` (**train
# heatmap**: what in `x_j` matters). With a conserving rule each heatmap sums to `A[x, j]`.
#
# This notebook: fit DualView on digits, draw the heatmaps of a few test inputs with their strongest
# proponents and opponents, check conservation, compare LRP composites, and score the heatmaps
# with Quantus.

# %%
# %matplotlib inline
import warnings

import torch

torch.manual_seed(0)
torch.set_num_threads(2)
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets

# %% [markdown]
# A small ReLU CNN **without biases** on scikit-learn's digits (8×8 images, values in [0, 1]),
# trained full-batch in a few seconds. Without biases LRP conserves relevance exactly; with
# biases the rules here ignore them, so relevance of units that fire only through their bias is
# lost (the heatmaps then sum to a bit less than the score). Any trained model works the same way,
# e.g. a built-in benchmark's: `bench = dattr_eval.benchmarks.load("digits-class")`, then
# `bench.model` and `bench.train_dataset`.

# %%
import tempfile
from pathlib import Path

from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from dattr_eval import explainers
from dattr_eval.xda import explain_pairs, explain_topk, plot_xda, score_xda

OUT = Path(tempfile.mkdtemp(prefix="dattr_eval_xda_"))  # the figures are saved here as PNG

x, y = load_digits(return_X_y=True)
x = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
y = torch.tensor(y)
train_set, x_test, y_test = TensorDataset(x[:500], y[:500]), x[1200:], y[1200:]

model = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1, bias=False),
    nn.ReLU(),
    nn.Conv2d(8, 16, 3, bias=False),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Linear(144, 32, bias=False),
    nn.ReLU(),
    nn.Linear(32, 10, bias=False),  # the classifier: its input is the feature vector phi (d = 32)
)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
for _ in range(60):
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x[:500]), y[:500]).backward()
    optimizer.step()
model.eval()

# C = 1e-4 suits these features (norms ~ 80): the dual solver converges in seconds (notebook 03)
dualview = explainers.create("dualview", C=1e-4).fit(model, train_set)
accuracy = (dualview.predict(x_test) == y_test).float().mean()
print(
    f"test accuracy {accuracy:.3f}; {dualview.support_.numel()} of {len(train_set)} training "
    f"images are support vectors (non-zero attributions)"
)

# %% [markdown]
# ## Pair heatmaps of the top-3 proponents and opponents
#
# One figure per test input: the input and the plain LRP heatmap of the decision (left), then
# each proponent (+) and opponent (−) with its score `A`, the test heatmap and the train heatmap.
# Red is positive relevance, blue negative; each heatmap is scaled to its own maximum. Titles of
# the heatmaps give their sums, which match the scores `A`.

# %%
result = explain_topk(dualview, None, x_test[:3], k=3, composite="epsilon_plus")
figures = [plot_xda(result, i, path=OUT / f"xda_{i}.png") for i in range(3)]
figures[0]

# %%
figures[1]

# %% [markdown]
# ## Conservation
#
# Each heatmap should sum to its pair's attribution score (median relative error over 50 pairs
# per cell below). On this bias-free ReLU network `"epsilon"` (LRP-ε everywhere), the default
# `"epsilon_plus"` (z⁺ on convolutions) and `"epsilon_plus_flat"` conserve up to float error.
# `"epsilon_alpha2_beta1"` conserves only where a neuron receives both positive and negative
# contributions; elsewhere it passes on twice the relevance (or minus once), so its sums drift.

# %%
import pandas as pd

rows = []
for composite in ["epsilon", "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1"]:
    r = explain_topk(dualview, None, x_test[:10], k=5, composite=composite)
    for side, pairs in [("proponents", r.proponents), ("opponents", r.opponents)]:
        ok = pairs.scores.abs() > 0
        for name, heat in [("test", pairs.test_heatmaps), ("train", pairs.train_heatmaps)]:
            err = ((heat.sum((-2, -1)) - pairs.scores).abs() / pairs.scores.abs())[ok]
            rows.append(
                {
                    "composite": composite,
                    "pairs": side,
                    "heatmap": name,
                    "median relative error": float(err.median()),
                }
            )
pd.DataFrame(rows).pivot_table(
    index="composite", columns=["pairs", "heatmap"], values="median relative error"
).round(4)

# %% [markdown]
# ## Composites side by side
#
# The same pair (test input 0 with its strongest proponent) under the four composites.

# %%
from matplotlib.figure import Figure

j = int(result.proponents.train_indices[0, 0])
composites = ["epsilon", "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1"]
fig = Figure(figsize=(8, 4.4), layout="constrained")
axes = fig.subplots(2, len(composites))
for col, composite in enumerate(composites):
    pairs = explain_pairs(dualview, None, x_test[0], [j], composite)
    for row, heat in enumerate([pairs.test_heatmaps[0], pairs.train_heatmaps[0]]):
        vmax = float(heat.abs().max())
        axes[row, col].imshow(heat.reshape(8, 8), cmap="bwr", vmin=-vmax, vmax=vmax)
        axes[row, col].set_title(
            f"{composite}\n{'test' if row == 0 else 'train'}, sum={float(heat.sum()):.3g}",
            fontsize=8,
        )
        axes[row, col].set_axis_off()
fig.savefig(OUT / "xda_composites.png", dpi=100)
fig

# %% [markdown]
# ## Quantus scores
#
# `score_xda` scores the heatmaps of each test input with its top-`k` proponents. For a pair the
# explained function is the attribution score itself as a function of one input (the other held
# fixed), so Quantus perturbs the input and watches that score. `decision` rows score the plain
# LRP heatmap of the class logit for comparison.
#
# - `faithfulness_correlation` (↑): correlation of the relevance of random pixel subsets with the
#   score drop when they are blacked out;
# - `max_sensitivity` (↓): largest relative change of the heatmap under small input noise;
# - `random_logit` (↓): SSIM between the heatmap of the explained output and of a random other one
#   (another pair, or another class).
#
# Quantus warns when a perturbation leaves the input unchanged: blacking out background pixels of a
# digit changes nothing (those draws still count, with no score change).

# %%
scores = score_xda(dualview, None, x_test[:8], k=3, composite="epsilon_plus", seed=0)
scores.pivot_table(index=["metric", "higher_is_better"], columns="side", values="score").round(3)
