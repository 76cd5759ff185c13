"""Fuzz targets of the data layer: IDX and CIFAR readers, ArrayDataset, perturbations, helpers."""

from __future__ import annotations

import atexit
import gzip
import itertools
import pickle
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch.utils.data import TensorDataset

from dattr_eval import data
from dattr_eval.data.loading import dataset_labels, subset_inputs
from tests.fuzz import Bad, Items, Target

WORKDIR = tempfile.TemporaryDirectory(prefix="dattr-fuzz-")
atexit.register(WORKDIR.cleanup)
IDX_TYPES = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    code = IDX_TYPES[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write(name: str, payload: bytes) -> Path:
    path = Path(WORKDIR.name) / name
    path.write_bytes(payload)
    return path


IDX_ARRAYS = st.sampled_from(list(IDX_TYPES)).flatmap(
    lambda dtype: hnp.arrays(
        dtype, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)
    )
)


@st.composite
def _idx_valid(draw):
    array = draw(IDX_ARRAYS)
    gz = draw(st.booleans())
    payload = idx_bytes(array)
    return array, gzip.compress(payload) if gz else payload, gz


def _read_idx(case):
    _, payload, gz = case
    return data.read_idx(_write("fuzz-idx.gz" if gz else "fuzz-idx", payload))


def _idx_check(case, out):
    assert np.array_equal(out, case[0], equal_nan=case[0].dtype.kind == "f")
    assert out.dtype == case[0].dtype and out.shape == case[0].shape


@st.composite
def _idx_invalid(draw):
    array = draw(IDX_ARRAYS)
    payload = bytearray(idx_bytes(array))
    header = 4 + 4 * array.ndim
    kind = draw(
        st.sampled_from(
            ["magic", "type", "truncate", "extra", "dims", "not gzip", "bad gzip", "tiny"]
        )
    )
    gz = kind in ("not gzip", "bad gzip")
    if kind == "magic":
        payload[draw(st.integers(0, 1))] = draw(st.integers(1, 255))
    elif kind == "type":
        payload[2] = draw(st.integers(0, 255).filter(lambda c: c not in IDX_TYPES.values()))
    elif kind == "truncate":
        payload = (
            payload[: draw(st.integers(4, len(payload) - 1))]
            if len(payload) > header
            else payload[:-1]
        )
    elif kind == "extra":
        payload += draw(st.binary(min_size=1, max_size=16))
    elif kind == "dims":
        payload = payload[:3] + bytes([draw(st.integers(array.ndim + 1, 255))]) + payload[4:header]
    elif kind == "tiny":
        payload = payload[: draw(st.integers(0, 3))]
    elif kind == "bad gzip":
        compressed = gzip.compress(bytes(payload))
        payload = compressed[: draw(st.integers(0, len(compressed) - 1))]
    return Bad((array, bytes(payload), gz), "fuzz-idx")


def _cifar_pickle(batch: Any) -> bytes:
    return pickle.dumps(batch, protocol=2)


@st.composite
def _cifar_valid(draw):
    n = draw(st.integers(0, 3))
    pixels = draw(
        hnp.arrays(
            st.sampled_from([np.uint8, np.int64, np.int16]), (n, 3072), elements=st.integers(0, 255)
        )
    )
    labels = draw(st.lists(st.integers(0, 9), min_size=n, max_size=n))
    keys = draw(st.sampled_from([(b"data", b"labels"), ("data", "labels")]))
    return pixels, labels, _cifar_pickle({keys[0]: pixels, keys[1]: labels, b"batch_label": b"x"})


def _read_cifar(case):
    return data.read_cifar_batch(_write("fuzz-cifar", case[-1]))


def _cifar_check(case, out):
    pixels, labels, _ = case
    images, got = out
    assert images.dtype == np.uint8 and images.shape == (len(labels), 3, 32, 32)
    assert np.array_equal(images.reshape(len(labels), 3072), pixels) and got.tolist() == labels


