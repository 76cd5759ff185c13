"""The evaluation grid: every explainer on every benchmark, scored by the benchmark's metrics.

Per cell (benchmark × explainer) the evaluator fits a fresh copy of the explainer, streams the
test set in batches of ``batch_size`` to the metrics (so at most ``batch_size × n_train`` scores
live at once, twice when a randomised-model explanation is needed), adds the ground truth that
needs more than one explanation (self-influence, randomised-model attributions, retrained
models' outputs), profiles time and memory (see ``profiling``), and appends the rows to
``out_dir/results.csv`` when the cell finishes. A rerun with the same ``out_dir`` skips the cells
whose rows are all there; a failing explainer or metric is recorded with its error and the
grid goes on.
"""

from __future__ import annotations

import datetime as _dt
import traceback
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from dattr_eval import explainers as explainer_registry
from dattr_eval import metrics as metric_registry
from dattr_eval.benchmarks import Benchmark, BenchmarkSpec
from dattr_eval.benchmarks import create as create_benchmark
from dattr_eval.evaluation.auxiliary import (
    attach_training_run,
    default_cache_dir,
    lds_ground_truth,
    make_retrain_fn,
    randomize_model,
)
from dattr_eval.evaluation.profiling import MemorySampler, PhaseTimer, device_name
from dattr_eval.evaluation.store import ResultStore, to_json
from dattr_eval.evaluation.xda_scores import XDA_KIND, XDASettings, supports_xda, xda_rows
from dattr_eval.explainers.base import Explainer
from dattr_eval.metrics.base import Metric
from dattr_eval.validation import check_choice, check_positive, resolve_device

#: ground-truth fields the evaluator produces (the rest come from the benchmark)
SELF_INFLUENCE = "self_influence"
RANDOMIZED = "randomized_attributions"
LDS_FIELDS = ("subset_masks", "subset_outputs")
RETRAIN = "retrain_fn"
#: where the cells run (``Evaluator(backend=...)``)
BACKENDS = ("local", "ray")


def _clone(obj: Any) -> Any:
    """A fresh unfitted copy from the hyperparameters (scikit-learn's ``clone`` rule)."""
    return type(obj)(**obj.get_params())


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _Cell:
    """The outcome of one benchmark × explainer cell before it becomes rows."""

    results: dict[str, Any]  # metric label -> MetricResult or error string
    seconds: dict[str, float]
    memory: MemorySampler
    error: str = ""
    where: str = ""
    xda_rows: list[dict] = field(default_factory=list)


#: ``_run_cell``'s arguments: benchmark, explainer label, explainer template, metrics, skipped metrics
CellArgs = tuple[Benchmark, str, Explainer, dict[str, Metric], dict[str, tuple[Metric, str]]]


