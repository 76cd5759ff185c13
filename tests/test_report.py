"""Leaderboard and report: ranks, rank intervals, significance, SNR by hand; files; figures."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import jsonschema
import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

import dattr_eval
from dattr_eval.evaluation import figures
from dattr_eval.evaluation.leaderboard import (
    average_ranks,
    cards_table,
    column_ranks,
    diagnostics_table,
    leaderboard,
    normalise_results,
    rank_table,
    sanity_table,
    snr_table,
    to_markdown,
)
from dattr_eval.evaluation.leaderboard_json import (
    leaderboard_document,
    load_schema,
    metric_metadata,
)
from dattr_eval.evaluation.store import ResultStore, read_results
from tests._leaderboard_data import write_results

# (benchmark, metric) -> (category, higher_is_better, {explainer: score or None = error})
SCORES = {
    ("b1", "up"): ("ground-truth", True, {"a": 0.9, "b": 0.5, "c": 0.1, "random": 0.7}),
    ("b1", "down"): ("property", False, {"a": 0.3, "b": 0.1, "c": 0.2, "random": 0.25}),
    ("b1", "mr"): ("sanity", False, {"a": 0.1, "b": 0.9, "c": 0.2, "random": 0.0}),
    ("b2", "up"): ("ground-truth", True, {"a": 0.2, "b": 0.8, "c": None, "random": 0.1}),
}
PROFILE = {
    "a": (1.0, 2.0, 10.0),
    "b": (0.1, 0.2, 30.0),
    "c": (10.0, 20.0, 5.0),
    "random": (0, 0.01, 1),
}


def results_frame(scores=SCORES, replicates=None, ci=True) -> pd.DataFrame:
    """A schema-v2 results table; ``replicates``: ``{(bench, metric, explainer): [scores]}``."""
    rows = []
    for (bench, metric), (category, hib, by_expl) in scores.items():
        for expl, score in by_expl.items():
            row = {
                "benchmark": bench,
                "explainer": expl,
                "metric": metric,
                "kind": "metric",
                "status": "ok" if score is not None else "error",
                "score": score,
                "ci_low": score - 0.05 if ci and score is not None else None,
                "ci_high": score + 0.05 if ci and score is not None else None,
                "higher_is_better": hib,
                "category": category,
                "unit": "test point",
                "explainer_role": "reference" if expl == "random" else "method",
                "passed": (score < 0.5) if category == "sanity" else None,
                "error": "" if score is not None else "Boom: x",
                "replicate_scores": json.dumps((replicates or {}).get((bench, metric, expl), [])),
                "noise_ceiling": 0.6 if metric == "up" else None,
            }
            rows.append(row)
    for bench in ("b1", "b2"):
        for expl, (fit, explain, rss) in PROFILE.items():
            rows.append(
                {
                    "benchmark": bench,
                    "explainer": expl,
                    "metric": "",
                    "kind": "profile",
                    "status": "ok",
                    "fit_s": fit,
                    "explain_s": explain,
                    "explain_s_per_sample": explain / 10,
                    "rss_increase_mb": rss,
                    "n_train": 100,
                    "n_test": 10,
                    "device": "cpu",
                    "explainer_role": "reference" if expl == "random" else "method",
                }
            )
        rows.append(
            {
                "benchmark": bench,
                "explainer": "",
                "metric": "",
                "kind": "card",
                "status": "ok",
                "card": json.dumps({"accuracy": 0.95, "flags": ["median 1-p < 1e-6"]}),
            }
        )
    return pd.DataFrame(rows)


def constant_draws(results: pd.DataFrame, n: int = 200) -> dict:
    """Every ok metric cell's draws = its score, ``n`` times."""
    ok = results[(results.kind == "metric") & (results.status == "ok")]
    return {(r.benchmark, r.explainer, r.metric): np.full(n, r.score) for r in ok.itertuples()}


