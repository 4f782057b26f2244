"""Video tracks on the web page, in headless Chromium (Debian's package): a track hit shows a strip
of frames with the mask outlined; a click opens the player (server-decoded frames, so no browser
codec is needed: Debian's Chromium has no H.264) with the track's outline and a time bar; play,
seek by the bar, the paused frame in the URL; a click on a paused frame tracks the object there
(POST /v1/segment/video, NDJSON read as it streams). No console error, page error or failed
request anywhere. Screenshots go to artifacts/screenshots/player_*.png.

The data dir: one shapes scene and two moving-shapes clips (6 fps, 3 s and 2 s, one of them
not square) indexed with the tiny models (~45 s of CPU).
"""

from __future__ import annotations

import shutil

import httpx
import numpy as np
import pytest

from .conftest import LiveServer, index_media, make_settings
from .test_browser import PAINTED, SHOTS, T, browser, opened, settle, url_params  # noqa: F401 (browser: a fixture)

pytestmark = pytest.mark.slow

#: pixels of the player's canvas in a colour: (id, [r, g, b]) -> count
COLOURED = """([id, rgb]) => { const c = document.getElementById(id);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0; for (let i = 0; i < d.length; i += 4)
      if (d[i + 3] === 255 && d[i] === rgb[0] && d[i + 1] === rgb[1] && d[i + 2] === rgb[2]) n++;
    return n; }"""



@pytest.fixture(scope="module")
def video_server(tmp_path_factory, scenes):
    from api.app import create_app
    from regionsearch.testing.clips import clip_spec

    specs = [clip_spec(90_031, "slow", n_frames=18, fps=6.0), clip_spec(90_032, "slow", n_frames=12, fps=6.0,
                                                                       size=(320, 240))]
    data = index_media(tmp_path_factory.mktemp("player"), scenes[1].image, specs)
    with LiveServer(create_app(make_settings(data))) as srv:
        srv.api = httpx.Client(base_url=srv.url, timeout=120)
        srv.specs = specs
        yield srv
        srv.api.close()


def page_at(browser, server, path: str):
    """(page, problems): ``path`` of the page, ready (a player view has no result list to wait for)."""
    return opened(browser, server, path, wait_results=False)


def best_track(server, spec_index: int = 0) -> dict:
    """The top track hit for a caption of clip ``spec_index``, with every stored frame."""
    caption = server.specs[spec_index].captions[0]
    hits = server.api.post("/v1/search", json={"text": caption, "k": 5, "filters": {"media": "video"}}).json()["hits"]
    want = f"clip{spec_index}.mp4"
    hit = next(h for h in hits if h["video"]["path"].endswith(want))
    return server.api.get(f"/v1/tracks/{hit['region_id']}").json()


def coloured(page, which: str) -> int:
    """Opaque pixels of the player's canvas in its track (``trackRgb``) or interactive (``liveRgb``) colour."""
    return page.evaluate(COLOURED, ["player-canvas", page.evaluate(f"player.{which}")])


def wait_player(page) -> None:
    page.wait_for_selector("#player[data-state=done]", timeout=T)


def player_frame(page) -> int:
    return int(page.get_attribute("#player", "data-frame"))


def test_track_hit_shows_a_strip_of_outlined_frames(browser, video_server):
    track = best_track(video_server)
    caption = video_server.specs[0].captions[0]
    with page_at(browser, video_server, "/?q=" + caption.replace(" ", "+")) as (page, problems):
        settle(page)
        card = page.locator(f".hit.track[data-region-id='{track['region_id']}']")
        assert card.count() == 1
        page.wait_for_selector(f".hit.track[data-region-id='{track['region_id']}'] .strip[data-state=done]", timeout=T)
        page.wait_for_function("[...document.querySelectorAll('.strip img')].every(i => i.complete && i.naturalWidth > 0)",
                               timeout=T)
        frames = [int(f) for f in card.locator(".strip img").evaluate_all("els => els.map(e => e.dataset.frame)")]
        stored = [f["frame"] for f in track["frames"]]
        assert 3 <= len(frames) <= 5 and set(frames) <= set(stored), (frames, stored)
        assert frames == sorted(frames) and frames[0] == stored[0] and frames[-1] == stored[-1]
        srcs = card.locator(".strip img").evaluate_all("els => els.map(e => e.getAttribute('src'))")
        assert all(f"track={track['region_id']}" in s and f"/v1/videos/{track['video']['id']}/frames/" in s for s in srcs)
        # the strip is wider than one picture: the frames sit side by side at a readable size
        boxes = [card.locator(".strip img").nth(i).bounding_box() for i in range(len(frames))]
        assert all(b["width"] >= 50 for b in boxes) and len({round(b["y"]) for b in boxes}) == 1
        card.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "player_1_strip.png"), full_page=True)
    assert not problems, problems


