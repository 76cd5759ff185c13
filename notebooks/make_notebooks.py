"""Write the example notebooks (``notebooks/*.ipynb``) from the cell sources below.

Run ``.venv/bin/python notebooks/make_notebooks.py`` after editing a cell here; CI executes the
notebooks with ``pytest --nbmake notebooks/``. Outputs are not stored (nbmake runs them fresh).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

#: shared first code cell: quiet, deterministic, small thread pool (CI has 2 cores)
SETUP = """\
%matplotlib inline
import warnings

import torch

torch.manual_seed(0)
torch.set_num_threads(2)
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets"""


#: digits and a small CNN trained in seconds, shared by notebooks 01-03 (a user passes their own)
DIGITS_MODEL = """\
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

x, y = load_digits(return_X_y=True)
x = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)  # 1,797 images in [0, 1]
y = torch.tensor(y)
train_set, test_set = TensorDataset(x[:500], y[:500]), TensorDataset(x[1200:], y[1200:])

model = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(144, 32), nn.ReLU(), nn.Linear(32, 10),
)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
for _ in range(60):  # full-batch training on the 500 training images
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(train_set.tensors[0]), train_set.tensors[1]).backward()
    optimizer.step()
model = model.eval()"""


def notebook(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook(
        cells=[
            new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells
        ]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


NB04 = [
    (
        "md",
        """\
# DualView × LRP: which pixels tie a test input to a training sample

DualView attributes a test input `x` (explained for class `c`) to a training sample `j` with
`A[x, j] = a[j, c] · <φ(x), φ(x_j)>`, where `φ` is the input of the classifier layer and `a` are
the dual coefficients of a Crammer–Singer SVM fitted on `φ`. The summands
`R_k = a[j, c] φ_k(x) φ_k(x_j)` add up to `A[x, j]`; LRP (zennit) carries this relevance down to the
pixels of `x` (**test heatmap**: what in `x` looks like `x_j` to the model) and of `x_j` (**train
heatmap**: what in `x_j` matters). With a conserving rule each heatmap sums to `A[x, j]`.

This notebook: fit DualView on digits, draw the heatmaps of a few test inputs with their strongest
proponents and opponents, check conservation, compare LRP composites, and score the heatmaps
with Quantus.""",
    ),
    ("code", SETUP),
    (
        "md",
        """\
A small ReLU CNN **without biases** on scikit-learn's digits (8×8 images, values in [0, 1]),
trained full-batch in a few seconds. Without biases LRP conserves relevance exactly; with
biases the rules here ignore them, so relevance of units that fire only through their bias is
lost (the heatmaps then sum to a bit less than the score). Any trained model works the same way,
e.g. a built-in benchmark's: `bench = dattr_eval.benchmarks.load("digits-class")`, then
`bench.model` and `bench.train_dataset`.""",
    ),
    (
        "code",
        """\
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
    nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.ReLU(),
    nn.Conv2d(8, 16, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    nn.Linear(144, 32, bias=False), nn.ReLU(),
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
print(f"test accuracy {accuracy:.3f}; {dualview.support_.numel()} of {len(train_set)} training "
      f"images are support vectors (non-zero attributions)")""",
    ),
    (
        "md",
        """\
## Pair heatmaps of the top-3 proponents and opponents

One figure per test input: the input and the plain LRP heatmap of the decision (left), then
each proponent (+) and opponent (−) with its score `A`, the test heatmap and the train heatmap.
Red is positive relevance, blue negative; each heatmap is scaled to its own maximum. Titles of
the heatmaps give their sums, which match the scores `A`.""",
    ),
    (
        "code",
        """\
result = explain_topk(dualview, None, x_test[:3], k=3, composite="epsilon_plus")
figures = [plot_xda(result, i, path=OUT / f"xda_{i}.png") for i in range(3)]
figures[0]""",
    ),
    ("code", "figures[1]"),
    (
        "md",
        """\
## Conservation

Each heatmap should sum to its pair's attribution score (median relative error over 50 pairs
per cell below). On this bias-free ReLU network `"epsilon"` (LRP-ε everywhere), the default
`"epsilon_plus"` (z⁺ on convolutions) and `"epsilon_plus_flat"` conserve up to float error.
`"epsilon_alpha2_beta1"` conserves only where a neuron receives both positive and negative
contributions; elsewhere it passes on twice the relevance (or minus once), so its sums drift.""",
    ),
    (
        "code",
        """\
