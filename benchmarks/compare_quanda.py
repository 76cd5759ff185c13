"""dattr_eval metrics side by side with quanda 0.5.0 on the same saved tensors.

quanda needs captum<0.9 (numpy<2), so it lives in its own venv, e.g. (from the repository root)::

    python3 -m venv .venv-quanda
    .venv-quanda/bin/pip install quanda omegaconf torch torchvision "pyarrow==25.0.0"

Run (from the repository root)::

    .venv/bin/python benchmarks/compare_quanda.py --quanda-python .venv-quanda/bin/python

The script builds the tensors here (a small MLP on scikit-learn digits with 10 % flipped training
labels, ``grad_dot`` attributions and self-influence, the same explainer on a randomised model,
models retrained on 20 random halves for LDS), saves them to a ``.pt`` file, runs quanda's metrics
on that file in the other interpreter (``--quanda-side``, which imports only torch and quanda),
computes ours, and writes ``benchmarks/results/compare_quanda.md``. Every metric is run on the
continuous tensors and on a coarsened copy with many ties, where tie-breaking rules differ.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from dattr_eval.ground_truth import GroundTruth

N_TRAIN, N_TEST, M_SUBSETS, K = 300, 60, 20, 5
SUBSET_FRACTION, SUBSET_SEED = 0.5, 0  # the LDS subsets: metrics.lds.subset_masks arguments
RESULTS = Path(__file__).parent / "results" / "compare_quanda.md"


# ---------------------------------------------------------------- shared tensors (dattr_eval venv)
def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))


def _fit(x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = _mlp()
    opt = torch.optim.LBFGS(model.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y) + 1e-3 * sum(
            (p * p).sum() for p in model.parameters()
        )
        loss.backward()
        return loss

    opt.step(closure)
    return model.eval()


def _outputs(
    model: nn.Module, x: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target log-softmax (DualView paper, our evaluator) and margin z_y - logsumexp(z_!=y) (quanda)."""
    with torch.no_grad():
        z = model(x)
    logp = torch.log_softmax(z, 1).gather(1, targets[:, None])[:, 0]
    others = z.scatter(1, targets[:, None], float("-inf"))
    return logp, z.gather(1, targets[:, None])[:, 0] - torch.logsumexp(others, 1)


