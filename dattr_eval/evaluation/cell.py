"""One evaluation cell: a benchmark × explainer, scored by the benchmark's metrics.

:func:`run_cell` is public and pure in the evaluator's sense: a :class:`CellSpec` in (the built
benchmark replicates, the explainer's and the metrics' templates, the device, the retraining
services, the hooks), a :class:`CellResult` out (metric results with bootstrap draws, a profile,
typed errors, hook rows). Nothing is shared or mutated across cells; the templates are cloned.

Per replicate: fit a fresh clone of the explainer; compute the cell-scope ground truth its metrics
need (self-influence); explain the test set in batches of ``batch_size`` (so at most
``batch_size × n_train`` scores live at once, twice with randomised-model attributions) and feed
each batch to the metrics; retraining metrics then get their retrained outputs from the retraining
service; finally the hooks (e.g. XDA scoring) see the fitted explainer. A failure is recorded as a
:class:`CellError` with the phase it happened in and, where it concerns one metric, that metric;
the rest of the cell goes on.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch

from dattr_eval.benchmarks import Benchmark
from dattr_eval.evaluation.profiling import MemoryProfile, MemorySampler, PhaseTimer
from dattr_eval.evaluation.providers import (
    RANDOMIZED,
    SELF_INFLUENCE,
    attach_training_run,
    randomize_model,
)
from dattr_eval.evaluation.retraining import RetrainingService
from dattr_eval.evaluation.uncertainty import ScoreDraws, combine_replicates, result_draws
from dattr_eval.explainers import NotApplicableError
from dattr_eval.explainers.base import Explainer
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.metrics.base import Metric, MetricResult, RetrainingMetric
from dattr_eval.params import clone

#: the phases a cell error can happen in
PHASES = ("memory", "fit", "ground_truth", "explain", "metric", "retrain", "hook", "worker")


@dataclass(frozen=True)
class CellError:
    """A failure inside a cell.

    Attributes:
        phase: one of :data:`PHASES`.
        message: ``"<ExceptionType>: <message>"``.
        metric: the metric label it concerns (``""``: the whole cell, e.g. the fit failed).
        where: ``file:line`` of the innermost frame.
    """

    phase: str
    message: str
    metric: str = ""
    where: str = ""

    @classmethod
    def from_exception(cls, phase: str, exc: BaseException, metric: str = "") -> CellError:
        frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        return cls(phase, f"{type(exc).__name__}: {exc}", metric, where)

    def text(self) -> str:
        """One line for a results row: ``"<phase>: <message>"``."""
        return f"{self.phase}: {self.message}"


class CellHook(Protocol):
    """Extra rows computed from a cell's fitted explainer (e.g. XDA scores); ``name`` labels errors."""

    name: str

    def __call__(self, explainer: Explainer, bench: Benchmark) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class CellSpec:
    """Everything one cell needs.

    Attributes:
        replicates: the built benchmark, once per replicate seed (the first is the base seed).
        explainer_label: the explainer's row label.
        explainer: the unfitted explainer template (cloned per replicate).
        metrics: ``{label: metric template}`` the cell scores (usable on these benchmarks).
        skipped: ``{label: (metric, reason)}`` metrics the benchmark cannot score (rows say why).
        retraining: one retraining service per replicate (``None`` where it cannot retrain).
        device: where the explainer runs.
        batch_size: test points explained at once.
        hooks: extra row producers run with the fitted explainer of the first replicate.
        key: the cell's content key (``evaluation.fingerprint.cell_key``).
        streamer: the batch loop (:func:`stream_batches`, or an executor's parallel version with
            the same signature and result).
        memory_estimate: estimated peak extra bytes of the cell (``None``: unknown).
        memory_limit: bytes a cell may take; a cell whose estimate exceeds it is not run and
            becomes an error row (``None``: no limit).
    """

    replicates: tuple[Benchmark, ...]
    explainer_label: str
    explainer: Explainer
    metrics: Mapping[str, Metric]
    skipped: Mapping[str, tuple[Metric, str]] = field(default_factory=dict)
    retraining: tuple[RetrainingService | None, ...] = ()
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 64
    hooks: tuple[CellHook, ...] = ()
    key: str = ""
    streamer: Callable[..., tuple[list[CellError], str | None]] | None = None
    memory_estimate: int | None = None
    memory_limit: int | None = None

    @property
    def benchmark(self) -> Benchmark:
        """The base replicate."""
        return self.replicates[0]