import pandas as pd

rows = []
for composite in ["epsilon", "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1"]:
    r = explain_topk(dualview, None, x_test[:10], k=5, composite=composite)
    for side, pairs in [("proponents", r.proponents), ("opponents", r.opponents)]:
        ok = pairs.scores.abs() > 0
        for name, heat in [("test", pairs.test_heatmaps), ("train", pairs.train_heatmaps)]:
            err = ((heat.sum((-2, -1)) - pairs.scores).abs() / pairs.scores.abs())[ok]
            rows.append({"composite": composite, "pairs": side, "heatmap": name,
                         "median relative error": float(err.median())})
pd.DataFrame(rows).pivot_table(index="composite", columns=["pairs", "heatmap"],
                               values="median relative error").round(4)""",
    ),
    (
        "md",
        """\
## Composites side by side

The same pair (test input 0 with its strongest proponent) under the four composites.""",
    ),
    (
        "code",
        """\
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
        axes[row, col].set_title(f"{composite}\\n{'test' if row == 0 else 'train'}, "
                                 f"sum={float(heat.sum()):.3g}", fontsize=8)
        axes[row, col].set_axis_off()
fig.savefig(OUT / "xda_composites.png", dpi=100)
fig""",
    ),
    (
        "md",
        """\
## Quantus scores

`score_xda` scores the heatmaps of each test input with its top-`k` proponents. For a pair the
explained function is the attribution score itself as a function of one input (the other held
fixed), so Quantus perturbs the input and watches that score. `decision` rows score the plain
LRP heatmap of the class logit for comparison.

- `faithfulness_correlation` (↑): correlation of the relevance of random pixel subsets with the
  score drop when they are blacked out;
- `max_sensitivity` (↓): largest relative change of the heatmap under small input noise;
- `random_logit` (↓): SSIM between the heatmap of the explained output and of a random other one
  (another pair, or another class).

Quantus warns when a perturbation leaves the input unchanged: blacking out background pixels of a
digit changes nothing (those draws still count, with no score change).""",
    ),
    (
        "code",
        """\
scores = score_xda(dualview, None, x_test[:8], k=3, composite="epsilon_plus", seed=0)
scores.pivot_table(index=["metric", "higher_is_better"], columns="side", values="score").round(3)""",
    ),
]


NB01 = [
    (
        "md",
        """\
# Quick start: score training-data attribution methods on digits

A training-data attribution (TDA) method answers "which training samples made the model say
this?" with a score for every (test sample, training sample) pair: an `(n_test, n_train)` matrix.
`dattr_eval` scores such methods on *benchmarks* (a trained model, its data, and ground truth
that a good attribution should recover) with the metrics of the literature, and writes a
leaderboard.

This notebook evaluates four explainers on the built-in `digits-class` benchmark and reads
the leaderboard.""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
import tempfile
from pathlib import Path

import pandas as pd

import dattr_eval

OUT = Path(tempfile.mkdtemp(prefix="dattr_eval_quickstart_"))  # results, leaderboard and figures
pd.Series(dattr_eval.available_explainers(), name="summary").to_frame()""",
    ),
    ("code", """pd.Series(dattr_eval.available_metrics(), name="summary").to_frame()"""),
    (
        "md",
        """\
## A benchmark: model, data, ground truth, metrics