def make_tensors() -> dict:
    from sklearn.datasets import load_digits
    from torch.utils.data import TensorDataset

    from dattr_eval import explainers
    from dattr_eval.evaluation.providers import randomize_model
    from dattr_eval.metrics.lds import subset_masks

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    x_train, clean, x_test, y_test = (
        x[:N_TRAIN],
        y[:N_TRAIN],
        x[N_TRAIN : N_TRAIN + N_TEST],
        y[N_TRAIN : N_TRAIN + N_TEST],
    )
    gen = torch.Generator().manual_seed(0)
    flipped = torch.randperm(N_TRAIN, generator=gen)[: N_TRAIN // 10]
    noisy = clean.clone()
    noisy[flipped] = (clean[flipped] + torch.randint(1, 10, (len(flipped),), generator=gen)) % 10
    model = _fit(x_train, noisy)
    with torch.no_grad():
        pred = model(x_test).argmax(1)
    train = TensorDataset(x_train, noisy)
    explainer = explainers.create("grad_dot").fit(model, train)
    attributions = explainer.explain(x_test, pred)
    randomized = (
        explainers.create("grad_dot")
        .fit(randomize_model(model, seed=0), train)
        .explain(x_test, pred)
    )
    masks = subset_masks(N_TRAIN, M_SUBSETS, SUBSET_FRACTION, seed=SUBSET_SEED)
    logp, margin = zip(*(_outputs(_fit(x_train[mk], noisy[mk]), x_test, pred) for mk in masks))
    # shortcut class: the class the model most often predicts for test points of another class
    shortcut_class = int(torch.bincount(pred[pred != y_test], minlength=10).argmax())
    members = (noisy == shortcut_class).nonzero()[:, 0]
    marked = members[torch.randperm(len(members), generator=gen)[: max(1, int(0.3 * len(members)))]]
    return {
        "attributions": attributions.float(),
        "randomized": randomized.float(),
        "self_influence": explainer.self_influence().float(),
        "train_labels": noisy,
        "train_fine_labels": clean,
        "flipped": torch.sort(flipped).values,
        "marked": torch.sort(marked).values,
        "shortcut_class": shortcut_class,
        "test_labels": y_test,
        "test_predictions": pred,
        "subset_masks": masks,
        "subset_logp": torch.stack(logp),
        "subset_margin": torch.stack(margin),
    }


def randomised(t: dict) -> dict:
    """The same ground truth with seeded Gaussian attributions, randomised attributions and self-influence."""
    gen = torch.Generator().manual_seed(1)
    return {
        **t,
        "attributions": torch.randn(t["attributions"].shape, generator=gen),
        "randomized": torch.randn(t["randomized"].shape, generator=gen),
        "self_influence": torch.randn(t["self_influence"].shape, generator=gen),
    }


def coarsen(t: dict) -> dict:
    """A tied copy: attributions and self-influence rounded to 4 levels per row (or globally)."""

    def levels(a: torch.Tensor) -> torch.Tensor:
        top = a.abs().amax(-1, keepdim=True).clamp_min(1e-12)
        return torch.round(a / top * 4) / 4

    return {
        **t,
        "attributions": levels(t["attributions"]),
        "randomized": levels(t["randomized"]),
        "self_influence": levels(t["self_influence"]),
    }


# ---------------------------------------------------------------- our side
def ours(t: dict) -> dict[str, float]:
    from dattr_eval import metrics
    from dattr_eval.contract import TopK
    from dattr_eval.ground_truth import GroundTruth

    a = t["attributions"]
    torch_topk = TopK(*torch.topk(a, K, dim=1))  # quanda's tie order, fed to our metrics as TopK
    truth = GroundTruth(
        train_labels=t["train_labels"],
        train_fine_labels=t["train_fine_labels"],
        mislabeled_indices=t["flipped"],
        marked_train_indices=t["marked"],
        shortcut_class=t["shortcut_class"],
        self_influence=t["self_influence"],
        test_labels=t["test_labels"],
        test_targets=t["test_predictions"],
        test_predictions=t["test_predictions"],
        test_fine_labels=t["test_labels"],
        randomized_attributions=t["randomized"],
    )
    mis = metrics.create("mislabel_detection")(None, truth)
    shifted = (
        t["self_influence"] + torch.arange(len(t["self_influence"])) * 1e-4
    )  # quanda's ranking rule
    mis_shifted = metrics.create("mislabel_detection")(None, truth, self_influence=shifted)
    out = {
        "class_detection k=1": metrics.create("identical_class", top_k=1)(a, truth).score,
        f"class_detection k={K}": metrics.create("identical_class", top_k=K)(a, truth).score,
        f"subclass_detection k={K}": metrics.create("identical_subclass", top_k=K)(a, truth).score,
        "mislabeling raw AUC (trapezoid/N)": mis.extras["raw_auc"],
        "mislabeling raw AUC (trapezoid/N) [ours on s + 1e-4·index]": mis_shifted.extras["raw_auc"],
        "mislabeling normalised (ours)": mis.score,
        f"class_detection k={K} [ours fed torch.topk]": metrics.create("identical_class", top_k=K)(
            torch_topk, truth
        ).score,
        f"subclass_detection k={K} [ours fed torch.topk]": metrics.create(
            "identical_subclass", top_k=K
        )(torch_topk, truth).score,
        f"top_k_cardinality k={K} [ours fed torch.topk]": metrics.create(
            "top_k_cardinality", top_k=K
        )(torch_topk, truth).score,
        "shortcut AUPRC (filtered)": metrics.create("feature_shortcut")(a, truth).score,
        "shortcut AUPRC (all test points)": metrics.create(
            "feature_shortcut", filter_by_prediction=False, filter_by_class=False
        )(a, truth).score,
        "top_k_cardinality k=1": metrics.create("top_k_cardinality", top_k=1)(a, truth).score,
        f"top_k_cardinality k={K}": metrics.create("top_k_cardinality", top_k=K)(a, truth).score,
        "model_randomization (Spearman)": metrics.create("model_randomization")(a, truth).score,
    }
    for kind in ("margin", "logp"):
        out[f"LDS ({kind} outputs)"] = lds_one_seed(
            a, truth, t["subset_masks"], t[f"subset_{kind}"]
        )
    return out


def lds_one_seed(
    attributions: torch.Tensor, truth: GroundTruth, masks: torch.Tensor, outputs: torch.Tensor
) -> float:
    """Our LDS with one training seed per subset, scored on the given outputs.

    With ``n_seeds=1`` the seed average is the single model's output and there is no noise
    ceiling, so the score is the plain per-test-point Spearman between the attribution sums
    ``attributions @ masks.T`` and ``outputs.T``, averaged: the formula quanda computes. The
    metric is driven as the evaluator drives a ``RetrainingMetric``: ``update`` with the
    attributions, then ``compute`` with the outputs ``(n_subsets, n_test)`` of the models
    retrained on ``retrain_requests()``, which must be the subsets the outputs were trained on.

    Args:
        attributions: ``(n_test, n_train)``.
        masks: ``(n_subsets, n_train)`` bool, the subsets the models were retrained on.
        outputs: ``(n_subsets, n_test)``, row ``j`` from the model retrained on ``masks[j]``.
    """
    from dattr_eval import metrics

    n_subsets = masks.shape[0]
    lds = metrics.create(
        "lds", n_subsets=n_subsets, fraction=SUBSET_FRACTION, n_seeds=1, seed=SUBSET_SEED
    )
    lds.update(attributions, truth)
    requested = torch.zeros_like(masks)
    for row, request in enumerate(lds.retrain_requests()):
        requested[row, request.indices] = True
    if not torch.equal(requested, masks):
        raise RuntimeError("the LDS metric requests other subsets than the saved outputs used")
    return lds.compute(outputs).score


# ---------------------------------------------------------------- quanda side (quanda venv; no dattr_eval import)
class _Lookup:
    """A quanda explainer stand-in returning precomputed attributions for test indices."""

    def __init__(self, model, checkpoints=None, train_dataset=None, table=None, **kwargs):
        self.table = table

    def explain(self, test_data, targets=None):
        return self.table[test_data.long()]


def quanda_scores(t: dict, workdir: str) -> dict[str, float]:
    import quanda.metrics.downstream_eval as de
    import quanda.metrics.ground_truth as gt
    import quanda.metrics.heuristics as he
    from torch.utils.data import TensorDataset

    a = t["attributions"]
    n_classes = 10
    train = TensorDataset(torch.zeros(len(t["train_labels"]), 1), t["train_labels"])
    identity = nn.Linear(n_classes, n_classes, bias=False)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(n_classes))
    pred_as_input = nn.functional.one_hot(
        t["test_predictions"], n_classes
    ).float()  # identity(.) = predictions
    ckpt = os.path.join(workdir, "identity.pt")
    torch.save(identity.state_dict(), ckpt)

    def run(metric, **update):
        metric.update(a, **update)
        return metric.compute()["score"]

    out = {}
    for k in (1, K):
        out[f"class_detection k={k}"] = run(
            de.ClassDetectionMetric(identity, train, s=k), test_targets=t["test_predictions"]
        )
    out[f"subclass_detection k={K}"] = run(
        de.SubclassDetectionMetric(
            identity, train, train_subclass_labels=t["train_fine_labels"], s=K
        ),
        test_targets=t["test_labels"],
    )
    mis = de.MislabelingDetectionMetric(
        identity,
        train,
        mislabeling_indices=t["flipped"].tolist(),
        precomputed_self_influence=t["self_influence"],
    )
    out["mislabeling raw AUC (trapezoid/N)"] = mis.compute()["score"]
    out["shortcut AUPRC (filtered)"] = run(
        de.ShortcutDetectionMetric(
            identity, train, shortcut_indices=t["marked"], shortcut_cls=t["shortcut_class"]
        ),
        test_data=pred_as_input,
        test_labels=t["test_labels"],
    )
    out["shortcut AUPRC (all test points)"] = run(
        de.ShortcutDetectionMetric(
            identity,
            train,
            shortcut_indices=t["marked"],
            shortcut_cls=t["shortcut_class"],
            filter_by_non_shortcut=False,
            filter_by_shortcut_pred=False,
        )
    )
    for k in (1, K):
        out[f"top_k_cardinality k={k}"] = run(he.TopKCardinalityMetric(identity, train, top_k=k))
    rand = he.ModelRandomizationMetric(
        identity,
        "m",
        os.path.join(workdir, "rand"),
        train,
        checkpoints=ckpt,
        explainer_cls=_Lookup,
        expl_kwargs={"table": t["randomized"]},
    )
    out["model_randomization (Spearman)"] = run(rand, test_data=torch.arange(len(a)))
    subset_ids = [mask.nonzero()[:, 0].tolist() for mask in t["subset_masks"]]
    for kind in ("margin", "logp"):
        lds = gt.LinearDatamodelingMetric(
            identity,
            train,
            m=len(subset_ids),
            subset_ids=subset_ids,
            subset_ckpt_filenames=[ckpt] * len(subset_ids),
            cache_dir=os.path.join(workdir, "lds"),
        )
        outputs = t[f"subset_{kind}"]
        out[f"LDS ({kind} outputs)"] = run(
            lds,
            test_targets=t["test_predictions"],
            test_data=pred_as_input,
            subset_logits={s: outputs[s] for s in range(len(subset_ids))},
        )
    return out


