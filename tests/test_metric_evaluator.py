"""Every metric of issue 5 through the Evaluator on a tiny digits benchmark (integration, a few seconds)."""

import math

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from dattr_eval import metrics as M
from dattr_eval.benchmarks.base import Benchmark
from dattr_eval.evaluation import evaluate
from dattr_eval.models import Retrainer
from tests._digits_models import single_thread  # noqa: F401


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    x_train, y_train = x[:200], y[:200]

    class LBFGSRetrainer(Retrainer):
        """A user's own retraining: a small MLP fitted by full-batch L-BFGS."""

        def fingerprint(self) -> str:
            return "test-lbfgs-mlp-v1"

        def train(self, train_dataset, indices, seed):
            torch.manual_seed(seed)
            model = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10))
            opt = torch.optim.LBFGS(model.parameters(), max_iter=100, line_search_fn="strong_wolfe")
            x, y = train_dataset.tensors[0][indices], train_dataset.tensors[1][indices]

            def closure():
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                return loss

            opt.step(closure)
            return model.eval()

    retrain = LBFGSRetrainer()

    bench = Benchmark.from_datasets(
        "digits-metrics",
        retrain.train(TensorDataset(x_train, y_train), torch.arange(200), 0),
        TensorDataset(x_train, y_train),
        TensorDataset(x[200:260], y[200:260]),
        n_test=20,
        retrain=retrain,
        truth={
            "mislabeled_indices": torch.arange(0, 200, 10),
            "marked_train_indices": (y_train == 2).nonzero()[:10, 0],
            "shortcut_class": 2,
            "train_fine_labels": y_train,
        },
        test_truth={"test_fine_labels": y[200:260]},
    )
    chosen = {
        "class1": "identical_class",
        "class5": M.create("identical_class", top_k=5),
        "sub": "identical_subclass",
        "mis": "mislabel_detection",
        "mis_global": "mislabel_detection_global",
        "shortcut": "feature_shortcut",
        "domain": "domain_mismatch",
        "rand": "model_randomization",
        "card": "top_k_cardinality",
        "sparsity": "sparsity",
        "lds": M.create("lds", n_subsets=8, n_seeds=2),
        "loo": M.create("leave_k_out", top_k=5),
        "coreset": M.create("coreset", n_fractions=3, n_orders=2),
        "pruning": M.create("pruning", n_fractions=3, n_orders=2),
    }
    df = evaluate(
        [bench],
        ["grad_dot", "random"],
        chosen,
        out_dir=tmp_path_factory.mktemp("out"),
        batch_size=8,
        progress=False,
    )
    return df[df.kind == "metric"].set_index(["explainer", "metric"])


def test_every_metric_scores_without_error(results):
    assert len(results) == 28
    errors = results["error"].fillna("").astype(str)
    assert (errors == "").all(), errors[errors != ""].to_dict()
    assert all(math.isfinite(s) for s in results["score"])
    # every score carries its 95 % bootstrap interval
    assert (results["ci_low"] <= results["score"] + 1e-12).all()
    assert (results["score"] <= results["ci_high"] + 1e-12).all()


def test_informative_attributions_beat_random(results):
    score = results["score"]
    for metric in ("class1", "class5", "sub", "shortcut", "lds"):
        assert score[("grad_dot", metric)] > score[("random", metric)], metric
    assert score[("random", "rand")] == pytest.approx(1.0)  # the random explainer ignores the model
