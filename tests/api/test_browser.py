"""The web page in headless Chromium (Debian's package) driven by Playwright: browse without a
query, an image's regions, filters, more like this, search by a picked / pasted / dropped image,
load more, the URL as the state (reload, a shared link, back and forward), SAM prompts. Every
test of the page asserts no console error, no page error and no failed request. Screenshots go to
artifacts/screenshots/.

One server (on a private copy of the session's small data dir) and one browser serve the whole
module. Chromium or Playwright missing: skipped locally, a failure on CI (``regionsearch.testing.ci``).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pytest

from regionsearch.masks import encode_rle
from regionsearch.testing.ci import unavailable

from .conftest import LiveServer, make_settings, png_bytes

CHROMIUM = os.environ.get("REGIONSEARCH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
VIEWPORT = {"width": 1280, "height": 860}
T = 60_000  # ms: generous waits (a loaded 2-core machine runs the tiny models slowly)
#: the page's result list and image viewer say when they have finished loading
DONE = "#results-pane[data-state=done]"
IMAGES_LOADED = "[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)"
PAINTED = """(id) => { const c = document.getElementById(id);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }"""


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


def watch(page) -> list[str]:
    """Everything that went wrong on ``page``: console errors, uncaught exceptions, requests that
    failed or were answered >= 400 (the list fills while the page runs)."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console error: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.method} {r.url} ({r.failure})"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.request.method} {r.url}")
            if r.status >= 400 else None)
    return problems


