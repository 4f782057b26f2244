"""Browsing without a query (``GET /v1/images``, ``thumb.jpg``) and the filters of the
similar-region and image searches, on the small indexed data dir of ``conftest``."""

from __future__ import annotations

import io

import pytest

from .conftest import png_bytes


def _all_pages(client, limit: int, **params) -> list[list[dict]]:
    pages, before = [], None
    for _ in range(50):
        q = {"limit": limit, **params, **({"before": before} if before else {})}
        r = client.get("/v1/images", params=q)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body["images"])
        before = body["next_before"]
        if before is None:
            return pages
    raise AssertionError("paging did not end")


def test_images_newest_first_paged_once_each(client):
    first = client.get("/v1/images").json()
    assert first["total"] == 4 and first["next_before"] is None and len(first["images"]) == 4
    ids = [im["image_id"] for im in first["images"]]
    assert ids == sorted(ids, reverse=True)  # newest (largest id) first
    pages = _all_pages(client, 3)
    assert [len(p) for p in pages] == [3, 1]
    assert [im["image_id"] for p in pages for im in p] == ids
    pages = _all_pages(client, 1)
    assert [im["image_id"] for p in pages for im in p] == ids and len(pages) == 4
    assert client.get("/v1/images", params={"limit": 2, "before": ids[1]}).json()["images"][0]["image_id"] == ids[2]


def test_image_summary_matches_the_image_record(client):
    for im in client.get("/v1/images").json()["images"]:
        full = client.get(f"/v1/images/{im['image_id']}").json()
        assert im["path"] == full["path"] and (im["width"], im["height"]) == (full["width"], full["height"])
        assert im["regions"] == sum(r["kind"] == "mask" for r in full["regions"]) > 0
        assert im["indexed_at"] and im["indexed_at"].endswith("+00:00")


def test_images_path_prefix(client):
    images = client.get("/v1/images").json()["images"]
    one = next(im for im in images if im["path"].endswith("scene1.png"))
    r = client.get("/v1/images", params={"path_prefix": one["path"][:-len("1.png")] + "1"}).json()
    assert [im["image_id"] for im in r["images"]] == [one["image_id"]] and r["total"] == 1
    folder = one["path"].rsplit("/", 1)[0] + "/"
    assert client.get("/v1/images", params={"path_prefix": folder}).json()["total"] == 4
    # case-sensitive, and nothing matches: an empty page, not an error
    r = client.get("/v1/images", params={"path_prefix": folder.upper() + "nope"}).json()
    assert r == {"images": [], "next_before": None, "total": 0}


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 201}, {"before": 0}, {"limit": "x"},
                                    {"path_prefix": "x" * 4097}])
def test_images_bad_paging_is_422(client, params):
    r = client.get("/v1/images", params=params)
    assert r.status_code == 422 and r.json()["error"]


def test_thumbnail(client, first_ids):
    from PIL import Image

    iid = first_ids["image"]
    image = client.get(f"/v1/images/{iid}").json()
    r = client.get(f"/v1/images/{iid}/thumb.jpg", params={"size": 64})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.format == "JPEG" and max(im.size) == 64
        assert abs(im.size[0] / im.size[1] - image["width"] / image["height"]) < 0.05
    with Image.open(io.BytesIO(client.get(f"/v1/images/{iid}/thumb.jpg", params={"size": 1024}).content)) as im:
        assert im.size == (image["width"], image["height"])  # never scaled up
    assert client.get("/v1/images/999999/thumb.jpg").status_code == 404
    assert client.get(f"/v1/images/{iid}/thumb.jpg", params={"size": 8}).status_code == 422


def test_similar_takes_the_search_filters(client, first_ids):
    rid = first_ids["region"]
    url = f"/v1/regions/{rid}/similar"
    hits = client.get(url, params={"k": 20}).json()["hits"]
    assert len({h["image_id"] for h in hits}) > 1
    one = client.get(url, params={"k": 20, "per_image": 1}).json()["hits"]
    assert len(one) == len({h["image_id"] for h in one})
    path = hits[0]["image_path"]
    same = client.get(url, params={"k": 20, "path_prefix": path}).json()["hits"]
    assert same and all(h["image_path"] == path for h in same)
    assert client.get(url, params={"k": 20, "min_score": 1.0}).json()["hits"] == []
    big = client.get(url, params={"k": 20, "min_area": 0.2}).json()["hits"]
    assert all(h["area"] >= 0.2 * h["mask"]["size"][0] * h["mask"]["size"][1] for h in big)
    assert len(big) < len(hits)
    assert client.get(url, params={"min_area": -1}).status_code == 422
    assert client.get(url, params={"min_score": "nan"}).status_code == 422


def test_image_search_takes_the_search_filters(client, scenes):
    data = png_bytes(scenes[0].image)

    def hits(**form):
        r = client.post("/v1/search/image", files={"file": ("q.png", data, "image/png")}, data={"k": "20", **form})
        assert r.status_code == 200, r.text
        return r.json()["hits"]

    every = hits()
    assert len({h["image_id"] for h in every}) > 1
    path = every[-1]["image_path"]
    assert all(h["image_path"] == path for h in hits(path_prefix=path))
    # min_score keeps only hits scoring at least it (the query image itself is indexed, so its own
    # whole-image region can score 1.0 up to rounding: a threshold inside the range is the test)
    scores = sorted(h["score"] for h in every)
    mid = scores[len(scores) // 2]
    kept = hits(min_score=f"{mid:.6f}")
    assert kept and all(h["score"] >= mid - 1e-5 for h in kept) and len(kept) < len(every)
    assert len(hits(min_area="0.2")) < len(every)
    bad = client.post("/v1/search/image", files={"file": ("q.png", data, "image/png")}, data={"min_score": "2"})
    assert bad.status_code == 422


def test_ready_states_the_limits(client):
    limits = client.get("/readyz").json()["limits"]
    assert limits == {"max_k": 50, "max_text_chars": 200, "max_upload_bytes": 2_000_000}  # conftest's settings


def test_openapi_documents_the_listing(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/images"]["get"]
    params = {p["name"]: p["schema"] for p in op["parameters"]}
    assert params["limit"]["maximum"] == 200 and params["limit"]["minimum"] == 1
    assert set(op["responses"]["200"]["links"]) == {"GetImage", "GetImageThumb"}
    assert "/v1/images/{image_id}/thumb.jpg" in spec["paths"]
    similar = {p["name"] for p in spec["paths"]["/v1/regions/{region_id}/similar"]["get"]["parameters"]}
    assert {"path_prefix", "min_area", "min_score", "per_image"} <= similar