@dataclass(frozen=True)
class MetricOutcome:
    """A metric's result over the replicates: the combined score with draws, per-replicate results."""

    draws: ScoreDraws
    per_replicate: tuple[MetricResult, ...]


@dataclass(frozen=True)
class CellResult:
    """What :func:`run_cell` returns.

    Attributes:
        outcomes: ``{metric label: MetricOutcome}`` of the metrics that scored.
        errors: every failure (a metric's error names it; a cell-wide one has ``metric=""``).
        not_applicable: ``{metric label: reason}`` (the explainer gives no attributions, e.g. ``loss``).
        seconds: wall-clock seconds per phase, summed over replicates.
        memory: the cell's memory figures (peak RSS, its increase, CUDA peak).
        hook_rows: rows produced by the hooks.
        diagnostics: the fitted explainer's ``diagnostics_`` (first replicate), JSON-friendly.
    """

    outcomes: Mapping[str, MetricOutcome]
    errors: tuple[CellError, ...]
    not_applicable: Mapping[str, str]
    seconds: Mapping[str, float]
    memory: MemoryProfile
    hook_rows: tuple[dict[str, Any], ...] = ()
    diagnostics: Mapping[str, Any] = field(default_factory=dict)

    def error_for(self, metric: str) -> CellError | None:
        """The error that stopped ``metric`` (its own, or a cell-wide one)."""
        for err in self.errors:
            if err.metric == metric:
                return err
        for err in self.errors:
            if not err.metric and err.phase != "hook":
                return err
        return None


# ---------------------------------------------------------------------- the cell
def run_cell(spec: CellSpec) -> CellResult:
    """Evaluate one benchmark × explainer cell over its replicates (see the module docstring).

    A cell whose ``memory_estimate`` exceeds its ``memory_limit`` is not run: its result holds
    one ``phase="memory"`` error, so one greedy explainer cannot take the whole run down.
    """
    if over_memory_limit(spec):
        message = (
            f"MemoryError: estimated peak {spec.memory_estimate / 2**30:.2f} GiB exceeds "
            f"memory_limit={spec.memory_limit / 2**30:.2f} GiB; the cell was not run (lower the "
            "explainer's memory_budget / batch_size, project its gradients, or raise memory_limit)"
        )
        return CellResult({}, (CellError("memory", message),), {}, {}, MemoryProfile())
    timer = PhaseTimer(spec.device)
    errors: list[CellError] = []
    not_applicable: dict[str, str] = {}
    results: dict[str, list[MetricResult]] = {label: [] for label in spec.metrics}
    hook_rows: list[dict[str, Any]] = []
    diagnostics: dict[str, Any] = {}
    with MemorySampler(spec.device) as memory:
        for r, bench in enumerate(spec.replicates):
            service = spec.retraining[r] if r < len(spec.retraining) else None
            replicate = _run_replicate(spec, bench, service, r, timer)
            errors.extend(e for e in replicate.errors if e not in errors)
            not_applicable.update(replicate.not_applicable)
            for label, result in replicate.results.items():
                results[label].append(result)
            if r == 0 and replicate.explainer is not None:
                diagnostics = dict(getattr(replicate.explainer, "diagnostics_", {}) or {})
                hook_rows = _run_hooks(spec, replicate.explainer, bench, timer, errors)
            if any(not e.metric and e.phase != "hook" for e in errors):
                break
    outcomes = {}
    failed = {e.metric for e in errors}
    for label, per_replicate in results.items():
        if label in failed or label in not_applicable or len(per_replicate) != len(spec.replicates):
            continue
        draws = [result_draws(res, spec.benchmark.name, label) for res in per_replicate]
        outcomes[label] = MetricOutcome(
            combine_replicates(draws, spec.benchmark.name, label), tuple(per_replicate)
        )
    return CellResult(
        outcomes=outcomes,
        errors=tuple(errors),
        not_applicable=not_applicable,
        seconds=dict(timer.seconds),
        memory=memory.profile(),
        hook_rows=tuple(hook_rows),
        diagnostics=diagnostics,
    )


