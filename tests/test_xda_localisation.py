"""Localisation of XDA heatmaps on the shortcut mark: the mask, Quantus' scores, the hook."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from dattr_eval import explainers, metrics
from dattr_eval.benchmarks import Benchmark
from dattr_eval.data import add_shortcut, mark_dataset
from dattr_eval.data.loading import stack_dataset
from dattr_eval.evaluation import evaluate
from dattr_eval.evaluation.report import report
from dattr_eval.evaluation.xda_localisation import (
    LocalisationHook,
    LocalisationSettings,
    shortcut_positions,
)
from dattr_eval.xda.localisation import (
    LOCALISATION_METRICS,
    chance_level,
    mark_mask,
    score_localisation,
    shortcut_heatmaps,
)
from tests.test_xda import bias_free_cnn, train


def test_mark_mask_is_the_frame_and_the_centre_square():
    small = mark_mask((1, 8, 8))
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[[0, -1], :] = expected[:, [0, -1]] = True  # 1-px frame
    expected[3:5, 3:5] = True  # 2x2 centre square
    assert torch.equal(small, expected) and chance_level(small) == 32 / 64
    big = mark_mask((3, 28, 28))  # 2-px frame, 4x4 square: 784 - 24*24 + 16 pixels
    assert (
        int(big.sum()) == 784 - 576 + 16 and big[12:16, 12:16].all() and not big[2:12, 2:12].any()
    )
    with pytest.raises(ValueError, match="image_shape"):
        mark_mask((8, 8))


def test_a_heatmap_that_is_the_mask_scores_perfectly():
    mask = mark_mask((1, 28, 28))
    heatmaps = mask.float().expand(5, 28, 28) + 0.0
    scores = score_localisation(heatmaps, mask)
    assert set(scores) == set(LOCALISATION_METRICS)
    assert scores["pointing_game"].mean() >= 0.9
    for name in ("relevance_mass_accuracy", "relevance_rank_accuracy"):
        assert scores[name] == pytest.approx(np.ones(5))
    assert scores["attribution_localisation"] == pytest.approx(np.ones(5), abs=1e-6)


def test_a_uniform_random_heatmap_scores_chance():
    mask = mark_mask((1, 28, 28))
    share, n = chance_level(mask), 600
    gen = torch.Generator().manual_seed(0)
    scores = score_localisation(torch.rand(n, 28, 28, generator=gen), mask)
    se = np.sqrt(share * (1 - share) / n)
    assert abs(scores["pointing_game"].mean() - share) < 4 * se
    for name in ("attribution_localisation", "relevance_mass_accuracy", "relevance_rank_accuracy"):
        assert scores[name].mean() == pytest.approx(share, abs=0.01)


def test_negative_only_heatmaps_have_no_score_and_shapes_are_checked():
    mask = mark_mask((1, 8, 8))
    heatmaps = torch.stack([mask.float(), -torch.ones(8, 8)])
    scores = score_localisation(heatmaps, mask, metrics=["pointing_game"])
    assert scores["pointing_game"][0] == 1 and np.isnan(scores["pointing_game"][1])
    with pytest.raises(ValueError, match="mask"):
        score_localisation(heatmaps, torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="metrics"):
        score_localisation(heatmaps, mask, metrics=["focus"])


def test_scoring_leaves_numpy_global_rng_as_found():
    np.random.seed(123)
    np.random.uniform()
    before = np.random.get_state()
    score_localisation(torch.rand(4, 8, 8), mark_mask((1, 8, 8)), seed=7)
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]


@pytest.fixture(scope="module")
def shortcut_bench() -> Benchmark:
    """A tiny shortcut benchmark: 80 % of class 2's training images and every test image marked."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y)
    trainset, marked = add_shortcut(TensorDataset(x[:300], y[:300]), 2, 0.8, seed=0)
    torch.manual_seed(0)
    model = train(bias_free_cnn(), *stack_dataset(trainset))
    return Benchmark.from_datasets(
        "shortcut",
        model,
        trainset,
        mark_dataset(TensorDataset(x[1000:1100], y[1000:1100])),
        n_test=40,
        seed=0,
        metrics=("domain_mismatch",),
        truth={"marked_train_indices": marked, "shortcut_class": 2},
    )


def test_shortcut_heatmaps_sides(shortcut_bench):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = explainers.create("dualview", max_iter=30).fit(
            shortcut_bench.model, shortcut_bench.train_dataset
        )
    rows = shortcut_positions(shortcut_bench, 3)
    truth = shortcut_bench.truth
    assert (truth.test_predictions[rows] == 2).all() and (truth.test_labels[rows] != 2).all()
    every = shortcut_positions(shortcut_bench, shortcut_bench.n_test)
    scored = metrics.create("feature_shortcut")(
        fitted.explain(shortcut_bench.test_inputs, truth.test_targets), truth
    )
    assert every.numel() == len(scored.units) > 3  # the points the shortcut metrics score
    maps = shortcut_heatmaps(
        fitted,
        None,
        shortcut_bench.test_inputs[rows],
        truth.test_targets[rows],
        truth.marked_train_indices,
        k=2,
    )
    marked_partners = int(torch.isin(maps.train_indices, truth.marked_train_indices).sum())
    assert maps.heatmaps["test"].shape == (6, 8, 8)
    assert maps.heatmaps["decision"].shape == (3, 8, 8)
    assert maps.heatmaps["train"].shape == (marked_partners, 8, 8)


def test_localisation_hook_rows_reach_the_report(shortcut_bench, tmp_path):
    settings = LocalisationSettings(n_test=4, k=2, metrics=("pointing_game",), seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = evaluate(
            shortcut_bench,
            {"dualview": explainers.create("dualview", max_iter=30), "random": "random"},
            out_dir=tmp_path,
            progress=False,
            hooks=[LocalisationHook(settings)],
        )
    rows = df[df.kind == "xda"].set_index("metric")
    assert set(df[df.kind == "xda"].explainer) == {"dualview"}  # random has no pair heatmaps
    labels = {f"xda/localisation/pointing_game/{side}" for side in ("test", "train", "decision")}
    assert set(rows.index) == labels
    test_row = rows.loc["xda/localisation/pointing_game/test"]
    assert test_row["status"] == "ok" and test_row["n_scored"] == 4 * 2
    assert test_row["ci_low"] <= test_row["score"] <= test_row["ci_high"]
    assert test_row["baseline_score"] == pytest.approx(0.5)
    report(tmp_path, figures=False)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "## Shortcut localisation" in md and "pointing_game/decision" in md
    assert "Feature-level (XDA) scores" not in md  # localisation rows are not repeated there


def test_localisation_settings_are_checked():
    with pytest.raises(ValueError, match="localisation sides"):
        LocalisationSettings(sides=("pixels",))
    with pytest.raises(ValueError, match="localisation metrics"):
        LocalisationSettings(metrics=("focus",))
