"""Executors run evaluation cells: the ``Executor`` protocol and the in-process ``LocalExecutor``.

An executor takes cell specs and yields ``(spec, result)`` pairs as cells finish (any order); the
evaluator writes each cell's rows as soon as it arrives. ``evaluation.ray_executor.RayExecutor``
runs each cell as a Ray task.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from dattr_eval.evaluation.cell import CellResult, CellSpec, run_cell

#: executor names accepted by ``Evaluator(executor=...)`` and the CLI's ``--backend``
EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """Runs cells; yields each ``(spec, result)`` when the cell finishes."""

    def run(self, cells: Iterable[CellSpec]) -> Iterator[tuple[CellSpec, CellResult]]: ...


class LocalExecutor:
    """Runs the cells one after the other in this process."""

    def run(self, cells: Iterable[CellSpec]) -> Iterator[tuple[CellSpec, CellResult]]:
        for spec in cells:
            yield spec, run_cell(spec)

    def __repr__(self) -> str:
        return "LocalExecutor()"