def over_memory_limit(spec: CellSpec) -> bool:
    """Whether the cell's memory estimate exceeds its limit (unknown estimates never do)."""
    return (
        spec.memory_estimate is not None
        and spec.memory_limit is not None
        and spec.memory_estimate > spec.memory_limit
    )


@dataclass
class _Replicate:
    """One replicate's outcome (local to this module)."""

    results: dict[str, MetricResult]
    errors: list[CellError]
    not_applicable: dict[str, str]
    explainer: Explainer | None


def _replicate_metric(template: Metric, replicate: int) -> Metric:
    """A fresh metric for replicate ``replicate``: its ``seed`` (if any) offset by the replicate."""
    metric = clone(template)
    if replicate and "seed" in metric.get_params():
        metric.set_params(seed=metric.seed + replicate)
    return metric


def _run_replicate(
    spec: CellSpec, bench: Benchmark, service: RetrainingService | None, r: int, timer: PhaseTimer
) -> _Replicate:
    metrics = {label: _replicate_metric(m, r) for label, m in spec.metrics.items()}
    errors: list[CellError] = []
    na: dict[str, str] = {}
    explainer = attach_training_run(clone(spec.explainer), bench.checkpoints)
    try:
        with timer("fit"):
            explainer.fit(bench.model, bench.train_dataset)
    except Exception as exc:  # noqa: BLE001 (recorded as the cell's error row; the grid goes on)
        return _Replicate({}, [CellError.from_exception("fit", exc)], {}, None)

    def fail(label: str, phase: str, exc: BaseException) -> None:
        errors.append(CellError.from_exception(phase, exc, label))
        metrics.pop(label, None)

    truth = replace(bench.truth, test_positions=torch.arange(bench.n_test))
    needs = {name for m in metrics.values() for name in m.requires}
    if SELF_INFLUENCE in needs:
        try:
            with timer("self_influence"):
                truth = replace(truth, self_influence=explainer.self_influence().detach().cpu())
        except Exception as exc:  # noqa: BLE001
            for label in [k for k, m in metrics.items() if SELF_INFLUENCE in m.requires]:
                fail(label, "ground_truth", exc)
    randomized = None
    if any(RANDOMIZED in m.requires for m in metrics.values()):
        try:
            with timer("randomized"):
                randomized = clone(spec.explainer).fit(
                    randomize_model(bench.model, bench.seed), bench.train_dataset
                )
        except Exception as exc:  # noqa: BLE001
            for label in [k for k, m in metrics.items() if RANDOMIZED in m.requires]:
                fail(label, "ground_truth", exc)

    for label, metric in list(metrics.items()):
        if not metric.needs_attributions:
            try:
                with timer("metrics"):
                    metric.update(None, truth)
            except Exception as exc:  # noqa: BLE001
                fail(label, "metric", exc)

    streamed = {k: m for k, m in metrics.items() if m.needs_attributions}
    if streamed:
        streamer = spec.streamer or stream_batches
        batch_errors, reason = streamer(
            explainer,
            randomized,
            bench.test_inputs,
            truth,
            streamed,
            spec.batch_size,
            spec.device,
            timer,
        )
        if reason is not None:
            na.update(dict.fromkeys(streamed, reason))
            for label in streamed:
                metrics.pop(label)
        for err in batch_errors:
            errors.append(err)
            if err.metric:
                metrics.pop(err.metric, None)
            else:
                for label in streamed:
                    metrics.pop(label, None)

    results: dict[str, MetricResult] = {}
    for label, metric in metrics.items():
        retrained = None
        if isinstance(metric, RetrainingMetric):
            try:
                if service is None:
                    raise ValueError(f"benchmark {bench.name!r} has no retrain recipe")
                with timer("retrain"):
                    retrained = service.outputs(metric.retrain_requests())
            except Exception as exc:  # noqa: BLE001
                errors.append(CellError.from_exception("retrain", exc, label))
                continue
        try:
            with timer("metrics"):
                results[label] = (
                    metric.compute() if retrained is None else metric.compute(retrained)
                )
        except Exception as exc:  # noqa: BLE001
            errors.append(CellError.from_exception("metric", exc, label))
    return _Replicate(results, errors, na, explainer)


