"""The retraining service: content-keyed cache (misses when recipe, model or data change), healing, dedupe."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import TensorDataset

from dattr_eval.evaluation.retraining import RetrainingService
from dattr_eval.metrics.base import RetrainRequest
from dattr_eval.models import RecipeRetrainer, TrainRecipe, target_log_probs, train_model
from tests._digits_models import digits_split, single_thread  # noqa: F401

RECIPE = TrainRecipe(arch="digits_mlp", epochs=2, batch_size=32)


class Counting(RecipeRetrainer):
    """A recipe retrainer that counts the models it trains (as one ensemble per call)."""

    trained: list = []  # noqa: RUF012

    def outputs(self, train_dataset, requests, test_inputs, test_targets):
        Counting.trained.extend((len(indices), seed) for indices, seed in requests)
        return super().outputs(train_dataset, requests, test_inputs, test_targets)


def data(n_train=60):
    train, x_test, _ = digits_split(n_train, 10)
    x, y = train.tensors
    return (
        TensorDataset(x.reshape(-1, 1, 8, 8), y),
        x_test.reshape(-1, 1, 8, 8),
        torch.arange(10) % 10,
    )


def service(cache_dir, recipe=RECIPE, n_train=60, **kwargs):
    train, x_test, targets = data(n_train)
    return RetrainingService(
        Counting(recipe), train, x_test, targets, cache_dir=cache_dir, **kwargs
    )


REQUESTS = [RetrainRequest(torch.arange(30), seed=0), RetrainRequest(torch.arange(30, 60), seed=1)]


def test_outputs_equal_direct_training_and_are_cached(tmp_path):
    Counting.trained = []
    out = service(tmp_path).outputs(REQUESTS + REQUESTS[:1])  # a repeated request trains once
    assert out.shape == (3, 10) and Counting.trained == [(30, 0), (30, 1)]
    train, x_test, targets = data()
    direct = train_model(
        dataclasses.replace(RECIPE, seed=1), torch.utils.data.Subset(train, range(30, 60))
    ).model
    torch.testing.assert_close(out[1], target_log_probs(direct, x_test, targets))
    torch.testing.assert_close(out[0], out[2])
    again = service(tmp_path)  # a new service (a later run) reads the disk cache
    torch.testing.assert_close(again.outputs(REQUESTS), out[:2])
    assert len(Counting.trained) == 2 and again.n_trained == 0 and again.seconds > 0


@pytest.mark.parametrize(
    "change",
    [
        {"recipe": dataclasses.replace(RECIPE, epochs=3)},  # the recipe
        {"recipe": dataclasses.replace(RECIPE, arch="digits_cnn")},  # the model
        {"n_train": 61},  # the training data
    ],
    ids=["recipe", "model", "data"],
)
def test_cache_misses_when_recipe_model_or_data_change(tmp_path, change):
    Counting.trained = []
    service(tmp_path).outputs(REQUESTS[:1])
    service(tmp_path).outputs(REQUESTS[:1])
    assert len(Counting.trained) == 1  # hit: nothing changed
    service(tmp_path, **change).outputs(REQUESTS[:1])
    assert len(Counting.trained) == 2  # miss


def test_seed_and_indices_are_part_of_the_key(tmp_path):
    s = service(tmp_path)
    keys = {
        s.key(RetrainRequest(torch.arange(30), 0)),
        s.key(RetrainRequest(torch.arange(30), 1)),
        s.key(RetrainRequest(torch.arange(1, 31), 0)),
    }
    assert len(keys) == 3
    assert s.key(RetrainRequest(torch.arange(30).flip(0), 0)) == s.key(
        RetrainRequest(torch.arange(30), 0)
    )


def test_a_corrupt_or_wrong_shaped_entry_is_rebuilt_with_a_warning(tmp_path):
    Counting.trained = []
    s = service(tmp_path)
    expected = s.outputs(REQUESTS[:1])
    path = s.entry_path(s.key(REQUESTS[0]))
    for damage in (b"not a tensor", None):
        if damage is None:
            torch.save(torch.zeros(3), path)  # valid file, wrong shape
        else:
            path.write_bytes(damage)
        with pytest.warns(UserWarning, match="corrupt or has the wrong shape"):
            healed = service(tmp_path).outputs(REQUESTS[:1])
        torch.testing.assert_close(healed, expected)
    assert len(Counting.trained) == 3


def test_bad_retrainer():
    train, x_test, targets = data()
    with pytest.raises(TypeError, match="retrainer must be"):
        RetrainingService(lambda idx: None, train, x_test, targets)


def test_min_samples_gives_small_subsets_more_epochs():
    """Subset-size-aware epochs: each request trains as train_model with max(epochs,
    ceil(min_samples / n)) epochs; the fingerprint changes only when min_samples is set."""
    one_epoch = dataclasses.replace(RECIPE, epochs=1)
    retrainer = RecipeRetrainer(one_epoch, min_samples=60)
    assert [retrainer.epochs_for(n) for n in (10, 30, 45, 60, 600)] == [6, 2, 2, 1, 1]
    assert RecipeRetrainer(one_epoch).fingerprint() != retrainer.fingerprint()
    assert RecipeRetrainer(one_epoch).epochs_for(10) == 1
    train, x_test, targets = data()
    requests = [(torch.arange(10), 0), (torch.arange(30, 60), 1), (torch.arange(20, 30), 2)]
    out = retrainer.outputs(train, requests, x_test, targets)
    for row, (indices, seed), epochs in zip(out, requests, (6, 2, 6)):
        recipe = dataclasses.replace(one_epoch, seed=seed, epochs=epochs)
        direct = train_model(recipe, torch.utils.data.Subset(train, indices.tolist())).model
        torch.testing.assert_close(row, target_log_probs(direct, x_test, targets))
    with pytest.raises(ValueError, match="min_samples"):
        RecipeRetrainer(one_epoch, min_samples=0)


def test_parallel_workers_give_the_same_outputs(tmp_path):
    """Chunks trained in two spawned processes equal training in this process."""
    train, x_test, targets = data()
    requests = [RetrainRequest(torch.arange(i, i + 20), seed=i % 3) for i in range(40)]
    serial = RetrainingService(RecipeRetrainer(RECIPE), train, x_test, targets, workers=1)
    parallel = RetrainingService(RecipeRetrainer(RECIPE), train, x_test, targets, workers=2)
    torch.testing.assert_close(parallel.outputs(requests), serial.outputs(requests), rtol=0, atol=0)
    assert parallel.n_trained == serial.n_trained == 40
