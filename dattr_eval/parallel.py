"""Execution backends: run heavy passes in this process (``"local"``, the default) or on Ray.

The backend is chosen by a context manager and read by the code that does the work, so
explainers need no extra argument::

    with use_backend("ray", n_shards=8, num_cpus=1):
        explainer.fit(model, train_set)        # training-set passes run as 8 Ray tasks

- :func:`use_backend` / :func:`current_backend`: the active :class:`Backend` (a context variable,
  so nested blocks and threads each see their own). Outside any block it is ``"local"``.
- :func:`map_shards`: split a dataset into contiguous shards (``torch.utils.data.Subset``), run
  ``fn(shard, **shared)`` on each and return the results in shard order. Locally the shards run
  one after the other in this process; on Ray each shard is one task, and the dataset and the
  ``shared`` objects (the model) are put into the object store once (``ray.put``) and shared by
  all tasks.
- :func:`cat_shards`: concatenate per-shard tensors (or tuples of them) back into one along dim 0.

Ray is imported only when the Ray backend is used (optional extra ``distributed``).
"""

from __future__ import annotations

import contextvars
import itertools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch.utils.data import Dataset, Subset

from dattr_eval.validation import check_choice, check_positive

T = TypeVar("T")

BACKENDS = ("local", "ray")
_OPTIONS = {"local": ("n_shards",), "ray": ("n_shards", "num_cpus", "num_gpus", "address")}


