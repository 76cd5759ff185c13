"""The evaluator's optional XDA benchmark: rows equal a direct ``score_xda`` call, reach the report."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from dattr_eval import explainers
from dattr_eval.benchmarks import Benchmark
from dattr_eval.evaluation import evaluate
from dattr_eval.evaluation.report import report
from dattr_eval.evaluation.xda_scores import XDAHook, XDASettings, xda_inputs
from dattr_eval.xda import score_xda
from tests.test_xda import bias_free_cnn, train

SETTINGS = XDASettings(
    n_test=3, k=2, metrics=("random_logit", "max_sensitivity"), sides=("test", "decision"), seed=7
)
DUALVIEW = {"max_iter": 30}


@pytest.fixture(scope="module")
def image_bench() -> Benchmark:
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y)
    torch.manual_seed(0)
    model = train(bias_free_cnn(), x[:200], y[:200])
    return Benchmark.from_datasets(
        "img",
        model,
        TensorDataset(x[:200], y[:200]),
        TensorDataset(x[1000:1100], y[1000:1100]),
        n_test=8,
        seed=0,
    )


def _run(bench, tmp_path, settings):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DualView stops at max_iter on purpose (cheap fit)
        return evaluate(
            bench,
            {"dualview": explainers.create("dualview", **DUALVIEW), "random": "random"},
            out_dir=tmp_path,
            progress=False,
            hooks=[XDAHook(settings)] if settings is not None else [],
        )


def test_xda_rows_equal_a_direct_score_xda_call(image_bench, tmp_path):
    df = _run(image_bench, tmp_path, SETTINGS)
    rows = df[df.kind == "xda"]
    assert set(rows.explainer) == {"dualview"}  # random has no kernel coefficients: no XDA rows
    assert sorted(rows.metric) == sorted(
        f"xda/{m}/{s}" for m in SETTINGS.metrics for s in SETTINGS.sides
    )
    assert (rows.status == "ok").all()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = explainers.create("dualview", **DUALVIEW).fit(
            image_bench.model, image_bench.train_dataset
        )
    inputs, targets = xda_inputs(image_bench, SETTINGS)
    np.random.seed(SETTINGS.seed)
    direct = score_xda(
        fitted,
        image_bench.model,
        inputs,
        targets,
        k=SETTINGS.k,
        metrics=list(SETTINGS.metrics),
        sides=SETTINGS.sides,
        seed=SETTINGS.seed,
    )
    for rec in direct.to_dict("records"):
        row = rows[rows.metric == f"xda/{rec['metric']}/{rec['side']}"].iloc[0]
        assert row.score == pytest.approx(rec["score"], rel=1e-5, abs=1e-7)
        assert int(row.n_scored) == rec["n"]
    assert int(rows[rows.metric == "xda/max_sensitivity/test"].n_scored.iloc[0]) == 3 * SETTINGS.k

    board_md = tmp_path / "leaderboard.md"
    report(tmp_path, figures=False)
    text = board_md.read_text()
    assert "Feature-level (XDA) scores" in text and "xda/random_logit/decision" in text


def test_xda_off_by_default_and_skipped_for_flat_inputs(image_bench, tmp_path):
    df = _run(image_bench, tmp_path / "off", None)
    assert not (df.kind == "xda").any()
    flat = Benchmark.from_datasets(
        "flat",
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)),
        TensorDataset(
            image_bench.train_dataset.tensors[0].flatten(1), image_bench.train_dataset.tensors[1]
        ),
        TensorDataset(image_bench.test_inputs.flatten(1), image_bench.truth.test_labels),
    )
    df = _run(flat, tmp_path / "flat", XDASettings())
    assert not (df.kind == "xda").any() and (df[df.kind == "metric"].status == "ok").all()


def test_bad_xda_settings():
    with pytest.raises(ValueError, match="xda k"):
        XDASettings(k=0)
    with pytest.raises(ValueError, match="xda sides"):
        XDASettings(sides=("pixels",))
    with pytest.raises(ValueError, match="xda n_test"):
        XDASettings(n_test=0)