@contextmanager
def web_page(live_server) -> Iterator[tuple]:
    """(page, errors): the service's web page loaded and ready in a browser of its own; ``errors``
    collects what went wrong (see :func:`watch`; callers assert it stays empty)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium_page(VIEWPORT) as page:
        errors = watch(page)
        page.goto(live_server.url + "/")
        page.wait_for_selector("#ready.ok", timeout=T)
        settle(page)  # the first view (browsing) has loaded: nothing is cut off by the caller's next step
        yield page, errors


@pytest.fixture(scope="module")
def server(indexed_dir, tmp_path_factory):
    """One HTTP server for the module, on a private copy of the session's data dir (4 scenes)."""
    from api.app import create_app

    data = tmp_path_factory.mktemp("browser") / "data"
    shutil.copytree(indexed_dir, data)
    with LiveServer(create_app(make_settings(data))) as srv:
        srv.api = httpx.Client(base_url=srv.url, timeout=120)
        yield srv
        srv.api.close()


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _browser_or_skip()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@contextmanager
def opened(browser, server, path: str = "/", wait_results: bool = True) -> Iterator[tuple]:
    """(page, problems): ``path`` of the page in a fresh browser context, ready (and with
    ``wait_results`` its results loaded); the caller asserts ``problems`` is empty at the end."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        problems = watch(page)
        page.goto(server.url + path)
        page.wait_for_selector("#ready.ok", timeout=T)
        if wait_results:
            settle(page)
        yield page, problems
    finally:
        context.close()


def settle(page) -> None:
    """Wait until the result list has loaded and its pictures are drawn."""
    page.wait_for_selector(DONE, timeout=T)
    page.wait_for_function(IMAGES_LOADED, timeout=T)


def settle_viewer(page) -> None:
    page.wait_for_selector("#viewer[data-state=done]", timeout=T)
    page.wait_for_function("[...document.querySelectorAll('#region-list img')].every(i => i.complete && i.naturalWidth > 0)",
                           timeout=T)


def submit(page, selector: str, value: str) -> None:
    """Type ``value`` into a field and press Enter, then wait for the new results."""
    page.fill(selector, value)
    page.press(selector, "Enter")
    page.wait_for_function("document.querySelector('#results-pane').dataset.state !== 'loading'", timeout=T)
    settle(page)


def ids(page, selector: str, attr: str) -> list[int]:
    return [int(v) for v in page.eval_on_selector_all(selector, f"els => els.map(e => e.dataset.{attr})")]


def url_params(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / name), full_page=True)


# ---------------------------------------------------------------------------------------- browse
@pytest.mark.slow
def test_browse_images_newest_first_then_an_images_regions(browser, server):
    listing = server.api.get("/v1/images").json()
    with opened(browser, server) as (page, problems):
        assert ids(page, ".tile", "imageId") == [im["image_id"] for im in listing["images"]]  # newest first
        assert page.locator(".hit").count() == 0
        assert "4 of 4 images" in page.inner_text("#status")
        shot(page, "browse_1_images.png")

        page.locator(".tile").nth(1).click()
        settle_viewer(page)
        image_id = listing["images"][1]["image_id"]
        regions = server.api.get(f"/v1/images/{image_id}").json()["regions"]
        assert url_params(page) == {"image": str(image_id)}
        assert sorted(ids(page, "#region-list li", "regionId")) == sorted(r["region_id"] for r in regions)
        assert page.inner_text("#viewer-title") == listing["images"][1]["path"].rsplit("/", 1)[-1]
        assert page.evaluate(PAINTED, "regions-canvas") > 0  # the masks are drawn over the image
        assert page.evaluate(PAINTED, "highlight-canvas") == 0
        assert "active" in page.locator(".tile").nth(1).get_attribute("class")

        first = page.locator("#region-list li").first
        first.click()
        region_id = int(first.get_attribute("data-region-id"))
        assert url_params(page) == {"image": str(image_id), "sel": str(region_id)}
        assert page.evaluate(PAINTED, "highlight-canvas") > 0
        assert "active" in first.get_attribute("class")
        shot(page, "browse_2_image_regions.png")
    assert not problems, problems


# ---------------------------------------------------------------------------------------- filters
@pytest.mark.slow
def test_filters_path_prefix_min_area_min_score_one_per_image(browser, server):
    def api_ids(**filters) -> list[int]:
        r = server.api.post("/v1/search", json={"text": "red circle", "k": 24, "filters": filters})
        assert r.status_code == 200, r.text
        return [h["region_id"] for h in r.json()["hits"]]

    scene1 = next(im["path"] for im in server.api.get("/v1/images").json()["images"] if im["path"].endswith("scene1.png"))
    prefix = scene1[:-len("1.png")] + "1"
    with opened(browser, server, "/?q=red+circle") as (page, problems):
        every = ids(page, ".hit", "regionId")
        assert every == api_ids() and len(every) > 4

        submit(page, "#f-prefix", prefix)
        assert url_params(page)["prefix"] == prefix
        assert ids(page, ".hit", "regionId") == api_ids(path_prefix=prefix)
        assert set(ids(page, ".hit", "imageId")) == {next(im["image_id"] for im in server.api.get(
            "/v1/images").json()["images"] if im["path"] == scene1)}
        page.click("#f-clear")
        settle(page)
        assert ids(page, ".hit", "regionId") == every and "prefix" not in url_params(page)

        submit(page, "#f-area", "20")
        assert url_params(page)["area"] == "20"
        big = ids(page, ".hit", "regionId")
        assert big == api_ids(min_area=0.2) and 0 < len(big) < len(every)

        page.check("#per-image")
        settle(page)
        one = ids(page, ".hit", "imageId")
        assert len(one) == len(set(one)) and ids(page, ".hit", "regionId") == api_ids(min_area=0.2, per_image=1)
        shot(page, "filters_1_area_one_per_image.png")

        submit(page, "#f-score", "0.99")
        assert page.locator(".hit").count() == 0 and api_ids(min_area=0.2, per_image=1, min_score=0.99) == []
        assert page.is_visible("#empty") and "Loosen or clear them" in page.inner_text("#empty")
        shot(page, "filters_2_no_match.png")

        page.fill("#f-score", "7")  # out of range: a message, no request
        page.press("#f-score", "Enter")
        page.wait_for_selector("#results-pane[data-state=error]", timeout=T)
        assert "from -1 to 1" in page.inner_text("#status")

        page.click("#f-clear")
        settle(page)
        assert ids(page, ".hit", "regionId") == every and url_params(page) == {"q": "red circle"}

        page.click("#browse-btn")  # the path prefix applies to browsing too
        settle(page)
        submit(page, "#f-prefix", prefix)
        assert page.locator(".tile").count() == 1 and "1 of 1 image under" in page.inner_text("#status")
        submit(page, "#f-prefix", prefix + "-nothing")
        assert page.locator(".tile").count() == 0 and "No indexed image has a path starting with" in page.inner_text("#empty")
    assert not problems, problems


# ---------------------------------------------------------------------------------------- more like this
@pytest.mark.slow
def test_more_like_this_from_a_hit_and_from_an_images_region_list(browser, server):
    with opened(browser, server, "/?q=blue+square") as (page, problems):
        source = ids(page, ".hit", "regionId")[0]
        page.locator(".hit .like").first.click()
        settle(page)
        expected = [h["region_id"] for h in server.api.get(f"/v1/regions/{source}/similar", params={"k": 24}).json()["hits"]]
        assert url_params(page) == {"like": str(source)}
        assert ids(page, ".hit", "regionId") == expected and source not in expected
        assert page.input_value("#q") == ""
        page.wait_for_function("document.getElementById('query-img').naturalWidth > 0", timeout=T)
        assert f"Regions like region {source}" in page.inner_text("#query-card")
        assert f"like region {source}" in page.inner_text("#status")
        shot(page, "similar_1_from_hit.png")

        page.click("#query-card a")  # open the source region's image: it is selected there
        settle_viewer(page)
        assert url_params(page)["sel"] == str(source)
        assert "active" in page.locator(f"#region-list li[data-region-id='{source}']").get_attribute("class")
        other = page.locator("#region-list li:not(.active)").first
        other_id = int(other.get_attribute("data-region-id"))
        other.locator(".like").click()
        settle(page)
        assert url_params(page)["like"] == str(other_id)
        expected = [h["region_id"] for h in server.api.get(f"/v1/regions/{other_id}/similar", params={"k": 24}).json()["hits"]]
        assert ids(page, ".hit", "regionId") == expected
        shot(page, "similar_2_from_region_list.png")
    assert not problems, problems


# ---------------------------------------------------------------------------------------- search by image
def _dispatch_file(page, event: str, data: bytes, name: str) -> None:
    """A synthetic paste (ClipboardEvent) or drop (DragEvent) carrying one PNG file."""
    page.evaluate("""([event, bytes, name]) => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(bytes)], name, { type: "image/png" }));
        if (event === "paste") document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true }));
        else {
            for (const type of ["dragenter", "dragover"]) window.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true }));
            document.body.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
        }
    }""", [event, list(data), name])


@pytest.mark.slow
def test_search_by_picked_pasted_and_dropped_image(browser, server, scenes, tmp_path):
    def api_ids(data: bytes) -> list[int]:
        r = server.api.post("/v1/search/image", files={"file": ("q.png", data, "image/png")}, data={"k": "24"})
        assert r.status_code == 200, r.text
        return [h["region_id"] for h in r.json()["hits"]]

    picked, pasted, dropped = (png_bytes(scenes[i].image) for i in (4, 5, 0))
    (tmp_path / "picked.png").write_bytes(picked)
    with opened(browser, server) as (page, problems):
        page.set_input_files("#file", str(tmp_path / "picked.png"))
        page.wait_for_function("location.search.includes('qimg=')", timeout=T)
        settle(page)
        assert ids(page, ".hit", "regionId") == api_ids(picked)
        assert "like the query image" in page.inner_text("#status") and "picked.png" in page.inner_text("#query-card")
        page.wait_for_function("document.getElementById('query-img').naturalWidth > 0", timeout=T)
        shot(page, "image_1_picked.png")
        picked_url = page.url

        _dispatch_file(page, "paste", pasted, "image.png")
        page.wait_for_function(f"location.href !== {picked_url!r}", timeout=T)
        settle(page)
        assert ids(page, ".hit", "regionId") == api_ids(pasted)
        pasted_url = page.url

        _dispatch_file(page, "drop", dropped, "dropped.png")
        page.wait_for_function("document.querySelector('#query-card').innerText.includes('dropped.png')", timeout=T)
        settle(page)
        assert ids(page, ".hit", "regionId") == api_ids(dropped)
        assert page.is_hidden("#drop")  # the drop overlay went away
        # scene 0 is indexed: its own regions come first
        assert server.api.get(f"/v1/regions/{ids(page, '.hit', 'regionId')[0]}").json()["image_path"].endswith("scene0.png")

        page.reload()  # the query image is kept for this browser session: the URL still works
        page.wait_for_selector("#ready.ok", timeout=T)
        settle(page)
        assert ids(page, ".hit", "regionId") == api_ids(dropped)
        page.go_back()  # back to the pasted image's results (kept in sessionStorage too)
        settle(page)
        assert page.url == pasted_url and ids(page, ".hit", "regionId") == api_ids(pasted)

        page.evaluate("""() => { const dt = new DataTransfer(); dt.items.add(new File(["hello"], "notes.txt", { type: "text/plain" }));
            document.body.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true })); }""")
        assert "Drop an image file" in page.inner_text("#status")
    assert not problems, problems


# ---------------------------------------------------------------------------------------- load more
@pytest.mark.slow
def test_load_more_pages_browse_and_search(browser, server):
    listing = [im["image_id"] for im in server.api.get("/v1/images").json()["images"]]
    top4 = [h["region_id"] for h in server.api.post("/v1/search", json={"text": "red circle", "k": 4}).json()["hits"]]
    with opened(browser, server, "/?k=2") as (page, problems):
        assert ids(page, ".tile", "imageId") == listing[:2] and "2 of 4 images" in page.inner_text("#status")
        assert page.input_value("#k") == "2"
        page.click("#more")
        page.wait_for_function("document.querySelectorAll('.tile').length === 4", timeout=T)
        settle(page)
        assert ids(page, ".tile", "imageId") == listing and page.is_hidden("#more")  # the last page
        assert url_params(page) == {"k": "2", "n": "4"}

        submit(page, "#q", "red circle")
        assert ids(page, ".hit", "regionId") == top4[:2] and page.is_visible("#more")
        page.click("#more")
        page.wait_for_function("document.querySelectorAll('.hit').length >= 4", timeout=T)
        settle(page)
        shown = ids(page, ".hit", "regionId")
        assert shown == top4 and len(set(shown)) == len(shown)
        assert [page.locator(".hit .score").nth(i).inner_text().split(" ")[0] for i in range(4)] == ["#1", "#2", "#3", "#4"]
        assert url_params(page)["n"] == "4"
        shot(page, "load_more_search.png")
    assert not problems, problems


# ---------------------------------------------------------------------------------------- URL state
@pytest.mark.slow
def test_url_state_round_trip_link_reload_back_forward(browser, server):
    with opened(browser, server) as (page, problems):
        browse_url = page.url
        submit(page, "#q", "blue square")
        search_url = page.url
        page.check("#per-image")
        settle(page)
        submit(page, "#f-area", "1")
        hits = ids(page, ".hit", "regionId")
        page.locator(".hit").nth(1).click()
        settle_viewer(page)
        image_id = ids(page, ".hit", "imageId")[1]
        selected = int(page.locator("#region-list li:not(.active)").nth(1).get_attribute("data-region-id"))
        page.click(f"#region-list li[data-region-id='{selected}']")
        shared = page.url
        assert url_params(page) == {"q": "blue square", "one": "1", "area": "1", "image": str(image_id),
                                    "sel": str(selected)}
        shot(page, "url_1_before.png")

        # the link alone, in a fresh browser context, reproduces the view
        path = shared[len(server.url):]
        with opened(browser, server, path) as (other, problems2):
            settle_viewer(other)
            assert other.input_value("#q") == "blue square" and other.is_checked("#per-image")
            assert other.input_value("#f-area") == "1"
            assert ids(other, ".hit", "regionId") == hits
            assert other.is_visible("#viewer") and ids(other, "#region-list li.active", "regionId") == [selected]
            assert other.evaluate(PAINTED, "highlight-canvas") > 0
            shot(other, "url_2_link_opened.png")
        assert not problems2, problems2

        page.go_back()  # before the image was opened
        settle(page)
        page.wait_for_selector("#viewer", state="hidden", timeout=T)
        assert ids(page, ".hit", "regionId") == hits and "image" not in url_params(page)
        page.go_back()  # area filter off
        settle(page)
        assert "area" not in url_params(page) and page.input_value("#f-area") == ""
        page.go_back()
        page.go_back()  # the plain search, then browsing
        settle(page)
        assert page.url == browse_url and page.locator(".tile").count() == 4 and page.input_value("#q") == ""
        page.go_forward()
        settle(page)
        assert page.url == search_url and page.input_value("#q") == "blue square" and page.locator(".hit").count()
        for _ in range(3):
            page.go_forward()
        settle(page)
        settle_viewer(page)
        assert page.url == shared and ids(page, ".hit", "regionId") == hits
        assert ids(page, "#region-list li.active", "regionId") == [selected]
        page.keyboard.press("Escape")  # closes the image, as a new history entry
        page.wait_for_selector("#viewer", state="hidden", timeout=T)
        assert "image" not in url_params(page)
    assert not problems, problems


# ---------------------------------------------------------------------------------------- SAM prompts
@pytest.mark.slow
def test_search_open_image_point_mask(browser, server):
    with opened(browser, server) as (page, errors):
        submit(page, "#q", "red circle")
        hits = page.locator(".hit")
        assert hits.count() >= 1
        assert "for “red circle”" in page.inner_text("#status")
        shot(page, "1_search_results.png")

        hits.first.click()
        settle_viewer(page)
        page.wait_for_function("document.getElementById('viewer-img').naturalWidth > 0", timeout=T)
        shot(page, "2_image_regions.png")

        canvas = page.locator("#prompt-canvas")
        box = canvas.bounding_box()
        canvas.click(position={"x": box["width"] * 0.45, "y": box["height"] * 0.5})
        page.wait_for_selector("#candidates button", timeout=T)
        assert page.locator("#candidates button").count() == 3
        assert page.evaluate(PAINTED, "mask-canvas") > 0, "no mask pixels drawn"
        assert "computed" in page.inner_text("#seg-status") or "cached" in page.inner_text("#seg-status")
        shot(page, "3_point_mask.png")

        # background point with shift, then the second candidate
        canvas.click(position={"x": box["width"] * 0.1, "y": box["height"] * 0.1}, modifiers=["Shift"])
        page.wait_for_function("document.getElementById('seg-status').textContent.includes('cached')", timeout=T)
        page.locator("#candidates button").nth(1).click()
        assert "active" in page.locator("#candidates button").nth(1).get_attribute("class")
        # drag a box
        page.click("#clear")
        page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.7, steps=5)
        page.mouse.up()
        page.wait_for_selector("#candidates button", timeout=T)
        shot(page, "4_box_mask.png")

        # the page's COCO RLE decoder agrees with pycocotools (row-major result)
        mask = np.zeros((37, 53), bool)
        mask[5:30, 7:20] = True
        mask[0, 50:] = True
        mask[36, :3] = True
        decoded = page.evaluate("(rle) => Array.from(decodeRLE(rle))", encode_rle(mask))
        assert np.array_equal(np.array(decoded, bool).reshape(37, 53), mask)
    assert not errors, errors


@pytest.mark.slow
def test_api_docs_render_without_network(browser, server):
    """/docs and /redoc render with every request outside the server blocked (air-gapped machine)."""
    context = browser.new_context()
    try:
        page = context.new_page()
        outside: list[str] = []

        def gate(route):
            if route.request.url.startswith(server.url):
                return route.continue_()
            outside.append(route.request.url)
            return route.abort()

        page.route("**/*", gate)
        page.goto(server.url + "/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
        assert page.locator(".swagger-ui .opblock").count() >= 5
        assert not outside, outside  # Swagger UI: nothing from outside at all
        page.goto(server.url + "/redoc")
        page.wait_for_selector("[data-section-id]", timeout=30_000)
        # ReDoc renders every section with the outside blocked; its bundle still asks a CDN for the
        # "API docs by Redocly" badge image (decoration, no option turns it off): nothing else
        assert all(u.endswith(".svg") and "redoc" in u for u in outside), outside
    finally:
        context.close()