def _quanda_side(path_in: str, path_out: str) -> None:
    from importlib.metadata import version

    data = torch.load(path_in, weights_only=True)
    with tempfile.TemporaryDirectory() as work:
        scores = {variant: quanda_scores(t, work) for variant, t in data.items()}
    torch.save({"scores": scores, "version": version("quanda")}, path_out)


# ---------------------------------------------------------------- table
NOTES = {
    "class_detection k=1": "top-k ties: ours lower index first (contract.topk); quanda torch.topk (order of ties unspecified)",
    f"class_detection k={K} [ours fed torch.topk]": "ours on quanda's top-k (TopK input): reproduces quanda",
    f"subclass_detection k={K} [ours fed torch.topk]": "ours on quanda's top-k (TopK input)",
    f"top_k_cardinality k={K} [ours fed torch.topk]": "ours on quanda's top-k (TopK input)",
    f"class_detection k={K}": "same definition (quanda's default s=5)",
    f"subclass_detection k={K}": "same definition; fine labels of train and test",
    "mislabeling raw AUC (trapezoid/N)": "ours: tied scores at their expected value; quanda adds index·1e-4 to the scores, which breaks ties towards the higher index and also reorders scores closer than 1e-4·N",
    "mislabeling raw AUC (trapezoid/N) [ours on s + 1e-4·index]": "ours given quanda's shifted scores: reproduces quanda",
    "mislabeling normalised (ours)": "(Σd_k − (n_c+1)/2)/(N − n_c): 1 perfect, 0 inverted, 0.5 random; quanda has no normalised score",
    "shortcut AUPRC (filtered)": "predicted shortcut class and true label ≠ it; AP = step-wise AUPRC (sklearn) in ours, torcheval binary_auprc in quanda; no selected point: ours NaN + warning, quanda 0.0",
    "shortcut AUPRC (all test points)": "no filters",
    "model_randomization (Spearman)": "average ranks for ties in both",
    "LDS (margin outputs)": "quanda's output z_y − logsumexp(z_≠y); either library takes given outputs; ours = `lds` with n_seeds=1 (one model per subset: no seed average, no noise ceiling), the plain Spearman quanda computes",
    "LDS (logp outputs)": "DualView paper's / our evaluator's output; margin = log(p/(1−p)) is monotone in log p, so Spearman (and LDS) are identical",
}


