"""Content identities: benchmark fingerprints, code versions, and the keys of result cells.

A finished cell is reused only when everything that determines its rows is unchanged:

- the benchmark's fingerprint (:func:`benchmark_fingerprint`): training data, test inputs, ground
  truth, model weights, training checkpoints, retraining recipe, seed;
- the explainer's and the metrics' classes, hyperparameters and code version
  (:func:`code_version`: the package version for dattr_eval's own classes, a hash of the source
  for user classes, so editing your ``_explain`` invalidates your old rows).
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from dattr_eval.benchmarks import Benchmark
from dattr_eval.evaluation.store import to_json
from dattr_eval.models.cache import data_fingerprint

_PACKAGE = "dattr_eval"


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def state_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's ``state_dict`` (names, shapes, dtypes, bytes)."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def _value_digest(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        return _digest(
            str(tuple(t.shape)), str(t.dtype), hashlib.sha256(t.numpy().tobytes()).hexdigest()
        )
    return to_json(value)


def benchmark_parts(bench: Benchmark) -> dict[str, str]:
    """The named parts of a built benchmark's fingerprint, in order (see the module docstring).

    Keys: ``"name"``, ``"training data"``, ``"test inputs"``, ``"ground truth <field>"`` (one per
    field of ``bench.truth``), ``"model state"``, ``"checkpoint <i>"`` (one per training
    checkpoint), ``"retraining recipe"`` and ``"seed"``; values are digests (or short literals
    such as the seed), so two benchmarks can be told apart part by part.
    """
    parts = {
        "name": bench.name,
        "training data": data_fingerprint(bench.train_dataset),
        "test inputs": _value_digest(bench.test_inputs),
    }
    for f in fields(bench.truth):
        parts[f"ground truth {f.name}"] = f"{f.name}={_value_digest(getattr(bench.truth, f.name))}"
    parts["model state"] = state_digest(bench.model)
    for i, c in enumerate(bench.checkpoints):
        path = Path(getattr(c, "path", ""))
        content = (
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else f"missing {path}"
        )
        parts[f"checkpoint {i}"] = f"{getattr(c, 'epoch', '')}:{getattr(c, 'lr', '')}:{content}"
    parts["retraining recipe"] = bench.retrain.fingerprint() if bench.retrain is not None else ""
    parts["seed"] = str(bench.seed)
    return parts


def parts_fingerprint(parts: dict[str, str]) -> str:
    """SHA-256 of the values of :func:`benchmark_parts`, in order: the benchmark's fingerprint."""
    return _digest(*parts.values())


def benchmark_fingerprint(bench: Benchmark) -> str:
    """SHA-256 of everything in a built benchmark that determines scores (see the module docstring)."""
    return parts_fingerprint(benchmark_parts(bench))


def code_version(cls: type) -> str:
    """``dattr_eval <version>`` for the package's own classes; else a hash of the class's source.

    For user classes every class of the MRO outside dattr_eval and the standard library counts, so
    editing a method of your explainer or metric changes its version.
    """
    from dattr_eval import __version__

    own = [
        c for c in cls.__mro__ if c.__module__.split(".")[0] not in (_PACKAGE, "builtins", "abc")
    ]
    if not own:
        return f"{_PACKAGE} {__version__}"
    parts = [f"{_PACKAGE} {__version__}"]
    for c in own:
        try:
            parts.append(inspect.getsource(c))
        except (OSError, TypeError):  # defined where no source is kept: hash the bytecode
            parts.extend(
                f"{name}:{member.__code__.co_code.hex()}:{member.__code__.co_consts!r}"
                for name, member in sorted(vars(c).items())
                if inspect.isfunction(member)
            )
    return "user " + _digest(*parts)[:16]


def estimator_key(label: str, estimator: Any) -> str:
    """Key of an explainer or metric: label, class, hyperparameters, code version."""
    cls = type(estimator)
    return _digest(
        label,
        f"{cls.__module__}.{cls.__qualname__}",
        to_json(estimator.get_params()),
        code_version(cls),
    )


def cell_key(benchmark_fingerprints: list[str], explainer_label: str, explainer: Any) -> str:
    """Key of a benchmark × explainer cell (all replicates' fingerprints, the explainer's key)."""
    return _digest(*benchmark_fingerprints, estimator_key(explainer_label, explainer))


def card_key(benchmark_fingerprints: list[str]) -> str:
    """Key of a benchmark's card row (all replicates' fingerprints and the package version)."""
    from dattr_eval import __version__

    return _digest(*benchmark_fingerprints, f"card {__version__}")