`digits-class` is a built-in benchmark: scikit-learn's 8×8 digits (1,347 training / 450 test
images), a small CNN trained on them (once; the weights are cached on disk, so the next run only
loads them), 50 seeded test images to explain (the explained class is the model's prediction)
and four metrics. `benchmarks.names()` lists the others (digits, MNIST, Fashion-MNIST, CIFAR-10
× five tasks); `Benchmark.from_datasets(name, model, train_set, test_set, metrics=...)` builds
one from your own model (see notebook 02).""",
    ),
    (
        "code",
        """\
from dattr_eval import benchmarks

print(benchmarks.names())
bench = benchmarks.load("digits-class", n_test=50)
print(bench.summary)
print(f"{bench.n_train} training images, {bench.n_test} test images to explain, metrics {bench.metrics}")""",
    ),
    (
        "md",
        """\
## Run the evaluation

`evaluate` fits each explainer, explains the test samples in batches, scores every metric of
the benchmark, and appends one row per explainer × metric to `OUT/results.csv` (a rerun with
the same `out_dir` skips finished cells; a failing explainer is recorded, not fatal).""",
    ),
    (
        "code",
        """\
results = dattr_eval.evaluate(
    bench, ["dualview", "representer", "feature_similarity", "random"], out_dir=OUT, progress=False
)
results[results.kind == "metric"].pivot_table(index="explainer", columns="metric", values="score").round(3)""",
    ),
    (
        "md",
        """\
## Read the leaderboard

`report` turns the results into a leaderboard (also written as CSV, Markdown and HTML next to
`results.csv`). On each metric the explainers are ranked 1 (best) to n, respecting whether
higher or lower is better; `avg rank` averages the ranks. The profile columns give the fit and
explain seconds and the peak memory increase. Here:

- `identical_class`: share of test points whose top-1 training sample has the explained class;
- `model_randomization`: Spearman correlation between the attributions for the trained model
  and for a randomly re-initialised one (lower is better: a faithful method depends on the model);
- `top_k_cardinality`: how many distinct training samples appear among all top-k lists
  (an explainer that always names the same few samples scores low);
- `sparsity` (Hoyer): how concentrated each attribution row is on few training samples.""",
    ),
    (
        "code",
        """\
board = dattr_eval.report(OUT)
board.round(3).T  # one column per explainer""",
    ),
    (
        "code",
        """\
from IPython.display import Image, display

print(sorted(p.name for p in OUT.iterdir()))
display(Image(filename=str(OUT / "heatmap.png")))""",
    ),
    ("code", """display(Image(filename=str(OUT / "runtime_vs_rank.png")))"""),
]


NB02 = [
    (
        "md",
        """\
# Score your own attribution method

Any class that subclasses `dattr_eval.explainers.Explainer` and registers itself is scored
like the built-in methods. It implements two hooks:

- `_fit(model, train_dataset)`: one pass over the training data (store what `explain` needs);
- `_explain(inputs, targets) -> (n_test, n_train)`: entry `[i, j]` = how much training sample
  `j` supports the model's output for class `targets[i]` on test input `i`.
- optionally `_self_influence() -> (n_train,)` (the base class has a generic fallback).

The base class validates inputs, defaults `targets` to the model's predictions, moves devices,
and checks the output against the attribution contract. Here: a deliberately simple method,
cosine similarity of raw pixels restricted to training samples of the explained class.""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
import tempfile
from pathlib import Path

import torch

import dattr_eval
from dattr_eval import explainers
from dattr_eval.data.loading import stack_dataset
from dattr_eval.explainers import Explainer


@explainers.register("same_class_pixels")
class SameClassPixels(Explainer):
    \"\"\"Cosine similarity of raw inputs, kept only for training samples of the explained class.\"\"\"

    summary = "pixel-space cosine similarity to training samples of the explained class"
    citation = "(example in notebooks/02_score_your_own_method.ipynb)"

    def __init__(self, batch_size: int = 256) -> None:
        self.batch_size = batch_size  # hyperparameters only: no work in __init__

    def _fit(self, model, train_dataset) -> None:
        x, _ = stack_dataset(train_dataset)
        self.train_pixels_ = torch.nn.functional.normalize(x.flatten(1).float(), dim=1).to(self.device_)

    def _explain(self, inputs, targets):  # (n_test, n_train)
        pixels = torch.nn.functional.normalize(inputs.flatten(1).float(), dim=1)
        same = self.train_labels_.to(targets.device)[None, :] == targets[:, None]
        return (pixels @ self.train_pixels_.T) * same


print(explainers.names())""",
    ),
    (
        "md",
        """\
## Check it, then score it next to built-in methods

`explain` returns the contract's `(n_test, n_train)` float tensor; an unfitted explainer or a
wrong shape raises a clear error. The evaluation is the quick start's, with the new name in the
list.""",
    ),
    ("code", DIGITS_MODEL),
    (
        "code",
        """\
from dattr_eval.benchmarks import Benchmark

bench = Benchmark.from_datasets(
    "digits-500", model, train_set, test_set,
    metrics=("identical_class", "top_k_cardinality", "sparsity", "model_randomization"), n_test=50,
)
mine = explainers.create("same_class_pixels").fit(bench.model, bench.train_dataset)
a = mine.explain(bench.test_inputs[:4])
print(tuple(a.shape), a.dtype, "top-1 training sample per test input:", a.argmax(1).tolist())""",
    ),
    (
        "code",
        """\
OUT = Path(tempfile.mkdtemp(prefix="dattr_eval_custom_"))
results = dattr_eval.evaluate(
    bench, ["same_class_pixels", "feature_similarity", "random"], out_dir=OUT, progress=False
)
dattr_eval.report(OUT).round(3)""",
    ),
    (
        "md",
        """\
Restricting to the explained class makes `identical_class` perfect by construction; the other
metrics show what that costs (e.g. the attributions hardly change when the model is
randomised, since they barely depend on the model). A metric is only as informative as the
ground truth behind it: score a method on several benchmarks (`benchmarks.names()`) before
drawing conclusions.""",
    ),
]


