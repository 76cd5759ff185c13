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
# # Which metrics can be trusted? Meta-evaluation, metric agreement, shortcut localisation
#
# A leaderboard is only as good as its metrics. Before reading a ranking, ask of each metric:
#
# - **Noise resilience.** Does its score stay put under a change that should not matter? Here:
#   every model weight multiplied by `N(1, 0.001²)` (MetaQuantus' model resilience test), the
#   explainers refitted.
# - **Adversarial reactivity.** Does its score drop when the explanations are destroyed? Here:
#   the attributions' training columns shuffled, the explainer run on a re-initialised model, and
#   each attribution row replaced by noise of the same norm.
#
# `dattr_eval.meta_evaluate` runs a grid unperturbed and under each perturbation, then scores every
# benchmark × metric with MetaQuantus' parts (Hedström et al., TMLR 2023): intra-consistency (a
# Wilcoxon test per explainer: did the unit scores move?) and inter-consistency (did the explainers
# keep their order / did every unit's score drop?), all in [0, 1] with 1 ideal. A metric below 0.5
# on either criterion is flagged.
#
# Then: do two metrics rank the explainers alike (Kendall's τ)? And on the shortcut benchmark,
# where the mark is an exact segmentation, do DualView's feature-level (LRP) heatmaps point at it?
# Small test subsets keep this notebook to a couple of minutes on two cores.

# %%
# %matplotlib inline
import tempfile
import warnings
from pathlib import Path

import torch

torch.manual_seed(0)
torch.set_num_threads(2)
warnings.filterwarnings("ignore")  # solver notes and Quantus' deprecation chatter

OUT = Path(tempfile.mkdtemp(prefix="dattr_eval_meta_"))

# %% [markdown]
# Two digits benchmarks with their own metrics: `digits-class` (identical class, model
# randomisation, top-k cardinality, sparsity) and `digits-shortcut` (feature shortcut, domain
# mismatch; 30 % of class 2's training images and every test image carry a mark). Models are
# trained once and cached. Three cheap method explainers, and `random` as a reference (run
# unperturbed only: it has no quality to lose). One draw per perturbation keeps this quick; use
# `n_draws=3` or more for a real assessment. The localisation hook scores DualView's and
# representer points' heatmaps on the mark in the same pass.

# %%
from dattr_eval import benchmarks, meta_evaluate
from dattr_eval.evaluation.xda_localisation import LocalisationHook, LocalisationSettings

grid = [
    benchmarks.create("digits-class", n_test=40),
    benchmarks.create("digits-shortcut", n_test=60),
]
table = meta_evaluate(
    grid,
    ["dualview", "representer", "feature_similarity", "random"],
    out_dir=OUT,
    n_draws=1,
    hooks=[LocalisationHook(LocalisationSettings(n_test=8, k=3))],
    progress=False,
)

# %% [markdown]
# ## The meta table
#
# One row per benchmark × metric (`OUT/meta.csv`). `ar_*` is the reactivity to each disruption on
# its own: a metric can miss one kind (top-k cardinality does not change when the columns are
# relabelled, by construction).

# %%
from dattr_eval.meta import meta_summary

summary = meta_summary(table)
summary.round(3)

# %% [markdown]
# The cost of the meta run, relative to the unperturbed grid (the post-hoc disruptions reuse the
# fitted explainers; weight noise and the randomised model refit them):

# %%
table.groupby("benchmark")[["base_s", "meta_s", "cost_multiple"]].first().round(1)

# %%
flagged = summary.index[summary["flagged"] == "⚠ yes"].tolist()
print("flagged (noise resilience or adversarial reactivity < 0.5):", flagged)

# %% [markdown]
# Sanity checks (model randomisation, top-k cardinality) are not built to measure quality, and
# it shows: a disruption can *improve* them (noise has no repeated top-k samples). A metric with a
# low reactivity cannot tell a destroyed explanation from a good one on that benchmark; a metric
# with a low resilience ranks partly by chance. Read its leaderboard column with that in mind.
#
# ## Do the metrics agree?
#
# Kendall's τ between the rankings of the method explainers by every two metrics (unperturbed
# results; NaN where fewer than three explainers or a constant column). The report draws the same
# matrix (`metric_agreement.png`).

