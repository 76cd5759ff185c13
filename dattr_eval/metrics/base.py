"""The ``Metric`` base class and ``MetricResult``: Quantus-style metadata, torchmetrics-style state.

A metric is pure: it sees attributions and ground truth, never a model, an explainer or a training
loop. A subclass

- declares, as true class-level metadata, what it ``requires`` (``GroundTruth`` fields, or
  ``"retrained_outputs"`` for metrics scored on retrained models, see :class:`RetrainingMetric`),
  its ``category``, ``higher_is_better`` and the ``unit`` its per-unit scores are over;
- declares its state in ``__init__`` with :meth:`Metric.add_state` (``reset`` and ``merge`` are then
  generic, and ``merge`` is exact when single-batch states are folded in test order);
- implements ``score_batch`` (per-test-point metrics: the base class keeps the scores) or
  ``_update`` + ``compute``.

``MetricResult.units`` holds the per-unit scores (or per-unit data) that the evaluator's bootstrap
resamples; ``statistic`` maps a units array to the score, so ``score == statistic(units)``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from dattr_eval.contract import TopK, check_attributions, check_topk
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.params import ParamsMixin

#: state reductions: how ``merge`` combines two instances' values of a declared state
#: - ``"cat"``: a list of per-batch tensors, concatenated in test order;
#: - ``"sum"``: a running sum (``None`` until the first batch);
#: - ``"same"``: a value every batch must agree on (``None`` until the first batch).
REDUCTIONS = ("cat", "sum", "same")

#: the ``requires`` entry of metrics scored on retrained models' outputs
RETRAINED_OUTPUTS = "retrained_outputs"


class MissingGroundTruthError(ValueError):
    """Raised when a metric's required ground-truth fields are absent."""


def nanmean_statistic(units: np.ndarray) -> float:
    """The default statistic: mean of the finite entries of a 1-D units array (NaN if none)."""
    units = np.asarray(units, dtype=np.float64)
    finite = units[np.isfinite(units)]
    return float(finite.mean()) if finite.size else float("nan")


@dataclass(frozen=True)
class MetricResult:
    """The outcome of a metric.

    Attributes:
        name: the metric's registry name.
        score: the aggregate score, ``statistic(units)`` when ``units`` is set.
        higher_is_better: the direction of ``score``.
        settings: the metric's hyperparameters.
        units: ``(n_units, ...)`` float64 array: the per-unit scores (or per-unit data) the bootstrap
            resamples (rows are resampled); ``None`` when the metric has no resampling unit.
        unit: what a row of ``units`` is (``"test point"``, ``"training point"``, ...).
        statistic: maps a units array (resampled rows) to the score; default: NaN-aware mean.
        extras: further outputs (curves, raw AUC, baselines, ...), JSON-friendly where possible.
    """

    name: str
    score: float
    higher_is_better: bool
    settings: dict[str, Any] = field(default_factory=dict)
    units: np.ndarray | None = None
    unit: str = "test point"
    statistic: Callable[[np.ndarray], float] = nanmean_statistic
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def per_sample(self) -> torch.Tensor | None:
        """The per-unit scores as a tensor (1-D units only; ``None`` otherwise)."""
        if self.units is None or self.units.ndim != 1:
            return None
        return torch.from_numpy(self.units)

    @property
    def n_scored(self) -> int:
        """Units with a finite score (all units for multi-column units)."""
        if self.units is None:
            return 0
        if self.units.ndim == 1:
            return int(np.isfinite(self.units).sum())
        return int(self.units.shape[0])


@dataclass(frozen=True)
class StateSpec:
    """A declared metric state: its attribute name, default value and reduction."""

    name: str
    default: Any
    reduce: str


