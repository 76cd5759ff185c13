"""Time and memory profiling of one evaluation cell (explainer × benchmark).

Method (stated in reports):
- Wall-clock seconds with ``time.perf_counter``; on CUDA the device is synchronised before each
  reading, so queued kernels are counted in the phase that launched them.
- Peak CPU memory = the largest resident set size (RSS) of the whole process, sampled every
  ``interval_s`` (default 5 ms) by a background thread reading ``/proc/self/statm`` (Linux), plus a
  reading at start and stop. Where ``/proc`` is missing (macOS, Windows) it falls back to
  ``resource.getrusage(...).ru_maxrss``, the process-lifetime peak. Allocations shorter than the
  sampling interval can be missed; the reported ``rss_increase_mb`` is the peak minus the RSS at
  the start of the cell, so it excludes what earlier cells left allocated.
- On CUDA, ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` at cell start and
  a synchronisation at the end: the peak of tensors allocated by PyTorch's caching allocator.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import torch

_MIB = 1024.0 * 1024.0
_STATM = "/proc/self/statm"


def current_rss_bytes() -> int | None:
    """The process's resident set size in bytes, or ``None`` where ``/proc/self/statm`` is missing."""
    try:
        with open(_STATM, "rb") as fh:
            resident_pages = int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _lifetime_peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if platform.system() == "Darwin" else peak * 1024)  # macOS: bytes, Linux: KiB


def synchronize(device: torch.device | str | None) -> None:
    """Wait for queued CUDA work on ``device`` (no-op on CPU)."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(device)


def device_name(device: torch.device | str | None) -> str:
    """A human-readable name: the GPU model on CUDA, else the CPU model and the thread count torch uses."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu} ({torch.get_num_threads()} torch threads)"


@dataclass(frozen=True)
class MemoryProfile:
    """Memory figures of a finished measurement, in MiB (``nan`` when unavailable); picklable."""

    peak_rss_mb: float = float("nan")
    rss_increase_mb: float = float("nan")
    cuda_peak_mb: float = float("nan")


class MemorySampler:
    """Context manager tracking the peak process RSS (and the CUDA allocator peak) while open.

    Attributes after exit: ``start_rss_mb``, ``peak_rss_mb``, ``rss_increase_mb`` (MiB, ``nan``
    when unavailable), ``cuda_peak_mb`` (MiB, ``nan`` off CUDA).
    """

    def __init__(self, device: torch.device | str | None = None, interval_s: float = 0.005) -> None:
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._peak = 0
        self._thread: threading.Thread | None = None
        self.start_rss_mb = self.peak_rss_mb = self.rss_increase_mb = self.cuda_peak_mb = float(
            "nan"
        )

    @property
    def _cuda(self) -> bool:
        return self.device.type == "cuda" and torch.cuda.is_available()

    def profile(self) -> MemoryProfile:
        """The figures measured (call after the ``with`` block)."""
        return MemoryProfile(self.peak_rss_mb, self.rss_increase_mb, self.cuda_peak_mb)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = current_rss_bytes()
            if rss is not None and rss > self._peak:
                self._peak = rss

    def __enter__(self) -> Self:
        start = current_rss_bytes()
        if start is not None:
            self._peak = start
            self.start_rss_mb = start / _MIB
            self._thread = threading.Thread(target=self._sample, name="dattr-eval-rss", daemon=True)
            self._thread.start()
        if self._cuda:
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._cuda:
            synchronize(self.device)
            self.cuda_peak_mb = torch.cuda.max_memory_allocated(self.device) / _MIB
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            final = current_rss_bytes()
            self._peak = max(self._peak, final or 0)
            self.peak_rss_mb = self._peak / _MIB
            self.rss_increase_mb = self.peak_rss_mb - self.start_rss_mb
        else:
            lifetime = _lifetime_peak_rss_bytes()
            if lifetime is not None:
                self.peak_rss_mb = lifetime / _MIB


class PhaseTimer:
    """Accumulates wall-clock seconds per named phase, synchronising CUDA around each reading.

    Use ``with timer("explain"): ...``; ``timer.seconds["explain"]`` holds the total.
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}
        self._phase: str | None = None
        self._start = 0.0

    def __call__(self, phase: str) -> PhaseTimer:
        self._phase = phase
        return self

    def __enter__(self) -> Self:
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        assert self._phase is not None
        self.seconds[self._phase] = (
            self.seconds.get(self._phase, 0.0) + time.perf_counter() - self._start
        )
        self._phase = None
