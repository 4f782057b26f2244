"""The CLI through a running server (``--server`` / ``REGIONSEARCH_SERVER``): the same hits, info
and exports as the local commands on the same data dir, one-line errors; ``--save`` prints the
overlay files it wrote; the overlay endpoint draws with the same renderer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from regionsearch.cli import main

from .conftest import LiveServer, make_settings

QUERIES = ("red circle", "blue square", "green triangle", "yellow star", "purple hexagon")


@pytest.fixture(scope="module")
def server(indexed_dir):
    """uvicorn serving the (read-only) test data dir the local commands open too."""
    from api.app import create_app

    with LiveServer(create_app(make_settings(indexed_dir))) as live:
        yield live


@pytest.fixture(autouse=True)
def _no_env_server(monkeypatch):
    monkeypatch.delenv("REGIONSEARCH_SERVER", raising=False)
    monkeypatch.delenv("REGIONSEARCH_DATA_DIR", raising=False)


def _run(args, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code or 0, out.out, out.err


def _ok(args, capsys) -> str:
    code, out, err = _run(args, capsys)
    assert code == 0, err
    return out


def test_search_through_the_server_gives_the_local_hits(server, indexed_dir, capsys):
    for q in QUERIES:
        local = json.loads(_ok(["search", q, "-k", 8, "--json", "-d", indexed_dir], capsys))
        remote = json.loads(_ok(["search", q, "-k", 8, "--json", "--server", server.url], capsys))
        assert [h["region_id"] for h in remote["hits"]] == [h["region_id"] for h in local["hits"]], q
        assert len(local["hits"]) == 8
        np.testing.assert_allclose([h["score"] for h in remote["hits"]], [h["score"] for h in local["hits"]],
                                   atol=1e-5)
        for a, b in zip(local["hits"], remote["hits"]):  # the same document, key for key
            assert list(a) == list(b) and {**a, "score": 0} == {**b, "score": 0}
    # the text output too, and the filters travel (no dedupe, one per image)
    args = ["search", "red circle", "-k", 6, "--no-dedupe", "--per-image", 2]
    local = _ok(args + ["-d", indexed_dir], capsys)
    remote = _ok(args + ["--server", server.url], capsys)
    assert remote == local and len(local.splitlines()) == 6


def test_server_from_the_environment(server, indexed_dir, capsys, monkeypatch):
    monkeypatch.setenv("REGIONSEARCH_SERVER", server.url + "/")
    remote = json.loads(_ok(["search", "red circle", "-k", 3, "--json"], capsys))
    monkeypatch.setenv("REGIONSEARCH_SERVER", "http://127.0.0.1:9")  # an explicit data dir wins over the env
    local = json.loads(_ok(["search", "red circle", "-k", 3, "--json", "-d", indexed_dir], capsys))
    assert [h["region_id"] for h in remote["hits"]] == [h["region_id"] for h in local["hits"]]


def test_info_through_the_server_agrees(server, indexed_dir, capsys):
    local = json.loads(_ok(["info", "--json", "-d", indexed_dir], capsys))
    remote = json.loads(_ok(["info", "--json", "--server", server.url], capsys))
    assert remote == local
    assert remote["regions"] > 0 and remote["images_indexed"] == 4
    local_text = _ok(["info", "--errors", "-d", indexed_dir], capsys)
    remote_text = _ok(["info", "--errors", "--server", server.url], capsys)
    assert remote_text == local_text and "failed files (0):" in remote_text


@pytest.mark.parametrize("fmt", ["coco", "parquet"])
def test_export_query_through_the_server_writes_the_local_regions(server, indexed_dir, tmp_path, capsys, fmt):
    ext = {"coco": "json", "parquet": "parquet"}[fmt]
    args = ["export", "--format", fmt, "--query", "red circle", "-k", 7, "--labels", "red circle,blue square", "--json"]
    local = json.loads(_ok(args[:1] + [tmp_path / f"local.{ext}"] + args[1:] + ["-d", indexed_dir], capsys))
    remote = json.loads(_ok(args[:1] + [tmp_path / f"remote.{ext}"] + args[1:] + ["--server", server.url], capsys))
    assert {k: v for k, v in remote.items() if k != "path"} == {k: v for k, v in local.items() if k != "path"}
    assert remote["regions"] == 7 and Path(remote["path"]).is_file()
    assert not list(tmp_path.glob(".*partial"))
    if fmt == "coco":
        a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("local", "remote"))
        assert b["images"] == a["images"] and b["categories"] == a["categories"]
        assert [x["region_id"] for x in b["annotations"]] == [x["region_id"] for x in a["annotations"]]
        for x, y in zip(a["annotations"], b["annotations"]):
            assert x["segmentation"] == y["segmentation"] and x["category_id"] == y["category_id"]
            assert x["score"] == pytest.approx(y["score"], abs=1e-5)
    else:
        import pyarrow.parquet as pq

        a, b = (pq.read_table(tmp_path / f"{n}.parquet").to_pydict() for n in ("local", "remote"))
        assert b["region_id"] == a["region_id"] and b["rle_counts"] == a["rle_counts"]
        np.testing.assert_allclose(np.array(b["embedding"]), np.array(a["embedding"]), atol=1e-6)


def test_server_errors_are_one_line_exit_2(server, indexed_dir, tmp_path, capsys):
    cases = [
        (["search", "x", "--server", "http://127.0.0.1:9"], "cannot reach the regionsearch server at http://127.0.0.1:9"),
        (["info", "--server", "localhost:8000"], "the server URL must look like http://host:8000"),
        (["search", "x", "--server", server.url + "/nope"], "is this a regionsearch server"),
        (["search", "x", "--server", server.url, "-d", indexed_dir], "give --server or --data-dir/--db, not both"),
        (["export", tmp_path / "a.json", "--server", server.url], "add --query TEXT"),
        (["search", "   ", "--server", server.url], "HTTP 422"),
        (["export", tmp_path / "b.json", "-q", "x", "-k", 0, "--server", server.url], "HTTP 422"),
    ]
    for args, expected in cases:
        code, out, err = _run(args, capsys)
        assert code == 2, (args, out, err)
        assert err.startswith("error: ") and expected in err and len(err.strip().splitlines()) == 1, (args, err)
        assert "Traceback" not in err
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "b.json").exists()


def test_save_prints_every_overlay_it_wrote(server, indexed_dir, tmp_path, capsys):
    from PIL import Image

    for where, extra in (("local", ["-d", indexed_dir]), ("remote", ["--server", server.url])):
        out = _ok(["search", "red circle", "-k", 4, "--save", tmp_path / where] + extra, capsys)
        written = [Path(line.split(" ", 1)[1]) for line in out.splitlines() if line.startswith("wrote ")]
        assert len(written) == 4 and sorted(written) == sorted((tmp_path / where).iterdir())
        for path in written:
            with Image.open(path) as img:
                assert img.format == "PNG"
    # the server's overlays are the local ones, byte for byte
    for path in (tmp_path / "local").iterdir():
        assert (tmp_path / "remote" / path.name).read_bytes() == path.read_bytes()
    # with --json, stdout stays one JSON document and the paths go to stderr
    code, out, err = _run(["search", "red circle", "-k", 2, "--json", "--save", tmp_path / "j", "-d", indexed_dir],
                          capsys)
    assert code == 0 and len(json.loads(out)["hits"]) == 2 and err.count("wrote ") == 2


def test_overlay_endpoint_uses_the_renderer(client, indexed_dir):
    from regionsearch.datadir import DataDir
    from regionsearch.imageio import load_image, path_from_db
    from regionsearch.render import overlay, to_png

    with DataDir.open(indexed_dir, readonly=True) as dd:
        rec = next(iter(dd.iter_images(None)))
        rows = [r for r in dd.regions_of_image(rec.id) if r.kind == "mask"]
    image = load_image(path_from_db(rec.path)).array
    want = to_png(overlay(image, [r.rle for r in rows], [r.bbox for r in rows], [str(r.region_id) for r in rows]))
    resp = client.get(f"/v1/images/{rec.id}/overlay.png")
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    assert resp.content == want
