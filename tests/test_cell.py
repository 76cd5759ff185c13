"""run_cell: a CellSpec in, a CellResult out (typed errors by phase, not-applicable, paired draws)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from dattr_eval.evaluation.cell import CellSpec, run_cell
from dattr_eval.evaluation.uncertainty import N_RESAMPLES, resampling_seed
from dattr_eval.explainers import NotApplicableError
from dattr_eval.explainers.random_baseline import RandomExplainer
from dattr_eval.metrics.base import Metric
from dattr_eval.statistics import bootstrap_draws
from tests.test_evaluator import Broken, FailingFit, OutputDot, Top1Class, _bench


class SelfInfluenceFails(RandomExplainer):
    def _self_influence(self):
        raise ArithmeticError("no self-influence here")


class ExplainFails(RandomExplainer):
    def _explain(self, inputs, targets):
        raise OSError("disk gone")


class TrainingOnly(RandomExplainer):
    """Ranks training samples but gives no per-test attributions (like the ``loss`` baseline)."""

    def _explain(self, inputs, targets):
        raise NotApplicableError("TrainingOnly ranks training samples only")


class NeedsSelfInfluence(Metric):
    name = "needs_si"
    requires = ("self_influence",)
    needs_attributions = False

    def __init__(self) -> None:
        super().__init__()

    def _update(self, attributions, truth):
        self.per_unit.append(truth.self_influence.double())


def spec(explainer, metrics, **kwargs) -> CellSpec:
    bench = _bench()
    return CellSpec(
        replicates=(bench,),
        explainer_label="e",
        explainer=explainer,
        metrics=metrics,
        batch_size=10,
        **kwargs,
    )


def test_run_cell_is_pure_and_its_result_pickles():
    template, metric = OutputDot(), Top1Class()
    s = spec(template, {"top1": metric})
    first, second = run_cell(s), run_cell(s)
    assert not hasattr(template, "model_")  # the template was cloned, not fitted
    assert metric.n_updates == 0  # the metric template was cloned too
    assert first.outcomes["top1"].draws.score == second.outcomes["top1"].draws.score
    np.testing.assert_array_equal(
        first.outcomes["top1"].draws.draws, second.outcomes["top1"].draws.draws
    )
    assert first.errors == () and first.seconds["fit"] >= 0 and first.memory.peak_rss_mb > 0
    restored = pickle.loads(pickle.dumps(first))  # crosses process boundaries (Ray)
    assert restored.outcomes["top1"].draws.score == first.outcomes["top1"].draws.score


@pytest.mark.parametrize(
    ("explainer", "metrics", "phase", "metric", "text"),
    [
        (FailingFit(), {"top1": Top1Class()}, "fit", "", "cannot fit this"),
        (
            RandomExplainer(),
            {"top1": Top1Class(), "broken": Broken()},
            "metric",
            "broken",
            "metric bug",
        ),
        (
            SelfInfluenceFails(),
            {"si": NeedsSelfInfluence(), "top1": Top1Class()},
            "ground_truth",
            "si",
            "no self-influence",
        ),
        (ExplainFails(), {"top1": Top1Class()}, "explain", "", "disk gone"),
    ],
)
def test_errors_are_typed_by_phase_and_the_rest_of_the_cell_goes_on(
    explainer, metrics, phase, metric, text
):
    result = run_cell(spec(explainer, metrics))
    (error,) = result.errors
    assert (error.phase, error.metric) == (phase, metric) and text in error.message
    assert error.where.endswith(".py:" + error.where.rsplit(":", 1)[1])
    scored = set(result.outcomes)
    if metric:  # a metric's own failure leaves the other metrics scored
        assert scored == set(metrics) - {metric}
        assert result.error_for(metric) is error
    else:
        assert scored == set() and result.error_for("top1") is error


def test_an_explainer_without_per_test_attributions_is_not_applicable():
    result = run_cell(spec(TrainingOnly(), {"top1": Top1Class(), "si": NeedsSelfInfluence()}))
    assert result.errors == ()
    assert "ranks training samples only" in result.not_applicable["top1"]
    assert set(result.outcomes) == {"si"}


def test_draws_of_two_explainers_resample_the_same_test_points():
    """Paired: explainer A's draw i minus B's draw i equals the bootstrap of the per-unit differences."""
    metrics = {"top1": Top1Class()}
    a = run_cell(spec(OutputDot(), metrics)).outcomes["top1"]
    b = run_cell(spec(RandomExplainer(seed=3), metrics)).outcomes["top1"]
    units_a, units_b = a.per_replicate[0].units, b.per_replicate[0].units
    seed = resampling_seed("toy", "top1", len(units_a))
    diff = bootstrap_draws(units_a - units_b, n_resamples=N_RESAMPLES, seed=seed)
    np.testing.assert_allclose(a.draws.draws - b.draws.draws, diff, atol=1e-12)
    assert a.draws.ci_low <= a.draws.score <= a.draws.ci_high


def test_replicates_are_combined_by_a_two_stage_bootstrap():
    benches = (_bench(seed=0), _bench(seed=1))
    s = CellSpec(
        replicates=benches,
        explainer_label="e",
        explainer=RandomExplainer(),
        metrics={"top1": Top1Class()},
    )
    outcome = run_cell(s).outcomes["top1"]
    per = [r.score for r in outcome.per_replicate]
    assert len(per) == 2 and outcome.draws.score == pytest.approx(sum(per) / 2)
    assert outcome.draws.draws.shape == (N_RESAMPLES,)
    assert outcome.draws.ci_low <= outcome.draws.ci_high