def flipped_draws(results: pd.DataFrame, n_flipped: int, n: int = 200) -> dict:
    """Constant draws, except that on b1/up explainer b scores 0.95 (above a) in the first
    ``n_flipped`` draws."""
    draws = constant_draws(results, n)
    draws[("b1", "b", "up")] = np.where(np.arange(n) < n_flipped, 0.95, 0.5)
    return draws


def ranks_of(long: pd.DataFrame, bench: str, metric: str, column: str = "rank") -> dict:
    sub = long[(long.benchmark == bench) & (long.metric == metric)]
    return dict(zip(sub.explainer, sub[column]))


def test_point_ranks_methods_references_and_sanity():
    results = normalise_results(results_frame())
    long = column_ranks(results)
    # b1/up (higher better): a .9 > b .5 > c .1; random .7 would sit between a and b
    assert ranks_of(long, "b1", "up") == {"a": 1, "b": 2, "c": 3, "random": 2}
    # b1/down (lower better): b .1 < c .2 < a .3; random .25 would sit between c and a
    assert ranks_of(long, "b1", "down") == {"a": 3, "b": 1, "c": 2, "random": 3}
    # c failed on b2/up: no rank; random .1 is below a .2 and b .8
    assert ranks_of(long, "b2", "up") == {"a": 2, "b": 1, "random": 3}
    assert ("b1", "mr") not in set(zip(long.benchmark, long.metric))  # sanity: not ranked
    avg = average_ranks(results)
    assert avg.loc["a", "avg rank"] == pytest.approx((1 + 3 + 2) / 3)
    assert avg.loc["b", "avg rank"] == pytest.approx((2 + 1 + 1) / 3)
    assert avg.loc["c", "avg rank"] == pytest.approx((3 + 2) / 2)
    assert avg.loc["random", "avg rank"] == pytest.approx((2 + 3 + 3) / 3)
    assert avg.loc["a", "avg rank b1"] == pytest.approx(2.0)
    assert avg["avg rank low"].isna().all()  # no draws, no intervals
    board = leaderboard(results)
    assert list(board.index) == ["b", "a", "c", "random"]  # methods by rank, then references
    assert board.loc["b", "runtime [s]"] == pytest.approx(2 * 0.3)
    assert board.loc["a", "b1/up ±"] == pytest.approx(0.05)
    assert board["b1/mr passed"].to_dict() == {"a": True, "b": False, "c": True, "random": True}
    sanity = sanity_table(results)
    assert set(sanity.metric) == {"mr"} and sanity.set_index("explainer").loc["c", "passed"]


def test_ties_share_the_average_rank():
    scores = {("b", "m"): ("ground-truth", True, {"x": 0.5, "y": 0.5, "z": 0.9})}
    table = rank_table(normalise_results(results_frame(scores)))
    assert table[("b", "m")].to_dict() == {"x": 2.5, "y": 2.5, "z": 1.0}


@pytest.mark.parametrize(
    ("n_flipped", "a_interval", "a_tied", "b_in_best_group", "random_interval"),
    [
        # 6 of 200 draws rank b first: the 97.5 % rank quantile of a (and the 2.5 % of b) moves;
        # the paired difference a - b is negative in 6 draws > 2.5 % of 200: not significant
        (6, (1, 2), True, True, (2, 3)),
        # 3 of 200: fewer than the 5 draws a 2.5 % tail holds, so intervals and test stay put
        (3, (1, 1), False, False, (2, 2)),
    ],
)
def test_rank_intervals_and_significance_from_hand_made_draws(
    n_flipped, a_interval, a_tied, b_in_best_group, random_interval
):
    results = normalise_results(results_frame())
    long = column_ranks(results, flipped_draws(results, n_flipped))
    low, high = ranks_of(long, "b1", "up", "rank_low"), ranks_of(long, "b1", "up", "rank_high")
    assert (low["a"], high["a"]) == a_interval
    assert (low["b"], high["b"]) == (1 if n_flipped >= 5 else 2, 2)
    assert (low["c"], high["c"]) == (3, 3)
    # random (reference, 0.7) is 2nd behind a, 3rd when b (0.95) also passes it
    assert (low["random"], high["random"]) == random_interval
    tied, best = (
        ranks_of(long, "b1", "up", "tied_with_next"),
        ranks_of(long, "b1", "up", "best_group"),
    )
    assert tied["a"] == a_tied and tied["b"] == 0 and math.isnan(tied["c"])
    assert best["a"] == 1 and best["b"] == b_in_best_group and best["c"] == 0
    assert math.isnan(tied["random"]) and best["random"] == 0  # random is below a in every draw
    # a column whose draws are constant: point ranks, degenerate intervals, all differences real
    assert ranks_of(long, "b1", "down", "rank_low") == ranks_of(long, "b1", "down")


