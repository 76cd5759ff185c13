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
# # Score your own attribution method
#
# Any class that subclasses `dattr_eval.explainers.Explainer` and registers itself is scored
# like the built-in methods. It implements two hooks:
#
# - `_fit(model, train_dataset)`: one pass over the training data (store what `explain` needs);
# - `_explain(inputs, targets) -> (n_test, n_train)`: entry `[i, j]` = how much training sample
#   `j` supports the model's output for class `targets[i]` on test input `i`.
# - optionally `_self_influence() -> (n_train,)` (the base class has a generic fallback).
#
# The base class validates inputs, defaults `targets` to the model's predictions, moves devices,
# and checks the output against the attribution contract. Here: a deliberately simple method,
# cosine similarity of raw pixels restricted to training samples of the explained class.

# %%
# %matplotlib inline
import warnings

import torch

torch.manual_seed(0)
torch.set_num_threads(2)
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets

# %%
import tempfile
from pathlib import Path

import torch

import dattr_eval
from dattr_eval import explainers
from dattr_eval.data.loading import stack_dataset
from dattr_eval.explainers import Explainer


@explainers.register("same_class_pixels")
class SameClassPixels(Explainer):
    """Cosine similarity of raw inputs, kept only for training samples of the explained class."""

    summary = "pixel-space cosine similarity to training samples of the explained class"
    citation = "(example in notebooks/02_score_your_own_method.ipynb)"

    def __init__(self, batch_size: int = 256) -> None:
        self.batch_size = batch_size  # hyperparameters only: no work in __init__

    def _fit(self, model, train_dataset) -> None:
        x, _ = stack_dataset(train_dataset)
        self.train_pixels_ = torch.nn.functional.normalize(x.flatten(1).float(), dim=1).to(
            self.device_
        )

    def _explain(self, inputs, targets):  # (n_test, n_train)
        pixels = torch.nn.functional.normalize(inputs.flatten(1).float(), dim=1)
        same = self.train_labels_.to(targets.device)[None, :] == targets[:, None]
        return (pixels @ self.train_pixels_.T) * same


print(explainers.names())

# %% [markdown]
# ## Check it, then score it next to built-in methods
#
# `explain` returns the contract's `(n_test, n_train)` float tensor; an unfitted explainer or a
# wrong shape raises a clear error. The evaluation is the quick start's, with the new name in the
# list.

# %%
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

x, y = load_digits(return_X_y=True)
x = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)  # 1,797 images in [0, 1]
y = torch.tensor(y)
train_set, test_set = TensorDataset(x[:500], y[:500]), TensorDataset(x[1200:], y[1200:])

model = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1),
    nn.ReLU(),
    nn.Conv2d(8, 16, 3),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Linear(144, 32),
    nn.ReLU(),
    nn.Linear(32, 10),
)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
for _ in range(60):  # full-batch training on the 500 training images
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(train_set.tensors[0]), train_set.tensors[1]).backward()
    optimizer.step()
model = model.eval()

# %%
from dattr_eval.benchmarks import Benchmark

bench = Benchmark.from_datasets(
    "digits-500",
    model,
    train_set,
    test_set,
    metrics=("identical_class", "top_k_cardinality", "sparsity", "model_randomization"),
    n_test=50,
)
mine = explainers.create("same_class_pixels").fit(bench.model, bench.train_dataset)
a = mine.explain(bench.test_inputs[:4])
print(tuple(a.shape), a.dtype, "top-1 training sample per test input:", a.argmax(1).tolist())

# %%
OUT = Path(tempfile.mkdtemp(prefix="dattr_eval_custom_"))
results = dattr_eval.evaluate(
    bench, ["same_class_pixels", "feature_similarity", "random"], out_dir=OUT, progress=False
)
dattr_eval.report(OUT).round(3)

# %% [markdown]
# Restricting to the explained class makes `identical_class` perfect by construction; the other
# metrics show what that costs (e.g. the attributions hardly change when the model is
# randomised, since they barely depend on the model). A metric is only as informative as the
# ground truth behind it: score a method on several benchmarks (`benchmarks.names()`) before
# drawing conclusions.
