"""Rewrite one ``## section`` of a Markdown results file, keeping the others (several scripts
write sections of ``benchmarks/results/reliability.md``)."""

from __future__ import annotations

import re
from pathlib import Path


def replace_section(path: Path, heading: str, text: str) -> None:
    """Replace the section starting at the line ``heading`` (up to the next ``## `` heading) with
    ``text``; append it when absent; create the file (titled by its stem) when missing."""
    if not path.exists():
        path.write_text(f"# {path.stem.replace('_', ' ').capitalize()}\n\n{text}")
        return
    old = path.read_text()
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(old):
        path.write_text(pattern.sub(lambda _: text, old, count=1))
    else:
        path.write_text(old.rstrip() + "\n\n" + text)