def stream_batches(
    explainer: Explainer,
    randomized: Explainer | None,
    inputs: torch.Tensor,
    truth: GroundTruth,
    metrics: Mapping[str, Metric],
    batch_size: int,
    device: torch.device,
    timer: PhaseTimer,
    starts: Sequence[int] | None = None,
) -> tuple[list[CellError], str | None]:
    """Explain ``inputs`` batch by batch and update ``metrics`` with each batch, in test order.

    ``inputs`` ``(n_test, ...)`` and ``truth`` cover the whole test set; the batch at ``start`` is
    rows ``start .. start + batch_size - 1`` (all batches when ``starts`` is ``None``). A metric
    that raises stops being updated (its error is returned); an explainer error ends the stream
    (returned with ``metric=""``). Returns ``(errors, not_applicable_reason)``: the reason is set
    when the explainer gives no per-test attributions (``NotApplicableError``).
    """
    active = dict(metrics)
    errors: list[CellError] = []
    n = inputs.shape[0]
    for start in range(0, n, batch_size) if starts is None else starts:
        stop = min(start + batch_size, n)
        x = inputs[start:stop]
        batch_truth = truth.select(slice(start, stop))
        targets = batch_truth.test_targets.to(device)
        try:
            with timer("explain"):
                attributions = explainer.explain(x, targets)
        except NotApplicableError as exc:
            return errors, str(exc)
        except Exception as exc:  # noqa: BLE001
            errors.append(CellError.from_exception("explain", exc))
            return errors, None
        if randomized is not None and any(RANDOMIZED in m.requires for m in active.values()):
            try:
                with timer("randomized"):
                    batch_truth = replace(
                        batch_truth, randomized_attributions=randomized.explain(x, targets)
                    )
            except Exception as exc:  # noqa: BLE001
                for label in [k for k, m in active.items() if RANDOMIZED in m.requires]:
                    errors.append(CellError.from_exception("ground_truth", exc, label))
                    active.pop(label)
        for label, metric in list(active.items()):
            try:
                with timer("metrics"):
                    metric.update(attributions, batch_truth)
            except Exception as exc:  # noqa: BLE001
                errors.append(CellError.from_exception("metric", exc, label))
                active.pop(label)
        del attributions
    return errors, None


def _run_hooks(
    spec: CellSpec,
    explainer: Explainer,
    bench: Benchmark,
    timer: PhaseTimer,
    errors: list[CellError],
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for hook in spec.hooks:
        try:
            with timer(hook.name):
                rows.extend(hook(explainer, bench))
        except Exception as exc:  # noqa: BLE001 (recorded as the hook's error row)
            errors.append(CellError.from_exception("hook", exc, metric=hook.name))
    return rows


__all__ = [
    "PHASES",
    "CellError",
    "CellHook",
    "CellResult",
    "CellSpec",
    "MetricOutcome",
    "run_cell",
    "stream_batches",
]
