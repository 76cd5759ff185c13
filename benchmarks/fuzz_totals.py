"""Fuzz totals: how every fuzzed entry point answers generated valid and invalid inputs.

Run from the repository root (by hand; minutes)::

    python benchmarks/fuzz_totals.py [--examples 1000]

Runs each target of ``tests/fuzz`` (the contract, validation helpers, explainer base and data
layers) under the ``deep`` hypothesis profile (fresh random examples, ``--examples`` per direction,
scaled by the target's weight) and tallies each call's outcome (``tests.fuzz.outcome``): valid
inputs ``ok`` or wrongly ``rejected``; invalid inputs a ``clear`` error (documented type, message
naming the argument), an ``obscure`` one, or ``silent`` (no error; for valid inputs: a wrong
output). Nothing is asserted: the table is the result. Rewrites the "Fuzz totals" section of
``benchmarks/results/reliability.md`` and keeps its other sections.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import hypothesis
import torch
from hypothesis import given, settings
from report_sections import replace_section

from tests.fuzz import OUTCOMES, Target, outcome, register_profiles
from tests.fuzz.contract import CONTRACT, VALIDATION
from tests.fuzz.data import DATA
from tests.fuzz.explainers import EXPLAINERS

RESULTS = ROOT / "benchmarks" / "results" / "reliability.md"
SECTION = "## Fuzz totals"


PROFILE_NOTE = (
    "- profile `deep` (fresh random examples each run); per entry point, valid and invalid inputs "
    "each get {examples} examples (x0.5 for those fitting an explainer per example). Outcomes: "
    "valid → `ok` (the oracle accepts the output) or `rejected`; invalid → `clear` (ValueError / "
    "TypeError / AttributionContractError, or UnpicklingError for a forbidden pickle global, "
    "naming the argument or file), `obscure` (any other error, or a message not naming it) or "
    "`silent` (no error); `silent` also counts valid inputs whose output the oracle refused."
)


def tally(target: Target, examples: int) -> tuple[Counter, dict[str, str]]:
    """Outcome counts of ``target`` over its valid and invalid strategies, and one example each."""
    counts: Counter = Counter()
    first: dict[str, str] = {}
    n = max(5, int(examples * target.weight))

    def record(case: object, valid: bool) -> None:
        result, detail = outcome(target, case, valid)
        counts[result] += 1
        if result not in ("ok", "clear"):
            first.setdefault(result, f"{detail} (case: {case!r})"[:400])

    deep = settings(settings.get_profile("deep"), max_examples=n)
    if target.valid is not None:
        deep(given(case=target.valid)(lambda case: record(case, True)))()
    if target.invalid is not None:
        deep(given(case=target.invalid)(lambda case: record(case, False)))()
    return counts, first


def section(rows: list[tuple[str, Counter]], notes: list[str], meta: dict[str, str]) -> str:
    total: Counter = sum((c for _, c in rows), Counter())
    lines = [
        SECTION,
        "",
        (
            f"- date: {meta['date']}; machine: {meta['machine']}; torch {torch.__version__}, "
            f"hypothesis {hypothesis.__version__}"
        ),
        f"- command: `{meta['command']}` ({meta['seconds']:.0f} s)",
        f"- load average (1, 5, 15 min) before: {meta['load_before']}; after: {meta['load_after']}",
        PROFILE_NOTE.format(examples=meta["examples"]),
        "",
        "| entry point | tried | " + " | ".join(OUTCOMES) + " |",
        "|---|---|" + "---|" * len(OUTCOMES),
    ]
    for name, counts in [*rows, ("**total**", total)]:
        cells = " | ".join(str(counts[o]) for o in OUTCOMES)
        lines.append(f"| {name} | {sum(counts.values())} | {cells} |")
    if notes:
        lines += ["", "First example of each non-`ok`, non-`clear` outcome:", ""]
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines).rstrip() + "\n\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="examples per direction")
    args = parser.parse_args()
    register_profiles()
    load_before = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    start = time.time()
    rows, notes = [], []
    for target in CONTRACT + VALIDATION + EXPLAINERS + DATA:
        t0 = time.time()
        counts, first = tally(target, args.examples)
        rows.append((f"`{target.name}`", counts))
        notes += [f"`{target.name}` {kind}: {text}" for kind, text in first.items()]
        print(f"{target.name}: {dict(counts)} ({time.time() - t0:.0f} s)", flush=True)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), "
        f"{torch.get_num_threads()} torch threads",
        "command": "python benchmarks/fuzz_totals.py" + " ".join([""] + sys.argv[1:]),
        "seconds": time.time() - start,
        "load_before": load_before,
        "load_after": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
        "examples": str(args.examples),
    }
    replace_section(RESULTS, SECTION, section(rows, notes, meta))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