class Metric(ParamsMixin):
    """Base class of evaluation criteria: ``update`` per test batch, ``compute`` at the end.

    Class attributes (metadata, read by listings and reports; always true for the class):
        name: registry name; summary: one line; citation: the paper.
        category: ``"ground-truth"``, ``"retraining"``, ``"sanity"`` or ``"property"``.
        higher_is_better: direction of the score.
        requires: the ``GroundTruth`` fields (and providers) the metric needs.
        needs_attributions: False for metrics computed from other ground truth alone.
        accepts_topk: whether ``update`` takes a streamed ``TopK`` instead of dense attributions.
        unit: what the per-unit scores (``MetricResult.units``) are over.
        sanity_threshold: for ``category == "sanity"``: a score on the good side of it passes.

    Subclasses store their hyperparameters, then call ``super().__init__()``, then declare their
    state with :meth:`add_state`. ``top_k_needed`` is the number of top entries per test row the
    metric reads when it accepts ``TopK`` (``None``: dense rows needed).
    """

    name: ClassVar[str] = "metric"
    summary: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    category: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = ()
    needs_attributions: ClassVar[bool] = True
    accepts_topk: ClassVar[bool] = False
    unit: ClassVar[str] = "test point"
    sanity_threshold: ClassVar[float | None] = None

    def __init__(self) -> None:
        self._states: dict[str, StateSpec] = {}
        self.add_state("n_updates", default=0, reduce="sum")
        self.add_state("per_unit", default=[], reduce="cat")

    @property
    def top_k_needed(self) -> int | None:
        """Top entries per test row this metric reads (``None``: it needs dense rows)."""
        return getattr(self, "top_k", None) if self.accepts_topk else None

    # ------------------------------------------------------------------ declared state
    def add_state(self, name: str, default: Any, reduce: str) -> None:
        """Declare a state attribute ``name`` with its ``default`` value and ``reduce`` rule.

        Args:
            name: attribute name (set to a copy of ``default`` now and at every ``reset``).
            default: ``[]`` for ``"cat"``; ``None`` (or a zero) for ``"sum"``; ``None`` for ``"same"``.
            reduce: one of :data:`REDUCTIONS`.
        """
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {list(REDUCTIONS)}, got {reduce!r}")
        if reduce == "cat" and default != []:
            raise ValueError(f"state {name!r}: a 'cat' state starts as [], got {default!r}")
        self._states[name] = StateSpec(name, default, reduce)
        setattr(self, name, copy.deepcopy(default))

    def reset(self) -> None:
        """Forget all accumulated batches (every declared state back to its default)."""
        for spec in self._states.values():
            setattr(self, spec.name, copy.deepcopy(spec.default))

    def merge(self, other: Metric) -> Metric:
        """Fold ``other``'s accumulated state (later test points) into this one; returns ``self``.

        Exact when single-batch states are folded in test order: ``cat`` states concatenate,
        ``sum`` states add in the order the sequential loop adds, ``same`` states must agree.
        """
        if type(other) is not type(self) or other.get_params() != self.get_params():
            raise ValueError("can only merge metrics of the same class and settings")
        for spec in self._states.values():
            mine, theirs = getattr(self, spec.name), getattr(other, spec.name)
            if spec.reduce == "cat":
                setattr(self, spec.name, [*mine, *theirs])
            elif spec.reduce == "sum":
                if mine is None or theirs is None:
                    setattr(self, spec.name, theirs if mine is None else mine)
                else:
                    if isinstance(mine, torch.Tensor) and mine.shape != theirs.shape:
                        raise ValueError(
                            f"cannot merge state {spec.name!r}: shapes {tuple(mine.shape)} and "
                            f"{tuple(theirs.shape)} differ"
                        )
                    setattr(self, spec.name, mine + theirs)
            else:
                setattr(self, spec.name, same_value(mine, theirs, spec.name))
        return self

    # ------------------------------------------------------------------ API
    def update(
        self,
        attributions: torch.Tensor | TopK | None,
        truth: GroundTruth | dict | None = None,
        **fields: Any,
    ) -> None:
        """Accumulate one test batch.

        Args:
            attributions: ``(b, n_train)`` attributions (or ``TopK`` if ``accepts_topk``); ``None``
                only for metrics with ``needs_attributions = False``.
            truth: this batch's ``GroundTruth`` (test fields sliced to the batch); keyword fields
                add to or override it.
        """
        truth = GroundTruth.coerce(truth, **fields)
        missing = truth.missing(tuple(f for f in self.requires if f != RETRAINED_OUTPUTS))
        if missing:
            raise MissingGroundTruthError(
                f"metric {self.name!r} requires ground-truth field(s) {missing} "
                f"(needs {list(self.requires)}); pass them in truth or as keywords"
            )
        if self.needs_attributions:
            attributions = self._check_attributions(attributions, truth)
        self._update(attributions, truth)
        self.n_updates += 1

    def compute(self) -> MetricResult:
        """The result over all batches seen since the last ``reset``."""
        self.check_updated()
        per_unit = self.concatenated("per_unit")
        if per_unit.size == 0:
            warn_empty(self)
        return self.result(per_unit)

    def __call__(
        self,
        attributions: torch.Tensor | TopK | None,
        truth: GroundTruth | dict | None = None,
        **fields: Any,
    ) -> MetricResult:
        """Score one batch: ``reset``, ``update``, ``compute``."""
        self.reset()
        self.update(attributions, truth, **fields)
        return self.compute()

    #: the score of a units array (resampled rows of ``MetricResult.units``); default NaN-aware
    #: mean. Subclasses with other units override it with a ``staticmethod``.
    statistic = staticmethod(nanmean_statistic)

    # ------------------------------------------------------------------ subclass hooks
    def score_batch(self, attributions: torch.Tensor | TopK, truth: GroundTruth) -> torch.Tensor:
        """Per-test-point scores ``(b,)`` of one batch (per-test-point metrics implement this)."""
        raise NotImplementedError(
            f"metric {type(self).__name__} must implement score_batch(attributions, truth) -> (b,) "
            "scores, or override _update and compute"
        )

    def _update(self, attributions: torch.Tensor | TopK | None, truth: GroundTruth) -> None:
        self.per_unit.append(self.score_batch(attributions, truth).detach().cpu().double())

    # ------------------------------------------------------------------ helpers for subclasses
    def check_updated(self) -> None:
        """Raise ``RuntimeError`` when ``compute`` comes before any ``update``."""
        if not self.n_updates:
            raise RuntimeError(f"metric {self.name!r}: compute() called before any update()")

    def concatenated(self, name: str) -> np.ndarray:
        """A ``cat`` state's batches concatenated along dim 0, as float64 numpy (``(0,)`` if none)."""
        parts = getattr(self, name)
        if not parts:
            return np.zeros(0)
        return torch.cat([torch.as_tensor(p) for p in parts]).double().numpy()

    def result(
        self, units: np.ndarray | None, score: float | None = None, **extras: Any
    ) -> MetricResult:
        """The ``MetricResult`` of ``units`` (score ``= statistic(units)`` unless given)."""
        if units is not None:
            units = np.asarray(units, dtype=np.float64)
        if score is None:
            score = self.statistic(units) if units is not None and len(units) else float("nan")
        return MetricResult(
            name=self.name,
            score=float(score),
            higher_is_better=self.higher_is_better,
            settings=self.get_params(),
            units=units,
            unit=self.unit,
            statistic=self.statistic,
            extras=extras,
        )

    def _check_attributions(self, attributions: Any, truth: GroundTruth) -> torch.Tensor | TopK:
        if isinstance(attributions, TopK):
            if not self.accepts_topk:
                raise TypeError(
                    f"metric {self.name!r} needs dense attributions (n_test, n_train), got TopK"
                )
            return check_topk(attributions, truth.n_test, truth.n_train)
        return check_attributions(attributions, truth.n_test, truth.n_train)


