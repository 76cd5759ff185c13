"""meta_evaluate end to end on a tiny digits benchmark: the issue's sanity checks of the protocol.

- a metric that ignores the attributions: adversarial reactivity 0 (nothing can disrupt it), noise
  resilience 1;
- a metric that is pure noise (fresh random level and unit scores on every run): noise
  resilience near 0;
- identical_class with a planted perfect explainer in the grid: both high;
plus the run's files (``results.csv`` unperturbed, ``meta.csv``) and its cost accounting.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from dattr_eval.benchmarks import Benchmark
from dattr_eval.evaluation import read_results
from dattr_eval.explainers.base import Explainer
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.meta import META_COLUMNS, meta_evaluate, read_meta
from dattr_eval.metrics.base import Metric
from tests._digits_models import digits_split, single_thread  # noqa: F401 (fixture)

#: fresh noise for every cell: the pure-noise metric must not repeat itself across runs
NOISE = np.random.default_rng(0)


class PlantedPerfect(Explainer):
    """Attribution 1 for training samples of the explained class, else 0: identical_class = 1."""

    def __init__(self) -> None:
        pass

    def _fit(self, model: nn.Module, train_dataset) -> None:
        pass

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (self.train_labels_.to(targets.device)[None, :] == targets[:, None]).float()


class IgnoresAttributions(Metric):
    """Per test point: the parity of the explained class (never reads the attributions)."""

    name = "ignores_attributions"
    category = "ground-truth"
    requires = ("test_targets",)

    def score_batch(self, attributions: torch.Tensor, truth: GroundTruth) -> torch.Tensor:
        return (truth.test_targets.cpu() % 2).double()


class PureNoise(Metric):
    """Per test point: a random level for the run plus unit noise (MetaQuantus' unreliable estimator)."""

    name = "pure_noise"
    category = "ground-truth"
    requires = ()

    def score_batch(self, attributions: torch.Tensor, truth: GroundTruth) -> torch.Tensor:
        level = NOISE.uniform(-10.0, 10.0)
        return torch.from_numpy(level + NOISE.normal(size=attributions.shape[0]))


@pytest.fixture(scope="module")
def bench() -> Benchmark:
    train, x_test, y_test = digits_split(300, 60)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = train.tensors
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return Benchmark.from_datasets(
        "tiny", model.eval(), train, TensorDataset(x_test, y_test), seed=0
    )


@pytest.fixture(scope="module")
def meta_run(bench, tmp_path_factory) -> tuple[pd.DataFrame, object]:
    out = tmp_path_factory.mktemp("meta")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = meta_evaluate(
            bench,
            {
                "perfect": PlantedPerfect(),
                "feature_similarity": "feature_similarity",
                "grad_dot": "grad_dot",
                "random": "random",
            },
            {
                "identical_class": "identical_class",
                "ignores_attributions": IgnoresAttributions(),
                "pure_noise": PureNoise(),
            },
            out_dir=out,
            n_draws=2,
            progress=False,
        )
    return table.set_index("metric"), out


def test_a_metric_that_ignores_the_attributions_does_not_react(meta_run):
    row = meta_run[0].loc["ignores_attributions"]
    assert row["status"] == "ok"
    assert row["adversarial_reactivity"] == pytest.approx(0.0, abs=1e-12)
    assert row["iac_ar"] == pytest.approx(0.0, abs=1e-12)
    assert row["iec_ar"] == pytest.approx(0.0, abs=1e-12)
    assert row["noise_resilience"] == pytest.approx(1.0)
    assert bool(row["flagged"])


def test_a_metric_that_is_pure_noise_is_not_resilient(meta_run):
    row = meta_run[0].loc["pure_noise"]
    assert row["noise_resilience"] < 0.15
    assert row["iec_nr"] < 0.25  # explainer rankings at chance level (kappa)
    assert bool(row["flagged"])


def test_identical_class_with_a_perfect_explainer_is_resilient_and_reactive(meta_run):
    row = meta_run[0].loc["identical_class"]
    assert row["noise_resilience"] > 0.8
    assert row["adversarial_reactivity"] > 0.6
    assert row["ar_shuffled_columns"] > 0.8 and row["ar_equal_norm_noise"] > 0.8
    assert not bool(row["flagged"])


def test_meta_run_writes_meta_csv_and_the_unperturbed_results(meta_run, bench):
    table, out = meta_run
    on_disk = read_meta(out)
    assert list(on_disk.columns) == list(META_COLUMNS)
    assert len(on_disk) == 3 and set(on_disk["benchmark"]) == {"tiny"}
    row = table.loc["identical_class"]
    # random is a reference: run unperturbed only, left out of the scores
    assert row["n_explainers"] == 3 and row["n_units"] == bench.n_test
    assert row["n_minor_draws"] == 2 and row["n_disruptive_draws"] == 6
    assert row["prediction_agreement"] > 0.95  # weight noise sigma = 0.001 is a minor perturbation
    assert row["cost_multiple"] > 1.0
    assert row["cost_multiple"] == pytest.approx((row["base_s"] + row["meta_s"]) / row["base_s"])
    results = read_results(out)
    scored = results[(results.kind == "metric") & (results.status == "ok")]
    assert len(scored) == 4 * 3  # one unperturbed row per explainer x metric
    perfect = scored[(scored.explainer == "perfect") & (scored.metric == "identical_class")]
    assert perfect["score"].iloc[0] == pytest.approx(1.0)


def test_report_shows_the_meta_table(meta_run):
    import json

    import jsonschema

    from dattr_eval.evaluation.leaderboard_json import load_schema
    from dattr_eval.evaluation.report import report

    _, out = meta_run
    report(out, figures=False)
    md = (out / "leaderboard.md").read_text()
    assert "## Meta-evaluation" in md and "tiny/pure_noise" in md and "Cost of the meta run" in md
    doc = json.loads((out / "leaderboard.json").read_text())
    jsonschema.validate(doc, load_schema())
    flagged = {r["metric"]: r["flagged"] for r in doc["meta_evaluation"]}
    assert flagged == {"identical_class": False, "ignores_attributions": True, "pure_noise": True}


def test_cli_meta_passes_its_arguments_and_reports_bad_ones(monkeypatch, tmp_path, capsys):
    from dattr_eval import cli
    from dattr_eval.meta import runner

    seen = {}

    def fake(benchmarks, explainers, **kwargs):
        seen.update(benchmarks=benchmarks, explainers=sorted(explainers), **kwargs)
        row = {c: np.nan for c in META_COLUMNS}
        row.update(benchmark="digits-class", metric="identical_class", status="ok", flagged=False)
        row.update(noise_resilience=0.9, adversarial_reactivity=0.8, cost_multiple=7.0)
        return pd.DataFrame([row], columns=list(META_COLUMNS))

    monkeypatch.setattr(runner, "meta_evaluate", fake)
    argv = ["meta", "--benchmark", "digits-class", "--explainers", "dualview,trak", "--out"]
    code = cli.main(
        [*argv, str(tmp_path), "--draws", "2", "--perturbations", "weight_noise,shuffled_columns"]
        + ["--localisation", "--no-report", "--no-progress"]
    )
    assert code == 0
    assert seen["benchmarks"] == ["digits-class"] and seen["explainers"] == ["dualview", "trak"]
    assert seen["n_draws"] == 2 and seen["perturbations"] == ["weight_noise", "shuffled_columns"]
    assert type(seen["hooks"][0]).__name__ == "LocalisationHook"
    out = capsys.readouterr().out
    assert "digits-class/identical_class" in out and "digits-class × 7.0" in out
    bad = cli.main([*argv, str(tmp_path), "--perturbations", "blur"])
    assert bad == 2 and "unknown perturbation 'blur'" in capsys.readouterr().err
