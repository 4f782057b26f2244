"""Every read endpoint against a small indexed data dir (tiny preset), and their 4xx cases."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from .conftest import png_bytes

HIT_KEYS = {"region_id", "image_id", "image_path", "score", "bbox", "area", "mask", "predicted_iou",
            "stability_score", "kind", "region_kind"}


def _png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        return img.size


def test_health_ready_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["ready"] and body["models"] == {"clip": True, "sam": True}
    assert body["index"]["images_indexed"] >= 4 and body["index"]["vectors"] >= 4
    assert body["index"]["videos_indexed"] == 0 and body["index"]["tracks"] == 0  # an image-only data dir
    m = client.get("/metrics")
    assert m.status_code == 200 and "regionsearch_http_requests_total" in m.text
    assert 'route="/readyz"' in m.text


def test_search_matches_cli_schema(client, indexed_dir):
    from regionsearch.config import load_config
    from regionsearch.engine import Engine

    r = client.post("/v1/search", json={"text": "red circle", "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == "red circle" and 1 <= len(body["hits"]) <= 3
    assert all(set(h) == HIT_KEYS for h in body["hits"])
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)
    with Engine(load_config("tiny"), indexed_dir, readonly=True) as eng:
        expected = [h.to_json() for h in eng.search("red circle", 3)]
    assert [h["region_id"] for h in body["hits"]] == [h["region_id"] for h in expected]
    np.testing.assert_allclose(scores, [h["score"] for h in expected], rtol=1e-5, atol=1e-6)


def test_search_filters(client):
    r = client.post("/v1/search", json={"text": "blue square", "k": 10, "filters": {"per_image": 1}})
    assert r.status_code == 200
    ids = [h["image_id"] for h in r.json()["hits"]]
    assert len(ids) == len(set(ids))
    r = client.post("/v1/search", json={"text": "blue square", "k": 10, "filters": {"min_score": 1.0}})
    assert r.status_code == 200 and r.json()["hits"] == []
    r = client.post("/v1/search", json={"text": "x", "k": 10, "filters": {"path_prefix": "/nonexistent/"}})
    assert r.status_code == 200 and r.json()["hits"] == []


def test_search_dedupe_is_on_by_default_and_can_be_turned_off(client):
    from regionsearch.masks import rle_iou

    def hits(**filters):
        r = client.post("/v1/search", json={"text": "red circle", "k": 30, "filters": filters})
        assert r.status_code == 200, r.text
        return r.json()["hits"]

    def max_same_image_iou(hs):
        return max((float(rle_iou([a["mask"]], [b["mask"]])[0, 0]) for i, a in enumerate(hs) for b in hs[:i]
                    if a["image_id"] == b["image_id"]), default=0.0)

    assert max_same_image_iou(hits()) < 0.8
    every = hits(dedupe=False)
    assert max_same_image_iou(every) >= 0.8  # the tiny SAM repeats objects: what dedupe removes
    assert client.post("/v1/search", json={"text": "red", "filters": {"dedupe": "maybe"}}).status_code == 422


@pytest.mark.parametrize("body,fragment", [
    ({"text": "red", "k": 0}, "k must be between 1 and 50"),
    ({"text": "red", "k": 51}, "k must be between 1 and 50"),
    ({"text": "r" * 201, "k": 5}, "longer than 200"),
    ({"text": "   ", "k": 5}, "empty"),
    ({"k": 5}, "text"),
    ({"text": "red", "k": 5, "filters": {"per_image": 0}}, "per_image"),
    ({"text": "red", "k": 5, "bogus": 1}, "bogus"),
])
def test_search_bad_requests(client, body, fragment):
    r = client.post("/v1/search", json=body)
    assert r.status_code == 422
    assert fragment in r.json()["error"]


def test_search_bad_json(client):
    r = client.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "error" in r.json()


def test_region_and_image_views(client, first_ids, scenes):
    rid, iid = first_ids["region"], first_ids["image"]
    region = client.get(f"/v1/regions/{rid}").json()
    assert region["region_id"] == rid and region["image_id"] == iid
    assert region["mask"]["size"] == [region["image_height"], region["image_width"]]
    crop = client.get(f"/v1/regions/{rid}/crop.png", params={"size": 64})
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/png"
    assert max(_png_size(crop.content)) <= 64
    image = client.get(f"/v1/images/{iid}").json()
    assert image["status"] == "indexed" and any(r["region_id"] == rid for r in image["regions"])
    f = client.get(f"/v1/images/{iid}/file")
    assert f.status_code == 200 and f.headers["content-type"] == "image/png"
    assert f.content in {png_bytes(s.image) for s in scenes}
    ov = client.get(f"/v1/images/{iid}/overlay.png", params={"regions": str(rid)})
    assert ov.status_code == 200 and _png_size(ov.content) == (image["width"], image["height"])
    assert client.get(f"/v1/images/{iid}/overlay.png").status_code == 200


def test_similar(client, first_ids):
    rid = first_ids["region"]
    r = client.get(f"/v1/regions/{rid}/similar", params={"k": 3})
    assert r.status_code == 200
    hits = r.json()["hits"]
    assert hits and rid not in [h["region_id"] for h in hits]
    assert client.get(f"/v1/regions/{rid}/similar", params={"k": 0}).status_code == 422


def test_search_image(client, scenes):
    data = png_bytes(scenes[0].image)
    r = client.post("/v1/search/image", files={"file": ("q.png", data, "image/png")}, data={"k": "2"})
    assert r.status_code == 200, r.text
    assert len(r.json()["hits"]) == 2 and r.json()["query"]["kind"] == "image"
    # the query is scene 0 itself: its own image comes back first
    assert r.json()["hits"][0]["image_path"].endswith("scene0.png"), r.json()["hits"][0]
    r = client.post("/v1/search/image", files={"file": ("q.png", data, "image/png")},
                    data={"k": "2", "box": "10,10,120,120"})
    assert r.status_code == 200 and r.json()["query"]["box"] == [10, 10, 120, 120]
    bad = client.post("/v1/search/image", files={"file": ("q.png", data, "image/png")}, data={"box": "5,5,1,1"})
    assert bad.status_code == 422 and "box" in bad.json()["error"]


@pytest.mark.parametrize("url", [
    "/v1/regions/999999", "/v1/regions/999999/crop.png", "/v1/regions/999999/similar",
    "/v1/images/999999", "/v1/images/999999/file", "/v1/images/999999/overlay.png",
])
def test_unknown_ids_404(client, url):
    r = client.get(url)
    assert r.status_code == 404
    assert "999999" in r.json()["error"]


def test_overlay_foreign_region_404(client, first_ids):
    iid = first_ids["image"]
    own = {r["region_id"] for r in client.get(f"/v1/images/{iid}").json()["regions"]}
    hits = client.post("/v1/search", json={"text": "shapes", "k": 50}).json()["hits"]
    foreign = next(h["region_id"] for h in hits if h["image_id"] != iid)  # exists, on another image
    assert foreign not in own
    r = client.get(f"/v1/images/{iid}/overlay.png", params={"regions": str(foreign)})
    assert r.status_code == 404 and str(foreign) in r.json()["error"]
    r = client.get(f"/v1/images/{iid}/overlay.png", params={"regions": "999999"})
    assert r.status_code == 404 and "999999" in r.json()["error"]


@pytest.mark.parametrize("url", [
    "/v1/images/..%2F..%2Fetc%2Fpasswd/file",
    "/v1/images/../../etc/passwd/file",
    "/v1/images/1%2F..%2F..%2F/file",
    "/v1/regions/1%2F..%2F..%2F",
    "/v1/regions/..%2F..%2Fetc%2Fpasswd/crop.png",
    "/v1/images/%2Fetc%2Fpasswd",
    "/v1/images/-1/file",
    "/v1/images/1.5/file",
    "/v1/images/99999999999999999999999/file",
    "/static/..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/../app.py",
    "/v1/images/1/overlay.png?regions=..%2F..%2Fetc%2Fpasswd",
])
def test_path_traversal_rejected(client, url):
    r = client.get(url)
    assert 400 <= r.status_code < 500, (url, r.status_code)
    assert b"root:" not in r.content and b"import" not in r.content


def test_errors_never_leak_tracebacks(client, monkeypatch):
    state = client.app.state.service

    def boom(*a, **k):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(state, "text_vector", boom)
    r = client.post("/v1/search", json={"text": "red", "k": 2})
    assert r.status_code == 500 and r.json() == {"error": "internal error"}
    assert "secret" not in r.text and "Traceback" not in r.text


def test_concurrent_searches_are_batched_and_exact(client, indexed_dir):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from api.deps import TextBatcher

    state = client.app.state.service
    emb = state.engine.pipeline.embedder

    class Recording:
        """The real embedder; records each batch, and holds the first one until the others queued."""

        def __init__(self):
            self.batches: list[list[str]] = []
            self.release = threading.Event()

        def embed_texts(self, texts):
            self.batches.append(list(texts))
            if len(self.batches) == 1:
                self.release.wait(30)
            return emb.embed_texts(texts)

    rec = Recording()
    batcher = TextBatcher(rec)
    texts = [f"shape number {i}" for i in range(24)]
    with ThreadPoolExecutor(24) as pool:
        first = pool.submit(batcher.encode, texts[0])
        while not rec.batches:
            threading.Event().wait(0.01)
        rest = [pool.submit(batcher.encode, t) for t in texts[1:]]
        while batcher._queue.qsize() < len(rest):
            threading.Event().wait(0.01)
        rec.release.set()
        got = [first.result(30)] + [f.result(30) for f in rest]
    # the 23 texts that arrived while the tower was busy went through it as one batch
    assert [len(b) for b in rec.batches] == [1, 23]
    assert sorted(sum(rec.batches, [])) == sorted(texts)
    # exact: each text's vector is open_clip's own encode_text of that text alone (full context,
    # float32), not a cache entry of the embedder under test
    bundle = emb.bundle
    with torch.inference_mode():
        ref = bundle.model.encode_text(bundle.tokenizer(texts)).float()
        ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    cos = (np.stack(got) * ref).sum(1)
    if emb.text_dtype == "float32":
        np.testing.assert_allclose(np.stack(got), ref, rtol=1e-4, atol=1e-5)
    else:
        assert cos.min() >= 0.999, cos.min()
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: client.post("/v1/search", json={"text": f"q{i}", "k": 3}).status_code,
                              range(16)))
    assert codes == [200] * 16


def test_request_too_large_is_413(client):
    r = client.post("/v1/search", content=b"x" * 3_200_000, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["error"]


def test_openapi_documents_v1(client):
    spec = client.get("/openapi.json").json()
    for path in ("/v1/search", "/v1/search/image", "/v1/regions/{region_id}/similar", "/v1/segment",
                 "/v1/segment/text", "/v1/images", "/v1/images/{image_id}/overlay.png"):
        assert path in spec["paths"]
    assert "multipart/form-data" in spec["paths"]["/v1/segment"]["post"]["requestBody"]["content"]


def test_openapi_states_the_enforced_limits_and_links(client):
    """The limits come from the service's settings (the test app: max_k 50, 200 characters,
    8 points), so a client following the schema sends nothing the service rejects."""
    settings = client.app.state.service.settings
    paths = client.get("/openapi.json").json()["paths"]
    search = paths["/v1/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert search["text"]["minLength"] == 1 and search["text"]["maxLength"] == settings.max_text_chars == 200
    blank = search["text"]["pattern"]  # "not only white space", white space as the service strips it
    assert re.search(blank, " red car ") and not re.search(blank, " \t\u3000\ufeff\n")
    assert (search["k"]["minimum"], search["k"]["maximum"]) == (1, settings.max_k) == (1, 50)
    similar_k = next(p for p in paths["/v1/regions/{region_id}/similar"]["get"]["parameters"] if p["name"] == "k")
    assert (similar_k["schema"]["minimum"], similar_k["schema"]["maximum"]) == (1, 50)
    regions = next(p for p in paths["/v1/images/{image_id}/overlay.png"]["get"]["parameters"]
                   if p["name"] == "regions")["schema"]
    pattern = next(o for o in regions.get("anyOf", [regions]) if o.get("type") == "string")["pattern"]
    assert re.fullmatch(pattern, ",".join(["7"] * settings.max_overlay_regions))
    assert not re.fullmatch(pattern, ",".join(["7"] * (settings.max_overlay_regions + 1)))
    seg = paths["/v1/segment"]["post"]["requestBody"]["content"]
    body = seg["application/json"]["schema"]
    assert {"required": ["box"]} in body["anyOf"] and body["properties"]["points"]["maxItems"] == 8
    form = seg["multipart/form-data"]
    assert form["schema"]["required"] == ["file", "prompt"] and form["schema"]["properties"]["file"]["minLength"] == 1
    assert "anyOf" in form["schema"]["properties"]["prompt"]
    text_form = paths["/v1/segment/text"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert text_form["properties"]["prompt"]["required"] == ["text"]
    upload = paths["/v1/images"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["encoding"]["file"]["contentType"].startswith("image/png")
    links = paths["/v1/search"]["post"]["responses"]["200"]["links"]
    assert {"GetRegion", "GetImage", "GetRegionCrop", "GetSimilarRegions"} <= set(links)
    assert links["GetSimilarRegions"]["parameters"] == {"region_id": "$response.body#/hits/0/region_id"}
    ops = {op["operationId"] for item in paths.values() for op in item.values()}
    assert all(link["operationId"] in ops for link in links.values())
    assert set(paths["/v1/images"]["post"]["responses"]["201"]["links"]) == {"GetImage", "DeleteImage"}


def test_schema_valid_bodies_are_accepted_and_invalid_types_rejected(client):
    r = client.post("/v1/search", json={"text": "red circle", "k": 3.0})  # JSON: 3.0 is an integer
    assert r.status_code == 200 and len(r.json()["hits"]) == 3
    for bad in ({"text": "red", "k": True}, {"text": "red", "k": "3"},
                {"text": "red", "filters": {"min_score": False}}):
        assert client.post("/v1/search", json=bad).status_code == 422, bad


def test_allow_header_lists_every_method_of_the_path(client, first_ids):
    r = client.options(f"/v1/images/{first_ids['image']}")
    assert r.status_code == 405 and r.headers["allow"] == "GET, DELETE"
    r = client.put("/v1/search")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_web_page_served(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert client.get("/static/app.js").status_code == 200


def test_export_without_k_is_capped_at_the_service_max_k(client):
    """An omitted ``k`` (default 100) on a service with ``max_k`` 50 exports, as the schema's
    default says, instead of refusing its own default (schemathesis ST202)."""
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/export"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in body:
        body = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert body["properties"]["k"]["default"] == body["properties"]["k"]["maximum"] == 50
    r = client.post("/v1/export", json={"text": "red circle"})
    assert r.status_code == 200, r.text
    assert 0 < int(r.headers["X-Regions"]) <= 50
    assert client.post("/v1/export", json={"text": "red circle", "k": 51}).status_code == 422
