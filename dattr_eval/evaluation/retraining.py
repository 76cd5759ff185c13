"""The retraining service: trains the models retraining metrics ask for, caches their outputs by content.

Metrics never train (``metrics.base.RetrainingMetric``): they name training-index sets and seeds
(``RetrainRequest``); :meth:`RetrainingService.outputs` returns ``(n_requests, n_test)`` outputs
(``log_softmax(f(x_t))[target_t]`` on the benchmark's whole test set) and measures its own time.

Cache key of one output row (SHA-256): the retrainer's fingerprint (architecture, initialisation,
recipe, torch version), the training data (``models.cache.data_fingerprint``), the test inputs and
targets, the training indices and the seed. Changing any of them misses the cache; nothing else
does. Entries live in ``cache_dir/retrain/<key[:2]>/<key>.pt`` (a float32 ``(n_test,)`` tensor,
written atomically, loaded with ``weights_only=True`` and validated: a corrupt or wrong-shaped entry
is rebuilt with a warning). Repeated requests (within a call and across cells) train once.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from dattr_eval.atomic import atomic_write
from dattr_eval.metrics.base import RetrainRequest
from dattr_eval.models.cache import data_fingerprint
from dattr_eval.models.retraining import Retrainer


def tensor_digest(*tensors: torch.Tensor) -> str:
    """SHA-256 of tensors' shapes, dtypes and bytes (CPU, contiguous)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