def write_table(
    ours_scores: dict, quanda_scores_: dict, version: str, seconds: float, command: str, base: dict
) -> str:
    c = base["shortcut_class"]
    n_selected = int(((base["test_predictions"] == c) & (base["test_labels"] != c)).sum())
    lines = [
        "# dattr_eval metrics vs quanda on the same tensors",
        "",
        (
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} CPU cores "
            f"({platform.machine()}), GPU: none; torch {torch.__version__}; quanda {version}"
        ),
        f"- command: `{command}` ({seconds:.0f} s in all)",
        (
            f"- tensors: sklearn digits, MLP 64-32-10 trained on {N_TRAIN} samples with 10 % flipped labels; "
            f"{N_TEST} test points explained for the model's prediction with `grad_dot`; self-influence = "
            f"`grad_dot.self_influence()`; randomised model = `randomize_model(seed=0)` + `grad_dot`; LDS: "
            f"{M_SUBSETS} MLPs retrained on random halves (`metrics.lds.subset_masks`). Marked samples (shortcut): 30 % of "
            f"the training samples of the class most often wrongly predicted on the test points (class {c}, {len(base['marked'])} marked; {n_selected} test points selected; indices only: the metric comparison needs no real mark). Subclass "
            "rows use the clean digit labels as fine labels of the same model (a metric check, not a benchmark)."
        ),
        "- `tied`: the same tensors rounded to 4 levels of |max| per row (self-influence: globally), so tie rules matter.",
        "- `random`: the same ground truth with seeded Gaussian attributions, randomised attributions and self-influence.",
        "",
        "| metric | tensors | dattr_eval | quanda | abs diff | definition notes |",
        "|---|---|---|---|---|---|",
    ]
    for variant, scores in ours_scores.items():
        for name, value in scores.items():
            theirs = quanda_scores_[variant].get(name.split(" [")[0])
            q = "—" if theirs is None else f"{theirs:.6f}"
            d = "—" if theirs is None else f"{abs(value - theirs):.1e}"
            lines.append(
                f"| {name} | {variant} | {value:.6f} | {q} | {d} | {NOTES.get(name, '')} |"
            )
    same_rules = [
        abs(v - quanda_scores_[variant][n.split(" [")[0]])
        for variant in ours_scores
        for n, v in ours_scores[variant].items()
        if n.split(" [")[0] in quanda_scores_[variant]
        and n != "mislabeling raw AUC (trapezoid/N)"
        and not (variant == "tied" and "[" not in n and ("detection k=" in n or "cardinality" in n))
    ]
    lines += [
        "",
        (
            f"Largest |difference| where both use the same tie rule (all rows but the plain top-k rows on "
            f"`tied` and the plain mislabeling raw-AUC rows): {max(same_rules):.1e} (float32 rounding). The "
            "remaining differences come from tie-breaking alone: fed quanda's order (torch.topk indices, "
            "scores shifted by 1e-4·index) our metrics reproduce quanda's values."
        ),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quanda-python",
        default=".venv-quanda/bin/python",
        help="an interpreter with quanda installed (default: .venv-quanda/bin/python)",
    )
    parser.add_argument("--quanda-side", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quanda_side:
        _quanda_side(*args.quanda_side)
        return
    import time

    start = time.perf_counter()
    torch.set_num_threads(1)
    base = make_tensors()
    data = {"continuous": base, "tied": coarsen(base), "random": randomised(base)}
    with tempfile.TemporaryDirectory() as work:
        path_in, path_out = os.path.join(work, "in.pt"), os.path.join(work, "out.pt")
        torch.save(data, path_in)
        subprocess.run(
            [args.quanda_python, __file__, "--quanda-side", path_in, path_out],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        theirs = torch.load(path_out, weights_only=True)
    mine = {variant: ours(t) for variant, t in data.items()}
    exe = Path(sys.executable)
    python = exe.relative_to(Path.cwd()) if exe.is_relative_to(Path.cwd()) else "python"
    command = f"{python} benchmarks/compare_quanda.py --quanda-python {args.quanda_python}"
    text = write_table(
        mine, theirs["scores"], theirs["version"], time.perf_counter() - start, command, base
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
