"""The service sees index data committed by another process without a restart, and keeps
answering searches while that process indexes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import pytest

from .conftest import make_settings, png_bytes

INDEX_SCRIPT = """
import sys
import indexer  # registers the indexing runners
from regionsearch.config import load_config
from regionsearch.engine import Engine
with Engine(load_config("tiny"), sys.argv[1]) as eng:
    report = eng.index([sys.argv[2]], progress=False)
sys.exit(0 if report.indexed == 2 else 1)
"""


@pytest.mark.slow
def test_picks_up_data_from_another_process(indexed_dir, scenes, tmp_path):
    from fastapi.testclient import TestClient

    from api.app import create_app

    data = tmp_path / "data"
    shutil.copytree(indexed_dir, data)
    folder = tmp_path / "more"
    folder.mkdir()
    for i in (4, 5):
        (folder / f"extra{i}.png").write_bytes(png_bytes(scenes[i].image))
    app = create_app(make_settings(data, api_key="k", reload_interval_s=0.2))
    with TestClient(app, raise_server_exceptions=False) as client:
        before = client.get("/readyz").json()["index"]
        proc = subprocess.Popen([sys.executable, "-c", INDEX_SCRIPT, str(data), str(folder)])
        statuses = []
        try:
            while proc.poll() is None:
                statuses.append(client.post("/v1/search", json={"text": "red circle", "k": 5}).status_code)
                time.sleep(0.2)
        finally:
            rc = proc.wait(timeout=300)
        assert rc == 0
        assert statuses and set(statuses) == {200}
        time.sleep(0.3)
        after = client.get("/readyz").json()["index"]
        assert after["images_indexed"] == before["images_indexed"] + 2
        assert after["vectors"] > before["vectors"]
        hits = client.post("/v1/search", json={"text": "anything", "k": 50}).json()["hits"]
        paths = {h["image_path"] for h in hits}
        assert any(p.endswith(("extra4.png", "extra5.png")) for p in paths)
        reloads = re.search(r"^regionsearch_index_reloads_total ([0-9.]+)$", client.get("/metrics").text, re.M)
        assert reloads and float(reloads.group(1)) >= 1


def test_upload_refused_while_another_process_writes(indexed_dir, scenes, tmp_path):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from regionsearch.datadir import DataDir

    data = tmp_path / "data"
    shutil.copytree(indexed_dir, data)
    app = create_app(make_settings(data, api_key="k"))
    with TestClient(app, raise_server_exceptions=False) as client:
        writer = DataDir.open(data, manifest=app.state.service.engine.pipeline.manifest())
        try:
            r = client.post("/v1/images", files={"file": ("a.png", png_bytes(scenes[5].image), "image/png")},
                            headers={"X-API-Key": "k"})
            assert r.status_code == 409 and "another process" in r.json()["error"]
            assert client.post("/v1/search", json={"text": "red", "k": 2}).status_code == 200
        finally:
            writer.close()
