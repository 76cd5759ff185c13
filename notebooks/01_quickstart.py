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
# # Quick start: score training-data attribution methods on digits
#
# A training-data attribution (TDA) method answers "which training samples made the model say
# this?" with a score for every (test sample, training sample) pair: an `(n_test, n_train)` matrix.
# `dattr_eval` scores such methods on *benchmarks* (a trained model, its data, and ground truth
# that a good attribution should recover) with the metrics of the literature, and writes a
# leaderboard.
#
# This notebook evaluates four explainers on the built-in `digits-class` benchmark and reads
# the leaderboard.

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

import pandas as pd

import dattr_eval

OUT = Path(tempfile.mkdtemp(prefix="dattr_eval_quickstart_"))  # results, leaderboard and figures
pd.Series(dattr_eval.available_explainers(), name="summary").to_frame()

# %%
pd.Series(dattr_eval.available_metrics(), name="summary").to_frame()

# %% [markdown]
# ## A benchmark: model, data, ground truth, metrics
#
# `digits-class` is a built-in benchmark: scikit-learn's 8×8 digits (1,347 training / 450 test
# images), a small CNN trained on them (once; the weights are cached on disk, so the next run only
# loads them), 50 seeded test images to explain (the explained class is the model's prediction)
# and four metrics. `benchmarks.names()` lists the others (digits, MNIST, Fashion-MNIST, CIFAR-10
# × five tasks); `Benchmark.from_datasets(name, model, train_set, test_set, metrics=...)` builds
# one from your own model (see notebook 02).

# %%
from dattr_eval import benchmarks

print(benchmarks.names())
bench = benchmarks.load("digits-class", n_test=50)
print(bench.summary)
print(
    f"{bench.n_train} training images, {bench.n_test} test images to explain, metrics {bench.metrics}"
)

# %% [markdown]
# ## Run the evaluation
#
# `evaluate` fits each explainer, explains the test samples in batches, scores every metric of
# the benchmark, and appends one row per explainer × metric to `OUT/results.csv` (a rerun with
# the same `out_dir` skips finished cells; a failing explainer is recorded, not fatal).

# %%
results = dattr_eval.evaluate(
    bench, ["dualview", "representer", "feature_similarity", "random"], out_dir=OUT, progress=False
)
results[results.kind == "metric"].pivot_table(
    index="explainer", columns="metric", values="score"
).round(3)

# %% [markdown]
# ## Read the leaderboard
#
# `report` turns the results into a leaderboard and writes it next to `results.csv`:
# `leaderboard.html` (one self-contained interactive page: sortable, filterable, one tab per
# benchmark, metric cards), `leaderboard.json` (the same as data), `leaderboard.md`/`.csv` and
# PNG figures. On each metric the methods are ranked 1 (best) to n, respecting whether higher
# or lower is better; `avg rank` averages the ranks over the *quality* metrics. Two kinds of
# rows and columns stand apart from that ranking:
#
# - **reference rows** (`role = reference`, here `random`): shown with the rank they *would*
#   take, never shifting the methods' ranks;
# - **sanity checks** (`model_randomization`, `top_k_cardinality`): pass/fail columns, not
#   ranked, since a random explainer passes them by construction.
#
# Where the evaluator stored bootstrap intervals, scores read `score ± half-width` and ranks
# carry their 95 % interval. The other metrics here: `identical_class` (share of top-k training
# samples with the explained class) and `sparsity` (Hoyer: how concentrated each attribution
# row is).

# %%
board = dattr_eval.report(OUT)
board.round(3).T  # one column per explainer

# %%
from IPython.display import Image, display

print(sorted(p.name for p in OUT.iterdir()))
display(Image(filename=str(OUT / "runtime_vs_rank.png")))

# %% [markdown]
# ## Look at the attributions: the top-k panel
#
# Numbers aside, a TDA method is judged by the training images it names. `topk_panel_from_explainers`
# draws, for a few test points, each explainer's top-k training images (green frame: same class as
# the explained one). Passing the panel to `report` adds it to the benchmark's tab of
# `leaderboard.html`.

# %%
from dattr_eval import explainers
from dattr_eval.evaluation.figures import topk_panel_from_explainers

fitted = {
    name: explainers.create(name).fit(bench.model, bench.train_dataset)
    for name in ["dualview", "feature_similarity", "random"]
}
panel = topk_panel_from_explainers(bench, fitted, test_indices=[0, 1, 2], k=5)
dattr_eval.report(OUT, panels={bench.name: panel})
panel
