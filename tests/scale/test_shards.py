"""Parquet shards of the Ray runner: exact round trip of regions, float16 embeddings, failures;
shards of another pipeline are not reused."""

from __future__ import annotations

import numpy as np
import pytest

from regionsearch.testing.ci import require

require("pyarrow")

from indexer.shards import (image_row, load_pending, read_shard, regions_from_json, regions_to_json,  # noqa: E402
                            row_to_result, shard_dir, write_shard)
from regionsearch.masks import encode_rle  # noqa: E402
from regionsearch.types import Region  # noqa: E402


def _regions(rng):
    out = []
    for i in range(3):
        m = np.zeros((20, 30), bool)
        m[i:i + 5, 2 * i:2 * i + 7] = True
        out.append(Region((2.0 * i, float(i), 7.0, 5.0), int(m.sum()), encode_rle(m), float(rng.random()),
                          float(rng.random())))
    out.append(Region((0.0, 0.0, 30.0, 20.0), 600, encode_rle(np.ones((20, 30), bool)), None, None, "whole"))
    return out


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    regs = _regions(rng)
    assert regions_from_json(regions_to_json(regs)) == regs
    emb = rng.normal(size=(4, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rows = [image_row("/a/x.png", "s1", "key", width=30, height=20, regions=regs, embeddings=emb),
            image_row("/a/bad.png", None, "key", error="not an image (unrecognised format)"),
            image_row("/a/empty.png", "s3", "key", width=30, height=20, regions=[], embeddings=np.zeros((0, 16)))]
    p = write_shard(shard_dir(tmp_path) / "shard-t-00000.parquet", rows, "key", 16)
    back = read_shard(p)
    assert [r["status"] for r in back] == ["indexed", "failed", "indexed"]
    res = row_to_result(back[0], 16)
    assert res.regions == regs and (res.path, res.sha256, res.width, res.height) == ("/a/x.png", "s1", 30, 20)
    np.testing.assert_array_equal(res.embeddings, emb.astype(np.float16).astype(np.float32))
    assert back[1]["sha256"] is None and back[1]["error"] == "not an image (unrecognised format)"
    assert row_to_result(back[2], 16).embeddings.shape == (0, 16)
    assert not list(tmp_path.rglob("*.tmp-*"))


def test_pending_shards_of_another_pipeline_are_not_reused(tmp_path):
    rows = [image_row("/a/x.png", "s1", "old", error="boom")]
    write_shard(shard_dir(tmp_path) / "shard-a-00000.parquet", rows, "old", 16)
    write_shard(shard_dir(tmp_path) / "shard-b-00000.parquet", [image_row("/a/y.png", "s2", "new", error="x")],
                "new", 16)
    (shard_dir(tmp_path) / "shard-c-00000.parquet").write_bytes(b"garbage")
    reuse, files = load_pending(tmp_path, "new", 16)
    assert list(reuse) == [("/a/y.png", "s2")] and len(files) == 3
    assert load_pending(tmp_path, "new", 32)[0] == {}
