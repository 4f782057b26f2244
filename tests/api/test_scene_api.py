"""GET /v1/images/{id}/scene and relational queries through POST /v1/search (tiny models, the
session's indexed shapes scenes); the web page's scene view in a real browser."""

from __future__ import annotations

import pytest

from regionsearch.masks import decode_rle


def test_scene_endpoint_schema_and_relations(client, first_ids, scenes):
    r = client.get(f"/v1/images/{first_ids['image']}/scene")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert set(doc) == {"image", "objects", "relations", "text"}
    assert doc["image"]["id"] == first_ids["image"] and doc["image"]["width"] == 256
    assert doc["objects"], "an indexed shapes scene has objects"
    ids = {o["region_id"] for o in doc["objects"]}
    for o in doc["objects"]:
        assert set(o) == {"region_id", "label", "label_score", "bbox", "area", "centroid", "mask"}
        assert 0 < o["label_score"] <= 1 and len(o["bbox"]) == 4 and len(o["centroid"]) == 2
        assert decode_rle(o["mask"]).sum() == o["area"]
    for rel in doc["relations"]:
        assert rel["subject"] in ids and rel["object"] in ids and rel["subject"] != rel["object"]
        assert doc["objects"][rel["subject_index"]]["region_id"] == rel["subject"]
    # converses are listed both ways
    pairs = {(x["subject"], x["predicate"], x["object"]) for x in doc["relations"]}
    conv = {"left_of": "right_of", "above": "below", "inside": "contains", "near": "near", "overlaps": "overlaps"}
    for s, p, o in pairs:
        if p in conv:
            assert (o, conv[p], s) in pairs
    assert doc["text"].startswith(f"{len(doc['objects'])} object")


def test_scene_endpoint_labels_and_errors(client, first_ids):
    r = client.get(f"/v1/images/{first_ids['image']}/scene", params={"labels": "red circle,blue square"})
    assert r.status_code == 200
    assert {o["label"] for o in r.json()["objects"]} <= {"red circle", "blue square"}
    assert client.get("/v1/images/99999/scene").status_code == 404
    r = client.get(f"/v1/images/{first_ids['image']}/scene", params={"labels": " , "})
    assert r.status_code == 422 and "vocabulary is empty" in r.json()["error"]
    # a labels value is never read as a server file
    r = client.get(f"/v1/images/{first_ids['image']}/scene", params={"labels": "/etc/hostname"})
    assert r.status_code == 200 and {o["label"] for o in r.json()["objects"]} == {"/etc/hostname"}


def test_relational_search_over_the_api(client):
    r = client.post("/v1/search", json={"text": "red circle", "k": 5})
    plain = r.json()["hits"]
    assert all("relation" not in h for h in plain)  # no relation phrase: today's schema exactly
    r = client.post("/v1/search", json={"text": "a red circle near a blue square", "k": 5})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    for h in hits:
        rel = h["relation"]
        assert rel["predicate"] == "near" and rel["object"]["region_id"] != h["region_id"]
        assert set(rel["object"]) == {"region_id", "bbox", "score"}
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.slow
def test_web_page_scene_view(live_server):
    from .test_browser import SHOTS, web_page

    with web_page(live_server) as (page, errors):
        page.fill("#q", "a red circle near a blue square")
        page.click("#go")
        page.wait_for_selector("#status:has-text('for “a red circle near a blue square”')", timeout=60_000)
        if page.locator(".hit").count():
            assert "near region" in page.inner_text(".hit .kind")
            page.locator(".hit").first.click()
        else:
            page.fill("#q", "red circle")
            page.click("#go")
            page.wait_for_selector(".hit", timeout=30_000)
            page.locator(".hit").first.click()
        page.wait_for_function("document.getElementById('viewer-img').naturalWidth > 0", timeout=30_000)
        page.click("#scene-btn")
        page.wait_for_selector("#scene-panel:not([hidden])", timeout=60_000)
        text = page.inner_text("#scene-text")
        assert " object" in text and "% of image" in text
        painted = page.evaluate("""() => { const c = document.getElementById('regions-canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")
        assert painted > 0
        page.screenshot(path=str(SHOTS / "4_scene_view.png"), full_page=True)
    assert not errors, errors