class RetrainingService:
    """Outputs of models retrained on training subsets, cached by content.

    Args:
        retrainer: how to train (``models.RecipeRetrainer`` for the built-in benchmarks).
        train_dataset: the benchmark's training set (indices refer to it).
        test_inputs: ``(n_test, ...)`` the benchmark's test inputs.
        test_targets: ``(n_test,)`` the explained classes.
        cache_dir: where outputs are cached (``None``: in memory only).
        progress: show a progress bar while training.
        workers: processes that train chunks of requests in parallel, one torch thread each
            (``None``: one per CPU core; 1: in this process). Small models train far faster on one
            thread per process than on several threads in one (threads mostly wait on each other);
            every model is the same whichever process trains it.

    Attributes:
        seconds: total wall-clock seconds spent in :meth:`outputs` (training and cache reads).
        n_trained: models trained by this instance.
    """

    def __init__(
        self,
        retrainer: Retrainer,
        train_dataset: Dataset,
        test_inputs: torch.Tensor,
        test_targets: torch.Tensor,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool = False,
        workers: int | None = None,
    ) -> None:
        if not isinstance(retrainer, Retrainer):
            raise TypeError(
                f"retrainer must be a dattr_eval.models.Retrainer, got {type(retrainer).__name__}"
            )
        self.retrainer = retrainer
        self.train_dataset = train_dataset
        self.test_inputs = test_inputs
        self.test_targets = test_targets
        self.cache_dir = Path(cache_dir) / "retrain" if cache_dir is not None else None
        self.progress = progress
        self.workers = workers
        self.seconds = 0.0
        self.n_trained = 0
        self._memo: dict[str, torch.Tensor] = {}
        self._base_key: str | None = None

    def relocated(self, cache_dir: str | os.PathLike[str] | None) -> RetrainingService:
        """A copy caching under ``cache_dir`` (a worker's own cache on another machine), training in
        its own process (a cluster worker's CPUs are what its task reserved)."""
        copy = RetrainingService(
            self.retrainer,
            self.train_dataset,
            self.test_inputs,
            self.test_targets,
            cache_dir=cache_dir,
            progress=self.progress,
            workers=1,
        )
        copy._base_key = self._base_key
        return copy

    # ------------------------------------------------------------------ keys
    def base_key(self) -> str:
        """The content key of everything but the request (computed once)."""
        if self._base_key is None:
            h = hashlib.sha256()
            h.update(self.retrainer.fingerprint().encode())
            h.update(data_fingerprint(self.train_dataset).encode())
            h.update(tensor_digest(self.test_inputs, self.test_targets).encode())
            self._base_key = h.hexdigest()
        return self._base_key

    def key(self, request: RetrainRequest) -> str:
        """The content key of one request's output row."""
        h = hashlib.sha256(self.base_key().encode())
        h.update(tensor_digest(request.indices).encode())
        h.update(str(int(request.seed)).encode())
        return h.hexdigest()

    # ------------------------------------------------------------------ outputs
    def outputs(self, requests: Sequence[RetrainRequest]) -> torch.Tensor:
        """``(len(requests), n_test)`` float32 outputs, in request order (trained or from the cache)."""
        start = time.perf_counter()
        try:
            keys = [self.key(r) for r in requests]
            missing: dict[str, RetrainRequest] = {}
            for key, request in zip(keys, requests):
                if key not in self._memo and key not in missing:
                    cached = self._load(key)
                    if cached is None:
                        missing[key] = request
                    else:
                        self._memo[key] = cached
            if missing:
                self._train(missing)
            n_test = self.test_inputs.shape[0]
            return torch.stack([self._memo[k] for k in keys]) if keys else torch.zeros(0, n_test)
        finally:
            self.seconds += time.perf_counter() - start

    def _train(self, missing: dict[str, RetrainRequest]) -> None:
        pending = list(missing.items())
        chunk = 32  # results are saved every chunk, so an interruption loses little
        parts = [pending[lo : lo + chunk] for lo in range(0, len(pending), chunk)]
        workers = min(self.workers or os.cpu_count() or 1, len(parts))
        bar = tqdm(total=len(pending), desc="retraining", leave=False, disable=not self.progress)
        jobs = [[(r.indices, int(r.seed)) for _, r in part] for part in parts]
        shared = (self.retrainer, self.train_dataset, self.test_inputs, self.test_targets)
        for part, rows in zip(parts, _train_parts(shared, jobs, workers)):
            for (key, _), row in zip(part, rows):
                row = row.detach().cpu().float().contiguous()
                self._memo[key] = row
                self._save(key, row)
            self.n_trained += len(part)
            bar.update(len(part))
        bar.close()

    # ------------------------------------------------------------------ disk cache
    def entry_path(self, key: str) -> Path | None:
        """Where the output row of ``key`` is cached (``None`` without a cache directory)."""
        return self.cache_dir / key[:2] / f"{key}.pt" if self.cache_dir is not None else None

    def _load(self, key: str) -> torch.Tensor | None:
        path = self.entry_path(key)
        if path is None or not path.is_file():
            return None
        n_test = self.test_inputs.shape[0]
        try:
            row = torch.load(path, map_location="cpu", weights_only=True)
            valid = (
                isinstance(row, torch.Tensor)
                and row.shape == (n_test,)
                and row.is_floating_point()
                and bool(torch.isfinite(row).all())
            )
        except Exception as exc:  # noqa: BLE001 (any unreadable entry is rebuilt)
            valid, row = False, exc
        if not valid:
            warnings.warn(
                f"retraining cache entry {path} is corrupt or has the wrong shape "
                f"(expected a finite float tensor of shape ({n_test},)); it is rebuilt",
                stacklevel=2,
            )
            path.unlink(missing_ok=True)
            return None
        return row

    def _save(self, key: str, row: torch.Tensor) -> None:
        path = self.entry_path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as fh:
            torch.save(row, fh)


# ---------------------------------------------------------------------- training processes
#: the worker process's retrainer, training set and test set (set once per process)
_WORKER_STATE: tuple | None = None


def _init_worker(shared: tuple) -> None:
    global _WORKER_STATE
    torch.set_num_threads(1)
    _WORKER_STATE = shared


def _train_job(job: list[tuple[torch.Tensor, int]]) -> torch.Tensor:
    retrainer, train_dataset, test_inputs, test_targets = _WORKER_STATE
    return retrainer.outputs(train_dataset, job, test_inputs, test_targets)


def _train_parts(shared: tuple, jobs: list, workers: int) -> Iterator[torch.Tensor]:
    """Each job's ``(len(job), n_test)`` outputs, in job order: in this process on one torch thread
    (``workers <= 1``), else in ``workers`` spawned processes of one thread each."""
    if workers <= 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            retrainer, train_dataset, test_inputs, test_targets = shared
            for job in jobs:
                yield retrainer.outputs(train_dataset, job, test_inputs, test_targets)
        finally:
            torch.set_num_threads(threads)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(shared,)
    ) as pool:
        yield from pool.map(_train_job, jobs)
