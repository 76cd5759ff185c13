"""The gradient engine: vmap per-sample gradients vs a plain autograd loop; the random projector."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from dattr_eval.explainers.gradients import (
    RandomProjector,
    flat_params,
    grad_dim,
    load_checkpoint,
    make_projector,
    param_names,
    per_sample_gradients,
    resolve_checkpoints,
)
from tests._grad_reference import OUTPUTS, loop_gradients


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 6),
        nn.Tanh(),
        nn.Linear(6, 4),
    ).eval()


def data(n: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 8, 8, generator=gen), torch.randint(0, 4, (n,), generator=gen)


@pytest.mark.parametrize("loss", ["ce", "logit", "margin"])
def test_vmap_gradients_match_a_per_sample_autograd_loop(loss):
    model = tiny_cnn()
    x, y = data()
    got = per_sample_gradients(model, (x, y), loss=loss, batch_size=4)
    want = loop_gradients(model, x, y, OUTPUTS[loss])
    assert got.shape == (11, grad_dim(model))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_callable_output_dataset_input_and_parameter_subset():
    model = tiny_cnn()
    x, y = data()

    def output(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (z.softmax(1) * z).sum(1) + 0 * t

    names = ["4.weight", "6.bias"]
    got = per_sample_gradients(model, TensorDataset(x, y), loss=output, params=names, batch_size=5)
    torch.testing.assert_close(
        got, loop_gradients(model, x, y, output, names), rtol=1e-4, atol=1e-6
    )
    assert got.shape == (11, 6 * 48 + 4)


def test_parameter_selection():
    model = tiny_cnn()
    assert param_names(model, "last_layer") == ["6.weight", "6.bias"]
    assert param_names(model, "4") == ["4.weight", "4.bias"]
    assert param_names(model, ["6.bias", "0.weight"]) == ["0.weight", "6.bias"]  # model order
    assert grad_dim(model, "last_layer") == 6 * 4 + 4
    assert flat_params(model, "last_layer").shape == (28,)
    model[0].weight.requires_grad_(False)
    assert "0.weight" not in param_names(model)
    with pytest.raises(ValueError, match="params names"):
        param_names(model, ["nope"])
    with pytest.raises(ValueError, match="selects no trainable"):
        param_names(model, "fc9")


def test_state_dict_replaces_the_weights_without_touching_the_model():
    model, other = tiny_cnn(), tiny_cnn()
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5)
    before = flat_params(model).clone()
    x, y = data()
    got = per_sample_gradients(model, (x, y), state_dict=other.state_dict())
    torch.testing.assert_close(got, per_sample_gradients(other, (x, y)))
    assert torch.equal(flat_params(model), before)
    with pytest.raises(KeyError, match="lacks"):
        per_sample_gradients(model, (x, y), state_dict={"0.weight": other[0].weight})


def test_projection_inside_the_engine_equals_projecting_the_full_gradients():
    model = tiny_cnn()
    x, y = data()
    full = per_sample_gradients(model, (x, y))
    proj = RandomProjector(full.shape[1], 16, seed=3, chunk_size=100)
    got = per_sample_gradients(model, (x, y), projector=proj, batch_size=3)
    assert got.shape == (11, 16)
    torch.testing.assert_close(got, full @ proj.matrix(), rtol=1e-4, atol=1e-5)
    # any other callable is applied to the concatenated batch
    got2 = per_sample_gradients(model, (x, y), projector=lambda g: g[:, :5], batch_size=3)
    torch.testing.assert_close(got2, full[:, :5])


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_projector_is_reproducible_and_independent_of_chunking(kind):
    g = torch.randn(7, 1000, generator=torch.Generator().manual_seed(0))
    a = RandomProjector(1000, 32, kind=kind, seed=5, chunk_size=1000)
    b = RandomProjector(1000, 32, kind=kind, seed=5, chunk_size=37, cache=True)
    c = RandomProjector(1000, 32, kind=kind, seed=6)
    assert torch.equal(a.matrix(), b.matrix())
    assert not torch.allclose(a.matrix(), c.matrix())
    torch.testing.assert_close(a(g), b(g), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b(g), b(g))  # cached second call
    # columns projected in pieces sum to the whole
    pieces = a.project(g[:, :300], 0) + a.project(g[:, 300:301], 300) + a.project(g[:, 301:], 301)
    torch.testing.assert_close(pieces, a(g), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a(g), g @ a.matrix(), rtol=1e-5, atol=1e-5)
    if kind == "rademacher":
        assert set(a.matrix().mul(32**0.5).round().unique().tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_projection_approximately_preserves_norms_and_inner_products(kind):
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(200, 3000, generator=gen) * torch.rand(200, 1, generator=gen)
    proj = RandomProjector(3000, 1024, kind=kind, seed=0)
    pg = proj(g)
    ratio = pg.norm(dim=1) ** 2 / g.norm(dim=1) ** 2
    # E[ratio] = 1, sd = sqrt(2 / k) ~ 0.044 per row
    assert abs(float(ratio.mean()) - 1) < 0.02
    assert float((ratio - 1).abs().max()) < 0.25
    cos_before = F.normalize(g[:100], dim=1) @ F.normalize(g[100:], dim=1).T
    cos_after = F.normalize(pg[:100], dim=1) @ F.normalize(pg[100:], dim=1).T
    assert float((cos_after - cos_before).abs().max()) < 0.2


def test_make_projector_and_input_errors():
    model = tiny_cnn()
    assert make_projector(model, None, None) is None
    proj = make_projector(model, "last_layer", 8, kind="rademacher", seed=2)
    assert (proj.dim_in, proj.dim_out, proj.kind, proj.seed, proj.cache) == (
        28,
        8,
        "rademacher",
        2,
        True,
    )
    with pytest.raises(ValueError, match="kind"):
        RandomProjector(10, 2, kind="sparse")
    with pytest.raises(ValueError, match="shape"):
        proj(torch.zeros(3, 27))
    with pytest.raises(ValueError, match="loss"):
        per_sample_gradients(model, data(), loss="hinge")
    with pytest.raises(ValueError, match="length"):
        per_sample_gradients(model, (torch.zeros(3, 1, 8, 8), torch.zeros(2, dtype=torch.long)))


def test_checkpoint_convention(tmp_path):
    model = tiny_cnn()
    path = tmp_path / "ckpt.pt"
    torch.save(model.state_dict(), path)
    loaded = load_checkpoint(path)
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    assert load_checkpoint(model).keys() == model.state_dict().keys()
    assert resolve_checkpoints(None, 0.5) == [(None, 0.5)]
    pairs = resolve_checkpoints([path, model.state_dict()], [0.1, 0.2])
    assert [lr for _, lr in pairs] == [0.1, 0.2]
    with pytest.raises(ValueError, match="learning_rates"):
        resolve_checkpoints([path], [0.1, 0.2])
    with pytest.raises(ValueError, match="empty"):
        resolve_checkpoints([], 1.0)
    with pytest.raises(TypeError, match="state dict"):
        load_checkpoint({"a": 1})
    torch.save({"not": "tensors"}, tmp_path / "bad.pt")
    with pytest.raises(TypeError, match="state dict"):
        load_checkpoint(tmp_path / "bad.pt")


class SharedLinear(nn.Module):
    """One ``nn.Linear`` applied twice (its per-sample gradient sums both uses), then a head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.shared = nn.Linear(6, 6)
        self.head = nn.Linear(6, 4, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.shared(torch.tanh(self.shared(x.flatten(1)[:, :6])))))