@st.composite
def _cifar_invalid(draw):
    pixels, labels, payload = draw(_cifar_valid())
    n = len(labels)
    kind = draw(
        st.sampled_from(
            [
                "count",
                "label range",
                "float labels",
                "pixels",
                "row size",
                "keys",
                "type",
                "empty",
                "truncated",
                "garbage",
            ]
        )
    )
    batch: Any = {b"data": pixels, b"labels": labels}
    if kind == "count":
        batch[b"labels"] = labels + draw(st.lists(st.integers(0, 9), min_size=1, max_size=3))
    elif kind == "label range" and n:
        batch[b"labels"] = [*labels[:-1], draw(st.integers(10, 1000) | st.integers(max_value=-1))]
    elif kind == "float labels" and n:
        batch[b"labels"] = [float(v) + 0.5 for v in labels]
    elif kind == "pixels" and n:
        pixels = pixels.astype(np.int64)
        pixels[0, draw(st.integers(0, 3071))] = draw(
            st.integers(256, 10**6) | st.integers(-(10**6), -1)
        )
        batch[b"data"] = pixels
    elif kind == "row size":
        batch[b"data"] = np.zeros(
            (max(n, 1), draw(st.integers(1, 4000).filter(lambda v: v != 3072))), np.uint8
        )
    elif kind == "keys":
        batch = {b"data": pixels}
    elif kind == "type":
        batch = [pixels, labels]
    elif kind == "empty":
        return Bad((b"",), "fuzz-cifar")
    elif kind == "truncated":
        return Bad((payload[: draw(st.integers(0, len(payload) - 1))],), "fuzz-cifar")
    elif kind == "garbage":
        return Bad((draw(st.binary(min_size=1, max_size=64)).replace(b".", b"\x00"),), "fuzz-cifar")
    else:  # the chosen edit needs a non-empty batch: an extra label instead
        batch[b"labels"] = [*labels, 0]
    return Bad((_cifar_pickle(batch),), "fuzz-cifar")


@st.composite
def _array_dataset_valid(draw):
    n = draw(st.integers(0, 5))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.uint8, np.int32, np.bool_]))
    in_range = st.floats(-1e30, 1e30, allow_nan=False) if dtype == np.float64 else None
    x = draw(hnp.arrays(dtype, (n, 2), elements=in_range))  # float64 within float32's range
    y = draw(
        hnp.arrays(
            st.sampled_from([np.int64, np.uint8, np.int32]), (n,), elements=st.integers(0, 9)
        )
    )
    return x, y


def _array_dataset_check(case, out):
    x, y = case
    assert out.inputs.dtype == torch.float32 and out.targets.dtype == torch.long
    assert len(out) == len(y) and out.targets.tolist() == y.tolist()
    assert np.array_equal(out.inputs.numpy(), x.astype(np.float32), equal_nan=True)


@st.composite
def _array_dataset_invalid(draw):
    x, y = draw(_array_dataset_valid())
    n = len(y)
    kind = draw(st.sampled_from(["negative", "float", "bool", "length", "scalar", "strings", "2d"]))
    if kind == "negative" and n:
        y = y.astype(np.int64)
        y[0] = -draw(st.integers(1, 100))
        return Bad((x, y), "targets")
    if kind == "float":
        return Bad((x, y.astype(np.float32) + 0.5), "targets")
    if kind == "bool":
        return Bad((x, y > 0), "targets")
    if kind == "scalar":
        return Bad((np.float32(1.0), y[:0]), "inputs")
    if kind == "strings":
        return Bad((np.array([["a"]] * n + [["b"]]), np.zeros(n + 1, np.int64)), "inputs")
    if kind == "2d":
        return Bad((x, y[:, None]), "targets")
    return Bad((x, np.concatenate([y, [0]])), "targets")


def _toy_dataset(n: int, classes: int) -> data.ArrayDataset:
    gen = torch.Generator().manual_seed(n)
    return data.ArrayDataset(torch.rand(n, 1, 4, 4, generator=gen), torch.arange(n) % classes)


@st.composite
def _flip_valid(draw):
    n, classes = draw(st.integers(2, 30)), draw(st.integers(2, 5))
    return (
        _toy_dataset(n, classes),
        draw(st.floats(0.01, 0.99)),
        draw(st.integers(0, 2**32)),
        classes,
    )


def _flip(case):
    dataset, fraction, seed, classes = case
    return data.flip_labels(dataset, fraction, seed=seed, n_classes=classes)


def _flip_check(case, out):
    dataset, fraction, _, classes = case
    noisy, flipped = out
    changed = torch.nonzero(noisy.targets != dataset.targets).flatten()
    assert torch.equal(changed, flipped) and len(flipped) == round(fraction * len(dataset))
    assert int(noisy.targets.max()) < classes and int(noisy.targets.min()) >= 0


@st.composite
def _flip_invalid(draw):
    dataset, fraction, seed, classes = draw(_flip_valid())
    kind = draw(st.sampled_from(["fraction", "seed", "n_classes"]))
    if kind == "fraction":
        fraction = draw(
            st.floats(allow_nan=True).filter(lambda v: not 0 < v < 1)
            | st.booleans()
            | st.text(max_size=2)
            | st.none()
        )
    elif kind == "seed":
        seed = draw(st.integers(max_value=-1) | st.floats() | st.booleans() | st.none())
    else:
        top = max(1, int(dataset.targets.max()))  # n_classes must exceed every label and 1
        classes = draw(st.integers(max_value=top) | st.floats() | st.booleans())
    return Bad((dataset, fraction, seed, classes), kind)


