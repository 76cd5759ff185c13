"""Explainer base behaviour through the random baseline: fitting, validation, contract."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from dattr_eval import explainers
from dattr_eval.contract import AttributionContractError
from dattr_eval.explainers.base import Explainer, NotFittedError


@pytest.fixture
def fitted():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    train = TensorDataset(torch.randn(7, 4), torch.randint(0, 3, (7,)))
    return explainers.create("random", seed=1).fit(model, train), model


def test_shape_range_and_reproducibility(fitted):
    explainer, _ = fitted
    x = torch.randn(5, 4)
    a = explainer.explain(x, torch.zeros(5, dtype=torch.long))
    assert a.shape == (5, 7) and a.dtype == torch.float32
    assert bool(((a >= 0) & (a < 1)).all())
    # a row depends only on the input: alone or in a batch, same values
    assert torch.equal(explainer.explain(x[2:3], torch.zeros(1, dtype=torch.long))[0], a[2])
    other = explainers.create("random", seed=2).fit(explainer.model_, explainer.train_dataset_)
    assert not torch.equal(other.explain(x, torch.zeros(5, dtype=torch.long)), a)
    assert explainer.self_influence().shape == (7,)


def test_default_targets_are_predictions(fitted):
    explainer, model = fitted
    x = torch.randn(4, 4)
    assert torch.equal(explainer.predict(x), model(x).argmax(-1))
    assert explainer.explain(x).shape == (4, 7)


def test_not_fitted():
    explainer = explainers.create("random")
    with pytest.raises(NotFittedError, match="call fit"):
        explainer.explain(torch.randn(2, 4))
    with pytest.raises(NotFittedError):
        explainer.self_influence()


def test_bad_inputs_and_targets(fitted):
    explainer, _ = fitted
    with pytest.raises(TypeError, match="inputs must be a torch.Tensor"):
        explainer.explain([[0.0] * 4])
    with pytest.raises(TypeError, match="inputs must have a floating dtype"):
        explainer.explain(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="inputs contains 1 NaN"):
        explainer.explain(torch.tensor([[0.0, 1.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="targets must have length 2"):
        explainer.explain(torch.zeros(2, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="targets must have an integer dtype"):
        explainer.explain(torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        explainers.create("random").fit("model", explainer.train_dataset_)
    with pytest.raises(ValueError, match="train_dataset is empty"):
        explainers.create("random").fit(
            nn.Linear(4, 3), TensorDataset(torch.zeros(0, 4), torch.zeros(0))
        )


# ---------------------------------------------------------------- the caller's model is left as it was
class DropoutNet(nn.Module):
    """Linear -> Dropout -> Linear; the dropout makes train-mode outputs random."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))

    def forward(self, x):
        return self.body(x)


def toy_train(n=7, d=4, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, d, generator=gen), torch.arange(n) % classes)


def test_fit_and_queries_restore_every_submodule_mode_and_never_move_the_model():
    torch.manual_seed(0)
    model = DropoutNet().train()
    model.body[2].eval()  # mixed flags must come back exactly
    flags = [m.training for m in model.modules()]
    xpl = explainers.create("feature_similarity", metric="dot").fit(model, toy_train())
    assert [m.training for m in model.modules()] == flags
    assert xpl.model_ is model  # device=None: worked on in place, not copied or moved
    x = torch.randn(5, 4)
    first = xpl.explain(x, torch.zeros(5, dtype=torch.long))
    assert torch.equal(first, xpl.explain(x, torch.zeros(5, dtype=torch.long)))  # eval inside
    xpl.explain_topk(x, 2)
    xpl.self_influence()
    xpl.predict(x)
    assert [m.training for m in model.modules()] == flags


def test_explicit_device_equal_to_the_models_keeps_it_in_place():
    model = nn.Linear(4, 3)
    xpl = explainers.create("random", device="cpu").fit(model, toy_train())
    assert xpl.model_ is model and xpl.device_ == torch.device("cpu")


