"""``import dattr_eval`` is light: no torch, no optional backend, and it works without numba."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numba", "zennit", "quantus", "ray", "seaborn", "matplotlib", "pandas")


def run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout


def test_import_dattr_eval_imports_no_heavy_package():
    out = run(
        "import sys, dattr_eval; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules)); print(dattr_eval.__version__)"
    )
    assert out.splitlines()[0] == "[]"


def test_explainers_and_metrics_import_without_optional_backends():
    out = run(
        "import sys, dattr_eval; dattr_eval.available_explainers(); dattr_eval.available_metrics(); "
        "print(sorted(m for m in ('numba', 'zennit', 'quantus', 'ray', 'seaborn', 'matplotlib') if m in sys.modules))"
    )
    assert out.strip() == "[]"


def test_the_package_imports_and_evaluates_with_numba_blocked():
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'numba' or name.startswith('numba.'):\n"
        "            raise ImportError('numba is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    out = run(
        blocker + "import dattr_eval\n"
        "from dattr_eval import explainers\n"
        "names = explainers.names()\n"
        "print('dualview' in names, 'numba' in sys.modules)\n"
    )
    assert out.strip() == "True False"
