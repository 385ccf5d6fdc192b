"""The built site in a real headless Chromium: sorting by header clicks and by URL, filters, escaping, offline files.

Needs Debian's `chromium` (/usr/bin/chromium; `make install` adds it on CI). The page is served from a loopback HTTP
server; a screenshot of the sorted board is saved as `<tmp>/page.png`.
"""

from __future__ import annotations

import pytest

from avsl_bench.leaderboard import build_site

from .browser import CHROMIUM, Chromium, serve
from .conftest import QUOTES, XSS

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="headless Chromium not installed (/usr/bin/chromium; apt-get install chromium)")

ROWS = "Array.from(document.querySelectorAll('#board tbody tr'))"
VISIBLE = f"{ROWS}.filter(r => getComputedStyle(r).display !== 'none')"


def column(key: str) -> str:
    """JS: the data-value of column `key` for every visible board row, in display order (null if missing)."""
    return (f"(() => {{ const i = Array.from(document.querySelectorAll('#board thead th'))"
            f".findIndex(h => h.dataset.key === '{key}'); return {VISIBLE}.map(r => {{ const v = "
            f"r.cells[i].dataset.value; return v === '' ? null : (isNaN(Number(v)) ? v : Number(v)); }}); }})()")


def numbers_sorted(values, descending: bool) -> bool:
    present = [v for v in values if v is not None]
    missing_last = values[len(present):] == [None] * (len(values) - len(present))
    return missing_last and present == sorted(present, reverse=descending)


@pytest.fixture(scope="module")
def site(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "site"
    build_site(store, out)
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = Chromium(tmp_path_factory.mktemp("chromium"))
    yield chromium
    chromium.close()


def test_sort_filter_and_screenshot(site, browser, tmp_path):
    with serve(site) as base:
        browser.goto(base + "synthetic-tiny-ext.html")
        assert browser.evaluate("document.title").startswith("Synthetic")
        # every plot and no external resource loaded; exactly our one script ran
        assert browser.evaluate("Array.from(document.images).length") >= 3
        assert browser.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        assert browser.evaluate("document.scripts.length") == 1
        assert browser.evaluate("performance.getEntriesByType('resource').every(e => e.name.startsWith("
                                f"'{base}'))")
        # result strings render as text
        names = browser.evaluate(f"{ROWS}.map(r => r.querySelector('td.method').textContent)")
        assert XSS in names and any(n.startswith(QUOTES) for n in names)
        assert browser.evaluate("document.querySelectorAll('[onmouseover]').length") == 0
        assert browser.dialogs() == []

        # click LocAcc: descending first, then ascending; ranks follow; the URL records the order
        browser.evaluate("document.querySelector('#board th[data-key=\"loc_acc\"]').click()")
        first = browser.evaluate(column("loc_acc"))
        assert len(first) == 3 and numbers_sorted(first, descending=True) and first[0] > first[-1]
        assert browser.evaluate("location.hash") == "#sort=loc_acc:desc"
        assert browser.evaluate(f"{VISIBLE}.map(r => r.cells[0].textContent)") == ["1", "2", "3"]
        browser.evaluate("document.querySelector('#board th[data-key=\"loc_acc\"]').click()")
        assert browser.evaluate(column("loc_acc")) == first[::-1]
        assert browser.evaluate("document.querySelector('#board th[data-key=\"loc_acc\"]')"
                                ".getAttribute('aria-sort')") == "ascending"
        # MSE (lower is better) starts ascending
        browser.evaluate("document.querySelector('#board th[data-key=\"mse\"]').click()")
        assert numbers_sorted(browser.evaluate(column("mse")), descending=False)
        # sort by method name via the keyboard
        browser.evaluate("document.querySelector('#board th[data-key=\"method\"]').dispatchEvent("
                         "new KeyboardEvent('keydown', {key: 'Enter'}))")
        methods = browser.evaluate(column("method"))
        assert methods == sorted(methods)
        # the leaked-list filter hides rows and renumbers the rest
        browser.evaluate("document.querySelector('input[data-hide=\"leaked\"]').click()")
        assert browser.evaluate(f"{VISIBLE}.length") == 2
        assert browser.evaluate(f"{VISIBLE}.map(r => r.cells[0].textContent)") == ["1", "2"]
        browser.evaluate("document.querySelector('input[data-hide=\"leaked\"]').click()")
        browser.evaluate("document.querySelector('#board th[data-key=\"ap\"]').click()")
        shot = browser.screenshot(tmp_path / "page.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_sort_order_from_the_url_and_published_rows(site, browser):
    with serve(site) as base:
        browser.goto(base + "vggss.html#sort=auc:desc")
        aucs = browser.evaluate(column("auc"))
        assert numbers_sorted(aucs, descending=True) and aucs[0] is not None and aucs[-1] is None
        assert browser.evaluate("document.querySelector('#board').dataset.sorted") == "auc:desc"
        total = browser.evaluate(f"{VISIBLE}.length")
        browser.evaluate("document.querySelector('input[data-hide=\"es\"]').click()")
        shown = browser.evaluate(f"{VISIBLE}.map(r => r.className)")
        assert 0 < len(shown) < total and not any("f-early-stopped" in c for c in shown)
        browser.evaluate("location.hash = '#sort=loc_acc:asc'")
        browser.evaluate("new Promise(r => setTimeout(r, 50))")
        assert numbers_sorted(browser.evaluate(column("loc_acc")), descending=False)


def test_pages_work_from_the_files_alone(site, browser):
    entry = next((site / "entries" / "synthetic-tiny-ext").glob("slavc--*.html"))
    browser.goto(entry.as_uri())
    assert browser.evaluate("Array.from(document.images).length") == 3  # F1 curve, sizes, overfit plot
    assert browser.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert "early-stop gap" in browser.evaluate("document.body.textContent").lower()
    browser.goto((site / "index.html").as_uri())
    assert browser.evaluate("document.querySelectorAll('.card').length") >= 5
    assert browser.dialogs() == []
