"""The meta-evaluation's perturbations: weight noise, post-hoc disruptions, perturbed cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from dattr_eval.benchmarks import Benchmark
from dattr_eval.evaluation.cell import CellSpec
from dattr_eval.explainers.base import Explainer
from dattr_eval.meta.perturbations import (
    PerturbedExplainer,
    draw_seed,
    perturb_weights,
    perturbed_cell,
)
from dattr_eval.metrics import create as create_metric


class CountingExplainer(Explainer):
    """Attributions = a fixed random matrix row per target class; counts its fits."""

    fits = 0

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _fit(self, model: nn.Module, train_dataset) -> None:
        type(self).fits += 1
        gen = torch.Generator().manual_seed(self.seed)
        self.table_ = torch.randn(10, self.n_train_, generator=gen)

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.table_[targets.cpu()] + inputs.sum(1, keepdim=True).cpu()

    def _self_influence(self) -> torch.Tensor:
        return self.table_[0].abs()


@pytest.fixture()
def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 10)).eval()
    train = TensorDataset(torch.randn(30, 4), torch.arange(30) % 10)
    test = TensorDataset(torch.randn(6, 4), torch.arange(6) % 10)
    bench = Benchmark.from_datasets("b", model, train, test)
    return model, train, bench


def test_perturb_weights_is_small_multiplicative_seeded_and_leaves_the_global_rng(setup):
    model = setup[0]
    before = [p.detach().clone() for p in model.parameters()]
    state = torch.random.get_rng_state()
    noisy = perturb_weights(model, 1e-3, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    for p0, p, q in zip(before, model.parameters(), noisy.parameters()):
        assert torch.equal(p0, p)  # the original is unchanged
        factor = (q.detach() / p0).flatten() - 1
        assert 0 < factor.abs().max() < 6e-3
        assert float(factor.std()) == pytest.approx(1e-3, rel=0.3)
    again = perturb_weights(model, 1e-3, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(noisy.parameters(), again.parameters()))


def test_shuffled_columns_permute_attributions_and_self_influence_without_refit(setup):
    model, train, bench = setup
    CountingExplainer.fits = 0
    fitted = CountingExplainer().fit(model, train)
    wrapped = PerturbedExplainer(CountingExplainer(), "shuffled_columns", seed=3, prefit=fitted)
    wrapped.fit(model, train)
    assert CountingExplainer.fits == 1  # the prefit explainer was reused
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(3))
    x, t = bench.test_inputs, bench.truth.test_targets
    assert torch.equal(wrapped.explain(x, t), fitted.explain(x, t)[:, perm])
    assert torch.equal(wrapped.self_influence(), fitted.self_influence()[perm])
    # another model: the wrapped explainer is refitted there
    PerturbedExplainer(CountingExplainer(), "shuffled_columns", prefit=fitted).fit(
        perturb_weights(model, 1e-3, 0), train
    )
    assert CountingExplainer.fits == 2


def test_equal_norm_noise_keeps_each_row_norm_and_drops_the_signal(setup):
    model, train, bench = setup
    fitted = CountingExplainer().fit(model, train)
    wrapped = PerturbedExplainer(fitted, "equal_norm_noise", seed=0, prefit=fitted).fit(
        model, train
    )
    x, t = bench.test_inputs, bench.truth.test_targets
    a, noisy = fitted.explain(x, t), wrapped.explain(x, t)
    assert torch.allclose(noisy.norm(dim=1), a.norm(dim=1), rtol=1e-5)
    assert torch.allclose(wrapped.self_influence().norm(), fitted.self_influence().norm())
    corr = np.corrcoef(a.flatten().numpy(), noisy.flatten().numpy())[0, 1]
    assert abs(corr) < 0.3
    # the same sequence of calls gives the same noise
    again = PerturbedExplainer(fitted, "equal_norm_noise", seed=0, prefit=fitted).fit(model, train)
    assert torch.equal(again.explain(x, t), noisy)


def test_perturbed_explainer_rejects_an_unknown_perturbation(setup):
    model, train, _ = setup
    with pytest.raises(ValueError, match="perturbation"):
        PerturbedExplainer(CountingExplainer(), "rotate").fit(model, train)


def test_perturbed_cells(setup):
    model, train, bench = setup
    bench.checkpoints = ("ckpt",)
    spec = CellSpec(
        replicates=(bench, bench),
        explainer_label="e",
        explainer=CountingExplainer(),
        metrics={"identical_class": create_metric("identical_class")},
        hooks=(object(),),
    )
    fitted = CountingExplainer().fit(model, train)
    noisy = perturbed_cell(spec, "weight_noise", 0, fitted)
    assert len(noisy.replicates) == 1 and noisy.hooks == ()
    assert noisy.benchmark.model is not model and noisy.benchmark.truth is bench.truth
    assert noisy.benchmark.checkpoints == ("ckpt",)
    randomized = perturbed_cell(spec, "randomized_model", 1, fitted)
    assert randomized.benchmark.checkpoints == ()
    assert randomized.explainer is spec.explainer
    shuffled = perturbed_cell(spec, "shuffled_columns", 2, fitted)
    assert isinstance(shuffled.explainer, PerturbedExplainer)
    assert shuffled.explainer.prefit is fitted and shuffled.benchmark is bench
    assert shuffled.explainer.seed == draw_seed("shuffled_columns", 2)
    with pytest.raises(ValueError, match="perturbation"):
        perturbed_cell(spec, "blur", 0, fitted)