class RetrainingMetric(Metric):
    """A metric scored on the outputs of models retrained on chosen training subsets.

    It never trains: after the batches are in, :meth:`retrain_requests` names the training-index
    sets (and seeds) it needs; the evaluator's retraining service trains them and hands
    :meth:`compute` the outputs ``(n_requests, n_test)``: row ``r`` is the model retrained on
    request ``r``'s indices, evaluated on the benchmark's whole test set in benchmark order
    (``log_softmax(f(x_t))[target_t]`` per test point ``t``). Rows of the batches are placed by
    ``test_positions`` (else batches are taken to arrive in order).
    """

    category = "retraining"
    requires: ClassVar[tuple[str, ...]] = (RETRAINED_OUTPUTS,)

    def __init__(self) -> None:
        super().__init__()
        self.add_state("positions", default=[], reduce="cat")

    def record_positions(self, truth: GroundTruth, b: int) -> torch.Tensor:
        """Store and return this batch's rows ``(b,)`` in the benchmark's test set."""
        if truth.test_positions is not None:
            from dattr_eval.validation import check_labels

            positions = check_labels(truth.test_positions, "test_positions", length=b).cpu()
        else:
            n_seen = sum(int(p.numel()) for p in self.positions)
            positions = torch.arange(n_seen, n_seen + b)
        self.positions.append(positions)
        return positions

    def retrain_requests(self) -> list[RetrainRequest]:
        """The training subsets (and seeds) whose retrained outputs ``compute`` needs."""
        raise NotImplementedError

    def compute(self, retrained: torch.Tensor | None = None) -> MetricResult:  # type: ignore[override]
        """Score from ``retrained`` ``(len(retrain_requests()), n_test)`` outputs."""
        raise NotImplementedError


