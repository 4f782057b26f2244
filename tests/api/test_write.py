"""Write endpoints (API key), upload limits and file-name checks, delete; on a private copy of
the data dir."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from .conftest import API_KEY, make_settings, png_bytes


@pytest.fixture(scope="module")
def wclient(indexed_dir, tmp_path_factory):
    from fastapi.testclient import TestClient

    from api.app import create_app

    data = tmp_path_factory.mktemp("write") / "data"
    shutil.copytree(indexed_dir, data)
    app = create_app(make_settings(data))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def nokey_client(indexed_dir):
    from fastapi.testclient import TestClient

    from api.app import create_app

    app = create_app(make_settings(indexed_dir, api_key=None))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_upload_index_search_delete(wclient, scenes, auth):
    data = png_bytes(scenes[5].image)
    before = wclient.get("/readyz").json()["index"]["images_indexed"]
    r = wclient.post("/v1/images", files={"file": ("new.png", data, "image/png")}, headers=auth)
    assert r.status_code == 201, r.text
    up = r.json()
    assert up["status"] == "indexed" and up["regions"] >= 1
    stored = wclient.app.state.service.uploads_dir / f"{up['sha256']}.png"
    assert stored.read_bytes() == data
    assert wclient.get("/readyz").json()["index"]["images_indexed"] == before + 1
    info = wclient.get(f"/v1/images/{up['image_id']}").json()
    hits = wclient.post("/v1/search", json={"text": "shapes", "k": 50}).json()["hits"]
    own = {h["region_id"] for h in hits if h["image_id"] == up["image_id"]}
    # the upload's regions are searchable, and a hit on the new image is one of its stored regions
    assert own and own <= {r["region_id"] for r in info["regions"]}
    assert len(info["regions"]) == up["regions"]
    again = wclient.post("/v1/images", files={"file": ("again.png", data, "image/png")}, headers=auth)
    assert again.status_code == 201 and again.json()["status"] == "unchanged"
    assert again.json()["image_id"] == up["image_id"]

    d = wclient.delete(f"/v1/images/{up['image_id']}", headers=auth)
    assert d.status_code == 200 and d.json()["deleted"] == 1
    assert not stored.exists()
    assert wclient.get(f"/v1/images/{up['image_id']}").status_code == 404
    hits = wclient.post("/v1/search", json={"text": "shapes", "k": 50}).json()["hits"]
    assert all(h["image_id"] != up["image_id"] for h in hits)
    assert wclient.delete(f"/v1/images/{up['image_id']}", headers=auth).status_code == 404


@pytest.mark.parametrize("headers,status,fragment", [
    ({}, 401, "X-API-Key"),
    ({"X-API-Key": "wrong"}, 403, "wrong API key"),
    ({"X-API-Key": API_KEY + "x"}, 403, "wrong API key"),
])
def test_api_key_required(wclient, scenes, headers, status, fragment):
    r = wclient.post("/v1/images", files={"file": ("a.png", png_bytes(scenes[5].image), "image/png")},
                     headers=headers)
    assert r.status_code == status and fragment in r.json()["error"]
    assert wclient.delete("/v1/images/1", headers=headers).status_code == status


def test_writes_disabled_without_key(nokey_client, scenes):
    r = nokey_client.post("/v1/images", files={"file": ("a.png", png_bytes(scenes[5].image), "image/png")},
                          headers={"X-API-Key": "anything"})
    assert r.status_code == 503 and "REGIONSEARCH_API_KEY" in r.json()["error"]
    assert nokey_client.delete("/v1/images/1").status_code == 503
    assert nokey_client.get("/readyz").json()["writes_enabled"] is False


@pytest.mark.parametrize("name", ["../../x.png", "..\\..\\x.png", "/etc/passwd", "a/b.png", ".."])
def test_upload_filename_traversal_refused(wclient, scenes, auth, name, tmp_path):
    r = wclient.post("/v1/images", files={"file": (name, png_bytes(scenes[5].image), "image/png")}, headers=auth)
    assert 400 <= r.status_code < 500
    uploads = wclient.app.state.service.uploads_dir
    assert not (uploads.parent.parent / "x.png").exists()
    assert not list(uploads.glob("*")) if uploads.exists() else True


def test_upload_limits(wclient, auth):
    big = np.random.default_rng(0).integers(0, 255, (1100, 1100, 3), dtype=np.uint8)
    data = png_bytes(big)
    assert len(data) > 2_000_000
    r = wclient.post("/v1/images", files={"file": ("big.png", data, "image/png")}, headers=auth)
    assert r.status_code == 413 and "limit" in r.json()["error"]
    many = png_bytes(np.zeros((1001, 1001, 3), np.uint8))  # compresses well: small file, many pixels
    assert len(many) < 2_000_000
    r = wclient.post("/v1/images", files={"file": ("many.png", many, "image/png")}, headers=auth)
    assert r.status_code == 413 and "pixels" in r.json()["error"]
    r = wclient.post("/v1/search/image", files={"file": ("many.png", many, "image/png")})
    assert r.status_code == 413
    r = wclient.post("/v1/images", files={"file": ("t.png", b"GIF89a-not-really", "image/png")}, headers=auth)
    assert r.status_code == 422
    r = wclient.post("/v1/images", files={"file": ("e.png", b"", "image/png")}, headers=auth)
    assert r.status_code == 422 and "empty" in r.json()["error"]
