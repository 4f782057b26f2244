"""API test fixtures: one small indexed data dir (generated shapes scenes, tiny preset) per
session, and one app (TestClient) on it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

API_KEY = "test-key-123"


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def scenes():
    from regionsearch.testing.shapes import make_scenes

    return make_scenes(6, seed=7)


@pytest.fixture(scope="session")
def indexed_dir(tmp_path_factory: pytest.TempPathFactory, scenes) -> Path:
    """A data dir with the first four scenes indexed (the others are kept for uploads)."""
    from regionsearch.config import load_config
    from regionsearch.engine import Engine

    root = tmp_path_factory.mktemp("api")
    images = root / "images"
    images.mkdir()
    for i, scene in enumerate(scenes[:4]):
        (images / f"scene{i}.png").write_bytes(png_bytes(scene.image))
    data = root / "data"
    with Engine(load_config("tiny"), data) as eng:
        report = eng.index([str(images)], progress=False)
    assert report.indexed == 4, report.as_dict()
    return data


def index_media(root: Path, scene_image: np.ndarray, specs: list) -> Path:
    """A data dir under ``root`` of one shapes scene and one mp4 a clip spec (``clip{i}.mp4``),
    indexed with the tiny models; asserts that everything was indexed."""
    from regionsearch.config import load_config
    from regionsearch.engine import Engine
    from regionsearch.testing.clips import write_mp4

    media = root / "media"
    media.mkdir()
    (media / "scene.png").write_bytes(png_bytes(scene_image))
    for i, spec in enumerate(specs):
        write_mp4(spec, media / f"clip{i}.mp4")
    data = root / "data"
    with Engine(load_config("tiny"), data) as eng:
        report = eng.index([str(media)], progress=False)
    assert (report.indexed, report.videos, report.failed) == (1 + len(specs), len(specs), 0), report.as_dict()
    return data


def make_settings(data_dir: Path, **kw):
    from api.settings import Settings

    base = dict(config="tiny", data_dir=str(data_dir), api_key=API_KEY, reload_interval_s=0.0,
                max_upload_bytes=2_000_000, max_pixels=1_000_000, max_k=50, max_text_chars=200, max_points=8)
    base.update(kw)
    return Settings(**base)


@pytest.fixture(scope="session")
def client(indexed_dir: Path):
    from fastapi.testclient import TestClient

    from api.app import create_app

    app = create_app(make_settings(indexed_dir))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
def auth() -> dict[str, str]:
    return {"X-API-Key": API_KEY}


@pytest.fixture(scope="session")
def first_ids(client) -> dict[str, int]:
    r = client.post("/v1/search", json={"text": "red circle", "k": 5})
    assert r.status_code == 200, r.text
    hit = r.json()["hits"][0]
    return {"region": hit["region_id"], "image": hit["image_id"]}


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 in a background thread."""

    def __init__(self, app):
        import socket
        import threading

        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        import time

        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def live_server(indexed_dir, tmp_path_factory):
    """A real HTTP server on a private copy of the data dir (the browser and fuzz tests may write)."""
    import shutil

    from api.app import create_app

    data = tmp_path_factory.mktemp("live") / "data"
    shutil.copytree(indexed_dir, data)
    with LiveServer(create_app(make_settings(data))) as server:
        yield server
