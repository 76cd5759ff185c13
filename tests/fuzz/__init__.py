"""Fuzz targets: the public entry points of the contract, validation, explainer base and data
layers, each with hypothesis strategies for valid and invalid inputs and an oracle for valid
outputs (``tests/fuzz/contract.py``, ``explainers.py``, ``data.py``).

Shared by the property tests (``tests/test_properties_*.py``, which require every outcome to be
``ok`` or ``clear``) and by ``benchmarks/fuzz_totals.py`` (which tallies outcomes under the deep
profile). Outcomes of one call:

- ``ok``: a valid input gave an output the oracle accepts;
- ``rejected``: a valid input raised (a wrongly refused input);
- ``clear``: an invalid input raised a documented error type whose message names the argument;
- ``obscure``: an invalid input raised another type, or a message not naming the argument;
- ``silent``: an invalid input returned without error, or a valid input returned a wrong output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch.utils.data import Dataset

from dattr_eval.contract import TopK

#: hypothesis profiles: "ci" (default: derandomised, the same examples every run) and "deep"
PROFILES = {"ci": {"max_examples": 100, "derandomize": True}, "deep": {"max_examples": 1000}}


def register_profiles() -> None:
    """Register the "ci" and "deep" hypothesis profiles (no deadline, no example database)."""
    for name, options in PROFILES.items():
        settings.register_profile(
            name,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            **options,
        )


ERRORS = (ValueError, TypeError)  # AttributionContractError is a ValueError: documented too
OUTCOMES = ("ok", "rejected", "clear", "obscure", "silent")


class Bad(NamedTuple):
    """An invalid case and the word its error message must contain (the argument's name)."""

    case: Any
    argument: str


@dataclass(frozen=True)
class Target:
    """One public entry point under fuzzing.

    ``call(case)`` runs it; ``valid`` draws cases that must succeed and pass ``check(case,
    output)`` (an ``AssertionError`` marks a wrong output); ``invalid`` draws :class:`Bad` cases
    that must raise one of ``errors`` naming the argument. ``weight`` scales the examples per
    test (below 1 for entry points that fit an explainer per example).
    """

    name: str
    group: str
    call: Callable[[Any], Any]
    valid: st.SearchStrategy | None = None
    invalid: st.SearchStrategy | None = None
    check: Callable[[Any, Any], None] | None = None
    errors: tuple[type[BaseException], ...] = ERRORS
    weight: float = 1.0


def outcome(target: Target, case: Any, valid: bool) -> tuple[str, str]:
    """``(outcome, detail)`` of calling ``target`` on a drawn case (see the module docstring)."""
    argument = None
    if not valid:
        case, argument = case
    try:
        out = target.call(case)
    except target.errors as err:
        if valid:
            return "rejected", f"{type(err).__name__}: {err}"
        if argument.lower() in str(err).lower():
            return "clear", ""
        return "obscure", f"{type(err).__name__} without {argument!r}: {err}"
    except Exception as err:  # noqa: BLE001 - classifying any failure is the point
        return ("rejected" if valid else "obscure"), f"{type(err).__name__}: {err}"
    if not valid:
        return (
            "silent",
            f"no error (expected one naming {argument!r}); returned {type(out).__name__}",
        )
    if target.check is not None:
        try:
            target.check(case, out)
        except Exception as err:  # noqa: BLE001 - an oracle failure of any kind is a wrong output
            return "silent", f"wrong output: {type(err).__name__}: {err}"
    return "ok", ""


def examples(target: Target) -> settings:
    """The active profile's settings, with ``max_examples`` scaled by the target's weight."""
    base = settings.default
    return settings(base, max_examples=max(5, int(base.max_examples * target.weight)))


#: values with many exact ties, signed zeros and a wide range
VALUES = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5]),
    st.floats(-1e6, 1e6, allow_nan=False, width=32),
)
NOT_INT = st.one_of(
    st.floats(allow_nan=True), st.booleans(), st.text(max_size=2), st.none(), st.just([1])
)


def matrices(min_rows: int = 0, max_rows: int = 5, min_cols: int = 1, max_cols: int = 8):
    """Float32 ``(n, m)`` tensors with ties."""
    shapes = st.tuples(st.integers(min_rows, max_rows), st.integers(min_cols, max_cols))
    return shapes.flatmap(
        lambda s: hnp.arrays(np.float32, s, elements=VALUES).map(torch.from_numpy)
    )


def reference_topk(values: torch.Tensor, indices: torch.Tensor, k: int) -> TopK:
    """Top ``k`` per row by plain Python sorting on ``(-value, index)``: the independent oracle."""
    rows_v, rows_i = [], []
    for vs, js in zip(values.tolist(), indices.tolist()):
        best = sorted(zip(vs, js), key=lambda p: (-p[0], p[1]))[:k]
        rows_v.append([v for v, _ in best])
        rows_i.append([j for _, j in best])
    width = min(k, values.shape[1])
    return TopK(
        torch.tensor(rows_v, dtype=values.dtype).reshape(-1, width),
        torch.tensor(rows_i, dtype=torch.long).reshape(-1, width),
    )


def assert_same_topk(got: TopK, expected: TopK) -> None:
    assert torch.equal(got.indices, expected.indices), (
        f"indices {got.indices} != {expected.indices}"
    )
    assert torch.equal(got.values, expected.values), f"values {got.values} != {expected.values}"


class Items(Dataset):
    """A dataset returning fixed items (to fuzz item structure)."""

    def __init__(self, item: Any, n: int = 3) -> None:
        self.item, self.n = item, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Any:
        return self.item


def property_tests(targets: list[Target]) -> tuple[Callable[..., None], Callable[..., None]]:
    """The two property tests over ``targets``: valid inputs give ``ok``, invalid give ``clear``.

    Assign them to ``test_*`` names in a test module so pytest collects them.
    """
    ids = [t.name for t in targets]

    @pytest.mark.parametrize("target", targets, ids=ids)
    def valid_inputs_give_correct_outputs(target: Target) -> None:
        @examples(target)
        @given(case=target.valid)
        def run(case: Any) -> None:
            result, detail = outcome(target, case, valid=True)
            assert result == "ok", f"{target.name}: {result}: {detail}"

        run()

    @pytest.mark.parametrize("target", targets, ids=ids)
    def invalid_inputs_give_clear_errors(target: Target) -> None:
        @examples(target)
        @given(bad=target.invalid)
        def run(bad: Bad) -> None:
            result, detail = outcome(target, bad, valid=False)
            assert result == "clear", f"{target.name}: {result}: {detail}"

        run()

    return valid_inputs_give_correct_outputs, invalid_inputs_give_clear_errors
