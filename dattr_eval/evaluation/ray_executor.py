"""``RayExecutor``: each benchmark × explainer cell runs as one Ray task.

The driver (the process running the evaluator) builds each benchmark and owns the results store;
:meth:`RayExecutor.run` puts every cell spec into the object store and submits it as a task
declaring ``num_cpus`` / ``num_gpus``. A task runs the same :func:`~dattr_eval.evaluation.cell.run_cell`
as the local executor and returns the :class:`CellResult`; the driver yields results as tasks
finish (``ray.wait``). Ray reruns a task whose worker process died up to ``max_retries`` times; a
task that fails for good becomes a cell result holding the error, and the grid goes on. Warnings
raised in a task are raised again on the driver.

- ``shard_passes``: the cell runs inside ``parallel.use_backend("ray")``, so feature-extraction and
  per-sample-gradient passes over the training set are sharded into tasks.
- ``parallel_batches``: the cell's test batches are explained by parallel tasks
  (:func:`parallel_stream`): the fitted explainers go into the object store once, contiguous groups
  of batches run as tasks, each returning one metric state per batch, and the states are merged
  (``Metric.merge``) in test order, which leaves every metric in the state the sequential loop
  leaves. CPU tasks only.

Scores equal the local executor's at the same number of torch threads (Ray gives a worker
``num_cpus`` threads; float reductions, and so the last bits of some scores, depend on it).
Profiles are measured in the cell's worker process; with ``parallel_batches`` ``explain_s`` is the
sum over the batch tasks.

Nothing is shared but Ray: what a cell needs travels with its spec. The built benchmark (model
weights, datasets, ground truth, training checkpoints loaded into memory: ``portable = True`` asks
the evaluator for ``evaluation.portable.inline_checkpoints``) goes into the object store once per
benchmark; the retraining services are relocated to each worker's own cache
(``worker_cache_dir``, default the worker's ``$DATTR_EVAL_CACHE`` or ``~/.cache/dattr_eval``), where a
missing entry is rebuilt deterministically. Workers read no file the driver wrote.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import torch

from dattr_eval.evaluation.cell import CellError, CellResult, CellSpec, run_cell, stream_batches
from dattr_eval.evaluation.profiling import MemoryProfile, PhaseTimer
from dattr_eval.explainers.base import Explainer
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics.base import Metric
from dattr_eval.models.cache import default_cache_dir
from dattr_eval.parallel import import_ray, shard_bounds, use_backend
from dattr_eval.params import clone
from dattr_eval.validation import check_positive


class RayExecutor:
    """Runs each cell as a Ray task (see the module docstring).

    Args:
        address: the Ray cluster to join when Ray is not initialised here (``"auto"``,
            ``"ray://head:10001"``; ``None``: start a local one). An initialised Ray is reused.
        num_cpus, num_gpus: resources each task declares (a cell, and each batch / shard task).
        max_retries: how often Ray reruns a task whose worker died.
        parallel_batches: explain a cell's test batches as parallel tasks (``num_gpus`` must be 0).
        shard_passes: shard training-set passes inside each cell.
        worker_cache_dir: the retraining cache each worker uses (``None``: the worker's default
            cache directory, resolved on the worker's machine).
    """

    #: the evaluator inlines the benchmarks' checkpoint files before handing cells over
    portable = True

    def __init__(
        self,
        address: str | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_retries: int = 3,
        parallel_batches: bool = False,
        shard_passes: bool = False,
        worker_cache_dir: str | None = None,
    ) -> None:
        self.address = address
        self.num_cpus = check_positive(num_cpus, "num_cpus")
        self.num_gpus = check_positive(num_gpus, "num_gpus", allow_zero=True)
        self.max_retries = check_positive(max_retries, "max_retries", integer=True, allow_zero=True)
        if parallel_batches and num_gpus:
            raise ValueError(
                "parallel_batches=True needs num_gpus=0: a cell keeps its GPU while it waits for "
                "its batch tasks, which could then never be scheduled"
            )
        self.parallel_batches = parallel_batches
        self.shard_passes = shard_passes
        self.worker_cache_dir = worker_cache_dir

    def __repr__(self) -> str:
        return (
            f"RayExecutor(address={self.address!r}, num_cpus={self.num_cpus}, num_gpus={self.num_gpus}, "
            f"max_retries={self.max_retries}, parallel_batches={self.parallel_batches}, "
            f"shard_passes={self.shard_passes})"
        )

    def check_device(self, device: torch.device) -> None:
        """Refuse CUDA cells without GPUs to reserve."""
        if device.type == "cuda" and not self.num_gpus:
            raise ValueError(
                f"device={str(device)!r} with the Ray executor needs num_gpus > 0 (the GPUs each cell reserves)"
            )

    def run(self, cells: Iterable[CellSpec]) -> Iterator[tuple[CellSpec, CellResult]]:
        """Submit ``cells`` as tasks; yield ``(spec, result)`` as each finishes.

        When producing a spec fails on the driver (building a benchmark), the cells already
        submitted still finish and are yielded before the error is raised; tasks still running
        when the caller stops (an interrupt) are cancelled.
        """
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=self.address)
        task = ray.remote(_cell_task).options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=self.max_retries
        )
        running: dict[Any, CellSpec] = {}
        shared: dict[int, Any] = {}  # id(replicates) -> object ref: each benchmark is put once
        failure: Exception | None = None
        try:
            try:
                for spec in cells:
                    streamer = (
                        _ParallelStreamer(self.num_cpus, self.max_retries)
                        if self.parallel_batches
                        else None
                    )
                    if id(spec.replicates) not in shared:
                        shared = {id(spec.replicates): ray.put(spec.replicates)}
                    ref = task.remote(
                        replace(spec, replicates=(), streamer=streamer),
                        shared[id(spec.replicates)],
                        self.shard_passes,
                        self.num_cpus,
                        self.num_gpus,
                        self.worker_cache_dir,
                    )
                    running[ref] = spec
                    yield from _collect(ray, running, wait=False)
            except Exception as exc:  # noqa: BLE001 (finish the submitted cells first)
                failure = exc
            while running:
                yield from _collect(ray, running, wait=True)
            if failure is not None:
                raise failure
        finally:
            for ref in running:
                ray.cancel(ref)


def _cell_task(
    spec: CellSpec,
    replicates: tuple[Any, ...],
    shard_passes: bool,
    num_cpus: float,
    num_gpus: float,
    worker_cache_dir: str | None,
) -> tuple[CellResult, list[Warning]]:
    """One cell task: ``run_cell(spec)`` on this worker's retraining cache, and the warnings it raised."""
    cache = worker_cache_dir if worker_cache_dir is not None else default_cache_dir()
    services = tuple(s.relocated(cache) if s is not None else None for s in spec.retraining)
    spec = replace(spec, replicates=replicates, retraining=services)
    sharding = (
        use_backend("ray", num_cpus=num_cpus, num_gpus=num_gpus)
        if shard_passes
        else contextlib.nullcontext()
    )
    with warnings.catch_warnings(record=True) as caught, sharding:
        warnings.simplefilter("always")
        result = run_cell(spec)
    return result, [w.message for w in caught]


def _collect(
    ray: Any, running: dict[Any, CellSpec], wait: bool
) -> Iterator[tuple[CellSpec, CellResult]]:
    """Results of the finished tasks in ``running`` (removed from it); ``wait``: block for one."""
    ready, _ = ray.wait(
        list(running), num_returns=1 if wait else len(running), timeout=None if wait else 0
    )
    for ref in ready:
        spec = running.pop(ref)
        try:
            result, caught = ray.get(ref)
        except ray.exceptions.RayError as exc:  # the worker kept dying, or the task could not run
            result, caught = lost_cell(_cause(ray, exc)), []
        for message in caught:
            warnings.warn(message, stacklevel=2)
        yield spec, result


def lost_cell(exc: BaseException) -> CellResult:
    """The result of a cell whose task failed outside ``run_cell``'s own error handling."""
    return CellResult(
        outcomes={},
        errors=(CellError.from_exception("worker", exc),),
        not_applicable={},
        seconds={},
        memory=MemoryProfile(),
    )


def _cause(ray: Any, exc: BaseException) -> BaseException:
    """The exception a task raised, unwrapped from Ray's ``RayTaskError``."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
        return cause
    return exc


# ---------------------------------------------------------------------- batches within a cell
#: per batch: (metric states after that batch alone, errors it added, seconds per phase)
BatchOutcome = tuple[dict[str, Metric], list[CellError], dict[str, float]]


def _batch_group(
    explainer: Explainer,
    randomized: Explainer | None,
    inputs: torch.Tensor,
    truth: GroundTruth,
    metrics: Mapping[str, Metric],
    batch_size: int,
    device: torch.device,
    starts: list[int],
) -> list[BatchOutcome]:
    """One batch task: for each batch at ``starts``, fresh copies of ``metrics`` updated with it alone."""
    out = []
    for start in starts:
        states = {k: clone(m) for k, m in metrics.items()}
        timer = PhaseTimer(device)
        errors, reason = stream_batches(
            explainer, randomized, inputs, truth, states, batch_size, device, timer, starts=[start]
        )
        if reason is not None:
            raise _NotApplicable(reason)
        out.append((states, errors, timer.seconds))
    return out


class _NotApplicable(Exception):
    """Carries a not-applicable reason out of a batch task (local to this module)."""


class _ParallelStreamer:
    """``cell.stream_batches`` with the test batches explained by parallel Ray tasks.

    The batches are split into contiguous groups, at most the cluster's CPUs / ``num_cpus`` of
    them, one task each. The fitted explainers, the inputs and the ground truth go into the object
    store once. Each batch's metric states are merged into ``metrics`` in test order; a metric
    whose batch failed stops there (its error returned); phase seconds are summed over the tasks.
    """

    def __init__(self, num_cpus: float, max_retries: int) -> None:
        self.num_cpus = num_cpus
        self.max_retries = max_retries

    def __call__(
        self,
        explainer: Explainer,
        randomized: Explainer | None,
        inputs: torch.Tensor,
        truth: GroundTruth,
        metrics: dict[str, Metric],
        batch_size: int,
        device: torch.device,
        timer: PhaseTimer,
        starts: list[int] | None = None,
    ) -> tuple[list[CellError], str | None]:
        ray = import_ray()
        starts = list(range(0, inputs.shape[0], batch_size)) if starts is None else list(starts)
        n_tasks = max(1, int(ray.cluster_resources().get("CPU", 1) // self.num_cpus))
        groups = [starts[lo:hi] for lo, hi in shard_bounds(len(starts), n_tasks)]
        task = ray.remote(_batch_group).options(
            num_cpus=self.num_cpus, max_retries=self.max_retries
        )
        shared = [ray.put(v) for v in (explainer, randomized, inputs, truth)]
        refs = [
            task.remote(
                *shared, {k: clone(m) for k, m in metrics.items()}, batch_size, device, group
            )
            for group in groups
        ]
        try:
            outcomes = ray.get(refs)
        except ray.exceptions.RayTaskError as exc:
            cause = _cause(ray, exc)
            if isinstance(cause, _NotApplicable):
                return [], str(cause)
            raise cause from None
        errors: list[CellError] = []
        for states, batch_errors, seconds in (o for group in outcomes for o in group):
            for phase, value in seconds.items():
                timer.seconds[phase] = timer.seconds.get(phase, 0.0) + value
            stopped = {e.metric for e in errors}
            for err in batch_errors:
                if err.metric not in stopped:
                    errors.append(err)
            if any(not e.metric for e in batch_errors):
                return errors, None
            for label, metric in metrics.items():
                if label not in {e.metric for e in errors}:
                    metric.merge(states[label])
        return errors, None