NB03 = [
    (
        "md",
        """\
# DualView's sparsity: the C sweep

DualView fits a Crammer–Singer multiclass SVM on the penultimate features; a training sample's
attribution is its dual variable times a feature inner product, so every sample that is not a
support vector gets exactly 0. The regularisation `C` sets how many support vectors there are.
By the KKT conditions, a point whose margin is below 1 has `alpha = C` for its label; a small C
leaves nearly every point inside the margin (dense), a large C fits the data and leaves few
points on it (sparse). This notebook measures it on a small digits CNN: support vectors, fit
time, duality gap, and metrics per C (the C values suit these features, whose norms are ~70).""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
import time
import warnings

import pandas as pd

from dattr_eval import explainers, metrics
from dattr_eval.benchmarks import Benchmark""",
    ),
    ("code", DIGITS_MODEL),
    (
        "code",
        """\
bench = Benchmark.from_datasets("digits-500", model, train_set, test_set, n_test=50)
truth = bench.truth
print(f"{bench.n_train} training images, explaining {bench.n_test} test images")""",
    ),
    (
        "code",
        """\
rows = []
for C in [1e-5, 1e-4, 1e-3, 1e-2]:
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dualview = explainers.create("dualview", C=C, max_iter=1000).fit(bench.model, bench.train_dataset)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    a = dualview.explain(bench.test_inputs, truth.test_targets)
    explain_s = time.perf_counter() - start
    rows.append({
        "C": C,
        "support vectors": int(dualview.support_.numel()),
        "support fraction": dualview.support_.numel() / bench.n_train,
        "duality gap": dualview.duality_gap_,
        "converged": not any("max_iter" in str(w.message) for w in caught),
        "fit s": fit_s,
        "explain ms / sample": 1000 * explain_s / bench.n_test,
        "identical_class": metrics.create("identical_class")(a, truth).score,
        "sparsity (Hoyer)": metrics.create("sparsity")(a, truth).score,
        "top_k_cardinality": metrics.create("top_k_cardinality")(a, truth).score,
    })
sweep = pd.DataFrame(rows).set_index("C")
sweep.round(4)""",
    ),
    (
        "code",
        """\
from matplotlib.figure import Figure

fig = Figure(figsize=(10, 3), layout="constrained")
ax1, ax2, ax3 = fig.subplots(1, 3)
ax1.semilogx(sweep.index, sweep["support fraction"], "o-")
ax1.set(xlabel="C", ylabel="support-vector fraction", title="sparsity of alpha")
ax2.semilogx(sweep.index, sweep["fit s"], "o-")
ax2.set(xlabel="C", ylabel="seconds", title="fit time")
for column in ["identical_class", "sparsity (Hoyer)", "top_k_cardinality"]:
    ax3.semilogx(sweep.index, sweep[column], "o-", label=column)
ax3.set(xlabel="C", title="metrics")
ax3.legend(fontsize=7)
fig""",
    ),
    (
        "md",
        """\
Read the sweep left to right: as C grows fewer training points keep a non-zero dual
variable, so attribution rows become sparser (Hoyer ↑). Identical class stays high while the
support vectors still cover every class. The fit time depends on how quickly the dual solver
reaches the duality-gap tolerance at each C (larger C, slower convergence); the solver is capped
at 1,000 epochs here, and the `converged` column says where the cap was hit (the duality gap
then shows how far from the optimum the dual variables are). Where the dense-to-sparse
transition happens depends on the scale `C · ||phi||²`: measure it on your own features.""",
    ),
]


NOTEBOOKS = {
    "01_quickstart.ipynb": NB01,
    "02_score_your_own_method.ipynb": NB02,
    "03_dualview_sparsity.ipynb": NB03,
    "04_dualview_lrp.ipynb": NB04,
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nbformat.write(notebook(cells), HERE / name)


if __name__ == "__main__":
    main()