class Evaluator:
    """Runs explainers × benchmarks × metrics and writes a results table.

    Args:
        benchmarks: registry names, ``BenchmarkSpec`` recipes or built ``Benchmark`` objects.
        explainers: registry names, ``"all"``, ``Explainer`` instances (with hyperparameters), or a
            mapping ``{label: name or instance}``; labels name the rows of the results.
        metrics: restrict to / replace each benchmark's metrics: names, instances, or
            ``{label: name or instance}``; a metric whose ground truth a benchmark lacks is
            skipped there with a warning. ``None``: each benchmark's own metrics.
        out_dir: where ``results.csv`` is written (appended; reruns skip finished cells).
        device: where models and explainers run (``"cuda"``, ``"cpu"``; default CPU).
        batch_size: test samples per explained batch.
        cache_dir: trained models and retraining results (default ``$DATTR_EVAL_CACHE`` or
            ``~/.cache/dattr_eval``).
        data_dir: dataset files for benchmarks that are not bundled (CIFAR-10, MNIST files).
        progress: show tqdm progress bars.
        xda: the optional XDA benchmark (``True``, an ``XDASettings`` or a dict of its fields):
            Quantus scores of the LRP pair heatmaps of feature-kernel explainers (DualView,
            representer points) on image benchmarks, as extra ``kind="xda"`` rows
            (see ``evaluation/xda_scores.py``). Default off.
        backend: ``"local"`` (this process, the default) or ``"ray"``: each benchmark × explainer
            cell runs as one Ray task (see ``evaluation/ray_backend.py``); the driver builds each
            benchmark once and appends the rows to ``out_dir`` as cells finish.
        ray_address: the Ray cluster to connect to when Ray is not initialised in this process
            (``"auto"``, ``"ray://head:10001"``; ``None``: start a local one). An initialised Ray
            is reused.
        num_cpus, num_gpus: resources each Ray task declares (a cell, and each of its batch and
            shard tasks).
        max_retries: how often Ray reruns a task whose worker died.
        parallel_batches: with Ray, explain a cell's test batches as parallel tasks (the fitted
            explainer shared through the object store) and merge the metrics' states in test
            order; the scores equal the sequential ones. CPU tasks only (``num_gpus=0``).
        shard_passes: with Ray, run each cell inside ``parallel.use_backend("ray")``, so
            feature-extraction and per-sample-gradient passes over the training set are sharded.
    """

    def __init__(
        self,
        benchmarks: Iterable[str | BenchmarkSpec | Benchmark] | str | BenchmarkSpec | Benchmark,
        explainers: Iterable[str | Explainer] | Mapping[str, str | Explainer] | str | Explainer,
        metrics: Iterable[str | Metric] | Mapping[str, str | Metric] | None = None,
        out_dir: str | Path = "results",
        device: str | torch.device | None = None,
        batch_size: int = 64,
        cache_dir: str | Path | None = None,
        data_dir: str | Path | None = None,
        progress: bool = True,
        xda: bool | XDASettings | dict | None = False,
        backend: str = "local",
        ray_address: str | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_retries: int = 3,
        parallel_batches: bool = False,
        shard_passes: bool = False,
    ) -> None:
        check_positive(batch_size, "batch_size", integer=True)
        self.backend = check_choice(backend, "backend", BACKENDS)
        self.num_cpus = check_positive(num_cpus, "num_cpus")
        self.num_gpus = check_positive(num_gpus, "num_gpus", allow_zero=True)
        self.max_retries = check_positive(max_retries, "max_retries", integer=True, allow_zero=True)
        for flag, value in (("parallel_batches", parallel_batches), ("shard_passes", shard_passes)):
            if value and self.backend != "ray":
                raise ValueError(f"{flag}=True needs backend='ray', got backend={backend!r}")
        if (
            self.backend == "ray"
            and device is not None
            and torch.device(device).type == "cuda"
            and not num_gpus
        ):
            raise ValueError(
                f"device={device!r} with backend='ray' needs num_gpus > 0 (the GPUs each cell reserves)"
            )
        if parallel_batches and num_gpus:
            raise ValueError(
                "parallel_batches=True needs num_gpus=0: a cell keeps its GPU while it waits "
                "for its batch tasks, which could then never be scheduled"
            )
        self.ray_address = ray_address
        self.parallel_batches = parallel_batches
        self.shard_passes = shard_passes
        self.benchmarks = _as_list(benchmarks, (str, BenchmarkSpec, Benchmark))
        for b in self.benchmarks:
            if not isinstance(b, (str, BenchmarkSpec, Benchmark)):
                raise TypeError(
                    f"benchmarks must be names, BenchmarkSpec or Benchmark, got {type(b).__name__}"
                )
        self.explainers = _resolve_explainers(explainers)
        self.metrics = None if metrics is None else _resolve_metrics(metrics)
        self.out_dir = Path(out_dir)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.data_dir = data_dir
        self.progress = progress
        self.xda = XDASettings.resolve(xda)
        self.store = ResultStore(self.out_dir)

    # ------------------------------------------------------------------ grid
    def run(self) -> pd.DataFrame:
        """Evaluate the whole grid; returns the results table (latest row per key)."""
        bar = tqdm(
            total=len(self.benchmarks) * len(self.explainers),
            desc="benchmark × explainer",
            disable=not self.progress,
        )
        try:
            if self.backend == "ray":
                from dattr_eval.evaluation.ray_backend import run_cells

                finished_cells = run_cells(self, self._pending_cells(bar))
            else:
                finished_cells = (self._run_cell(*cell) for cell in self._pending_cells(bar))
            for rows in finished_cells:
                self.store.append(rows)
                bar.update(1)
        finally:
            bar.close()
        return self.store.read()

    def _pending_cells(self, bar: tqdm) -> Iterator[CellArgs]:
        """The unfinished cells in grid order, as ``_run_cell`` arguments; finished ones tick ``bar``.

        Each benchmark is built (``_prepare``) when its first unfinished cell is due.
        """
        finished = self.store.finished()
        for spec in self.benchmarks:
            name, labels = _benchmark_name(spec), self._declared_metrics(spec)
            pending = {
                label: _pending(finished, name, label, to_json(e.get_params()), labels)
                for label, e in self.explainers.items()
            }
            if all(p is None for p in pending.values()):
                bar.update(len(pending))
                continue
            bench, metric_set, skipped = self._prepare(spec)
            for label, template in self.explainers.items():
                if pending[label] is None:
                    bar.update(1)
                    continue
                wanted = {k: m for k, m in metric_set.items() if k in pending[label]}
                skip = {k: v for k, v in skipped.items() if k in pending[label]}
                bar.set_postfix_str(f"{bench.name} / {label}")
                yield bench, label, template, wanted, skip

    def _declared_metrics(self, spec: str | BenchmarkSpec | Benchmark) -> list[str]:
        """The metric labels a benchmark will be scored with, known before building it."""
        if self.metrics is not None:
            return list(self.metrics)
        if isinstance(spec, str):
            spec = create_benchmark(spec)
        return list(_resolve_metrics(spec.metrics))

    def _prepare(
        self, spec: str | BenchmarkSpec | Benchmark
    ) -> tuple[Benchmark, dict[str, Metric], dict[str, tuple[Metric, str]]]:
        """Build the benchmark on the device, its usable and skipped metrics, and shared ground truth."""
        if isinstance(spec, str):
            spec = create_benchmark(spec)
        if isinstance(spec, BenchmarkSpec):
            bench = spec.build(cache_dir=self.cache_dir, data_dir=self.data_dir, device=self.device)
        else:
            bench = spec
        bench.model.to(self.device).eval()
        bench = replace(
            bench, truth=replace(bench.truth, test_positions=torch.arange(bench.n_test))
        )
        metric_set, skipped = self._metric_set(bench)
        needs = {f for m in metric_set.values() for f in m.requires}
        if needs & {*LDS_FIELDS, RETRAIN}:
            retrain_fn = make_retrain_fn(bench)
            bench = replace(bench, truth=replace(bench.truth, retrain_fn=retrain_fn))
            if needs & set(LDS_FIELDS):
                masks, outputs = lds_ground_truth(bench, retrain_fn, progress=self.progress)
                bench = replace(
                    bench, truth=replace(bench.truth, subset_masks=masks, subset_outputs=outputs)
                )
        return bench, metric_set, skipped

    def _metric_set(
        self, bench: Benchmark
    ) -> tuple[dict[str, Metric], dict[str, tuple[Metric, str]]]:
        """``(usable, skipped)``: metrics whose ground truth this benchmark has, and the others with why."""
        metric_set = self.metrics if self.metrics is not None else _resolve_metrics(bench.metrics)
        produced = {SELF_INFLUENCE, RANDOMIZED}
        if bench.retrain is not None:
            produced |= {*LDS_FIELDS, RETRAIN}
        usable, skipped = {}, {}
        for label, metric in metric_set.items():
            missing = [f for f in bench.truth.missing(metric.requires) if f not in produced]
            if missing:
                reason = f"benchmark {bench.name!r} lacks ground truth {missing}"
                warnings.warn(f"metric {label!r} skipped: {reason}")
                skipped[label] = (metric, reason)
            else:
                usable[label] = metric
        return usable, skipped

    # ------------------------------------------------------------------ one cell
    def _run_cell(
        self,
        bench: Benchmark,
        label: str,
        template: Explainer,
        metric_set: dict[str, Metric],
        skipped: dict[str, tuple[Metric, str]],
    ) -> list[dict]:
        """Evaluate one cell and return its rows (metric rows, skipped rows, one profile row)."""
        return self._cell_rows(
            bench,
            label,
            template,
            metric_set,
            skipped,
            self._evaluate_cell(bench, template, metric_set),
        )

    def _cell_rows(
        self,
        bench: Benchmark,
        label: str,
        template: Explainer,
        metric_set: dict[str, Metric],
        skipped: dict[str, tuple[Metric, str]],
        cell: _Cell,
    ) -> list[dict]:
        """The rows of an evaluated (or lost) cell; warns about the failures it records."""
        if cell.error:
            warnings.warn(
                f"explainer {label!r} failed on benchmark {bench.name!r}: {cell.error}{cell.where}"
            )
        base = {
            "benchmark": bench.name,
            "explainer": label,
            "explainer_class": f"{type(template).__module__}.{type(template).__qualname__}",
            "explainer_params": to_json(template.get_params()),
            "n_train": bench.n_train,
            "n_test": bench.n_test,
            "device": str(self.device),
            "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "version": _version(),
        }
        rows = []
        outcomes = {
            k: (m, cell.results.get(k, cell.error or "not computed")) for k, m in metric_set.items()
        }
        for mlabel, (metric, outcome) in {**outcomes, **skipped}.items():
            row = {
                **base,
                "metric": mlabel,
                "kind": "metric",
                "higher_is_better": metric.higher_is_better,
                "category": metric.category,
                "metric_params": to_json(metric.get_params()),
            }
            if mlabel in skipped:
                row.update(status="skipped", error=outcome)
            elif isinstance(outcome, str):
                row.update(status="error", error=outcome)
                if not cell.error:
                    warnings.warn(
                        f"metric {mlabel!r} failed for {label!r} on {bench.name!r}: {outcome}"
                    )
            else:
                row.update(status="ok", score=outcome.score, **_spread(outcome.per_sample))
            rows.append(row)
        s = cell.seconds
        explain_s = s.get("explain")
        rows.append(
            {
                **base,
                "metric": "",
                "kind": "profile",
                "status": "error" if cell.error else "ok",
                "error": cell.error,
                "fit_s": s.get("fit"),
                "explain_s": explain_s,
                "explain_s_per_sample": explain_s / bench.n_test if explain_s is not None else None,
                "self_influence_s": s.get("self_influence"),
                "randomized_s": s.get("randomized"),
                "metrics_s": s.get("metrics"),
                "cell_s": sum(s.values()),
                "peak_rss_mb": cell.memory.peak_rss_mb,
                "rss_increase_mb": cell.memory.rss_increase_mb,
                "cuda_peak_mb": cell.memory.cuda_peak_mb,
                "device_name": device_name(self.device),
            }
        )
        rows.extend({**base, **row} for row in cell.xda_rows)
        return rows

    def _evaluate_cell(
        self, bench: Benchmark, template: Explainer, metric_set: dict[str, Metric]
    ) -> _Cell:
        metrics = {k: _clone(m) for k, m in metric_set.items()}
        results: dict[str, Any] = {}
        timer = PhaseTimer(self.device)
        with MemorySampler(self.device) as memory:
            cell = _Cell(results, timer.seconds, memory)
            explainer = attach_training_run(_clone(template), bench.checkpoints)
            try:
                with timer("fit"):
                    explainer.fit(bench.model, bench.train_dataset)
            except Exception as exc:  # recorded in the results; the grid goes on
                cell.error, cell.where = _error_text(exc), _location(exc)
                return cell
            truth = bench.truth
            needs = {f for m in metrics.values() for f in m.requires}
            if SELF_INFLUENCE in needs:
                try:
                    with timer("self_influence"):
                        truth = replace(
                            truth, self_influence=explainer.self_influence().detach().cpu()
                        )
                except Exception as exc:
                    self._fail(metrics, results, SELF_INFLUENCE, exc)
            randomized = None
            if RANDOMIZED in needs and _active(metrics, results, RANDOMIZED):
                try:
                    with timer("randomized"):
                        randomized = _clone(template).fit(
                            randomize_model(bench.model, bench.seed), bench.train_dataset
                        )
                except Exception as exc:
                    self._fail(metrics, results, RANDOMIZED, exc)
            global_metrics = {k: m for k, m in metrics.items() if not m.needs_attributions}
            batch_metrics = {k: m for k, m in metrics.items() if m.needs_attributions}
            for mlabel, metric in global_metrics.items():
                if mlabel not in results:
                    self._update(metric, mlabel, None, truth, results, timer)
            try:
                self._stream(bench, explainer, randomized, truth, batch_metrics, results, timer)
            except Exception as exc:
                cell.error, cell.where = _error_text(exc), _location(exc)
                return cell
            for mlabel, metric in metrics.items():
                if mlabel in results:
                    continue
                try:
                    with timer("metrics"):
                        results[mlabel] = metric.compute()
                except Exception as exc:
                    results[mlabel] = _error_text(exc)
            if self.xda is not None and supports_xda(explainer, bench):
                try:
                    with timer("xda"):
                        cell.xda_rows = xda_rows(explainer, bench, self.xda)
                except Exception as exc:  # recorded as one error row; the grid goes on
                    warnings.warn(
                        f"XDA scoring failed on benchmark {bench.name!r}: {_error_text(exc)}"
                    )
                    cell.xda_rows = [
                        {
                            "metric": XDA_KIND,
                            "kind": XDA_KIND,
                            "category": XDA_KIND,
                            "status": "error",
                            "error": _error_text(exc),
                        }
                    ]
        return cell

    def _stream(self, bench, explainer, randomized, truth, batch_metrics, results, timer) -> None:
        """Explain the test set batch by batch and feed each batch to the metrics (as Ray tasks with ``parallel_batches``)."""
        if self.parallel_batches:
            from dattr_eval.evaluation.ray_backend import stream_batches

            stream_batches(
                self, bench.test_inputs, explainer, randomized, truth, batch_metrics, results, timer
            )
            return
        batches = range(0, bench.n_test, self.batch_size)
        bar = tqdm(
            batches,
            desc=f"{bench.name} batches",
            leave=False,
            disable=not self.progress or len(batches) < 2,
        )
        self._explain_batches(
            bench.test_inputs, bar, explainer, randomized, truth, batch_metrics, results, timer
        )

    def _explain_batches(
        self, inputs, starts, explainer, randomized, truth, batch_metrics, results, timer
    ) -> None:
        """Explain the batches of ``inputs`` that begin at ``starts``, in that order, and feed each to the metrics.

        ``inputs`` ``(n_test, ...)`` and ``truth`` cover the whole test set; the batch at ``start``
        is rows ``start .. start + batch_size - 1``. Metrics with an entry in ``results`` (an
        error) are not updated; new errors are added there.
        """
        n = inputs.shape[0]
        for start in starts:
            stop = min(start + self.batch_size, n)
            x = inputs[start:stop]
            batch_truth = truth.select(slice(start, stop))
            targets = batch_truth.test_targets.to(self.device)
            with timer("explain"):
                attributions = explainer.explain(x, targets)
            if randomized is not None:
                try:
                    with timer("randomized"):
                        batch_truth = replace(
                            batch_truth, randomized_attributions=randomized.explain(x, targets)
                        )
                except Exception as exc:
                    randomized = None
                    self._fail(batch_metrics, results, RANDOMIZED, exc)
            for mlabel, metric in batch_metrics.items():
                if mlabel not in results:
                    self._update(metric, mlabel, attributions, batch_truth, results, timer)
            del attributions

    @staticmethod
    def _update(
        metric: Metric, mlabel: str, attributions, truth, results: dict, timer: PhaseTimer
    ) -> None:
        try:
            with timer("metrics"):
                metric.update(attributions, truth)
        except Exception as exc:
            results[mlabel] = _error_text(exc)

    @staticmethod
    def _fail(metrics: dict[str, Metric], results: dict, field: str, exc: Exception) -> None:
        """Record ``exc`` for every metric that requires ``field``."""
        text = f"computing {field} failed: {_error_text(exc)}"
        for mlabel, metric in metrics.items():
            if field in metric.requires and mlabel not in results:
                results[mlabel] = text