def test_a_model_elsewhere_than_the_device_is_copied_not_moved():
    """An explicit device the model is not on: the explainer works on a copy moved there.

    (No second device on a CPU machine: ``device_`` is set to ``meta`` by hand, which ``fit``
    itself refuses, to exercise the copy.)
    """
    model = nn.Linear(4, 3)
    xpl = explainers.create("random")
    xpl.device_ = torch.device("meta")
    placed = xpl._placed(model)
    assert placed is not model and placed.weight.is_meta
    assert model.weight.device.type == "cpu" and not model.weight.is_meta
    xpl.device_ = torch.device("cpu")
    assert xpl._placed(model) is model


@pytest.mark.parametrize("device", ["tpu", "xyz", "meta"])
def test_bad_devices_are_refused_at_fit(device):
    model = nn.Linear(4, 3)
    with pytest.raises(ValueError, match="device"):
        explainers.create("random", device=device).fit(model, toy_train())
    assert model.weight.device.type == "cpu" and not model.weight.is_meta


@pytest.mark.parametrize(
    ("name", "params", "error", "match"),
    [
        ("feature_similarity", {"batch_size": 0}, ValueError, "batch_size must be > 0"),
        ("feature_similarity", {"batch_size": 2.5}, TypeError, "batch_size must be an int"),
        ("random", {"seed": 2.5}, TypeError, "seed must be an int"),
        ("random", {"seed": -3}, ValueError, "seed must be >= 0"),
    ],
)
def test_common_hyperparameters_are_checked_at_fit(name, params, error, match):
    with pytest.raises(error, match=match):
        explainers.create(name, **params).fit(nn.Linear(4, 3), toy_train())


# ---------------------------------------------------------------- labels, classes, samples
def test_n_classes_from_one_forward_pass_and_target_range():
    xpl = explainers.create("random").fit(nn.Linear(4, 3), toy_train())
    assert xpl.n_classes_ == 3 and xpl.input_shape_ == (4,)
    with pytest.raises(ValueError, match="targets must be < n_classes=3"):
        xpl.explain(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="targets must be < n_classes=3"):
        xpl.explain_topk(torch.randn(2, 4), 1, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="targets must be non-negative"):
        xpl.explain(torch.randn(2, 4), torch.tensor([0, -1]))


def test_training_labels_out_of_range_or_float_fail_at_fit():
    x = torch.randn(6, 4)
    with pytest.raises(ValueError, match="train_dataset labels must be < n_classes=3"):
        explainers.create("random").fit(nn.Linear(4, 3), TensorDataset(x, torch.arange(6)))
    with pytest.raises(ValueError, match="train_dataset labels must be non-negative"):
        explainers.create("random").fit(nn.Linear(4, 3), TensorDataset(x, torch.arange(6) - 1))
    y = torch.arange(6) % 3
    with pytest.raises(TypeError, match=r"train_dataset\[0\]: the label must be an integer class"):
        explainers.create("random").fit(nn.Linear(4, 3), TensorDataset(x, y.float() + 0.9))


