"""Results bundles: a results directory that says exactly what its scores were computed on.

A bundle is a directory holding

- the results (``results.csv`` and the store's other files, with the bootstrap draws where the
  store keeps them; ``evaluation.store``);
- ``fingerprints/<benchmark fingerprint>.json``: one manifest per built benchmark
  (:class:`BenchmarkManifest`): its name, seed, sizes, the dattr_eval version and the named parts
  of its fingerprint (``fingerprint.benchmark_parts``: training data, test inputs, each ground
  truth field, model state, checkpoints, retraining recipe, seed);
- optionally ``models/<key>/``: the trained benchmark models as the model cache stores them.

The evaluator writes the manifests of every benchmark it builds, so every results directory is a
bundle; :func:`export_bundle` makes a clean copy to publish (the latest rows, the manifests, the
models).

**Scoring against a stored board** (``Evaluator(..., baseline=DIR)``, ``dattr-eval run --baseline
DIR``): for each benchmark of the grid, :func:`baseline_cells` checks that the bundle's rows were
computed under the same conditions (dattr_eval version, benchmark fingerprint, replicates, metric
keys) and returns the bundle's cells to copy; anything that differs raises
:class:`BaselineMismatchError` naming the benchmark and the field. The bundle's models are first
installed into the run's model cache (:func:`install_models`), so that the built-in benchmarks are
built with the published weights rather than retrained (bit-identical retraining across machines is
not guaranteed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dattr_eval.benchmarks import Benchmark
from dattr_eval.evaluation import store
from dattr_eval.evaluation.fingerprint import benchmark_parts, parts_fingerprint
from dattr_eval.evaluation.leaderboard import Draws
from dattr_eval.evaluation.store import ResultStore, read_bootstrap, read_results
from dattr_eval.metrics.base import Metric
from dattr_eval.models.cache import MANIFEST as MODEL_MANIFEST

#: the folder of a bundle holding one manifest per benchmark fingerprint
FINGERPRINTS_DIR = "fingerprints"
#: the folder of a bundle holding the benchmark models (one model-cache entry each)
MODELS_DIR = "models"
#: what a model-cache key looks like (a plain folder name)
MODEL_KEY = re.compile(r"[0-9A-Za-z_\-]+")
#: fingerprint parts of the ground truth start with this (``fingerprint.benchmark_parts``)
TRUTH_PREFIX = "ground truth "
#: fingerprint part values up to this long are shown in mismatch messages (digests are longer)
SHORT_VALUE = 24


class BaselineMismatchError(ValueError):
    """The baseline bundle was computed under other conditions than this run.

    Attributes:
        benchmark: the benchmark that differs.
        fields: what differs (``"version"``, ``"model state"``, ``"seed"``, ``"metric params"``...).
    """

    def __init__(self, benchmark: str, fields: Sequence[str], detail: str) -> None:
        self.benchmark = benchmark
        self.fields = tuple(fields)
        super().__init__(
            f"benchmark {benchmark!r} differs from the baseline in {detail}. Its stored scores "
            "are not comparable with this run's: compute the baseline again under this run's "
            "conditions, or run without it"
        )


@dataclass(frozen=True)
class BenchmarkManifest:
    """What one built benchmark was: the parts of its fingerprint and where its model came from.

    Attributes:
        benchmark: the benchmark's name (its label in the results).
        fingerprint: ``fingerprint.benchmark_fingerprint`` of the built benchmark.
        parts: ``fingerprint.benchmark_parts``: part name -> digest (or short literal).
        seed, n_train, n_test: the built benchmark's seed and sizes.
        version: the dattr_eval version that built it.
        model_key: the model-cache key of its trained model (``""``: not from the model cache).
        model_dir: that cache entry's folder: absolute in a results directory, relative to the
            bundle in an exported bundle (``""``: none).
    """

    benchmark: str
    fingerprint: str
    parts: dict[str, str]
    seed: int
    n_train: int
    n_test: int
    version: str
    model_key: str = ""
    model_dir: str = ""

    @classmethod
    def from_json(cls, text: str, source: str) -> BenchmarkManifest:
        """Parse a manifest file's text; ``ValueError`` naming ``source`` when it is not one."""
        try:
            data = json.loads(text)
            manifest = cls(**data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{source} is not a benchmark manifest: {exc}") from None
        if not isinstance(manifest.parts, dict) or not manifest.fingerprint:
            raise ValueError(f"{source} is not a benchmark manifest: no fingerprint parts")
        return manifest

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle.

    Attributes:
        path: its directory.
        results: the latest row per key (``store.read_results``).
        draws: the stored bootstrap draws (``store.read_bootstrap``).
        manifests: ``{benchmark fingerprint: BenchmarkManifest}``.
    """

    path: Path
    results: pd.DataFrame
    draws: Draws = field(default_factory=dict)
    manifests: Mapping[str, BenchmarkManifest] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredCell:
    """One benchmark × explainer cell of a bundle: its rows and its metric rows' draws.

    ``draws`` maps a metric label to its ``(n_resamples,)`` draws, as ``ResultStore.append`` takes.
    """

    cell_key: str
    rows: list[dict[str, Any]]
    draws: dict[str, np.ndarray]


# ---------------------------------------------------------------------- manifests
def benchmark_manifest(bench: Benchmark) -> BenchmarkManifest:
    """The manifest of a built benchmark (hashes its data and model once)."""
    from dattr_eval import __version__

    parts = benchmark_parts(bench)
    folder = Path(getattr(bench.checkpoints[0], "path", "")).parent if bench.checkpoints else None
    from_cache = folder is not None and (folder / MODEL_MANIFEST).is_file()
    return BenchmarkManifest(
        benchmark=bench.name,
        fingerprint=parts_fingerprint(parts),
        parts=parts,
        seed=int(bench.seed),
        n_train=int(bench.n_train),
        n_test=int(bench.n_test),
        version=__version__,
        model_key=folder.name if from_cache else "",
        model_dir=str(folder.resolve()) if from_cache else "",
    )


def write_manifests(
    out_dir: str | os.PathLike[str], manifests: Sequence[BenchmarkManifest]
) -> None:
    """Write each manifest to ``out_dir/fingerprints/<fingerprint>.json`` unless it is there.

    One file per fingerprint, written whole (temporary file, then rename), so concurrent runs on
    one directory never lose or tear a manifest.
    """
    folder = Path(out_dir) / FINGERPRINTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for manifest in manifests:
        path = folder / f"{manifest.fingerprint}.json"
        if not path.exists():
            temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temp.write_text(manifest.to_json(), encoding="utf-8")
            os.replace(temp, path)


def read_manifests(path: str | os.PathLike[str]) -> dict[str, BenchmarkManifest]:
    """``{fingerprint: BenchmarkManifest}`` of the bundle at ``path`` (empty when it has none)."""
    folder = Path(path) / FINGERPRINTS_DIR
    manifests = {}
    for file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        manifest = BenchmarkManifest.from_json(file.read_text(encoding="utf-8"), str(file))
        manifests[manifest.fingerprint] = manifest
    return manifests


# ---------------------------------------------------------------------- load / export
def load_bundle(path: str | os.PathLike[str] | Bundle) -> Bundle:
    """Read the bundle (or results directory) at ``path``; a ``Bundle`` is returned as is.

    Raises:
        FileNotFoundError: ``path`` is not a directory.
        ValueError: it holds no results.
    """
    if isinstance(path, Bundle):
        return path
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"bundle {str(root)!r} is not a directory")
    results = read_results(root)
    if results.empty:
        raise ValueError(
            f"bundle {str(root)!r} holds no results (expected {store.RESULTS_FILE} written by "
            "`dattr-eval run` or `export_bundle`)"
        )
    return Bundle(root, results, read_bootstrap(root), read_manifests(root))


def stored_cells(results: pd.DataFrame, draws: Draws) -> list[StoredCell]:
    """The benchmark × explainer cells of ``results`` (rows grouped by benchmark, explainer and
    cell key, benchmark-level rows without an explainer left out), each with its draws."""
    columns = [c for c in store.COLUMNS if c != "schema_version"]
    cells = []
    rows = results[results["explainer"].astype(str) != ""]
    for (bench, explainer, key), group in rows.groupby(
        ["benchmark", "explainer", "cell_key"], sort=False
    ):
        records = [
            {c: v for c, v in r.items() if c in columns and not _missing(v)}
            for r in group.to_dict("records")
        ]
        cell_draws = {
            r["metric"]: np.asarray(draws[(bench, explainer, r["metric"])], dtype=float)
            for r in records
            if r.get("kind") == "metric" and (bench, explainer, r["metric"]) in draws
        }
        cells.append(StoredCell(str(key), records, cell_draws))
    return cells


def export_bundle(
    results_dir: str | os.PathLike[str], dest: str | os.PathLike[str], *, models: bool = True
) -> Path:
    """Copy a results directory into a clean bundle at ``dest`` for publishing.

    Copies the latest row per key with its bootstrap draws, the manifest of every benchmark the
    rows were computed on and, with ``models``, the benchmarks' trained models (where they came
    from the model cache). A benchmark without a manifest (results written before manifests
    existed) is copied with a warning: a baseline run can then tell that it differs, not what.

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        FileExistsError: ``dest`` exists and is not empty.
    """
    source = load_bundle(results_dir)
    target = Path(dest)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"dest {str(target)!r} exists and is not empty")
    result_store = ResultStore(target)
    for cell in stored_cells(source.results, source.draws):
        result_store.append(cell.rows, cell.draws)
    exported = []
    for fingerprint in sorted(set(source.results["benchmark_fingerprint"].astype(str)) - {""}):
        manifest = source.manifests.get(fingerprint)
        if manifest is None:
            names = sorted(
                set(
                    source.results.loc[
                        source.results.benchmark_fingerprint == fingerprint, "benchmark"
                    ]
                )
            )
            warnings.warn(
                f"no fingerprint manifest for benchmark {names} in {str(source.path)!r}: a baseline "
                "run can tell that it differs, not what",
                stacklevel=2,
            )
            continue
        model_dir = ""
        if models and manifest.model_key and Path(manifest.model_dir).is_dir():
            model_dir = f"{MODELS_DIR}/{manifest.model_key}"
            if not (target / model_dir).exists():
                shutil.copytree(manifest.model_dir, target / model_dir)
        exported.append(_replace_model_dir(manifest, model_dir))
    write_manifests(target, exported)
    return target


def install_models(bundle: Bundle, model_cache: str | os.PathLike[str]) -> list[str]:
    """Copy the bundle's benchmark models into the model cache folder ``model_cache`` where it
    lacks them (the built-in benchmarks keep theirs in ``<cache_dir>/models``); entries already
    there are left alone, and only models inside the bundle (``export_bundle``'s ``models/``)
    are copied. Returns the keys installed."""
    installed = []
    root = bundle.path.resolve()
    for manifest in bundle.manifests.values():
        if not manifest.model_key or not manifest.model_dir:
            continue
        source = (root / manifest.model_dir).resolve()
        target = Path(model_cache) / manifest.model_key
        if (
            not source.is_relative_to(root)
            or not MODEL_KEY.fullmatch(manifest.model_key)
            or not (source / MODEL_MANIFEST).is_file()
            or (target / MODEL_MANIFEST).is_file()
        ):
            continue
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.rmtree(temp, ignore_errors=True)
        shutil.copytree(source, temp)
        shutil.rmtree(target, ignore_errors=True)  # an incomplete entry (no manifest)
        os.replace(temp, target)
        installed.append(manifest.model_key)
    return installed


# ---------------------------------------------------------------------- baseline
def baseline_cells(
    bundle: Bundle,
    manifests: Sequence[BenchmarkManifest],
    metrics: Mapping[str, Metric],
    metric_keys: Mapping[str, str],
    grid_keys: Mapping[str, str],
    replicates: int,
) -> list[StoredCell]:
    """The bundle's cells to copy into a run, for one benchmark of the run's grid.

    Args:
        bundle: the baseline.
        manifests: the run's built benchmark, one manifest per replicate (the first: base seed).
        metrics: ``{label: metric}`` the run scores on this benchmark (skipped ones included).
        metric_keys: ``{label: fingerprint.estimator_key}`` of those metrics.
        grid_keys: ``{explainer label: cell key}`` of the run's explainers on this benchmark.
        replicates: the run's number of replicates.

    Returns:
        Every stored cell of this benchmark, restricted to the run's metrics, except the cells of
        a grid explainer whose key differs from the stored one (other hyperparameters or code:
        the run computes those). Empty, with a warning, when the bundle lacks the benchmark.

    Raises:
        BaselineMismatchError: the stored rows differ from the run in dattr_eval version,
            benchmark fingerprint (naming the differing parts: training data, model state, seed,
            ...), replicates, or a shared metric's key (its params, class or code).
    """
    from dattr_eval import __version__

    ours = manifests[0]
    results = bundle.results
    rows = results[(results["benchmark"] == ours.benchmark) & (results["explainer"] != "")]
    if rows.empty:
        warnings.warn(
            f"the baseline {str(bundle.path)!r} has no rows for benchmark {ours.benchmark!r}: "
            "every cell of it is computed",
            stacklevel=3,
        )
        return []
    versions = sorted(set(rows["version"].astype(str)) - {""})
    if versions != [__version__]:
        raise BaselineMismatchError(
            ours.benchmark,
            ["version"],
            f"version: the baseline was computed with dattr_eval {', '.join(versions) or '(unknown)'}, "
            f"this is dattr_eval {__version__}",
        )
    prints = set(rows["benchmark_fingerprint"].astype(str))
    if ours.fingerprint not in prints:
        raise _fingerprint_mismatch(ours, [bundle.manifests.get(p) for p in sorted(prints)])
    rows = rows[rows["benchmark_fingerprint"] == ours.fingerprint]
    stored_replicates = sorted({int(r) for r in rows["replicates"].dropna()})
    if stored_replicates and stored_replicates != [replicates]:
        raise BaselineMismatchError(
            ours.benchmark,
            ["replicates"],
            f"replicates: the baseline has {stored_replicates[0]} replicate(s) per cell, this run {replicates}",
        )
    _check_metrics(ours.benchmark, rows, metrics, metric_keys)
    cells = []
    for cell in stored_cells(rows, bundle.draws):
        label = str(cell.rows[0]["explainer"])
        if label in grid_keys and grid_keys[label] != cell.cell_key:
            continue  # another configuration of a grid explainer: the run computes it
        kept = [r for r in cell.rows if r.get("kind") != "metric" or r["metric"] in metric_keys]
        draws = {m: d for m, d in cell.draws.items() if m in metric_keys}
        cells.append(StoredCell(cell.cell_key, kept, draws))
    return cells


def _check_metrics(
    benchmark: str, rows: pd.DataFrame, metrics: Mapping[str, Metric], keys: Mapping[str, str]
) -> None:
    """Raise when a metric both score under one label was configured differently."""
    from dattr_eval.evaluation.store import to_json

    scored = rows[rows["kind"] == "metric"]
    missing = sorted(set(keys) - set(scored["metric"]))
    if missing:
        warnings.warn(
            f"the baseline has no rows of metric(s) {missing} on benchmark {benchmark!r}: only "
            "this run's explainers will have them",
            stacklevel=4,
        )
    for label, group in scored.groupby("metric"):
        if label not in keys or set(group["metric_key"]) == {keys[label]}:
            continue
        stored = sorted(set(group["metric_params"].astype(str)))
        params = to_json(metrics[label].get_params())
        if stored != [params]:
            raise BaselineMismatchError(
                benchmark,
                ["metric params"],
                f"metric params: metric {label!r} has params {' / '.join(stored)} in the baseline and {params} "
                "in this run",
            )
        raise BaselineMismatchError(
            benchmark,
            ["metric code"],
            f"metric code: metric {label!r} ({type(metrics[label]).__qualname__}) has the same params but "
            "another class or code version than in the baseline",
        )


def _fingerprint_mismatch(
    ours: BenchmarkManifest, stored: list[BenchmarkManifest | None]
) -> BaselineMismatchError:
    known = [m for m in stored if m is not None]
    if not known:
        return BaselineMismatchError(
            ours.benchmark,
            ["fingerprint"],
            "fingerprint: the baseline has no fingerprint manifest for it, so which part differs is unknown",
        )
    theirs = known[-1]
    names = list(dict.fromkeys([*ours.parts, *theirs.parts]))
    differ = [n for n in names if ours.parts.get(n) != theirs.parts.get(n)]
    return BaselineMismatchError(
        ours.benchmark, differ, _describe_parts(differ, theirs.parts, ours.parts)
    )


def _describe_parts(differ: list[str], stored: Mapping[str, str], ours: Mapping[str, str]) -> str:
    """``"test inputs, ground truth (test_labels, ...), seed (baseline 0, this run 1)"``: digests
    are left out, short literal values shown."""
    truth = [n.removeprefix(TRUTH_PREFIX) for n in differ if n.startswith(TRUTH_PREFIX)]
    described = []
    for name in differ:
        if name.startswith(TRUTH_PREFIX):
            if truth:
                described.append(f"ground truth ({', '.join(truth)})")
                truth = []
            continue
        a, b = stored.get(name), ours.get(name)
        short = a is not None and b is not None and max(len(a), len(b)) <= SHORT_VALUE
        described.append(f"{name} (baseline {a}, this run {b})" if short else name)
    return ", ".join(described)


def _replace_model_dir(manifest: BenchmarkManifest, model_dir: str) -> BenchmarkManifest:
    data = asdict(manifest)
    data.update(model_dir=model_dir, model_key=manifest.model_key if model_dir else "")
    return BenchmarkManifest(**data)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


__all__ = [
    "FINGERPRINTS_DIR",
    "MODELS_DIR",
    "BaselineMismatchError",
    "BenchmarkManifest",
    "Bundle",
    "StoredCell",
    "baseline_cells",
    "benchmark_manifest",
    "export_bundle",
    "install_models",
    "load_bundle",
    "read_manifests",
    "stored_cells",
    "write_manifests",
]
