"""``regionsearch.client.Client`` against a real HTTP server."""

from __future__ import annotations

import pytest

from regionsearch.client import ApiError, Client

from .conftest import API_KEY, png_bytes


@pytest.fixture(scope="module")
def api(live_server):
    with Client(live_server.url, api_key=API_KEY) as c:
        yield c


def test_read_side(api, scenes):
    assert api.health() == {"status": "ok"}
    assert api.ready()["ready"] is True
    res = api.search("red circle", k=3, per_image=1)
    assert res["query"] == "red circle" and 1 <= len(res["hits"]) <= 3
    hit = res["hits"][0]
    assert api.region(hit["region_id"])["image_id"] == hit["image_id"]
    assert api.region_crop(hit["region_id"], size=32).startswith(b"\x89PNG")
    assert api.image(hit["image_id"])["image_id"] == hit["image_id"]
    assert api.image_file(hit["image_id"]) in {png_bytes(s.image) for s in scenes}
    assert api.overlay(hit["image_id"], [hit["region_id"]]).startswith(b"\x89PNG")
    assert "hits" in api.similar(hit["region_id"], k=2)
    assert len(api.search_image(png_bytes(scenes[1].image), k=2, box=(0, 0, 128, 128))["hits"]) == 2


def test_segment_by_id_upload_and_key(api, scenes, tmp_path):
    iid = api.search("blue", k=1)["hits"][0]["image_id"]
    first = api.segment(image_id=iid, points=[[40, 40]], labels=[1])
    assert len(first["masks"]) == 3
    refined = api.segment(image_id=iid, points=[[40, 40]], labels=[1], mask_input=first["masks"][0]["logits_id"],
                          multimask_output=False)
    assert refined["cached"] is True and len(refined["masks"]) == 1
    f = tmp_path / "q.png"
    f.write_bytes(png_bytes(scenes[4].image))
    up = api.segment(image=f, box=[10, 10, 100, 100])
    assert up["image_id"] is None
    again = api.segment(image_key=up["image_key"], box=[[0, 0, 50, 50], [60, 60, 120, 120]], multimask_output=False)
    assert again["cached"] is True and len(again["masks"]) == 2
    ranked = api.segment_text("red circle", image_key=up["image_key"], k=3)
    assert 1 <= len(ranked["regions"]) <= 3


def test_upload_delete_and_errors(api, live_server, scenes):
    up = api.upload(png_bytes(scenes[5].image))
    assert up["status"] in ("indexed", "unchanged")
    assert api.delete(up["image_id"])["deleted"] == 1
    with pytest.raises(ApiError) as err:
        api.delete(up["image_id"])
    assert err.value.status == 404 and "no image" in err.value.message
    with pytest.raises(ApiError) as err:
        api.search("x", k=10_000)
    assert err.value.status == 422
    with Client(live_server.url) as anonymous, pytest.raises(ApiError) as err:
        anonymous.upload(png_bytes(scenes[5].image))
    assert err.value.status == 401