def test_player_opens_with_outline_time_bar_play_and_seek(browser, video_server):
    track = best_track(video_server, 1)
    tid = track["region_id"]
    caption = video_server.specs[1].captions[0]
    with page_at(browser, video_server, "/?q=" + caption.replace(" ", "+")) as (page, problems):
        settle(page)
        page.locator(f".hit.track[data-region-id='{tid}'] .strip").click()
        wait_player(page)
        assert url_params(page)["track"] == str(tid) and "image" not in url_params(page)
        assert page.is_hidden("#viewer") and page.is_visible("#player")
        assert player_frame(page) == track["best_frame"]["frame"]
        page.wait_for_function("document.getElementById('player-img').naturalWidth > 0", timeout=T)
        assert coloured(page, "trackRgb") > 20, "no track outline drawn"
        # the time bar: the track's range inside the video's duration, the cursor at the frame's time
        bar = page.locator("#timebar").bounding_box()
        rng = page.locator("#timebar .track-range").bounding_box()
        duration = video_server.specs[1].n_frames / video_server.specs[1].fps
        assert rng["x"] == pytest.approx(bar["x"] + bar["width"] * track["t_start"] / duration, abs=3)
        assert rng["width"] > 0 and rng["x"] + rng["width"] <= bar["x"] + bar["width"] + 1
        cursor = page.locator("#timebar .cursor").bounding_box()
        t_best = track["best_frame"]["t"]
        assert cursor["x"] + 1 == pytest.approx(bar["x"] + bar["width"] * t_best / duration, abs=3)
        page.screenshot(path=str(SHOTS / "player_2_open.png"), full_page=True)

        # seek by clicking the bar near its start, then play to the end
        page.locator("#timebar").click(position={"x": 2, "y": 9})
        page.wait_for_function("document.getElementById('player').dataset.frame === '0'", timeout=T)
        assert url_params(page)["at"] == "0"
        seen = page.evaluate("""() => new Promise((resolve) => {
            const out = [], p = document.getElementById('player');
            const mo = new MutationObserver(() => { out.push(Number(p.dataset.frame));
              if (!p.dataset.playing) { mo.disconnect(); resolve(out); } });
            mo.observe(p, { attributes: true, attributeFilter: ['data-frame', 'data-playing'] });
            document.getElementById('play-btn').click(); })""")
        frames = sorted(set(seen))
        assert len(frames) >= 3 and frames[-1] >= track["frame_end"], seen  # it stepped through the track
        assert seen == sorted(seen)
        assert page.inner_text("#play-btn") == "Play"
        assert url_params(page)["at"] == str(player_frame(page))
    assert not problems, problems