def test_average_rank_interval_from_hand_made_draws():
    """b2/up removed so that every ranked column has draws: avg rank = mean of b1/up, b1/down.

    Normal draws: ranks up a1 b2 c3 (random 2), down b1 c2 a3 (random 3).
    6 flipped draws: up b1 a2 c3 (random 3).
    """
    scores = {k: v for k, v in SCORES.items() if k[0] == "b1"}
    results = normalise_results(results_frame(scores))
    avg = average_ranks(results, flipped_draws(results, 6))
    expected = {  # point, low, high
        "a": (2.0, 2.0, 2.5),
        "b": (1.5, 1.0, 1.5),
        "c": (2.5, 2.5, 2.5),
        "random": (2.5, 2.5, 3.0),
    }
    for name, (point, low, high) in expected.items():
        assert tuple(avg.loc[name, ["avg rank", "avg rank low", "avg rank high"]]) == (
            point,
            low,
            high,
        )
    # b (best) beats a in every draw; a vs c differ by 0.5 in 194 draws and 0 in 6: not significant
    assert avg.loc["b", "best_group"] == 1 and avg.loc["a", "best_group"] == 0
    assert avg.loc["b", "tied_with_next"] == 0 and avg.loc["a", "tied_with_next"] == 1
    assert math.isnan(avg.loc["c", "tied_with_next"])


def test_missing_draws_give_no_intervals():
    results = normalise_results(results_frame())
    draws = constant_draws(results)
    del draws[("b1", "c", "up")]
    long = column_ranks(results, draws)
    assert long[(long.metric == "up") & (long.benchmark == "b1")]["rank_low"].isna().all()
    assert long[long.metric == "down"]["rank_low"].notna().all()
    avg = average_ranks(results, draws)  # one ranked column without draws: no avg interval
    assert avg["avg rank low"].isna().all()


def test_signal_to_noise_ratio_by_hand():
    replicates = {
        ("b1", "up", "a"): [1, 2, 3],  # mean 2, std 1
        ("b1", "up", "b"): [4, 5, 6],  # mean 5, std 1
        ("b1", "up", "c"): [7, 9, 11],  # mean 9, std 2
        ("b1", "up", "random"): [100, 0, 50],  # a reference: left out
        ("b1", "down", "a"): [1, 1],  # identical replicates: SNR infinite
        ("b1", "down", "b"): [2, 2],
        ("b2", "up", "a"): [1],  # one replicate: no SNR
        ("b2", "up", "b"): [2],
    }
    table = snr_table(normalise_results(results_frame(replicates=replicates)))
    # means 2, 5, 9: sample variance ((-10/3)^2 + (-1/3)^2 + (11/3)^2) / 2 = 37/3
    assert table.loc[("b1", "up"), "snr"] == pytest.approx(math.sqrt(37 / 3) / (4 / 3))
    assert table.loc[("b1", "up"), "flagged"] and table.loc[("b1", "up"), "n_methods"] == 3
    assert table.loc[("b1", "down"), "snr"] == math.inf and not table.loc[("b1", "down"), "flagged"]
    assert ("b2", "up") not in table.index


