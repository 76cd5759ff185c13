"""The evaluator: the benchmark × explainer grid, composed of a store, an executor and hooks.

``Evaluator(benchmarks, explainers, metrics, out_dir).run()`` builds each benchmark (once per
replicate seed), resolves which of its metrics it can score (``evaluation.providers``), and hands
one :class:`~dattr_eval.evaluation.cell.CellSpec` per unfinished cell to the executor (in this
process, or on Ray). Each finished cell's rows go to the store at once, so an interrupted run
loses nothing already computed and a rerun resumes. A cell is finished when its rows exist under
the same content key (benchmark fingerprint, explainer and metric classes, hyperparameters and code
versions: ``evaluation.fingerprint``); changing any of them recomputes it, ``force=True`` recomputes
everything. Two runs on one output directory split the grid (the store's claims). Each built
benchmark's manifest goes to ``out_dir/fingerprints`` (``evaluation.bundle``), and with a
``baseline`` bundle its stored cells are copied instead of computed, after checking they were
computed under the same conditions.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from dattr_eval import __version__
from dattr_eval.benchmarks import Benchmark, BenchmarkSpec
from dattr_eval.benchmarks import create as create_benchmark
from dattr_eval.benchmarks.card import benchmark_card
from dattr_eval.evaluation.bundle import (
    Bundle,
    StoredCell,
    baseline_cells,
    benchmark_manifest,
    install_models,
    load_bundle,
    write_manifests,
)
from dattr_eval.evaluation.cell import CellHook, CellSpec
from dattr_eval.evaluation.executor import EXECUTORS, Executor, LocalExecutor
from dattr_eval.evaluation.fingerprint import card_key, cell_key, estimator_key
from dattr_eval.evaluation.grid import as_list, resolve_explainers, resolve_metrics
from dattr_eval.evaluation.portable import inline_checkpoints
from dattr_eval.evaluation.providers import RANDOMIZED, missing_ground_truth
from dattr_eval.evaluation.retraining import RetrainingService
from dattr_eval.evaluation.rows import cell_rows
from dattr_eval.evaluation.store import ResultStore, to_json
from dattr_eval.explainers.base import Explainer
from dattr_eval.explainers.memory import estimate_explainer_memory
from dattr_eval.metrics.base import Metric, RetrainingMetric
from dattr_eval.models.cache import default_cache_dir
from dattr_eval.params import clone
from dattr_eval.validation import check_positive, resolve_device


class Evaluator:
    """Runs explainers × benchmarks × metrics and writes a results table.

    Args:
        benchmarks: registry names, ``BenchmarkSpec`` recipes or built ``Benchmark`` objects.
        explainers: registry names, ``"all"``, ``Explainer`` instances (with hyperparameters), or a
            mapping ``{label: name or instance}``; labels name the rows of the results.
        metrics: restrict to / replace each benchmark's metrics: names, instances, ``(name,
            kwargs)`` or ``{label: ...}``; a metric whose ground truth a benchmark lacks is skipped
            there (a ``skipped`` row says why). ``None``: each benchmark's own metrics.
        out_dir: where the results are stored (``results.csv``; reruns resume).
        device: where models and explainers run (``"cuda"``, ``"cpu"``; default CPU).
        batch_size: test samples per explained batch.
        executor: ``"local"`` (default), ``"ray"`` or an executor instance
            (``LocalExecutor()``, ``evaluation.ray_executor.RayExecutor(...)``).
        hooks: extra row producers run on each cell's fitted explainer (e.g.
            ``evaluation.xda_scores.XDAHook()``).
        replicates: rebuild each benchmark with this many seeds (``seed, seed+1, ...``: its
            perturbation, model training, test subset and the metrics' seeds); scores are the mean
            over replicates and intervals come from a two-stage bootstrap over replicates and units.
            Needs registry names or ``BenchmarkSpec`` recipes.
        cache_dir: trained models and retraining outputs (default ``$DATTR_EVAL_CACHE`` or
            ``~/.cache/dattr_eval``).
        data_dir: dataset files for benchmarks that are not bundled (CIFAR-10, MNIST files).
        memory_limit: bytes a cell may take (an int, or a string such as ``"6G"``, ``"500M"``);
            each cell's peak is estimated from the shapes before it runs
            (``explainers.memory.estimate_explainer_memory``) and a cell that would exceed the
            limit becomes an error row. Default: half the machine's RAM. ``None``: no limit.
        force: recompute cells whose rows are already stored (without the store's claims: a
            forced run does not coordinate with another run on the same directory).
        progress: show tqdm progress bars.
        baseline: a results bundle (directory or ``evaluation.bundle.Bundle``) to score against:
            its models are installed into the model cache, and for each benchmark its stored cells
            (every explainer's, restricted to this run's metrics) are copied into ``out_dir``
            instead of computed, so only the cells it lacks run. Raises
            ``evaluation.bundle.BaselineMismatchError`` before a benchmark's cells run when the
            bundle was computed under other conditions (version, data, model state, seed,
            replicates, metric params).

    Attributes after ``run``: ``reused`` (finished cells found in the store), ``computed`` (cells
    run now), ``claimed_elsewhere`` (cells another run on the same directory was computing),
    ``from_baseline`` (cells copied from the baseline).
    """

    def __init__(
        self,
        benchmarks: Iterable[str | BenchmarkSpec | Benchmark] | str | BenchmarkSpec | Benchmark,
        explainers: Iterable[str | Explainer] | Mapping[str, str | Explainer] | str | Explainer,
        metrics: Iterable[str | Metric] | Mapping[str, str | Metric] | None = None,
        out_dir: str | Path = "results",
        *,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        executor: str | Executor = "local",
        hooks: Sequence[CellHook] = (),
        replicates: int = 1,
        cache_dir: str | Path | None = None,
        data_dir: str | Path | None = None,
        memory_limit: int | str | None = "auto",
        force: bool = False,
        progress: bool = True,
        baseline: str | Path | Bundle | None = None,
    ) -> None:
        self.batch_size = check_positive(batch_size, "batch_size", integer=True)
        self.replicates = check_positive(replicates, "replicates", integer=True)
        self.benchmarks = as_list(benchmarks, (str, BenchmarkSpec, Benchmark))
        for b in self.benchmarks:
            if not isinstance(b, (str, BenchmarkSpec, Benchmark)):
                raise TypeError(
                    f"benchmarks must be names, BenchmarkSpec or Benchmark, got {type(b).__name__}"
                )
            if isinstance(b, Benchmark) and self.replicates > 1:
                raise ValueError(
                    f"replicates={replicates} rebuilds benchmarks with other seeds: pass registry "
                    f"names or BenchmarkSpec recipes, not the built benchmark {b.name!r}"
                )
        self.explainers = resolve_explainers(explainers)
        self.metrics = None if metrics is None else resolve_metrics(metrics)
        self.device = resolve_device(device)
        self.executor = _resolve_executor(executor)
        if hasattr(self.executor, "check_device"):
            self.executor.check_device(self.device)
        self.hooks = tuple(hooks)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.data_dir = data_dir
        self.memory_limit = parse_memory_limit(memory_limit)
        self.force = force
        self.progress = progress
        self.store = ResultStore(out_dir)
        self.baseline = None if baseline is None else load_bundle(baseline)
        self.reused = self.computed = self.claimed_elsewhere = self.from_baseline = 0

    # ------------------------------------------------------------------ grid
    def run(self) -> pd.DataFrame:
        """Evaluate the whole grid; returns the results table (latest row per key)."""
        self.reused = self.computed = self.claimed_elsewhere = self.from_baseline = 0
        self.check_data()
        if self.baseline is not None:
            install_models(self.baseline, self.cache_dir / "models")
        n_cells = len(self.benchmarks) * len(self.explainers)
        bar = tqdm(total=n_cells, desc="benchmark × explainer", disable=not self.progress)
        metric_keys: dict[str, dict[str, str]] = {}
        fingerprints: dict[str, str] = {}
        try:
            for spec, result in self.executor.run(self._pending(bar, metric_keys, fingerprints)):
                try:
                    rows, draws = cell_rows(
                        spec, result, metric_keys[spec.key], fingerprints[spec.key]
                    )
                    for err in result.errors:
                        where = f"{err.metric!r} " if err.metric else ""
                        warnings.warn(
                            f"{spec.explainer_label!r} on {spec.benchmark.name!r}: {where}"
                            f"{err.phase} failed: {err.message}",
                            stacklevel=2,
                        )
                    self.store.append(rows, draws)
                    self.computed += 1
                finally:
                    self.store.release(spec.key)
                bar.update(1)
        finally:
            bar.close()
        return self.store.read()

    def check_data(self) -> None:
        """Fail before any cell runs when a requested benchmark's data files are missing."""
        for spec in self.benchmarks:
            recipe = create_benchmark(spec) if isinstance(spec, str) else spec
            if isinstance(recipe, BenchmarkSpec) and hasattr(recipe, "check_data"):
                recipe.check_data(self.data_dir)

    def _pending(
        self, bar: tqdm, metric_keys: dict[str, dict[str, str]], fingerprints: dict[str, str]
    ) -> Iterator[CellSpec]:
        """The unfinished cells in grid order; finished (or claimed elsewhere) ones tick ``bar``."""
        finished = set() if self.force else self.store.finished()
        for bench_spec in self.benchmarks:
            replicates = self._build(bench_spec)
            manifests = [benchmark_manifest(b) for b in replicates]
            write_manifests(self.store.out_dir, manifests)
            prints = [m.fingerprint for m in manifests]
            usable, skipped = self._metric_set(replicates[0])
            services = tuple(self._service(b, usable) for b in replicates)
            every = {**usable, **{m: metric for m, (metric, _) in skipped.items()}}
            keys = {m: estimator_key(m, metric) for m, metric in every.items()}
            if self.baseline is not None:
                grid = {label: cell_key(prints, label, t) for label, t in self.explainers.items()}
                stored = baseline_cells(
                    self.baseline, manifests, every, keys, grid, self.replicates
                )
                if self._adopt(stored) and not self.force:
                    finished = self.store.finished()
            self._write_card(replicates, prints, finished)
            for label, template in self.explainers.items():
                key = cell_key(prints, label, template)
                todo = {m for m, k in keys.items() if (key, k) not in finished}
                if not todo and (key, "") in finished:
                    self.reused += 1
                    bar.update(1)
                    continue
                needed = {keys[m] for m in todo} | {""}
                if not self.force and not self.store.claim(key, needed=needed):
                    self.claimed_elsewhere += 1
                    bar.update(1)
                    continue
                metric_keys[key], fingerprints[key] = keys, prints[0]
                bar.set_postfix_str(f"{replicates[0].name} / {label}")
                yield CellSpec(
                    replicates=replicates,
                    explainer_label=label,
                    explainer=template,
                    metrics={m: metric for m, metric in usable.items() if m in todo or not todo},
                    skipped={m: v for m, v in skipped.items() if m in todo or not todo},
                    retraining=services,
                    device=self.device,
                    batch_size=self.batch_size,
                    hooks=self.hooks,
                    key=key,
                    memory_estimate=self._memory_estimate(template, replicates[0], usable),
                    memory_limit=self.memory_limit,
                )

    def _adopt(self, cells: Sequence[StoredCell]) -> int:
        """Store the baseline's ``cells`` that ``out_dir`` lacks; returns how many."""
        present = set(self.store.read()["cell_key"].astype(str)) if cells else set()
        adopted = 0
        for cell in cells:
            if cell.cell_key not in present:
                self.store.append(cell.rows, cell.draws)
                adopted += 1
        self.from_baseline += adopted
        return adopted

    def _memory_estimate(
        self, template: Explainer, bench: Benchmark, metrics: Mapping[str, Metric]
    ) -> int | None:
        """Estimated peak extra bytes of a cell: the explainer's fit and one test batch, twice when
        a metric needs the explainer refitted on a randomised model (both live at once)."""
        try:
            one = estimate_explainer_memory(
                template, bench.model, bench.train_dataset, bench.n_test, self.batch_size
            )
        except Exception as exc:  # noqa: BLE001 (an estimate that fails is unknown, not fatal)
            warnings.warn(f"memory estimate of {template!r} failed: {exc}", stacklevel=3)
            return None
        if one is None:
            return None
        needs_randomized = any(RANDOMIZED in m.requires for m in metrics.values())
        return one * (2 if needs_randomized else 1)

    def _write_card(
        self, replicates: tuple[Benchmark, ...], prints: list[str], finished: set[tuple[str, str]]
    ) -> None:
        """Store the benchmark's card (``kind="card"`` row) unless it is already stored.

        The card of the first replicate, with every replicate's flags under ``replicate_flags``.
        """
        key = card_key(prints)
        if (key, "") in finished:
            return
        row: dict[str, Any] = {
            "benchmark": replicates[0].name,
            "explainer": "",
            "metric": "",
            "metric_key": "",
            "kind": "card",
            "cell_key": key,
            "benchmark_fingerprint": prints[0],
            "n_train": replicates[0].n_train,
            "n_test": replicates[0].n_test,
            "replicates": len(replicates),
            "seed": replicates[0].seed,
            "version": __version__,
        }
        try:
            cards = [benchmark_card(b) for b in replicates]
        except Exception as exc:  # noqa: BLE001 (a card is a report section; the grid goes on)
            warnings.warn(f"benchmark card of {replicates[0].name!r} failed: {exc}", stacklevel=3)
            row.update(status="error", error=f"{type(exc).__name__}: {exc}")
        else:
            card = {**cards[0], "replicate_flags": [c["flags"] for c in cards]}
            for flag in sorted({f for c in cards for f in c["flags"]}):
                warnings.warn(f"benchmark {replicates[0].name!r}: {flag}", stacklevel=3)
            row.update(status="ok", card=to_json(card))
        self.store.append([row])

    def _build(self, spec: str | BenchmarkSpec | Benchmark) -> tuple[Benchmark, ...]:
        """The benchmark built once per replicate seed, on the device, all under the base name.

        For executors that ship cells to other machines (``executor.portable``), training
        checkpoints are loaded into memory (``evaluation.portable.inline_checkpoints``).
        """
        built = self._build_replicates(spec)
        if getattr(self.executor, "portable", False):
            built = tuple(inline_checkpoints(b) for b in built)
        return built

    def _build_replicates(self, spec: str | BenchmarkSpec | Benchmark) -> tuple[Benchmark, ...]:
        if isinstance(spec, Benchmark):
            return (_on_device(spec, self.device),)
        recipe = create_benchmark(spec) if isinstance(spec, str) else spec
        if self.replicates > 1 and "seed" not in recipe.get_params():
            raise ValueError(
                f"replicates={self.replicates} needs a benchmark with a seed hyperparameter; "
                f"{type(recipe).__name__} has none"
            )
        built = []
        for r in range(self.replicates):
            seeded = recipe if r == 0 else clone(recipe).set_params(seed=recipe.seed + r)
            bench = seeded.build(
                cache_dir=self.cache_dir, data_dir=self.data_dir, device=self.device
            )
            built.append(_on_device(replace(bench, name=recipe.label), self.device))
        return tuple(built)

    def _metric_set(
        self, bench: Benchmark
    ) -> tuple[dict[str, Metric], dict[str, tuple[Metric, str]]]:
        """``(usable, skipped)``: metrics whose ground truth ``bench`` has, and the others with why."""
        metric_set = self.metrics if self.metrics is not None else resolve_metrics(bench.metrics)
        usable, skipped = {}, {}
        for label, metric in metric_set.items():
            missing = missing_ground_truth(metric, bench)
            if missing:
                reason = f"benchmark {bench.name!r} lacks ground truth {missing}"
                warnings.warn(f"metric {label!r} skipped: {reason}", stacklevel=3)
                skipped[label] = (metric, reason)
            else:
                usable[label] = metric
        return usable, skipped

    def _service(self, bench: Benchmark, usable: Mapping[str, Metric]) -> RetrainingService | None:
        if bench.retrain is None or not any(
            isinstance(m, RetrainingMetric) for m in usable.values()
        ):
            return None
        return RetrainingService(
            bench.retrain,
            bench.train_dataset,
            bench.test_inputs,
            bench.truth.test_targets,
            cache_dir=self.cache_dir,
            progress=self.progress,
        )


def parse_memory_limit(limit: int | str | None) -> int | None:
    """Bytes from ``memory_limit``: an int, ``"6G"`` / ``"500M"`` / ``"64K"``, ``"auto"`` (half the
    machine's RAM, read from ``/proc/meminfo``; no limit where that is unknown) or ``None``."""
    if limit is None:
        return None
    if isinstance(limit, str):
        text = limit.strip().upper()
        if text == "AUTO":
            return _half_ram()
        units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
        scale = units.get(text[-1:], 1)
        number = text[:-1] if text[-1:] in units else text
        try:
            limit = int(float(number) * scale)
        except ValueError:
            raise ValueError(
                f"memory_limit must be bytes, a size such as '6G' or '500M', 'auto' or None; got {limit!r}"
            ) from None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ValueError(f"memory_limit must be a positive number of bytes, got {limit!r}")
    return limit


def _half_ram() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        return None
    return None


def _on_device(bench: Benchmark, device: torch.device) -> Benchmark:
    bench.model.to(device).eval()
    return bench


def _resolve_executor(executor: str | Executor) -> Executor:
    if isinstance(executor, str):
        if executor not in EXECUTORS:
            raise ValueError(
                f"executor must be one of {list(EXECUTORS)} or an Executor, got {executor!r}"
            )
        if executor == "ray":
            from dattr_eval.evaluation.ray_executor import RayExecutor

            return RayExecutor()
        return LocalExecutor()
    if not hasattr(executor, "run"):
        raise TypeError(
            f"executor must be 'local', 'ray' or an object with run(cells), got {type(executor).__name__}"
        )
    return executor


def evaluate(
    benchmarks: Any,
    explainers: Any,
    metrics: Any = None,
    out_dir: str | Path = "results",
    **kwargs: Any,
) -> pd.DataFrame:
    """Run ``Evaluator(benchmarks, explainers, metrics, out_dir, **kwargs)``; see ``Evaluator``.

    Returns the results table (one row per benchmark × explainer × metric, plus profile rows);
    it is also in ``out_dir/results.csv``.
    """
    return Evaluator(benchmarks, explainers, metrics, out_dir=out_dir, **kwargs).run()