@dataclass(frozen=True)
class Backend:
    """Where heavy passes run.

    Attributes:
        name: ``"local"`` (this process) or ``"ray"``.
        n_shards: shards per :func:`map_shards` call; ``None`` = 1 locally, on Ray the cluster's
            CPU count divided by ``num_cpus`` (at least 1).
        num_cpus: CPUs each Ray task reserves (Ray also caps the task's torch threads to it).
        num_gpus: GPUs each Ray task reserves (``fn`` chooses the device it computes on).
        address: the Ray cluster to join when Ray is not initialised yet (``None``: start a local
            one, Ray's default; ``"auto"``: the cluster this machine belongs to).
    """

    name: str = "local"
    n_shards: int | None = None
    num_cpus: float = 1
    num_gpus: float = 0
    address: str | None = field(default=None, compare=False)

    @property
    def is_ray(self) -> bool:
        """True for the Ray backend."""
        return self.name == "ray"

    def task_options(self) -> dict[str, float]:
        """The resources one Ray task declares: ``{"num_cpus": ..., "num_gpus": ...}``."""
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}

    def resolve_n_shards(self) -> int:
        """The number of shards :func:`map_shards` uses by default (see ``n_shards``)."""
        if self.n_shards is not None:
            return self.n_shards
        if not self.is_ray:
            return 1
        cpus = import_ray().cluster_resources().get("CPU", 1)
        return max(1, int(cpus // max(self.num_cpus, 1e-9)))


_LOCAL = Backend()
_CURRENT: contextvars.ContextVar[Backend] = contextvars.ContextVar("dattr_eval_backend")


def current_backend() -> Backend:
    """The active :class:`Backend` (``Backend("local")`` outside any :func:`use_backend` block)."""
    return _CURRENT.get(_LOCAL)


def import_ray() -> Any:
    """``import ray``, or an ``ImportError`` naming the extra that installs it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(
            "the Ray backend needs the 'ray' package: pip install 'dattr-eval[distributed]' "
            "(or pip install ray)"
        ) from err
    return ray


@contextmanager
def use_backend(name: str = "local", **options: Any) -> Iterator[Backend]:
    """Make ``name`` the active backend inside the ``with`` block; yields the :class:`Backend`.

    Args:
        name: ``"local"`` or ``"ray"``.
        **options: ``n_shards`` (both backends); for Ray also ``num_cpus``, ``num_gpus`` and
            ``address`` (see :class:`Backend`). With Ray, ``ray.init(address=address)`` is called
            if Ray is not initialised yet; the cluster is left running after the block.

    Raises:
        ValueError: an unknown backend or option, or a non-positive ``n_shards`` / ``num_cpus``.
        ImportError: ``"ray"`` without the ray package.
    """
    check_choice(name, "name", BACKENDS)
    unknown = sorted(set(options) - set(_OPTIONS[name]))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for backend {name!r}; known: {list(_OPTIONS[name])}"
        )
    if options.get("n_shards") is not None:
        check_positive(options["n_shards"], "n_shards", integer=True)
    if "num_cpus" in options:
        check_positive(options["num_cpus"], "num_cpus")
    if "num_gpus" in options:
        check_positive(options["num_gpus"], "num_gpus", allow_zero=True)
    backend = Backend(name, **options)
    if backend.is_ray:
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=backend.address)
    token = _CURRENT.set(backend)
    try:
        yield backend
    finally:
        _CURRENT.reset(token)


def shard_bounds(n: int, n_shards: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` ranges covering ``0..n-1``; sizes differ by at most one.

    Never more than ``n`` ranges (no empty shard); ``[]`` for ``n == 0``.
    """
    check_positive(n_shards, "n_shards", integer=True)
    if n == 0:
        return []
    n_shards = min(n_shards, n)
    edges = [n * i // n_shards for i in range(n_shards + 1)]
    return list(itertools.pairwise(edges))


def _to_cpu(value: Any) -> Any:
    """``value`` with every tensor (also inside tuples, lists and dicts) moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, (tuple, list)):
        return type(value)(_to_cpu(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value


def _run_shard(
    fn: Callable[..., Any], dataset: Dataset, start: int, stop: int, shared: Mapping[str, Any]
) -> Any:
    """One Ray task: ``fn`` on ``dataset[start:stop]`` with the local backend, tensors on the CPU."""
    with use_backend("local"):
        return _to_cpu(fn(Subset(dataset, range(start, stop)), **shared))


_REMOTE_RUN_SHARD: Any = None


def map_shards(
    fn: Callable[..., T],
    dataset: Dataset,
    *,
    n_shards: int | None = None,
    shared: Mapping[str, Any] | None = None,
) -> list[T]:
    """Run ``fn(shard, **shared)`` on contiguous shards of ``dataset``; results in shard order.

    Shard ``s`` is ``Subset(dataset, range(start_s, stop_s))`` with the bounds of
    :func:`shard_bounds`, so concatenating per-shard results along their first dimension gives the
    result over the whole dataset in its order (rows ``start_s..stop_s-1`` from shard ``s``).

    Local backend: the shards run in order in this process (one shard: ``fn(dataset)`` itself).
    Ray backend: one task per shard with the backend's ``task_options()``; ``fn``, ``dataset`` and
    ``shared`` are each put into the object store once and shared by all tasks, so pass large
    objects (a model) through ``shared`` rather than a closure. Tasks run ``fn`` under the local
    backend and return their tensors on the CPU; ``fn`` and its results must be picklable.

    Args:
        fn: ``(shard: Dataset, **shared) -> T``.
        dataset: a map-style dataset.
        n_shards: number of shards; ``None`` = the backend's (:meth:`Backend.resolve_n_shards`).
        shared: keyword arguments passed to every call of ``fn``.

    Returns:
        ``[fn(shard_0), fn(shard_1), ...]``, at most ``len(dataset)`` entries.
    """
    backend = current_backend()
    shared = dict(shared or {})
    bounds = shard_bounds(
        len(dataset), n_shards if n_shards is not None else backend.resolve_n_shards()
    )
    if not backend.is_ray:
        if len(bounds) == 1:
            return [fn(dataset, **shared)]
        return [fn(Subset(dataset, range(lo, hi)), **shared) for lo, hi in bounds]
    ray = import_ray()
    global _REMOTE_RUN_SHARD
    if _REMOTE_RUN_SHARD is None:
        _REMOTE_RUN_SHARD = ray.remote(_run_shard)
    task = _REMOTE_RUN_SHARD.options(**backend.task_options())
    fn_ref, data_ref, shared_ref = ray.put(fn), ray.put(dataset), ray.put(shared)
    return ray.get([task.remote(fn_ref, data_ref, lo, hi, shared_ref) for lo, hi in bounds])


def cat_shards(
    parts: list[torch.Tensor] | list[tuple[torch.Tensor, ...]],
    device: torch.device | str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Concatenate the results of :func:`map_shards` along dim 0 (on ``device`` if given).

    ``parts`` is a non-empty list of tensors ``(n_s, ...)`` -> ``(sum n_s, ...)``, or of equal-length
    tuples of tensors -> a tuple of the concatenated positions.
    """
    if not parts:
        raise ValueError("parts is empty: there is nothing to concatenate")
    if isinstance(parts[0], tuple):
        return tuple(cat_shards(list(column), device) for column in zip(*parts))
    out = torch.cat(parts)
    return out.to(device) if device is not None else out
