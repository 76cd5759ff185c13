"""Every registered explainer passes ``dattr_eval.testing.check_explainer``.

Built-ins run on the tiny default problem with the settings below (small where a default would
be slow); peer adapters (dotted names) are skipped when their package is not installed.
"""

from __future__ import annotations

import pytest
import torch

from dattr_eval import explainers
from dattr_eval.explainers.base import ColumnScorer, Explainer
from dattr_eval.testing import check_explainer, tiny_problem
from tests._digits_models import single_thread  # noqa: F401

#: hyperparameters that keep each check under a second or so on the tiny problem
SETTINGS: dict[str, dict] = {
    "dualview": {"C": 0.1, "tol": 1e-5, "max_iter": 2000},
    "influence": {"solver": "exact", "damping": 0.01},  # p = 83: exact is fast and stable
    "trak": {"projection_dim": 8},  # below n_train = 13: a regular kernel
    "grad_cos": {"projection_dim": 16},
}

#: known failures, each with the reason (bugs in files this suite does not own)
XFAIL: dict[str, str] = {}


def _params(name: str) -> list:
    marks = [pytest.mark.xfail(reason=XFAIL[name], strict=True)] if name in XFAIL else []
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [_params(n) for n in explainers.names()])
def test_registered_explainer_conforms(name):
    xpl = explainers.create(name, **SETTINGS.get(name, {}))
    if "." in name:  # peer adapter: needs the `peers` extra
        problem = tiny_problem()
        try:
            explainers.create(name, **SETTINGS.get(name, {})).fit(
                problem.model, problem.train_dataset
            )
        except ImportError as err:
            pytest.skip(f"peer package missing: {err}")
    check_explainer(xpl)


# ---------------------------------------------------------------- the suite catches broken explainers
class Dot(Explainer):
    """Logit dot products: a correct baseline that the broken variants below start from."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def _fit(self, model, train_dataset):
        self.train_out_ = model(train_dataset.tensors[0]).detach()

    def _explain(self, inputs, targets):
        return self.scale * self.model_(inputs).detach() @ self.train_out_.T


class Transposed(Dot):
    def _explain(self, inputs, targets):
        return super()._explain(inputs, targets).T


class Unseeded(Dot):
    def _explain(self, inputs, targets):
        return torch.rand(inputs.shape[0], self.n_train_)


class TrainsTheModel(Dot):
    def _fit(self, model, train_dataset):
        super()._fit(model, train_dataset)
        with torch.no_grad():
            next(model.parameters()).add_(1.0)


class ChangesItsParams(Dot):
    def __init__(self, scale: float = 1.0) -> None:
        self.scale = 2 * scale


class InconsistentScorer(Dot):
    def _column_scorer(self, inputs, targets):
        rows = -self._explain(inputs, targets)
        return ColumnScorer(lambda start, stop: rows[:, start:stop], self.n_train_)


def test_a_correct_explainer_passes():
    check_explainer(Dot)


@pytest.mark.parametrize(
    ("cls", "check"),
    [
        (Transposed, "contract"),
        (Unseeded, "determinism"),
        (TrainsTheModel, "model untouched"),
        (ChangesItsParams, "params"),
        (InconsistentScorer, "explain_topk"),
    ],
)
def test_the_suite_names_the_failed_check(cls, check):
    with pytest.raises(AssertionError, match=rf"^\[{check}\]"):
        check_explainer(cls)


def test_check_explainer_on_a_given_model_and_dataset():
    problem = tiny_problem(seed=3)
    check_explainer(Dot(scale=0.5), model=problem.model, train_dataset=problem.train_dataset)
    with pytest.raises(ValueError, match="give both model and train_dataset"):
        check_explainer(Dot, model=problem.model)
