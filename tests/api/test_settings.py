"""Settings from the environment, ``run_server`` wiring (``regionsearch serve``), CORS."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.settings import Settings

from .conftest import make_settings


def test_from_env_and_overrides():
    env = {"REGIONSEARCH_API_KEY": "s3cret", "REGIONSEARCH_CORS_ORIGINS": "http://a.example, http://b.example",
           "REGIONSEARCH_MAX_K": "20", "REGIONSEARCH_DATA_DIR": "/from/env", "REGIONSEARCH_UNRELATED": "x"}
    s = Settings.from_env(env, data_dir="/explicit", config=None)
    assert s.api_key.get_secret_value() == "s3cret" and s.writes_enabled
    assert s.cors_origins == ["http://a.example", "http://b.example"]
    assert s.max_k == 20 and s.data_dir == "/explicit"
    assert "s3cret" not in repr(s)
    assert not Settings.from_env({}).writes_enabled
    assert Settings.from_env({}).cors_origins == []
    with pytest.raises(ValidationError, match="max_k"):
        Settings.from_env({"REGIONSEARCH_MAX_K": "0"})


def test_run_server_wiring(monkeypatch):
    import uvicorn

    from api import app as app_mod

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, log_level: seen.update(app=app, host=host, port=port))
    app_mod.run_server(host="127.0.0.1", port=8123, config="tiny", data_dir="/tmp/nowhere", db=None, device="cpu")
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    s = seen["app"].state.service.settings
    assert (s.config, s.data_dir, s.device) == ("tiny", "/tmp/nowhere", "cpu")


def test_cors_closed_by_default_and_configurable(indexed_dir, client):
    from fastapi.testclient import TestClient

    from api.app import create_app

    origin = {"Origin": "http://evil.example"}
    r = client.get("/healthz", headers=origin)
    assert "access-control-allow-origin" not in r.headers
    app = create_app(make_settings(indexed_dir, cors_origins=["http://ok.example"]))
    with TestClient(app) as c:
        ok = c.options("/v1/search", headers={"Origin": "http://ok.example", "Access-Control-Request-Method": "POST"})
        assert ok.headers.get("access-control-allow-origin") == "http://ok.example"
        bad = c.get("/healthz", headers=origin)
        assert "access-control-allow-origin" not in bad.headers