# %%
from dattr_eval.evaluation import read_results
from dattr_eval.evaluation.figures import agreement_figure
from dattr_eval.meta import metric_agreement

results = read_results(OUT)
metric_agreement(results, min_explainers=3).round(2)

# %%
agreement_figure(results)

# %% [markdown]
# ## Does the feature-level explanation find the shortcut?
#
# For test points the mark misleads (predicted as class 2, another true class): the pair heatmap
# of the test image with each of its top-3 proponents, the pair heatmap of the proponent when it
# is a marked training image, and the plain LRP heatmap of the decision. Each is scored on the
# mark with Quantus' localisation metrics. On 8×8 digits the mark (a one-pixel frame and a 2×2
# centre square) covers half the image, so a random heatmap scores 0.5: that is the `chance`
# column.

# %%
from dattr_eval.evaluation.leaderboard import localisation_table

localisation_table(results).round(3)

# %% [markdown]
# A few of those heatmaps, with the mark outlined in green (the one-pixel frame outside the large
# square, and the small centre square): the test image; the pair with its
# strongest *marked* proponent (the marked training image DualView ranks highest; its rank among
# all training images in the title): test side, the proponent, its side; and the plain LRP
# heatmap of the decision. Red = positive relevance.

# %%
import numpy as np
from matplotlib.figure import Figure

from dattr_eval import explainers
from dattr_eval.evaluation.xda_localisation import shortcut_positions
from dattr_eval.xda import explain_pairs
from dattr_eval.xda.localisation import mark_mask
from dattr_eval.xda.lrp import decision_heatmaps

bench = grid[1].build()
dualview = explainers.create("dualview").fit(bench.model, bench.train_dataset)
rows = shortcut_positions(bench, 3)
inputs, targets = bench.test_inputs[rows], bench.truth.test_targets[rows]
decision = decision_heatmaps(bench.model, inputs, targets, "epsilon_plus")
mask = mark_mask(inputs.shape[1:]).numpy()
marked = bench.truth.marked_train_indices
height, width = mask.shape
edges = np.kron(mask, np.ones((16, 16)))  # the mask at 16x: its contour follows pixel edges


def show(ax, image, title, heat=False):
    if heat:
        vmax = float(np.abs(image).max()) or 1.0
        ax.imshow(image, cmap="bwr", vmin=-vmax, vmax=vmax)
    else:
        ax.imshow(image, cmap="gray_r")
    extent = (-0.5, width - 0.5, -0.5, height - 0.5)
    ax.contour(
        edges, levels=[0.5], colors="limegreen", linewidths=1.0, extent=extent, origin="upper"
    )
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


fig = Figure(figsize=(9, 2.0 * len(rows)), layout="constrained")
axes = fig.subplots(len(rows), 5, squeeze=False)
for r in range(len(rows)):
    scores = dualview.explain(inputs[r : r + 1], targets[r : r + 1])[0]
    best = int(marked[scores[marked].argmax()])
    rank = int((scores > scores[best]).sum()) + 1
    pair = explain_pairs(dualview, None, inputs[r], best, target=int(targets[r]))
    label = int(bench.truth.test_labels[rows[r]])
    show(axes[r, 0], inputs[r, 0].numpy(), f"test: label {label}, pred {int(targets[r])}")
    show(axes[r, 1], pair.test_heatmaps[0].numpy(), "test side of the pair", heat=True)
    show(axes[r, 2], pair.train_inputs[0, 0].numpy(), f"marked proponent (rank {rank})")
    show(axes[r, 3], pair.train_heatmaps[0].numpy(), "train side of the pair", heat=True)
    show(axes[r, 4], decision[r].numpy(), "LRP of the decision", heat=True)
fig

# %% [markdown]
# The report of this directory (`dattr_eval.report(OUT)`) shows the meta table, the agreement
# matrix and the localisation table beside the leaderboard. From the command line:
#
# ```
# dattr-eval meta --benchmark 'digits-*' --explainers dualview,representer,trak,random \
#     --localisation --out results/meta
# ```
