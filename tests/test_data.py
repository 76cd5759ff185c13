"""Data: digits/MNIST-subset loaders, IDX and CIFAR readers on tiny files, perturbations."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sk_load_digits
from torch.utils.data import TensorDataset

from dattr_eval import data
from dattr_eval.data import ArrayDataset
from dattr_eval.data.loading import CastInputs, dataset_labels, subset_inputs


def test_load_digits_split():
    split = data.load_digits()
    assert (len(split.train), len(split.test)) == (1347, 450)
    assert split.train.inputs.shape == (1347, 1, 8, 8) and split.train.inputs.dtype == torch.float32
    assert split.test.targets.dtype == torch.int64
    assert float(split.train.inputs.min()) == 0.0 and float(split.train.inputs.max()) == 1.0
    # stratified: every class's share in test is within one sample of 25 %
    counts = np.bincount(sk_load_digits().target)
    test_counts = np.bincount(split.test.targets.numpy())
    assert np.all(np.abs(test_counts - counts * 0.25) <= 1)
    # the split is fixed: same seed, same data; the images are sklearn's pixels / 16
    again = data.load_digits()
    assert torch.equal(again.test.inputs, split.test.inputs)
    sk = torch.tensor(sk_load_digits().data / 16.0, dtype=torch.float32)
    flat = split.train.inputs.reshape(-1, 64)
    assert all(bool((sk == row).all(1).any()) for row in flat[:20])


def test_load_mnist_subset():
    split = data.load_mnist_subset()
    assert len(split.train) + len(split.test) == 5000
    assert split.train.inputs.shape[1:] == (1, 28, 28)
    assert 0.0 <= float(split.train.inputs.min()) and float(split.train.inputs.max()) == 1.0
    assert set(split.test.targets.tolist()) == set(range(10))


def test_array_dataset_errors():
    with pytest.raises(ValueError, match="targets must have shape \\(3,\\)"):
        ArrayDataset(np.zeros((3, 2)), np.zeros(4, dtype=int))
    with pytest.raises(TypeError, match="targets must be integer"):
        ArrayDataset(np.zeros((3, 2)), np.zeros(3))


# ------------------------------------------------------------------ IDX
def write_idx(path, array: np.ndarray, code: int, compress: bool) -> None:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_roundtrip(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "a", images, 0x08, compress)
    assert np.array_equal(data.read_idx(tmp_path / ("a.gz" if compress else "a")), images)
    floats = rng.normal(size=(2, 3)).astype(np.float32)
    write_idx(tmp_path / "f", floats, 0x0D, False)
    assert np.array_equal(data.read_idx(tmp_path / "f"), floats)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros((2, 2), np.uint8), 0x08, False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(ValueError, match="header says shape"):
        data.read_idx(tmp_path / "short")


def make_mnist_dir(root, n_train=6, n_test=4, compress=True):
    rng = np.random.default_rng(1)
    parts = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte", images, 0x08, compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, 0x08, not compress)  # mixed gz/raw
        parts[prefix] = (images, labels)
    return parts


@pytest.mark.parametrize("loader", [data.load_mnist, data.load_fashion_mnist])
def test_mnist_dir(tmp_path, loader):
    parts = make_mnist_dir(tmp_path)
    split = loader(tmp_path)
    assert split.train.inputs.shape == (6, 1, 28, 28) and len(split.test) == 4
    assert torch.allclose(
        split.test.inputs[:, 0], torch.tensor(parts["t10k"][0] / 255.0, dtype=torch.float32)
    )
    assert split.train.targets.tolist() == parts["train"][1].tolist()


def test_missing_idx_file_names_file_and_remedy(tmp_path):
    with pytest.raises(
        FileNotFoundError, match="train-images-idx3-ubyte.*apt-get install dataset-fashion-mnist"
    ):
        data.load_fashion_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*root="):
        data.load_mnist(tmp_path)


# ------------------------------------------------------------------ CIFAR
def write_cifar(root, name, n, seed):
    rng = np.random.default_rng(seed)
    batch = {
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"labels": rng.integers(0, 10, size=n).tolist(),
        b"batch_label": b"x",
    }
    with open(root / name, "wb") as f:
        pickle.dump(batch, f, protocol=2)
    return batch


def test_cifar10_reader(tmp_path):
    batches = [write_cifar(tmp_path, f"data_batch_{i}", 3, i) for i in range(1, 6)]
    test = write_cifar(tmp_path, "test_batch", 2, 9)
    split = data.load_cifar10(tmp_path)
    assert split.train.inputs.shape == (15, 3, 32, 32) and len(split.test) == 2
    expected = batches[1][b"data"][0].reshape(3, 32, 32) / 255.0
    assert torch.allclose(split.train.inputs[3], torch.tensor(expected, dtype=torch.float32))
    assert split.test.targets.tolist() == test[b"labels"]


def test_cifar_missing_file_and_unsafe_pickle(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_batch_1.*cifar-10-python.tar.gz"):
        data.load_cifar10(tmp_path)
    with open(tmp_path / "evil", "wb") as f:
        pickle.dump({b"data": print, b"labels": []}, f)
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        data.read_cifar_batch(tmp_path / "evil")


# ------------------------------------------------------------------ perturbations
@pytest.fixture
def toy():
    y = torch.arange(40) % 4
    return ArrayDataset(torch.rand(40, 1, 8, 8), y)


def test_flip_labels(toy):
    noisy, flipped = data.flip_labels(toy, 0.25, seed=3)
    assert flipped.dtype == torch.long and len(flipped) == 10
    changed = torch.nonzero(noisy.targets != toy.targets).flatten()
    assert torch.equal(changed, flipped)  # every flipped label differs, nothing else changes
    assert int(noisy.targets.max()) < 4
    assert torch.equal(noisy.inputs, toy.inputs)
    again, flipped2 = data.flip_labels(toy, 0.25, seed=3)
    assert torch.equal(flipped, flipped2) and torch.equal(again.targets, noisy.targets)
    assert not torch.equal(data.flip_labels(toy, 0.25, seed=4)[1], flipped)
    with pytest.raises(ValueError, match="fraction must be in"):
        data.flip_labels(toy, 1.5, 0)


def test_add_shortcut_and_mark(toy):
    marked_ds, marked = data.add_shortcut(toy, target_class=2, fraction=0.5, seed=0)
    assert len(marked) == 5 and bool((toy.targets[marked] == 2).all())
    changed = torch.nonzero((marked_ds.inputs != toy.inputs).flatten(1).any(1)).flatten()
    assert torch.equal(changed, marked)
    assert torch.equal(marked_ds.targets, toy.targets)
    img = marked_ds.inputs[marked[0], 0]
    # 8x8: 1-px frame and 2x2 centre square at 1.0
    assert bool((img[0] == 1).all() and (img[-1] == 1).all() and (img[:, 0] == 1).all())
    assert bool((img[3:5, 3:5] == 1).all())
    big = data.mark_inputs(torch.zeros(1, 1, 28, 28))[0, 0]
    assert int(big.sum()) == 28 * 28 - 24 * 24 + 16  # 2-px frame + 4x4 centre
    test_marked = data.mark_dataset(toy)
    assert torch.equal(test_marked.inputs, data.mark_inputs(toy.inputs))
    custom, marked_custom = data.add_shortcut(toy, 2, 0.5, 0, mark=lambda x: x * 0)
    assert torch.equal(marked_custom, marked) and bool((custom.inputs[marked] == 0).all())
    with pytest.raises(ValueError, match="target_class 7 has no samples"):
        data.add_shortcut(toy, 7, 0.5, 0)
    with pytest.raises(ValueError, match="x must have ndim=4"):
        data.mark_inputs(torch.zeros(8, 8))


def test_group_labels(toy):
    grouped, fine = data.group_labels(toy, [(0, 1), (2, 3)])
    assert torch.equal(fine, toy.targets)
    assert torch.equal(grouped.targets, toy.targets // 2)
    with pytest.raises(ValueError, match="groups must cover every label; classes \\[3\\]"):
        data.group_labels(toy, [(0, 1), (2,)])
    with pytest.raises(ValueError, match="groups must be disjoint"):
        data.group_labels(toy, [(0, 1), (1, 2, 3)])
    with pytest.raises(TypeError, match="groups must be a sequence"):
        data.group_labels(toy, 4)
    with pytest.raises(TypeError, match=r"groups\[1\] must be a sequence"):
        data.group_labels(toy, [(0, 1), 2])
    with pytest.raises(TypeError, match=r"groups\[0\] class must be an int"):
        data.group_labels(toy, [("a", 1), (2, 3)])


# ------------------------------------------------------------------ strict inputs (reliability)
def test_array_dataset_rejects_negative_labels_and_non_numeric_inputs():
    with pytest.raises(ValueError, match="targets must be non-negative class indices"):
        ArrayDataset(np.zeros((2, 3)), np.array([0, -1]))
    with pytest.raises(TypeError, match="inputs must be numeric"):
        ArrayDataset(np.array([["a"], ["b"]]), np.array([0, 1]))
    with pytest.raises(TypeError, match="targets must be integer"):
        ArrayDataset(np.zeros((2, 3)), np.array([True, False]))


def test_dataset_labels_refuses_float_labels():
    x = torch.zeros(3, 2)
    with pytest.raises(TypeError, match="train_dataset labels must be integer class indices"):
        dataset_labels(TensorDataset(x, torch.tensor([0.9, 1.9, 2.9])), "train_dataset")

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.zeros(2), 1.5

    with pytest.raises(TypeError, match=r"train_dataset\[0\]: the label must be an integer"):
        dataset_labels(Items(), "train_dataset")
    with pytest.raises(ValueError, match="labels must be 1-D"):
        dataset_labels(TensorDataset(x, torch.zeros(3, 1, dtype=torch.long)), "train_dataset")
    assert dataset_labels(TensorDataset(x, torch.tensor([2, 0, 1])), "d").tolist() == [2, 0, 1]


def test_subset_inputs_names_out_of_range_indices(toy):
    with pytest.raises(ValueError, match="indices must be in \\[0, 40\\)"):
        subset_inputs(toy, [0, 40])
    with pytest.raises(ValueError, match="indices must be in \\[0, 40\\)"):
        subset_inputs(toy, [-1])


def test_cast_inputs_dataset():
    base = TensorDataset(torch.zeros(3, 2, dtype=torch.float64), torch.tensor([0, 1, 2]))
    cast = CastInputs(base, torch.float32)
    x, y = cast[1]
    assert x.dtype == torch.float32 and int(y) == 1 and len(cast) == 3


def test_read_idx_gz_that_is_not_gzip(tmp_path):
    write_idx(tmp_path / "a", np.zeros((2, 2), np.uint8), 0x08, False)
    (tmp_path / "a.gz").write_bytes((tmp_path / "a").read_bytes())
    with pytest.raises(ValueError, match="a.gz.*not a valid gzip file"):
        data.read_idx(tmp_path / "a.gz")
    with gzip.open(tmp_path / "b.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x01" + struct.pack(">I", 100) + b"\x00" * 100)
    (tmp_path / "b.gz").write_bytes((tmp_path / "b.gz").read_bytes()[:-12])  # truncated stream
    with pytest.raises(ValueError, match="b.gz"):
        data.read_idx(tmp_path / "b.gz")


def test_read_idx_absurd_dimensions_fail_fast(tmp_path):
    header = b"\x00\x00\x0e\x03" + struct.pack(">3I", 2**31, 2**31, 2**31)
    (tmp_path / "huge").write_bytes(header + b"\x00" * 16)
    with pytest.raises(ValueError, match="header says shape"):
        data.read_idx(tmp_path / "huge")
    (tmp_path / "dims").write_bytes(b"\x00\x00\x08\xff" + b"\x00" * 8)  # 255 dims, 2 present
    with pytest.raises(ValueError, match="255 dimensions"):
        data.read_idx(tmp_path / "dims")


def test_mnist_dir_checks_image_and_label_files(tmp_path):
    make_mnist_dir(tmp_path, compress=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8), 0x08, False)
    with pytest.raises(ValueError, match="has 6 images but .*train-labels.* has 5 labels"):
        data.load_mnist(tmp_path)


def write_cifar_dict(path, batch):
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def test_cifar_batch_checks_labels_and_pixels(tmp_path):
    good = np.zeros((2, 3072), dtype=np.int64)
    write_cifar_dict(tmp_path / "count", {b"data": good, b"labels": [1, 2, 3]})
    with pytest.raises(ValueError, match="count.*2 images but 3 labels"):
        data.read_cifar_batch(tmp_path / "count")
    write_cifar_dict(tmp_path / "range", {b"data": good, b"labels": [1, 10]})
    with pytest.raises(ValueError, match="range.*labels must be in \\[0, 9\\]"):
        data.read_cifar_batch(tmp_path / "range")
    big = good.copy()
    big[0, 0] = 300
    write_cifar_dict(tmp_path / "pixels", {b"data": big, b"labels": [1, 2]})
    with pytest.raises(ValueError, match="pixels.*pixel values must be in \\[0, 255\\]"):
        data.read_cifar_batch(tmp_path / "pixels")
    write_cifar_dict(tmp_path / "size", {b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]})
    with pytest.raises(ValueError, match="size.*3072"):
        data.read_cifar_batch(tmp_path / "size")
    write_cifar_dict(tmp_path / "floats", {b"data": good, b"labels": [1.5, 2.0]})
    with pytest.raises(ValueError, match="floats.*labels must be integers"):
        data.read_cifar_batch(tmp_path / "floats")


def test_cifar_empty_or_corrupt_file_is_named(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"")
    with pytest.raises(ValueError, match="data_batch_1.*empty"):
        data.read_cifar_batch(tmp_path / "data_batch_1")
    (tmp_path / "junk").write_bytes(b"\x80\x02}q\x00(X")
    with pytest.raises(ValueError, match="junk.*not a readable CIFAR-10 batch"):
        data.read_cifar_batch(tmp_path / "junk")


def test_perturbations_validate_numbers(toy):
    with pytest.raises(TypeError, match="seed must be an int"):
        data.flip_labels(toy, 0.25, seed=2.5)
    with pytest.raises(TypeError, match="n_classes must be an int"):
        data.flip_labels(toy, 0.25, n_classes=4.5)
    with pytest.raises(TypeError, match="target_class must be an int"):
        data.add_shortcut(toy, 2.5, 0.5)
    with pytest.raises(TypeError, match="seed must be an int"):
        data.stratified_split(np.zeros((8, 1)), np.arange(8) % 2, 0.5, seed=None)