@dataclass(frozen=True)
class RetrainRequest:
    """One model to retrain: on the training samples ``indices`` (sorted int64), with ``seed``.

    ``seed`` replaces the benchmark recipe's training seed (initialisation and shuffling).
    """

    indices: torch.Tensor
    seed: int = 0

    def __post_init__(self) -> None:
        idx = torch.as_tensor(self.indices).long().cpu()
        object.__setattr__(self, "indices", torch.sort(idx).values)


def check_retrained(retrained: Any, n_requests: int, metric: str) -> torch.Tensor:
    """Validate ``retrained`` outputs ``(n_requests, n_test)`` float, finite; return float64."""
    if not isinstance(retrained, torch.Tensor):
        raise TypeError(
            f"metric {metric!r}: compute(retrained) needs a (n_requests, n_test) float tensor of "
            f"retrained outputs, got {type(retrained).__name__}"
        )
    if retrained.ndim != 2 or retrained.shape[0] != n_requests:
        raise ValueError(
            f"metric {metric!r}: retrained outputs must have shape (n_requests={n_requests}, n_test), "
            f"got {tuple(retrained.shape)}"
        )
    if not bool(torch.isfinite(retrained).all()):
        raise ValueError(f"metric {metric!r}: retrained outputs contain NaN/inf")
    return retrained.detach().cpu().double()


def same_value(mine: Any, theirs: Any, name: str) -> Any:
    """The common value of a ``same`` state (either may be ``None``); error if they differ."""
    if mine is None or theirs is None:
        return theirs if mine is None else mine
    equal = (
        mine.shape == theirs.shape and torch.equal(mine, theirs)
        if isinstance(mine, torch.Tensor)
        else mine == theirs
    )
    if not equal:
        raise ValueError(f"cannot merge: the two states were given different {name}")
    return mine


def warn_empty(metric: Metric) -> None:
    """Warn that ``metric`` scored no unit (its score is NaN)."""
    import warnings

    warnings.warn(
        f"metric {metric.name!r}: no {metric.unit} was scored (an empty batch or a selection that "
        "kept nothing); score is NaN",
        stacklevel=3,
    )
