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
# # Score your own attribution method against a stored leaderboard
#
# A leaderboard is published as a *results bundle*: the results table (with the bootstrap draws
# behind every interval), one fingerprint manifest per benchmark (hashes of its training data,
# test inputs, ground truth and model weights, its seed, the dattr_eval version) and the trained
# benchmark models. To score a new method you do not rerun the board: you run **only your
# method's cells** on the same benchmarks, and dattr_eval copies the stored rows next to them,
# after checking that your run's conditions are the board's. On the command line:
#
# ```bash
# dattr-eval run --benchmark 'digits-*' --explainers all --out board          # or download a board
# dattr-eval run --benchmark 'digits-*' --explainers mypkg.attribution:MyExplainer \
#     --baseline board --out mine                                              # only your cells run
# dattr-eval compare mine --between mypkg.attribution:MyExplainer dualview     # paired differences
# ```
#
# This notebook does the same from Python: it defines a method, makes a small board (a real one
# would be downloaded), scores the method against it and compares.

# %%
# %matplotlib inline
import warnings

import torch

torch.manual_seed(0)
torch.set_num_threads(2)
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets

# %% [markdown]
# ## A method is an `Explainer` subclass
#
# It implements two hooks and keeps its hyperparameters in `__init__` (scikit-learn style):
#
# - `_fit(model, train_dataset)`: one pass over the training data (store what `explain` needs in
#   attributes ending in `_`);
# - `_explain(inputs, targets) -> (n_test, n_train)`: entry `[i, j]` = how much training sample
#   `j` supports the model's output for class `targets[i]` on test input `i`;
# - optionally `_self_influence() -> (n_train,)` (the base class has a generic fallback).
#
# The base class validates inputs, defaults `targets` to the model's predictions, moves devices
# and checks the output against the attribution contract. Here: a deliberately simple method,
# cosine similarity of raw pixels restricted to training samples of the explained class. In a
# package you would name it `mypkg.attribution:SameClassPixels` on the command line, or register
# it under a short name through an entry point (README, "Score your own method").

# %%
import tempfile
from pathlib import Path

import dattr_eval
from dattr_eval import benchmarks, explainers
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


dattr_eval.describe_explainers()["same_class_pixels"]

# %% [markdown]
# Check it by hand on the built-in `digits-class` benchmark (its small CNN is trained once and
# cached): `explain` returns the contract's `(n_test, n_train)` float tensor.

# %%
bench = benchmarks.load("digits-class")
mine = explainers.create("same_class_pixels").fit(bench.model, bench.train_dataset)
a = mine.explain(bench.test_inputs[:4])
print(tuple(a.shape), a.dtype, "top-1 training sample per test input:", a.argmax(1).tolist())

# %% [markdown]
# ## The stored board
#
# A board is any results directory `dattr-eval run` wrote (it keeps a fingerprint manifest per
# benchmark in `fingerprints/`); `export_bundle` makes a clean copy to publish, with the benchmark
# models, so that a run on another machine builds its benchmarks with the published weights
# instead of retraining them. Here: three cheap baselines on `digits-class`.

# %%
from dattr_eval.evaluation.bundle import export_bundle

WORK = Path(tempfile.mkdtemp(prefix="dattr_eval_board_"))
dattr_eval.evaluate(
    "digits-class",
    ["dualview", "feature_similarity", "random"],
    out_dir=WORK / "run",
    progress=False,
)
board = export_bundle(WORK / "run", WORK / "board")
sorted(p.name for p in board.iterdir())

# %% [markdown]
# ## Score the method against it
#
# `baseline=` (CLI: `--baseline DIR`) checks, per benchmark, that the bundle was computed under
# this run's conditions, copies its cells and computes only the missing ones: here one cell,
# `same_class_pixels` on `digits-class`.

# %%
from dattr_eval.evaluation import Evaluator

run = Evaluator(
    "digits-class", ["same_class_pixels"], out_dir=WORK / "mine", baseline=board, progress=False
)
results = run.run()
print(f"{run.computed} cell computed, {run.from_baseline} copied from the board")
dattr_eval.report(WORK / "mine").round(3).T

# %% [markdown]
# Restricting to the explained class makes `identical_class` perfect by construction; the other
# metrics show what that costs. `compare` puts numbers on it: the difference of two explainers
# on every metric, with the 95 % interval and p-value of the paired bootstrap where the results
# store keeps the draws (paired: both were scored on the same resampled test points, so their
# shared noise cancels).

# %%
dattr_eval.compare(WORK / "mine", "same_class_pixels", "dualview").round(4)

# %% [markdown]
# ## When the conditions differ, the baseline is refused
#
# Scores are comparable only under identical conditions. A run whose benchmark differs from the
# board's (other data, model weights, seed, test points), whose metrics are configured differently,
# or which uses another dattr_eval version stops before computing anything, naming the benchmark
# and what differs. Here: `identical_class` with `top_k=5` instead of the board's `top_k=1`.

# %%
from dattr_eval.evaluation.bundle import BaselineMismatchError

try:
    Evaluator(
        "digits-class",
        ["same_class_pixels"],
        metrics={"identical_class": ("identical_class", {"top_k": 5})},
        out_dir=WORK / "other",
        baseline=board,
        progress=False,
    ).run()
except BaselineMismatchError as err:
    print(err)
