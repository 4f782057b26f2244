"""The MCP server end to end: the official SDK's stdio client spawns `regionsearch mcp` on a
small data dir indexed with the tiny models, lists the tools and calls each one."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("mcp")

TOOLS = {"search_regions", "describe_scene", "segment", "get_region"}


@pytest.fixture(scope="module")
def mcp_data_dir(tmp_path_factory) -> Path:
    from PIL import Image

    from regionsearch.config import load_config
    from regionsearch.engine import Engine
    from regionsearch.testing.shapes import make_scene, scene_seed

    root = tmp_path_factory.mktemp("mcp")
    (root / "images").mkdir()
    for i in range(2):
        Image.fromarray(make_scene(scene_seed(2718, i), n_min=3).image).save(root / "images" / f"s{i}.png")
    with Engine(load_config("tiny"), root / "data") as eng:
        assert eng.index([str(root / "images")], progress=False).indexed == 2
    return root / "data"


def _call(data_dir: Path, script):
    import anyio
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "regionsearch.cli", "mcp", "--config", "tiny", "--data-dir", str(data_dir)],
                                   env=env, cwd=repo)

    async def main():
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await script(session)

    return anyio.run(main)


def _json(result) -> dict:
    assert not result.is_error, result.content
    texts = [c for c in result.content if c.type == "text"]
    assert len(texts) == 1
    return json.loads(texts[0].text)


def _png(result) -> bytes:
    images = [c for c in result.content if c.type == "image"]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    data = base64.b64decode(images[0].data)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return data


def test_mcp_client_lists_and_calls_every_tool(mcp_data_dir):
    from regionsearch.masks import decode_rle

    async def script(session):
        listed = await session.list_tools()
        out = {"tools": {t.name: t for t in listed.tools}}
        out["search"] = await session.call_tool("search_regions", {"text": "red circle", "k": 3, "overlay": True})
        out["filtered"] = await session.call_tool("search_regions", {"text": "blue square", "k": 2,
                                                                     "filters": {"per_image": 1}})
        first = _json(out["search"])["hits"][0]
        out["scene"] = await session.call_tool("describe_scene", {"image_id": first["image_id"], "overlay": True})
        out["scene_labels"] = await session.call_tool("describe_scene", {"image_id": first["image_id"],
                                                                         "labels": ["red circle", "blue square"]})
        x, y, w, h = first["bbox"]
        out["segment"] = await session.call_tool("segment", {"image_id": first["image_id"],
                                                             "points": [[x + w / 2, y + h / 2]], "overlay": True})
        out["segment_box"] = await session.call_tool("segment", {"image_id": first["image_id"],
                                                                 "box": [x, y, x + w, y + h]})
        out["region"] = await session.call_tool("get_region", {"region_id": first["region_id"], "overlay": True})
        out["missing"] = await session.call_tool("get_region", {"region_id": 999999})
        out["bad_k"] = await session.call_tool("search_regions", {"text": "red circle", "k": 0})
        out["no_prompt"] = await session.call_tool("segment", {"image_id": first["image_id"]})
        out["first"] = first
        return out

    out = _call(mcp_data_dir, script)
    tools = out["tools"]
    assert set(tools) == TOOLS
    assert {"text", "k", "filters"} <= set(tools["search_regions"].input_schema["properties"])
    assert {"image_id", "labels"} <= set(tools["describe_scene"].input_schema["properties"])
    assert {"image_id", "points", "labels", "box"} <= set(tools["segment"].input_schema["properties"])
    assert "region_id" in tools["get_region"].input_schema["properties"]

    hits = _json(out["search"])["hits"]
    assert len(hits) == 3 and hits[0]["score"] >= hits[-1]["score"]
    assert set(hits[0]["mask"]) == {"size", "counts"}
    _png(out["search"])
    filtered = _json(out["filtered"])["hits"]
    assert len({h["image_id"] for h in filtered}) == len(filtered) == 2

    scene = _json(out["scene"])
    assert scene["image"]["id"] == out["first"]["image_id"] and scene["objects"] and scene["text"]
    assert {"region_id", "label", "label_score", "bbox", "area", "centroid", "mask"} <= set(scene["objects"][0])
    _png(out["scene"])
    assert {o["label"] for o in _json(out["scene_labels"])["objects"]} <= {"red circle", "blue square"}

    seg = _json(out["segment"])
    m = decode_rle(seg["masks"][0]["mask"])
    x, y, w, h = out["first"]["bbox"]
    assert m[int(y + h / 2), int(x + w / 2)]  # the clicked pixel is in the best mask
    _png(out["segment"])
    assert _json(out["segment_box"])["masks"]

    region = _json(out["region"])
    assert region["region_id"] == out["first"]["region_id"] and region["mask"] == out["first"]["mask"]
    _png(out["region"])

    for name in ("missing", "bad_k", "no_prompt"):
        res = out[name]
        assert res.is_error
        assert not any(c.type == "text" and "Traceback" in c.text for c in res.content)
    assert "999999" in out["missing"].content[0].text
    assert "prompt" in out["no_prompt"].content[0].text
