"""Model cache healing: every kind of damaged entry is retrained with a warning, never raised,
and the retrained model equals a clean one; entries appear whole or not at all."""

from __future__ import annotations

import json
import shutil
import struct
import threading
import time
import warnings
import zipfile

import pytest
import torch

from dattr_eval.data import ArrayDataset
from dattr_eval.models import ModelCache, TrainRecipe, build_model
from dattr_eval.models import cache as cache_module

RECIPE = TrainRecipe(
    arch="digits_mlp", n_classes=3, epochs=4, lr=0.1, batch_size=16, n_checkpoints=2
)


def tiny_dataset() -> ArrayDataset:
    """48 learnable (1, 8, 8) images of 3 classes."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(48) % 3
    x = torch.rand(48, 1, 8, 8, generator=g) * 0.3
    x[y == 0, :, :4] += 0.7
    x[y == 1, :, 4:] += 0.7
    return ArrayDataset(x, y)


@pytest.fixture(scope="module")
def tiny():
    return tiny_dataset()


@pytest.fixture(scope="module")
def clean(tiny, tmp_path_factory):
    """State dict and checkpoint bytes of an undamaged cache entry."""
    trained = ModelCache(tmp_path_factory.mktemp("clean")).get_or_train(RECIPE, tiny)
    return trained.model.state_dict(), [c.path.read_bytes() for c in trained.checkpoints]


def assert_same_model(trained, clean) -> None:
    state, checkpoint_bytes = clean
    got = trained.model.state_dict()
    assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    loaded = [torch.load(c.path, weights_only=True) for c in trained.checkpoints]
    assert len(loaded) == len(checkpoint_bytes) == 2 and all(
        c.path.is_file() for c in trained.checkpoints
    )


def flip_a_weight_byte(path) -> None:
    """Flip one byte inside the largest tensor of a ``torch.save`` zip (loads without error)."""
    with zipfile.ZipFile(path) as archive:
        record = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack(
        "<HH", data[record.header_offset + 26 : record.header_offset + 30]
    )
    data[record.header_offset + 30 + name_len + extra_len + 17] ^= 0x40
    path.write_bytes(bytes(data))


def edit_manifest(folder, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def other_weights(folder) -> None:
    torch.save(build_model("digits_mlp", 5).state_dict(), folder / "model.pt")


def replace_with_a_file(folder) -> None:
    shutil.rmtree(folder)
    folder.write_text("x")


DAMAGE = {
    "truncated model.pt": (
        lambda f: (f / "model.pt").write_bytes((f / "model.pt").read_bytes()[:500]),
        "model.pt does not match its recorded checksum",
    ),
    "flipped byte in a weight": (
        lambda f: flip_a_weight_byte(f / "model.pt"),
        "model.pt does not match its recorded checksum",
    ),
    "wrong-shape weights": (other_weights, "model.pt does not match its recorded checksum"),
    "damaged checkpoint": (
        lambda f: (f / "epoch_2.pt").write_bytes(b"\0" * 64),
        "epoch_2.pt does not match",
    ),
    "missing checkpoint": (lambda f: (f / "epoch_4.pt").unlink(), "epoch_4.pt is missing"),
    "missing manifest": (lambda f: (f / "manifest.json").unlink(), "manifest.json is missing"),
    "garbage manifest": (
        lambda f: (f / "manifest.json").write_bytes(b"{\x00not json"),
        "not readable JSON",
    ),
    "empty manifest": (lambda f: (f / "manifest.json").write_text(""), "not readable JSON"),
    "manifest of the wrong shape": (
        lambda f: (f / "manifest.json").write_text('{"checkpoints": "epoch_2.pt"}'),
        "lacks a valid 'checkpoints' list",
    ),
    "manifest path outside the entry": (
        lambda f: edit_manifest(f, lambda m: m["checkpoints"][0].update(file="../../evil.pt")),
        "lacks a valid 'checkpoints' list",
    ),
    "manifest of another recipe": (
        lambda f: edit_manifest(f, lambda m: m["recipe"].update(lr=0.5)),
        "another recipe or tag",
    ),
    "manifest without checksums": (
        lambda f: edit_manifest(f, lambda m: m.pop("sha256")),
        "lacks the checksum of every file",
    ),
    "entry is a file": (replace_with_a_file, "is not a directory"),
}


def no_training(*args, **kwargs):
    raise AssertionError("trained again")


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_entry_is_retrained_with_a_warning(tiny, clean, tmp_path, monkeypatch, damage):
    cache = ModelCache(tmp_path)
    cache.get_or_train(RECIPE, tiny)
    folder = tmp_path / cache.key(RECIPE, tiny)
    harm, reason = DAMAGE[damage]
    harm(folder)
    with pytest.warns(
        UserWarning, match=f"model cache entry .*{folder.name} is unusable: .*{reason}"
    ):
        healed = cache.get_or_train(RECIPE, tiny)
    assert_same_model(healed, clean)
    monkeypatch.setattr(cache_module, "train_model", no_training)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same_model(cache.get_or_train(RECIPE, tiny), clean)  # healed for good


def drop_checksums(folder) -> None:
    edit_manifest(folder, lambda m: [m.pop("format"), m.pop("sha256")])


def test_an_entry_without_checksums_still_loads_and_is_checked(tiny, clean, tmp_path, monkeypatch):
    cache = ModelCache(tmp_path)
    cache.get_or_train(RECIPE, tiny)
    folder = tmp_path / cache.key(RECIPE, tiny)
    drop_checksums(folder)  # as written before checksums (manifest format 1)
    with monkeypatch.context() as patch, warnings.catch_warnings():
        patch.setattr(cache_module, "train_model", no_training)
        warnings.simplefilter("error")
        assert_same_model(cache.get_or_train(RECIPE, tiny), clean)
    for name in ("model.pt", "epoch_2.pt"):
        torch.save(build_model("digits_mlp", 5).state_dict(), folder / name)
        with pytest.warns(UserWarning, match=f"{name} cannot be loaded as digits_mlp weights"):
            assert_same_model(cache.get_or_train(RECIPE, tiny), clean)
        drop_checksums(folder)


def test_an_interrupted_training_leaves_no_entry(tiny, clean, tmp_path, monkeypatch):
    cache = ModelCache(tmp_path)
    real_train = cache_module.train_model

    def interrupted(recipe, dataset, checkpoint_dir, progress):
        real_train(recipe, dataset, checkpoint_dir, progress)  # checkpoints written ...
        raise KeyboardInterrupt  # ... then Ctrl-C before the entry is complete

    monkeypatch.setattr(cache_module, "train_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_train(RECIPE, tiny)
    key = cache.key(RECIPE, tiny)
    assert not (tmp_path / key).exists() and (tmp_path / f"{key}.partial").is_dir()
    monkeypatch.setattr(cache_module, "train_model", real_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing was damaged: no warning
        assert_same_model(cache.get_or_train(RECIPE, tiny), clean)
    assert not (tmp_path / f"{key}.partial").exists()


def test_two_users_of_one_entry_train_it_once(tiny, clean, tmp_path, monkeypatch):
    calls = []
    real_train = cache_module.train_model

    def slow_train(*args, **kwargs):
        calls.append(threading.get_ident())
        time.sleep(0.3)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(cache_module, "train_model", slow_train)
    results = []
    users = [
        threading.Thread(
            target=lambda: results.append(ModelCache(tmp_path).get_or_train(RECIPE, tiny))
        )
        for _ in range(2)
    ]
    for user in users:
        user.start()
    for user in users:
        user.join(60)
    assert len(calls) == 1 and len(results) == 2
    for trained in results:
        assert_same_model(trained, clean)
