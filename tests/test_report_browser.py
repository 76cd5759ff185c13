"""The interactive leaderboard in a real headless Chromium: sort, filter, tabs, screenshot.

Needs Playwright for Python and a Chromium binary (Debian: ``apt-get install chromium``;
``DATTR_EVAL_CHROMIUM`` overrides the path). Skipped with the reason when either is missing
(an error instead with ``DATTR_EVAL_REQUIRE_BROWSER=1``).
Run with ``pytest -m browser`` (``.ci/browser`` installs both and does).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

import dattr_eval
from tests._leaderboard_data import EXPLAINERS, synthetic_results, write_results

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("DATTR_EVAL_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: set by .ci/browser: a missing browser or Playwright fails the run instead of skipping it
REQUIRED = os.environ.get("DATTR_EVAL_REQUIRE_BROWSER") == "1"


def _missing(reason: str) -> None:
    if REQUIRED:
        raise RuntimeError(f"{reason} (DATTR_EVAL_REQUIRE_BROWSER=1)")
    pytest.skip(reason, allow_module_level=True)


try:
    from playwright import sync_api
except ImportError:
    _missing("playwright is not installed (pip install -e '.[browser]')")
if not CHROMIUM.exists():
    _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    """The report of a synthetic results table opened in headless Chromium; console errors are
    collected in ``page.errors``."""
    out = tmp_path_factory.mktemp("report")
    results, draws = synthetic_results()
    write_results(out, results)
    dattr_eval.report(out, draws=draws)
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
        page.goto((out / "leaderboard.html").as_uri())
        page.wait_for_selector("#board tbody tr")
        page.out_dir = out
        yield page
        context.close()


def explainer_order(page) -> list[str]:
    return page.eval_on_selector_all(
        "#board tbody tr[data-explainer]", "rows => rows.map(r => r.dataset.explainer)"
    )


def header_keys(page) -> list[str]:
    return page.eval_on_selector_all("#board thead th", "ths => ths.map(t => t.dataset.key)")


def column_scores(page, key: str) -> dict[str, float]:
    """The score each visible row shows in column ``key`` (first number of the cell)."""
    keys = header_keys(page)
    position = keys.index(key) + 1
    texts = page.eval_on_selector_all(
        f"#board tbody tr[data-explainer] td:nth-child({position}) > div:first-child",
        "cells => cells.map(c => c.textContent)",
    )
    return dict(zip(explainer_order(page), (float(t.split()[0]) for t in texts)))


def test_overview_lists_methods_by_average_rank_then_references(report_page):
    order = explainer_order(report_page)
    methods = [e for e, (role, _, _) in EXPLAINERS.items() if role == "method"]
    assert sorted(order[: len(methods)]) == sorted(methods)
    assert order[len(methods) :] == ["loss", "random"] or order[len(methods) :] == [
        "random",
        "loss",
    ]
    doc_order = [e for e in order if EXPLAINERS[e][0] == "method"]
    ranks = report_page.eval_on_selector_all(
        "#board tbody tr[data-explainer] td:nth-child(2) > div:first-child",
        "cells => cells.map(c => parseFloat(c.textContent.replace('(', '')))",
    )[: len(doc_order)]
    assert ranks == sorted(ranks)  # default order: average rank ascending
    assert report_page.errors == []


def test_sort_a_score_column_best_first_then_reversed(report_page):
    report_page.click("#tabs button[data-tab='digits-class']")
    key = "digits-class/fidelity"
    report_page.click(f"#board th[data-key='{key}']")
    scores = column_scores(report_page, key)
    methods = [s for e, s in scores.items() if EXPLAINERS[e][0] == "method"]
    assert methods == sorted(methods, reverse=True) and len(methods) == 7  # higher is better
    report_page.click(f"#board th[data-key='{key}']")
    methods = [
        s for e, s in column_scores(report_page, key).items() if EXPLAINERS[e][0] == "method"
    ]
    assert methods == sorted(methods)
    assert "sorted-desc" in report_page.get_attribute(f"#board th[data-key='{key}']", "class")


def test_benchmark_tab_and_text_filter(report_page):
    report_page.click("#tabs button[data-tab='digits-mislabel']")
    keys = header_keys(report_page)
    assert [k for k in keys if "/" in k] == [
        "digits-mislabel/mislabel_detection",
        "digits-mislabel/coreset_selection",
        "digits-mislabel/top_k_cardinality",
    ]
    assert report_page.is_visible("#metric-mislabel_detection")
    assert not report_page.is_visible("#metric-identical_class")  # other benchmark's metric
    report_page.fill("#filter", "grad")
    assert sorted(explainer_order(report_page)) == ["grad_cos", "grad_dot"]
    report_page.fill("#filter", "")
    report_page.uncheck("#show-refs")
    assert "random" not in explainer_order(report_page)
    report_page.check("#show-refs")


def test_first_column_stays_frozen_when_scrolling_sideways(report_page):
    report_page.set_viewport_size({"width": 700, "height": 800})
    report_page.click("#tabs button[data-tab='digits-class']")
    first = "#board tbody tr[data-explainer] td:first-child"
    before = report_page.eval_on_selector(first, "c => c.getBoundingClientRect().left")
    report_page.eval_on_selector(".table-wrap", "w => { w.scrollLeft = 400; }")
    after = report_page.eval_on_selector(first, "c => c.getBoundingClientRect().left")
    width = report_page.eval_on_selector(".table-wrap", "w => w.scrollWidth - w.clientWidth")
    report_page.set_viewport_size({"width": 1400, "height": 900})
    assert width > 0 and after == pytest.approx(before)


def test_screenshot_is_a_non_empty_png(report_page):
    report_page.click("#tabs button[data-tab='__overview__']")
    path = report_page.out_dir / "leaderboard.png"
    report_page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    width, height = struct.unpack(">II", data[16:24])  # the PNG IHDR chunk
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert width == 1400 and height > 900