def test_document_validates_against_schema_and_carries_cards_ceiling_snr():
    replicates = {
        ("b1", "up", e): [s, s + 0.01, s - 0.01] for e, s in SCORES[("b1", "up")][2].items()
    }
    results = results_frame(replicates=replicates)
    doc = leaderboard_document(results, flipped_draws(normalise_results(results), 6))
    jsonschema.validate(doc, load_schema())
    json.dumps(doc, allow_nan=False)  # NaN became null
    columns = {c["id"]: c for c in doc["columns"]}
    assert columns["b1/up"]["noise_ceiling"] == 0.6 and columns["b1/down"]["noise_ceiling"] is None
    assert columns["b1/up"]["snr"] > 3 and not columns["b1/up"]["snr_flagged"]
    assert not columns["b1/mr"]["ranked"] and columns["b1/up"]["has_rank_intervals"]
    assert columns["b2/up"]["has_rank_intervals"]  # c failed there: ranked without it
    assert [e["name"] for e in doc["explainers"]] == ["b", "a", "c", "random"]
    assert doc["benchmarks"][0]["card"]["flags"] == ["median 1-p < 1e-6"]
    cell = next(c for c in doc["cells"] if (c["benchmark"], c["explainer"]) == ("b2", "c"))
    assert cell["status"] == "error" and cell["score"] is None and cell["error"] == "Boom: x"
    assert doc["problems"][0]["explainer"] == "c"


def test_metric_metadata_comes_from_the_registered_class():
    cls = dattr_eval.metrics.get("identical_class")
    meta = metric_metadata("identical_class")
    assert meta["summary"] == cls.summary and meta["citation"] == cls.citation
    assert meta["description"] == (  # the docstring's first paragraph, without reST quotes
        "Share of the top_k highest-attributed training samples whose label equals the test target."
    )
    assert meta["higher_is_better"] is True and meta["registered"]
    assert meta["unit"] == getattr(cls, "unit", "test point")
    unknown = metric_metadata("xda/unknown", pd.DataFrame({"unit": ["pair"], "category": ["xda"]}))
    assert not unknown["registered"] and unknown["unit"] == "pair" and unknown["category"] == "xda"


def test_report_writes_every_file_and_a_self_contained_page(tmp_path):
    results = results_frame()
    write_results(tmp_path, results)
    panel = figures.topk_panel(np.zeros((1, 4, 4)), np.eye(4)[None].repeat(3, 0), {"a": [[2, 1]]})
    board = dattr_eval.report(
        tmp_path, draws=flipped_draws(normalise_results(results), 6), panels={"b1": panel}
    )
    assert list(board.index) == ["b", "a", "c", "random"]
    for name in ("heatmap", "runtime_vs_rank", "metric_agreement", "memory", "topk_b1"):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    page = (tmp_path / "leaderboard.html").read_text()
    assert "<script src" not in page and "<link" not in page and "http" not in page.lower()
    assert page.count("data:image/png;base64,") == 5 and "Boom: x" in page
    doc = json.loads((tmp_path / "leaderboard.json").read_text())
    jsonschema.validate(doc, load_schema())
    md = (tmp_path / "leaderboard.md").read_text()
    assert md.startswith("# Leaderboard") and "| b | method | 1.33 [1, 1.33] |" in md
    assert "0.9 ± 0.05" in md and "![runtime_vs_rank](runtime_vs_rank.png)" in md
    assert pd.read_csv(tmp_path / "leaderboard.csv", index_col=0).shape == board.shape


def test_cards_table_reads_each_card_and_leaves_missing_entries_empty():
    results = results_frame()
    card = {
        "n_train": 10,
        "test_accuracy": 0.5,
        "train_one_minus_p": {"median": 1e-7, "q05": 1e-9},
        "mislabel": {"flipped_fit": 0.25, "flipped_loss_auroc": 0.9},
        "flags": ["median 1-p < 1e-6", "flipped labels not learned"],
    }
    results.loc[(results.kind == "card") & (results.benchmark == "b2"), "card"] = json.dumps(card)
    table = cards_table(normalise_results(results))
    assert list(table.index) == ["b1", "b2"]
    assert table.loc["b2", "median_1-p"] == 1e-7 and table.loc["b2", "flipped_fitted"] == 0.25
    assert table.loc["b2", "flags"] == "median 1-p < 1e-6; flipped labels not learned"
    assert np.isnan(table.loc["b1", "n_train"]) and "shortcut_rate" not in table.columns


