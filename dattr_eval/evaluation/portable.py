"""Benchmarks that travel: what a worker on another machine needs, carried in memory.

A built benchmark refers to files on the machine that built it: its training checkpoints
(TracIn's ``checkpoints``). :func:`inline_checkpoints` loads them into memory (``torch.load`` with
``weights_only=True``), so a cell shipped through Ray's object store needs no file system shared
with the driver. The retraining cache is per machine (``RetrainingService.relocated``): outputs are
deterministic, so a worker that lacks an entry rebuilds it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import torch

from dattr_eval.benchmarks import Benchmark


class InlineCheckpoint(NamedTuple):
    """A training checkpoint held in memory: its ``state`` dict, epoch, learning rate, origin path."""

    state: dict[str, torch.Tensor]
    epoch: int
    lr: float
    path: str


def inline_checkpoints(bench: Benchmark) -> Benchmark:
    """``bench`` with every checkpoint file loaded into an :class:`InlineCheckpoint`."""
    if not bench.checkpoints or all(isinstance(c, InlineCheckpoint) for c in bench.checkpoints):
        return bench
    return replace(bench, checkpoints=[_inline(c) for c in bench.checkpoints])


def _inline(checkpoint: Any) -> InlineCheckpoint:
    if isinstance(checkpoint, InlineCheckpoint):
        return checkpoint
    path = Path(checkpoint.path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return InlineCheckpoint(state, int(checkpoint.epoch), float(checkpoint.lr), str(path))
