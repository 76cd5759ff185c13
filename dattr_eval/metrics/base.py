"""The ``Metric`` base class and ``MetricResult`` (Quantus-style classes, torchmetrics-style state).

A metric is pure: it sees attributions and ground truth, never a model or an explainer.
Subclasses declare ``requires`` (``GroundTruth`` fields) and implement ``score_batch``
(per-sample metrics) or override ``_update`` / ``compute`` (global metrics).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from dattr_eval.contract import TopK, check_attributions
from dattr_eval.ground_truth import GroundTruth
from dattr_eval.params import ParamsMixin


class MissingGroundTruthError(ValueError):
    """Raised when a metric's required ground-truth fields are absent."""


@dataclass(frozen=True)
class MetricResult:
    """The outcome of a metric.

    score: the aggregate score (higher is better unless ``higher_is_better`` is False).
    per_sample: ``(n_test,)`` per-test-sample scores where the metric has them, else ``None``.
    extras: further outputs (curves, raw AUC, ...), JSON-friendly where possible.
    """

    name: str
    score: float
    higher_is_better: bool
    settings: dict[str, Any] = field(default_factory=dict)
    per_sample: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class Metric(ParamsMixin):
    """Base class of evaluation criteria: ``update`` per test batch, ``compute`` at the end.

    Class attributes: ``name`` (registry), ``summary``, ``citation``, ``category``,
    ``higher_is_better``, ``requires`` (ground-truth fields), ``needs_attributions`` (False for
    metrics computed from other fields alone, e.g. self-influence), ``accepts_topk``.
    Subclasses must call ``super().__init__()`` after storing their hyperparameters.
    """

    name: ClassVar[str] = "metric"
    summary: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    category: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = ()
    needs_attributions: ClassVar[bool] = True
    accepts_topk: ClassVar[bool] = False
    #: when the metric ranks top-k only, the k the evaluator must keep per test row
    top_k_needed: int | None = None

    def __init__(self) -> None:
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget all accumulated batches."""
        self._per_sample: list[torch.Tensor] = []

    def merge(self, other: Metric) -> Metric:
        """Fold another instance's accumulated state into this one (same settings)."""
        if type(other) is not type(self) or other.get_params() != self.get_params():
            raise ValueError("can only merge metrics of the same class and settings")
        self._per_sample.extend(other._per_sample)
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
        missing = truth.missing(self.requires)
        if missing:
            raise MissingGroundTruthError(
                f"metric {self.name!r} requires ground-truth field(s) {missing} "
                f"(needs {list(self.requires)}); pass them in truth or as keywords"
            )
        if self.needs_attributions:
            attributions = self._check_attributions(attributions, truth)
        self._update(attributions, truth)

    def compute(self) -> MetricResult:
        """The result over all batches seen since the last ``reset``."""
        if not self._per_sample:
            raise RuntimeError(f"metric {self.name!r}: compute() called before any update()")
        per_sample = torch.cat(self._per_sample)
        return self._result(float(per_sample.float().mean()), per_sample=per_sample)

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

    # ------------------------------------------------------------------ subclass hooks
    def score_batch(self, attributions: torch.Tensor | TopK, truth: GroundTruth) -> torch.Tensor:
        """Per-sample scores ``(b,)`` of one batch (per-sample metrics implement this)."""
        raise NotImplementedError

    def _update(self, attributions: torch.Tensor | TopK | None, truth: GroundTruth) -> None:
        self._per_sample.append(self.score_batch(attributions, truth).detach().cpu().float())

    # ------------------------------------------------------------------ helpers
    def _result(
        self, score: float, per_sample: torch.Tensor | None = None, **extras: Any
    ) -> MetricResult:
        return MetricResult(
            name=self.name,
            score=float(score),
            higher_is_better=self.higher_is_better,
            settings=self.get_params(),
            per_sample=per_sample,
            extras=extras,
        )

    def _check_attributions(self, attributions: Any, truth: GroundTruth) -> torch.Tensor | TopK:
        if isinstance(attributions, TopK):
            if not self.accepts_topk:
                raise TypeError(
                    f"metric {self.name!r} needs dense attributions (n_test, n_train), got TopK"
                )
            check_attributions(attributions.values, truth.n_test, None, name="attributions.values")
            return attributions
        return check_attributions(attributions, truth.n_test, truth.n_train)
