"""Hypothesis profiles for the property tests (``tests/test_properties_*.py``).

- ``ci`` (default): 100 examples per property test (fewer for targets that fit an explainer per
  example), derandomised so CI never flakes, no example database: about 4,500 examples per run.
- ``deep``: 1,000 examples per test, fresh random examples each run; select it by hand with
  ``DATTR_HYPOTHESIS_PROFILE=deep`` (``benchmarks/fuzz_totals.py`` uses it for the tallies).
"""

from __future__ import annotations

import os

from hypothesis import settings

from tests.fuzz import register_profiles

register_profiles()
settings.load_profile(os.environ.get("DATTR_HYPOTHESIS_PROFILE", "ci"))