@pytest.mark.parametrize(
    "make_model",
    [
        tiny_cnn,
        SharedLinear,
        # batch norm parameters: not hookable, the torch.func path
        lambda: nn.Sequential(
            nn.Conv2d(1, 2, 3, groups=1), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(72, 4)
        ).eval(),
    ],
)
@pytest.mark.parametrize("loss", ["ce", "margin"])
def test_layer_hook_and_vmap_paths_match_the_autograd_loop(make_model, loss):
    from dattr_eval.explainers.layer_grads import hooked_layers

    model = make_model()
    x, y = data()
    names = param_names(model)
    hookable = hooked_layers(model, names) is not None
    assert hookable == (not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()))
    got = per_sample_gradients(model, (x, y), loss=loss, batch_size=4)
    want = loop_gradients(model, x, y, OUTPUTS[loss])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    # the bias-free head alone, and the weight without its bias (the hook path covers both)
    for params in (["head.weight"], ["shared.weight"]) if hookable and loss == "ce" else ():
        if params[0] not in names:
            continue
        sub = per_sample_gradients(model, (x, y), loss=loss, params=params)
        torch.testing.assert_close(sub, loop_gradients(model, x, y, OUTPUTS[loss], params))


def test_in_place_modules_take_the_vmap_path():
    from dattr_eval.explainers.layer_grads import hooked_layers

    model = nn.Sequential(nn.Linear(64, 5), nn.ReLU(inplace=True), nn.Linear(5, 4)).eval()
    assert hooked_layers(model, param_names(model)) is None
    x, y = data()
    got = per_sample_gradients(model, (x.flatten(1), y))
    torch.testing.assert_close(got, loop_gradients(model, x.flatten(1), y, OUTPUTS["ce"]))


def test_memory_budget_sets_the_chunk_and_keeps_the_gradients():
    from dattr_eval.explainers.gradients import chunk_rows, gradient_row_bytes

    model = tiny_cnn()
    x, y = data(13)
    names = param_names(model)
    row = gradient_row_bytes(model, names, x[:1])
    p = grad_dim(model)
    assert row >= 4 * p  # at least the gradient itself
    assert chunk_rows(row, 3 * row + 1, 64) == 3
    assert chunk_rows(row, 1, 64) == 1 and chunk_rows(row, None, 64) == 64
    full = per_sample_gradients(model, (x, y), batch_size=64)
    for budget in (1, 3 * row, 10**9):
        torch.testing.assert_close(per_sample_gradients(model, (x, y), memory_budget=budget), full)
    with pytest.raises(ValueError, match="memory_budget"):
        per_sample_gradients(model, (x, y), memory_budget=0)


def test_last_layer_of_a_bare_linear_model_is_the_model():
    model = nn.Linear(64, 4)
    assert param_names(model, "last_layer") == ["weight", "bias"]
    x, y = data()
    got = per_sample_gradients(model, (x.flatten(1), y), params="last_layer")
    torch.testing.assert_close(got, loop_gradients(model, x.flatten(1), y, OUTPUTS["ce"]))