def test_markdown_report_shows_the_snr_flags_and_the_cards(tmp_path):
    replicates = {("b1", "up", "a"): [1, 2, 3], ("b1", "up", "b"): [4, 5, 6]}
    replicates[("b1", "up", "c")] = [7, 9, 11]  # SNR sqrt(37/3) / (4/3) = 2.63 < 3: flagged
    write_results(tmp_path, results_frame(replicates=replicates))
    dattr_eval.report(tmp_path, figures=False, draws={})
    md = (tmp_path / "leaderboard.md").read_text()
    snr = md.split("## Signal-to-noise over replicates")[1].split("##")[0]
    assert "| b1 | up | 2.63 | 3 | ⚠ SNR < 3 |" in snr
    cards = md.split("## Benchmark cards")[1]
    assert "| b1 | median 1-p < 1e-6 |" in cards


def test_diagnostics_table_reads_the_profile_rows_and_the_markdown_shows_it(tmp_path):
    results = results_frame()
    profile = results.index[(results.kind == "profile") & (results.explainer == "a")]
    results["diagnostics"] = ""
    diag = {"C_": 0.02, "support_fraction": 0.25, "bound_fraction": 0.5, "epochs": 7}
    results.loc[profile[0], "diagnostics"] = json.dumps(diag)
    table = diagnostics_table(normalise_results(results))
    assert list(table.columns) == ["C_", "support_fraction", "bound_fraction"]  # epochs not shown
    assert table.loc[(results.loc[profile[0], "benchmark"], "a"), "bound_fraction"] == 0.5
    assert len(table) == 1
    write_results(tmp_path, results)
    dattr_eval.report(tmp_path, figures=False, draws={})
    md = (tmp_path / "leaderboard.md").read_text()
    assert "## Explainer diagnostics" in md and "| b1 | a | 0.02 | 0.25 | 0.5 |" in md


def test_report_reads_older_results_without_the_new_columns(tmp_path):
    """Results written by the store before schema v2: no role, CI, category or draws."""
    rows = [
        {"benchmark": "b", "explainer": e, "metric": "m", "kind": "metric", "status": "ok",
         "score": s, "higher_is_better": True}
        for e, s in {"x": 0.2, "y": 0.6, "random": 0.9}.items()
    ]  # fmt: skip
    ResultStore(tmp_path).append(rows)
    board = dattr_eval.report(tmp_path, figures=False)
    assert list(board.index) == ["y", "x", "random"]  # random: a reference row by name
    assert board.loc["random", "avg rank"] == 1 and board.loc["y", "avg rank"] == 1
    assert "avg rank low" not in board and "b/m ±" not in board
    jsonschema.validate(json.loads((tmp_path / "leaderboard.json").read_text()), load_schema())
    assert len(read_results(tmp_path)) == 3


def test_report_without_results_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results"):
        dattr_eval.report(tmp_path)


def test_markdown_merges_intervals_into_display_strings():
    board = pd.DataFrame(
        {
            "avg rank": [1.5],
            "avg rank low": [1.0],
            "avg rank high": [2.0],
            "s": [0.5],
            "s ±": [0.05],
        },
        index=pd.Index(["x"], name="explainer"),
    )
    assert to_markdown(board).splitlines() == [
        "| explainer | avg rank | s |",
        "|---|---:|---:|",
        "| x | 1.5 [1, 2] | 0.5 ± 0.05 |",
    ]


