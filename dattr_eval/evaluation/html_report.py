"""The interactive leaderboard page: one self-contained HTML file, no network.

Rendering choice: hand-written vanilla JavaScript and CSS (``assets/leaderboard.js``,
``assets/leaderboard.css``, together ~25 KB) inlined into ``assets/leaderboard.html`` with the
leaderboard document (``leaderboard_json.leaderboard_document``) and the figures as base64 PNG.
No library to vendor, pin or license-check, nothing fetched at view time, and the page draws
exactly what the JSON document holds (one source for the JSON file and the page).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).parent / "assets"
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def script_json(value: Any) -> str:
    """JSON safe to embed in a ``<script>`` element (every ``<`` escaped as ``\\u003c``)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False).replace("<", "\\u003c")


def render_html(
    document: Mapping[str, Any],
    images: Mapping[str, str] | None = None,
    title: str = "dattr_eval leaderboard",
) -> str:
    """The leaderboard page of ``document`` (a ``leaderboard_document``) as one HTML string.

    Args:
        document: the leaderboard document (JSON-safe: no NaN).
        images: ``{name: base64 PNG}`` figures; the page shows ``runtime_vs_rank``, ``heatmap``
            and ``memory`` on its overview and ``topk_<benchmark>`` on that benchmark's tab.
        title: the page title.
    """
    import html

    parts = {
        "title": html.escape(title),
        "css": (ASSETS / "leaderboard.css").read_text(encoding="utf-8"),
        "js": (ASSETS / "leaderboard.js").read_text(encoding="utf-8"),
        "data": script_json(document),
        "images": script_json(
            {name: f"data:image/png;base64,{data}" for name, data in (images or {}).items()}
        ),
    }
    template = (ASSETS / "leaderboard.html").read_text(encoding="utf-8")
    return _PLACEHOLDER.sub(lambda m: parts[m.group(1)], template)
