"""Models: architectures, deterministic training, checkpoints, cache hits, weights_only loading."""

import json

import pytest
import torch
from torch import nn

from dattr_eval.data import ArrayDataset
from dattr_eval.models import (
    ModelCache,
    TrainRecipe,
    accuracy,
    build_model,
    load_checkpoint,
    train_model,
)
from dattr_eval.models import training as training_module


@pytest.mark.parametrize(
    ("arch", "shape"),
    [
        ("digits_mlp", (1, 8, 8)),
        ("digits_cnn", (1, 8, 8)),
        ("basic_conv", (1, 28, 28)),
        ("resnet18", (3, 32, 32)),
    ],
)
def test_architectures_end_in_classifier(arch, shape):
    model = build_model(arch, n_classes=7, in_channels=shape[0])
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert isinstance(model.classifier, nn.Linear) and linears[-1] is model.classifier
    assert model.classifier.out_features == 7
    assert model(torch.zeros(2, *shape)).shape == (2, 7)


def test_unknown_arch():
    with pytest.raises(KeyError, match="unknown arch 'vgg'.*digits_cnn"):
        build_model("vgg", 10)


@pytest.fixture(scope="module")
def tiny():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(48) % 3
    x = torch.rand(48, 1, 8, 8, generator=g) * 0.3
    x[y == 0, :, :4] += 0.7  # learnable: each class lights a different region
    x[y == 1, :, 4:] += 0.7
    return ArrayDataset(x, y)


RECIPE = TrainRecipe(
    arch="digits_mlp", n_classes=3, epochs=4, lr=0.1, batch_size=16, n_checkpoints=2
)


def test_training_is_deterministic_and_learns(tiny, tmp_path):
    a = train_model(RECIPE, tiny, tmp_path / "a")
    b = train_model(RECIPE, tiny, tmp_path / "b")
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    other = train_model(TrainRecipe(**{**RECIPE.__dict__, "seed": 1}), tiny)
    assert not torch.equal(other.model.classifier.weight, a.model.classifier.weight)
    assert accuracy(a.model, tiny) > 0.9
    assert [c.epoch for c in a.checkpoints] == [2, 4] and all(c.lr == 0.1 for c in a.checkpoints)
    # the last checkpoint is the final model
    final = load_checkpoint(build_model("digits_mlp", 3), a.checkpoints[-1].path)
    assert torch.equal(final.classifier.weight, a.model.classifier.weight)
    assert train_model(RECIPE, tiny).checkpoints == []  # no checkpoint_dir: nothing saved


def test_bad_recipe_names_field(tiny):
    with pytest.raises(ValueError, match="epochs must be > 0"):
        train_model(TrainRecipe(epochs=0), tiny)
    with pytest.raises(ValueError, match="optimizer"):
        train_model(TrainRecipe(arch="digits_mlp", n_classes=3, epochs=1, optimizer="lbfgs"), tiny)


def test_cache_hit_avoids_retraining(tiny, tmp_path, monkeypatch):
    cache = ModelCache(tmp_path)
    first = cache.get_or_train(RECIPE, tiny, tag="t")
    manifest = json.loads(next(tmp_path.glob("*/manifest.json")).read_text())
    assert [c["epoch"] for c in manifest["checkpoints"]] == [2, 4]

    def fail(*args, **kwargs):
        raise AssertionError("retrained on a cache hit")

    monkeypatch.setattr("dattr_eval.models.cache.train_model", fail)
    second = cache.get_or_train(RECIPE, tiny, tag="t")
    assert torch.equal(second.model.classifier.weight, first.model.classifier.weight)
    assert [(c.path, c.epoch, c.lr) for c in second.checkpoints] == [
        (c.path, c.epoch, c.lr) for c in first.checkpoints
    ]
    # a different tag, recipe or training data is a miss
    for key in (
        cache.key(RECIPE, tiny, "u"),
        cache.key(TrainRecipe(**{**RECIPE.__dict__, "lr": 0.2}), tiny, "t"),
        cache.key(RECIPE, ArrayDataset(tiny.inputs, (tiny.targets + 1) % 3), "t"),
    ):
        assert key != cache.key(RECIPE, tiny, "t")


def test_loading_uses_weights_only(tiny, tmp_path, monkeypatch):
    ModelCache(tmp_path).get_or_train(RECIPE, tiny)
    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    ModelCache(tmp_path).get_or_train(RECIPE, tiny)
    assert seen == [True]
    # a pickle with arbitrary objects is refused
    torch.save({"x": training_module.TrainRecipe()}, tmp_path / "evil.pt")
    monkeypatch.setattr(torch, "load", real_load)
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_checkpoint(build_model("digits_mlp", 3), tmp_path / "evil.pt")