class Triples(torch.utils.data.Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        return torch.zeros(4), 0, i


def test_items_that_are_not_pairs_fail_at_fit():
    with pytest.raises(TypeError, match=r"train_dataset\[0\] must be a pair \(x, y\)"):
        explainers.create("random").fit(nn.Linear(4, 3), Triples())


def test_model_output_must_be_logits():
    with pytest.raises(ValueError, match="logits of shape \\(batch, n_classes\\)"):
        explainers.create("random").fit(nn.Flatten(0), toy_train())
    with pytest.raises(ValueError, match=r"model failed on train_dataset\[0\]"):
        explainers.create("random").fit(nn.Linear(5, 3), toy_train())


def test_single_sample_without_batch_dimension_is_named():
    xpl = explainers.create("random").fit(nn.Linear(4, 3), toy_train())
    with pytest.raises(ValueError, match="single sample.*inputs\\[None\\]"):
        xpl.explain(torch.randn(4))
    with pytest.raises(ValueError, match=r"inputs must have shape \(n_test, 4\)"):
        xpl.explain(torch.randn(2, 5))


def test_empty_batch_with_empty_target_list():
    xpl = explainers.create("random").fit(nn.Linear(4, 3), toy_train())
    assert xpl.explain(torch.zeros(0, 4), []).shape == (0, 7)
    assert xpl.explain_topk(torch.zeros(0, 4), 2, targets=[]).indices.shape == (0, 2)


# ---------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_inputs_and_training_data_are_cast_to_the_models_dtype(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    train = toy_train()
    x = torch.randn(5, 4)
    ref = explainers.create("feature_similarity", metric="dot").fit(model, train)
    xpl = explainers.create("feature_similarity", metric="dot").fit(
        model, TensorDataset(train.tensors[0].to(dtype), train.tensors[1])
    )
    a = xpl.explain(x.to(dtype))
    assert a.dtype == torch.float32
    tol = 1e-2 if dtype == torch.float16 else 1e-5
    torch.testing.assert_close(a, ref.explain(x), rtol=tol, atol=tol)
    assert torch.equal(xpl.explain_topk(x.to(dtype), 2).indices, xpl.explain_topk(x, 2).indices)


# ---------------------------------------------------------------- messages for subclass authors
class NoHooks(Explainer):
    def __init__(self) -> None:
        pass


class OnlyFit(Explainer):
    def __init__(self) -> None:
        pass

    def _fit(self, model, train_dataset):
        pass


class NumpyExplain(OnlyFit):
    def _explain(self, inputs, targets):
        return np.zeros((inputs.shape[0], self.n_train_), dtype=np.float32)


class IntExplain(OnlyFit):
    def _explain(self, inputs, targets):
        return torch.zeros(inputs.shape[0], self.n_train_, dtype=torch.long)


def test_forgotten_hooks_say_which_hook_and_where_to_read():
    with pytest.raises(NotImplementedError, match="NoHooks must implement _fit.*Score your own"):
        NoHooks().fit(nn.Linear(4, 3), toy_train())
    with pytest.raises(NotImplementedError, match="OnlyFit must implement _explain.*n_train"):
        OnlyFit().fit(nn.Linear(4, 3), toy_train())


def test_non_tensor_or_integer_explain_output_is_named():
    xpl = NumpyExplain().fit(nn.Linear(4, 3), toy_train())
    with pytest.raises(
        AttributionContractError, match="NumpyExplain._explain returned ndarray.*torch.Tensor"
    ):
        xpl.explain(torch.randn(2, 4))
    xpl = IntExplain().fit(nn.Linear(4, 3), toy_train())
    with pytest.raises(AttributionContractError, match="IntExplain._explain.*floating dtype"):
        xpl.explain(torch.randn(2, 4))


# ---------------------------------------------------------------- dense explain: batched, guarded
class RowExplainer(Explainer):
    """Deterministic rows ``x @ W`` of width n_train; records the batch sizes it was asked for."""

    def __init__(self, batch_size: int = 3) -> None:
        self.batch_size = batch_size

    def _fit(self, model, train_dataset):
        self.weights_ = torch.randn(4, self.n_train_, generator=torch.Generator().manual_seed(0))
        self.calls_: list[int] = []

    def _explain(self, inputs, targets):
        self.calls_.append(inputs.shape[0])
        return inputs @ self.weights_


def test_dense_explain_is_batched_and_equals_the_one_shot_result():
    x = torch.randn(10, 4)
    small = RowExplainer(batch_size=3).fit(nn.Linear(4, 3), toy_train())
    big = RowExplainer(batch_size=100).fit(nn.Linear(4, 3), toy_train())
    a = small.explain(x)
    assert small.calls_ == [3, 3, 3, 1] and big.explain(x) is not None and big.calls_ == [10]
    assert torch.equal(a, big.explain(x)) and a.shape == (10, 7)


def test_dense_explain_refuses_an_output_over_the_limit():
    xpl = RowExplainer().fit(nn.Linear(4, 3), toy_train())
    with pytest.raises(ValueError, match="280 bytes.*max_output_bytes=100.*explain_topk"):
        xpl.explain(torch.randn(10, 4), max_output_bytes=100)
    assert xpl.calls_ == []  # refused before any work
    assert xpl.explain(torch.randn(10, 4), max_output_bytes=280).shape == (10, 7)
