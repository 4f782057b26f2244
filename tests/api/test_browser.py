"""The web page in headless Chromium (Debian's package) driven by Playwright: search, results
render, open an image, add a point, a mask appears. Screenshots go to artifacts/screenshots/.

Chromium or Playwright missing: skipped locally, a failure on CI (``regionsearch.testing.ci``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from regionsearch.masks import encode_rle
from regionsearch.testing.ci import unavailable

CHROMIUM = os.environ.get("REGIONSEARCH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


def _browser_or_skip():
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the Python package playwright is not installed (pip install playwright)"
        sync_playwright = None
    if problem is None and not os.access(CHROMIUM, os.X_OK):
        problem = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if problem:
        unavailable(f"browser test: {problem}")
    return sync_playwright


@contextmanager
def chromium_page(viewport: dict | None = None) -> Iterator:
    """A Playwright page in Debian's headless Chromium (closed afterwards); skipped locally and a
    failure on CI when Chromium or Playwright is missing."""
    sync_playwright = _browser_or_skip()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser.new_page(viewport=viewport) if viewport else browser.new_page()
        finally:
            browser.close()


@contextmanager
def web_page(live_server) -> Iterator[tuple]:
    """(page, errors): the service's web page loaded and ready; ``errors`` collects the page's
    JavaScript errors (callers assert it stays empty)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with chromium_page({"width": 1280, "height": 860}) as page:
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(live_server.url + "/")
        page.wait_for_selector("#ready.ok", timeout=30_000)
        yield page, errors


@pytest.mark.slow
def test_search_open_image_point_mask(live_server):
    with web_page(live_server) as (page, errors):
        page.fill("#q", "red circle")
        page.click("#go")
        page.wait_for_selector(".hit img", timeout=30_000)
        page.wait_for_function("[...document.querySelectorAll('.hit img')].every(i => i.complete && i.naturalWidth > 0)",
                               timeout=30_000)
        hits = page.locator(".hit")
        assert hits.count() >= 1
        assert "for “red circle”" in page.inner_text("#status")
        page.screenshot(path=str(SHOTS / "1_search_results.png"), full_page=True)

        hits.first.click()
        page.wait_for_selector("#viewer:not([hidden])")
        page.wait_for_function("document.getElementById('viewer-img').naturalWidth > 0", timeout=30_000)
        page.screenshot(path=str(SHOTS / "2_image_regions.png"), full_page=True)

        canvas = page.locator("#prompt-canvas")
        box = canvas.bounding_box()
        canvas.click(position={"x": box["width"] * 0.45, "y": box["height"] * 0.5})
        page.wait_for_selector("#candidates button", timeout=30_000)
        assert page.locator("#candidates button").count() == 3
        covered = page.evaluate("""() => {
            const c = document.getElementById('mask-canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
            return n; }""")
        assert covered > 0, "no mask pixels drawn"
        assert "computed" in page.inner_text("#seg-status") or "cached" in page.inner_text("#seg-status")
        page.screenshot(path=str(SHOTS / "3_point_mask.png"), full_page=True)

        # background point with shift, then the second candidate
        canvas.click(position={"x": box["width"] * 0.1, "y": box["height"] * 0.1}, modifiers=["Shift"])
        page.wait_for_function("document.getElementById('seg-status').textContent.includes('cached')",
                               timeout=30_000)
        page.locator("#candidates button").nth(1).click()
        assert "active" in page.locator("#candidates button").nth(1).get_attribute("class")
        # drag a box
        page.click("#clear")
        page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.7, steps=5)
        page.mouse.up()
        page.wait_for_selector("#candidates button", timeout=30_000)
        page.screenshot(path=str(SHOTS / "4_box_mask.png"), full_page=True)

        # the page's COCO RLE decoder agrees with pycocotools (row-major result)
        mask = np.zeros((37, 53), bool)
        mask[5:30, 7:20] = True
        mask[0, 50:] = True
        mask[36, :3] = True
        decoded = page.evaluate("(rle) => Array.from(decodeRLE(rle))", encode_rle(mask))
        assert np.array_equal(np.array(decoded, bool).reshape(37, 53), mask)
    assert not errors, errors


@pytest.mark.slow
def test_api_docs_render_without_network(live_server):
    """/docs and /redoc render with every request outside the server blocked (air-gapped machine)."""
    with chromium_page() as page:
        outside: list[str] = []

        def gate(route):
            if route.request.url.startswith(live_server.url):
                return route.continue_()
            outside.append(route.request.url)
            return route.abort()

        page.route("**/*", gate)
        page.goto(live_server.url + "/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
        assert page.locator(".swagger-ui .opblock").count() >= 5
        assert not outside, outside  # Swagger UI: nothing from outside at all
        page.goto(live_server.url + "/redoc")
        page.wait_for_selector("[data-section-id]", timeout=30_000)
        # ReDoc renders every section with the outside blocked; its bundle still asks a CDN for the
        # "API docs by Redocly" badge image (decoration, no option turns it off): nothing else
        assert all(u.endswith(".svg") and "redoc" in u for u in outside), outside