def test_a_link_opens_the_player_at_its_frame_then_escape_closes(browser, video_server):
    track = best_track(video_server)
    tid, mid = track["region_id"], track["frames"][len(track["frames"]) // 2]["frame"]
    with page_at(browser, video_server, f"/?track={tid}&at={mid}") as (page, problems):
        wait_player(page)
        assert player_frame(page) == mid
        assert coloured(page, "trackRgb") > 20
        steps = page.evaluate("player.steps")
        page.keyboard.press("ArrowRight")
        after = steps[steps.index(mid) + 1]
        page.wait_for_function(f"document.getElementById('player').dataset.frame === '{after}'", timeout=T)
        assert url_params(page)["at"] == str(after)
        page.keyboard.press("ArrowLeft")
        page.wait_for_function(f"document.getElementById('player').dataset.frame === '{mid}'", timeout=T)
        page.keyboard.press("Escape")
        assert page.is_hidden("#player") and "track" not in url_params(page)
        page.go_back()
        wait_player(page)
        assert player_frame(page) == mid
    assert not problems, problems


def test_click_on_a_paused_frame_tracks_the_object(browser, video_server):
    from regionsearch.masks import decode_rle

    track = best_track(video_server)
    first = track["frames"][0]
    with page_at(browser, video_server, f"/?track={track['region_id']}&at={first['frame']}") as (page, problems):
        wait_player(page)
        assert coloured(page, "liveRgb") == 0
        mask = decode_rle(first["mask"])
        ys, xs = np.nonzero(mask)
        i = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))  # the mask pixel nearest its centroid
        h, w = mask.shape
        canvas = page.locator("#player-canvas")
        box = canvas.bounding_box()
        canvas.click(position={"x": (xs[i] + 0.5) * box["width"] / w, "y": (ys[i] + 0.5) * box["height"] / h})
        page.wait_for_selector("#player[data-live=done]", timeout=T)
        assert "Tracked through" in page.inner_text("#player-status")
        live = page.evaluate("() => [...player.live.keys()].sort((a, b) => a - b)")
        assert len(live) >= 3 and first["frame"] in live, live
        assert coloured(page, "liveRgb") > 20, "no interactive mask drawn"
        assert page.is_visible("#timebar .live-range")
        page.screenshot(path=str(SHOTS / "player_3_click_to_track.png"), full_page=True)
        # the interactive masks follow the object: they overlap the stored track's masks
        ious = page.evaluate("""(stored) => stored.filter((f) => player.live.has(f.frame)).map((f) => {
            const a = decodeRLE(f.mask), b = decodeRLE(player.live.get(f.frame).mask);
            let i = 0, u = 0; for (let k = 0; k < a.length; k++) { i += a[k] & b[k]; u += a[k] | b[k]; }
            return u ? i / u : 0; })""", track["frames"])
        assert ious and np.mean(ious) >= 0.5, ious
        # stepping to another tracked frame draws that frame's interactive mask too
        other = live[-1] if live[-1] != first["frame"] else live[0]
        page.evaluate(f"seekFrame({other})")
        page.wait_for_function(f"document.getElementById('player').dataset.frame === '{other}'", timeout=T)
        assert "live" in page.get_attribute("#player", "data-drawn")
    assert not problems, problems


def test_tracking_errors_are_shown_in_words(browser, video_server):
    """A run the server refuses (here: a point outside the frame, sent by hand) puts the server's
    sentence in the player's status; the page keeps working."""
    track = best_track(video_server)
    with page_at(browser, video_server, f"/?track={track['region_id']}") as (page, problems):
        wait_player(page)
        page.evaluate("startRun(player.frame, 99999, 5)")
        page.wait_for_selector("#player[data-live=error]", timeout=T)
        text = page.inner_text("#player-status")
        assert text.startswith("Tracking failed:") and ("outside" in text or "inside" in text), text
    # the refused request itself is all that went wrong (Chromium logs it as a console error too)
    assert problems and all("422" in p for p in problems), problems


def test_a_video_from_browsing_opens_its_player(browser, video_server):
    """Browse lists videos beside images (a video's preview is its first frame); opening one
    shows the player on its largest track, the URL naming the track instead of the image."""
    listing = video_server.api.get("/v1/images").json()["images"]
    video = next(im for im in listing if im["path"].endswith("clip1.mp4"))
    regions = video_server.api.get(f"/v1/images/{video['image_id']}").json()["regions"]
    largest = max((r for r in regions if r["kind"] == "track"), key=lambda r: r["area"])
    with page_at(browser, video_server, "/") as (page, problems):
        settle(page)
        page.locator(f".tile[data-image-id='{video['image_id']}']").click()
        wait_player(page)
        assert url_params(page) == {"track": str(largest["region_id"])}
        assert page.is_hidden("#viewer") and coloured(page, "trackRgb") > 20
    assert not problems, problems