@st.composite
def _group_valid(draw):
    classes = draw(st.integers(1, 6))
    order = draw(st.permutations(range(classes)))
    cuts = (
        sorted(draw(st.sets(st.integers(1, classes - 1), max_size=classes - 1)))
        if classes > 1
        else []
    )
    bounds = [0, *cuts, classes]
    groups = [tuple(order[a:b]) for a, b in itertools.pairwise(bounds)]
    return _toy_dataset(draw(st.integers(classes, 20)), classes), groups


def _group_check(case, out):
    dataset, groups = case
    grouped, fine = out
    of = {c: g for g, members in enumerate(groups) for c in members}
    assert torch.equal(fine, dataset.targets)
    assert grouped.targets.tolist() == [of[c] for c in dataset.targets.tolist()]


@st.composite
def _group_invalid(draw):
    dataset, groups = draw(_group_valid())
    kind = draw(st.sampled_from(["overlap", "missing", "not a sequence", "member", "class"]))
    if kind == "overlap" and len(groups) > 1:
        groups = [*groups, (groups[0][0],)]
    elif kind == "not a sequence":
        groups = draw(st.integers() | st.text(max_size=3) | st.none())
    elif kind == "member":
        groups = [*groups, draw(st.integers() | st.none() | st.text(max_size=2))]
    elif kind == "class":
        groups = [(*groups[0], draw(st.floats() | st.text(max_size=2) | st.none())), *groups[1:]]
    else:
        groups = [g for g in groups if max(dataset.targets.tolist()) not in g]
    return Bad((dataset, groups), "groups")


@st.composite
def _subset_valid(draw):
    n = draw(st.integers(1, 10))
    return _toy_dataset(n, 3), draw(st.lists(st.integers(0, n - 1), max_size=6))


def _subset_check(case, out):
    dataset, indices = case
    x, y = out
    assert torch.equal(x, dataset.inputs[indices]) and torch.equal(y, dataset.targets[indices])


@st.composite
def _subset_invalid(draw):
    dataset, indices = draw(_subset_valid())
    bad = draw(st.integers(len(dataset), 10**6) | st.integers(max_value=-1))
    return Bad((dataset, [*indices, bad]), "indices")


@st.composite
def _labels_valid(draw):
    n = draw(st.integers(1, 8))
    y = torch.tensor(draw(st.lists(st.integers(0, 9), min_size=n, max_size=n)))
    kind = draw(st.sampled_from(["tensor", "targets", "items"]))
    if kind == "tensor":
        return TensorDataset(
            torch.zeros(n, 2), y.to(draw(st.sampled_from([torch.int64, torch.int32, torch.uint8])))
        )
    if kind == "targets":
        return data.ArrayDataset(torch.zeros(n, 2), y)
    return Items((torch.zeros(2), int(y[0])), n)


def _labels_check(case, out):
    assert out.dtype == torch.long and out.shape == (len(case),)


@st.composite
def _labels_invalid(draw):
    n = draw(st.integers(1, 8))
    kind = draw(st.sampled_from(["float", "bool", "2d", "item"]))
    if kind == "float":
        return Bad(TensorDataset(torch.zeros(n, 2), torch.rand(n) * 10), "labels")
    if kind == "bool":
        return Bad(TensorDataset(torch.zeros(n, 2), torch.rand(n) > 0.5), "labels")
    if kind == "2d":
        return Bad(TensorDataset(torch.zeros(n, 2), torch.zeros(n, 2, dtype=torch.long)), "labels")
    return Bad(
        Items((torch.zeros(2), draw(st.floats() | st.text(max_size=1) | st.none())), n), "label"
    )


DATA = [
    Target(
        "data.read_idx", "data", _read_idx, _idx_valid(), _idx_invalid(), _idx_check, weight=0.5
    ),
    Target(
        "data.read_cifar_batch",
        "data",
        _read_cifar,
        _cifar_valid(),
        _cifar_invalid(),
        _cifar_check,
        errors=(ValueError, TypeError, pickle.UnpicklingError),
        weight=0.5,
    ),
    Target(
        "data.ArrayDataset",
        "data",
        lambda c: data.ArrayDataset(*c),
        _array_dataset_valid(),
        _array_dataset_invalid(),
        _array_dataset_check,
    ),
    Target("data.flip_labels", "data", _flip, _flip_valid(), _flip_invalid(), _flip_check),
    Target(
        "data.group_labels",
        "data",
        lambda c: data.group_labels(*c),
        _group_valid(),
        _group_invalid(),
        _group_check,
    ),
    Target(
        "data.subset_inputs",
        "data",
        lambda c: subset_inputs(*c),
        _subset_valid(),
        _subset_invalid(),
        _subset_check,
    ),
    Target(
        "data.dataset_labels",
        "data",
        lambda c: dataset_labels(c, "train_dataset"),
        _labels_valid(),
        _labels_invalid(),
        _labels_check,
    ),
]
