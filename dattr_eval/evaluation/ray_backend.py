"""The evaluator's Ray backend: one Ray task per benchmark × explainer cell.

``Evaluator(backend="ray")`` hands its unfinished cells to :func:`run_cells`. The driver (the
process running the evaluator) builds each benchmark once (``Evaluator._prepare``: the model from
its cache or trained, LDS retraining), puts it into Ray's object store and submits every cell as a
task declaring ``num_cpus`` / ``num_gpus``. A task runs the same ``Evaluator._run_cell`` as the
local backend and returns the cell's rows; the driver takes them as tasks finish (``ray.wait``)
and appends them to the ``ResultStore``, so an interrupted run resumes as a local one does. Ray
reruns a task whose worker process died up to ``max_retries`` times; a task that fails for good
becomes the cell's error rows, and the grid goes on. Warnings raised in a task are raised again
on the driver.

With ``parallel_batches``, :func:`stream_batches` replaces a cell's sequential batch loop: the
fitted explainer (and the randomised-model one) goes into the object store once, contiguous
groups of test batches run as tasks, each returning one metrics state per batch, and the states
are merged (``Metric.merge``) into the cell's metrics in test order, which leaves every metric in
the state the sequential loop leaves.

Scores equal the local backend's run with the same number of torch threads (Ray gives a worker
``num_cpus`` threads; float reductions, and so the last bits of some scores, depend on it).

Profiles: a cell's times and memory are measured in its worker process; with ``parallel_batches``
``explain_s`` is the sum over the batch tasks (compute time, not wall time) and the memory
figures do not include the batch tasks' processes.

Paths a cell reads (training checkpoints for TracIn, the retraining cache) are the driver's: on a
cluster of several machines put ``cache_dir`` on a file system they share.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from dattr_eval.evaluation.evaluator import CellArgs, Evaluator, _Cell, _clone, _error_text
from dattr_eval.evaluation.profiling import MemorySampler, PhaseTimer
from dattr_eval.explainers.base import Explainer
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics.base import Metric
from dattr_eval.parallel import import_ray, shard_bounds, use_backend

ray = import_ray()

#: per batch: (metric states after that batch alone, errors it added, seconds per phase)
BatchOutcome = tuple[dict[str, Metric], dict[str, str], dict[str, float]]


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address`` (``None``: start a local one) unless Ray is initialised here."""
    if not ray.is_initialized():
        ray.init(address=address)


def _worker_copy(evaluator: Evaluator) -> Evaluator:
    """The evaluator as tasks receive it: without the grid's benchmarks, progress bars off."""
    runner = copy.copy(evaluator)
    runner.benchmarks, runner.progress = [], False
    return runner


# ---------------------------------------------------------------------- cells
def _cell(runner: Evaluator, *args: Any) -> tuple[list[dict], list[Warning]]:
    """One cell task: ``runner._run_cell(*args)`` and the warnings it raised.

    With ``shard_passes`` the cell runs inside ``use_backend("ray")`` with the cell's resources.
    """
    sharding = (
        use_backend("ray", num_cpus=runner.num_cpus, num_gpus=runner.num_gpus)
        if runner.shard_passes
        else contextlib.nullcontext()
    )
    with warnings.catch_warnings(record=True) as caught, sharding:
        warnings.simplefilter("always")
        rows = runner._run_cell(*args)
    return rows, [w.message for w in caught]


_CELL_TASK = ray.remote(_cell)


def run_cells(evaluator: Evaluator, cells: Iterable[CellArgs]) -> Iterator[list[dict]]:
    """Run ``cells`` (``_run_cell`` arguments) as Ray tasks; yield each cell's rows when it finishes.

    Each benchmark is put into the object store once (``cells`` yields the same built benchmark
    for all of its cells), the evaluator once for all tasks. When building a benchmark fails on
    the driver, the cells already submitted still finish and are yielded before the error is
    raised (as the local backend has written them by then); tasks still running when the caller
    stops (an interrupt) are cancelled.
    """
    connect(evaluator.ray_address)
    task = _CELL_TASK.options(
        num_cpus=evaluator.num_cpus, num_gpus=evaluator.num_gpus, max_retries=evaluator.max_retries
    )
    runner = ray.put(_worker_copy(evaluator))
    running: dict[Any, CellArgs] = {}
    bench = bench_ref = None
    failure: Exception | None = None
    try:
        try:
            for args in cells:
                if args[0] is not bench:
                    bench, bench_ref = args[0], ray.put(args[0])
                running[task.remote(runner, bench_ref, *args[1:])] = args
                yield from _collect(evaluator, running, wait=False)
        except Exception as exc:  # noqa: BLE001 (building a benchmark failed: first finish the submitted cells)
            failure = exc
        while running:
            yield from _collect(evaluator, running, wait=True)
        if failure is not None:
            raise failure
    finally:
        for ref in running:
            ray.cancel(ref)