def _active(metrics: dict[str, Metric], results: dict, field: str) -> bool:
    return any(field in m.requires and k not in results for k, m in metrics.items())


def _spread(per_sample: torch.Tensor | None) -> dict[str, Any]:
    if per_sample is None or per_sample.numel() == 0:
        return {}
    values = per_sample.float()
    return {
        "score_std": float(values.std()) if values.numel() > 1 else 0.0,
        "n_scored": int(values.numel()),
    }


def _location(exc: BaseException) -> str:
    """`` (at file:line)`` of the innermost frame of ``exc``'s traceback."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _version() -> str:
    from dattr_eval import __version__

    return __version__


def _as_list(value: Any, scalar_types: tuple[type, ...]) -> list[Any]:
    if isinstance(value, scalar_types):
        return [value]
    return list(value)


def _benchmark_name(spec: str | BenchmarkSpec | Benchmark) -> str:
    """The name the built benchmark will carry in the results."""
    if isinstance(spec, str):
        spec = create_benchmark(spec)
    return spec.label if isinstance(spec, BenchmarkSpec) else spec.name


def _pending(
    finished: set[tuple[str, str, str, str]],
    bench: str,
    label: str,
    params: str,
    metrics: list[str],
) -> set[str] | None:
    """Metric labels still to compute in a cell; ``None`` when the cell is finished."""
    todo = {m for m in metrics if (bench, label, params, m) not in finished}
    if not todo and (bench, label, params, "") in finished:
        return None
    return todo or set(metrics)


def builtin_explainers() -> list[str]:
    """Registered explainers implemented in dattr_eval (``"all"``); peer adapters are left out."""
    adapters = f"{explainer_registry.__name__}.adapters"
    return [
        n
        for n in explainer_registry.names()
        if not explainer_registry.get(n).__module__.startswith(adapters)
    ]


def _resolve_explainers(explainers: Any) -> dict[str, Explainer]:
    """``{label: unfitted explainer template}`` from names / instances / ``"all"`` / a mapping."""
    if isinstance(explainers, str) and explainers == "all":
        explainers = builtin_explainers()
    if isinstance(explainers, Mapping):
        items = list(explainers.items())
    else:
        items = [(None, e) for e in _as_list(explainers, (str, Explainer))]
    out: dict[str, Explainer] = {}
    for label, spec in items:
        if isinstance(spec, str):
            instance = explainer_registry.create(spec)
        elif isinstance(spec, Explainer):
            instance = spec
        else:
            raise TypeError(
                f"explainers must be registry names or Explainer instances, got {type(spec).__name__}"
            )
        label = label or (spec if isinstance(spec, str) else type(spec).name)
        if label in out:
            raise ValueError(
                f"explainer label {label!r} appears twice; pass a mapping {{label: explainer}}"
            )
        out[label] = instance
    if not out:
        raise ValueError("explainers is empty")
    return out


def _is_named_spec(spec: Any) -> bool:
    """``(name, kwargs)``."""
    return (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], str)
        and isinstance(spec[1], dict)
    )


def _resolve_metrics(metrics: Any) -> dict[str, Metric]:
    """``{label: metric template}`` from names / instances / ``(name, kwargs)`` / a mapping."""
    if isinstance(metrics, Mapping):
        items = list(metrics.items())
    else:
        single = isinstance(metrics, (str, Metric)) or _is_named_spec(metrics)
        items = [(None, m) for m in ([metrics] if single else list(metrics))]
    out: dict[str, Metric] = {}
    for label, spec in items:
        if isinstance(spec, str):
            instance = metric_registry.create(spec)
        elif _is_named_spec(spec):
            instance = metric_registry.create(spec[0], **spec[1])
        elif isinstance(spec, Metric):
            instance = spec
        else:
            raise TypeError(
                f"metrics must be registry names, Metric instances or (name, kwargs), got {spec!r}"
            )
        label = label or type(instance).name
        if label in out:
            raise ValueError(
                f"metric label {label!r} appears twice; pass a mapping {{label: metric}}"
            )
        out[label] = instance
    return out


def evaluate(
    benchmarks: Any,
    explainers: Any,
    metrics: Any = None,
    out_dir: str | Path = "results",
    device: str | torch.device | None = None,
    batch_size: int = 64,
    **kwargs: Any,
) -> pd.DataFrame:
    """Run ``Evaluator(benchmarks, explainers, metrics, out_dir, device, batch_size, **kwargs)``.

    Returns the results table (one row per benchmark × explainer × metric, plus profile rows);
    it is also in ``out_dir/results.csv``. See ``Evaluator`` for the arguments.
    """
    return Evaluator(
        benchmarks,
        explainers,
        metrics,
        out_dir=out_dir,
        device=device,
        batch_size=batch_size,
        **kwargs,
    ).run()