def test_place_labels_keeps_crowded_labels_apart():
    rng = np.random.default_rng(0)
    anchors = rng.normal(200, 15, size=(12, 2))  # 12 markers within ~30 px
    sizes = np.column_stack([rng.uniform(30, 80, 12), np.full(12, 12.0)])
    boxes = figures.place_labels(anchors, sizes, (0, 0, 400, 400))
    for i in range(12):
        assert boxes[i, 2] - boxes[i, 0] == pytest.approx(sizes[i, 0])
        for j in range(12):
            marker = np.r_[anchors[j] - 5, anchors[j] + 5]
            assert not figures.boxes_overlap(boxes[i], marker)
            if i != j:
                assert not figures.boxes_overlap(boxes[i], boxes[j])


def test_runtime_figure_labels_do_not_overlap():
    names = ["grad_dot", "grad_cos", "tracin", "trak", "dualview", "representer", "random"]
    board = pd.DataFrame(
        {  # near-identical runtimes and ranks: the old chart stacked these labels
            "runtime [s]": [1.0, 1.05, 1.1, 1.0, 1.02, 30.0, 0.01],
            "avg rank": [3.0, 3.1, 3.0, 3.05, 2.9, 1.0, 5.0],
            "role": ["method"] * 6 + ["reference"],
        },
        index=names,
    )
    fig = figures.runtime_figure(board)
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text() in names]
    assert sorted(t.get_text() for t in labels) == sorted(names)
    for t in labels:
        t.update_positions(renderer)
    extents = [Text.get_window_extent(t, renderer) for t in labels]  # the text, not its arrow
    for i, a in enumerate(extents):
        for b in extents[i + 1 :]:
            assert not a.overlaps(b)


def test_topk_panel_shows_each_explainers_topk_with_label_frames():
    rng = np.random.default_rng(0)
    train = rng.random((20, 1, 4, 4))
    fig = figures.topk_panel(
        rng.random((2, 1, 4, 4)),
        train,
        {"e1": [[0, 1, 2], [3, 4, 5]], "e2": [[5, 6, 7], [8, 9, 10]]},
        test_labels=[0, 1],
        train_labels=[0] * 10 + [1] * 10,
    )
    axes = np.array(fig.axes).reshape(4, 5)  # 2 test points x 2 explainers; test, name, k = 3
    assert axes[1, 1].texts[0].get_text() == "e2" and axes[0, 0].get_title() == "test 0 (y=0)"
    assert axes[0, 2].get_title().startswith("#0") and axes[3, 4].get_title().startswith("#10")
    shown = axes[0, 2].images[0].get_array()
    expected = (train[0, 0] - train.min()) / (train.max() - train.min())
    np.testing.assert_allclose(shown, expected)
    frame = axes[3, 4].spines["left"].get_edgecolor()  # test label 1, training label 1: green
    assert frame[:3] == pytest.approx((0x2D / 255, 0xA4 / 255, 0x4E / 255))


def test_report_module_does_not_import_matplotlib():
    code = (
        "import sys, dattr_eval.evaluation.report; "
        "print('matplotlib' in sys.modules or 'seaborn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_topk_panel_from_fitted_explainers_shows_their_topk():
    from torch.utils.data import TensorDataset

    from dattr_eval import explainers
    from dattr_eval.benchmarks import Benchmark

    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(30, 1, 4, 4, generator=gen), torch.arange(30) % 3
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    bench = Benchmark.from_datasets("tiny", model, TensorDataset(x[:20], y[:20]),
                                    TensorDataset(x[20:], y[20:]), n_test=4)  # fmt: skip
    fitted = {"random": explainers.create("random").fit(bench.model, bench.train_dataset)}
    fig = figures.topk_panel_from_explainers(bench, fitted, test_indices=[1, 2], k=3)
    top = fitted["random"].explain_topk(bench.test_inputs[[1, 2]], 3)
    axes = np.array(fig.axes).reshape(2, 5)
    titles = [axes[r, c].get_title().split()[0] for r in range(2) for c in range(2, 5)]
    assert titles == [f"#{int(i)}" for i in top.indices.flatten()]
    assert fig.texts[0].get_text().startswith("tiny: top-3 training samples per explainer")