def _collect(
    evaluator: Evaluator, running: dict[Any, CellArgs], wait: bool
) -> Iterator[list[dict]]:
    """Rows of the finished tasks in ``running`` (removed from it); ``wait``: block until one finishes."""
    ready, _ = ray.wait(
        list(running), num_returns=1 if wait else len(running), timeout=None if wait else 0
    )
    for ref in ready:
        args = running.pop(ref)
        try:
            rows, caught = ray.get(ref)
        except ray.exceptions.RayError as exc:  # the worker kept dying, or the task could not run
            rows, caught = evaluator._cell_rows(*args, _lost_cell(exc)), []
        for message in caught:
            warnings.warn(message)
        yield rows


def _lost_cell(exc: BaseException) -> _Cell:
    """The outcome of a cell whose task failed outside the evaluator's own error handling."""
    return _Cell(results={}, seconds={}, memory=MemorySampler(), error=_error_text(_cause(exc)))


def _cause(exc: BaseException) -> BaseException:
    """The exception a task raised, unwrapped from Ray's ``RayTaskError``."""
    cause = getattr(exc, "cause", None)
    return (
        cause
        if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, BaseException)
        else exc
    )


# ---------------------------------------------------------------------- batches within a cell
def _batches(
    runner: Evaluator,
    explainer: Explainer,
    randomized: Explainer | None,
    inputs: torch.Tensor,
    truth: GroundTruth,
    metrics: dict[str, Metric],
    errors: dict[str, str],
    starts: list[int],
) -> list[BatchOutcome]:
    """One batch task: for each batch at ``starts``, fresh copies of ``metrics`` updated with it alone."""
    out = []
    for start in starts:
        states, results, timer = (
            {k: _clone(m) for k, m in metrics.items()},
            dict(errors),
            PhaseTimer(runner.device),
        )
        runner._explain_batches(
            inputs, [start], explainer, randomized, truth, states, results, timer
        )
        out.append((states, {k: v for k, v in results.items() if k not in errors}, timer.seconds))
    return out


_BATCHES_TASK = ray.remote(_batches)


def stream_batches(
    runner: Evaluator,
    inputs: torch.Tensor,
    explainer: Explainer,
    randomized: Explainer | None,
    truth: GroundTruth,
    batch_metrics: dict[str, Metric],
    results: dict[str, Any],
    timer: PhaseTimer,
) -> None:
    """``Evaluator._stream`` with the test batches explained by parallel Ray tasks.

    The batches of ``inputs`` ``(n_test, ...)`` are split into contiguous groups, at most the
    cluster's CPUs / ``num_cpus`` of them, one task each. The fitted explainers, the inputs and the
    ground truth go into the object store once. Each batch's metric states are merged into
    ``batch_metrics`` in test order; a batch's errors go into ``results`` (the first in test order
    wins); phase seconds are summed over the tasks. An exception of the explainer is raised here,
    as the sequential loop raises it.
    """
    starts = list(range(0, inputs.shape[0], runner.batch_size))
    n_tasks = max(1, int(ray.cluster_resources().get("CPU", 1) // runner.num_cpus))
    groups = [starts[lo:hi] for lo, hi in shard_bounds(len(starts), n_tasks)]
    task = _BATCHES_TASK.options(num_cpus=runner.num_cpus, max_retries=runner.max_retries)
    shared = [ray.put(value) for value in (runner, explainer, randomized, inputs, truth)]
    refs = [task.remote(*shared, batch_metrics, dict(results), group) for group in groups]
    try:
        outcomes = ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        raise _cause(exc) from None
    for states, errors, seconds in (outcome for group in outcomes for outcome in group):
        for phase, value in seconds.items():
            timer.seconds[phase] = timer.seconds.get(phase, 0.0) + value
        for mlabel, metric in batch_metrics.items():
            if mlabel in results:
                continue
            if mlabel in errors:
                results[mlabel] = errors[mlabel]
            else:
                metric.merge(states[mlabel])
