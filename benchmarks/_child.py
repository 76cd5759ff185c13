"""Run one benchmark case in a fresh subprocess and read the JSON line it prints last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_child(cmd: list[str], timeout: float) -> dict:
    """``{"status": "ok", **result}`` from the child's last stdout line, or a timeout / error status."""
    try:
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout (> {timeout:.0f} s)"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"status": f"error: {last[:150]}"}
    return {"status": "ok", **json.loads(done.stdout.strip().splitlines()[-1])}


def interpreter() -> str:
    """The running interpreter for a results file's command line: relative to the working
    directory when inside it (``.venv-peers/bin/python``), else just ``python`` (no machine path)."""
    exe = Path(sys.executable)
    return str(exe.relative_to(Path.cwd())) if exe.is_relative_to(Path.cwd()) else "python"
