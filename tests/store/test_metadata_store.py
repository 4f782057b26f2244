"""MetadataStore on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from sqlalchemy import inspect, text

from regionsearch.errors import NotFoundError, StoreError
from regionsearch.store import MetadataStore, decode_vectors
from regionsearch.types import Region

DIM = 16


@dataclass
class Result:
    path: str
    sha256: str
    width: int
    height: int
    pipeline_key: str
    regions: list
    embeddings: np.ndarray = field(repr=False)


def make_result(path, n=3, sha=None, key="k1", seed=0, areas=None, ious=None):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    regions = []
    for i in range(n):
        kind = "whole" if i == 0 else "mask"
        regions.append(Region(bbox=(i + 0.5, 2.0, 10.0, 20.25), area=(areas or [100 * (i + 1)] * n)[i],
                              rle={"size": [40, 30], "counts": f"c{i}_%_"},
                              predicted_iou=None if kind == "whole" else (ious or [0.5 + 0.1 * i] * n)[i],
                              stability_score=None if kind == "whole" else 0.9, kind=kind))
    return Result(path, sha or f"sha-{path}", 30, 40, key, regions, emb)


@pytest.fixture
def store(db_url):
    s = MetadataStore(db_url)
    yield s
    s.close()


def test_migrates_to_head_and_schema(store, db_url):
    names = set(inspect(store.engine).get_table_names())
    assert {"images", "regions", "embeddings", "store_meta", "alembic_version"} <= names
    # reopening is a no-op migration and keeps the store identity
    sid = store.store_id()
    again = MetadataStore(db_url)
    assert again.store_id() == sid
    again.close()
    if store.backend == "sqlite":
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_round_trip(store):
    r = make_result("/data/a.jpg", n=3)
    bw = store.write_batch([r], dim=DIM)
    assert len(bw.image_ids) == 1 and bw.region_ids.tolist() == sorted(bw.region_ids.tolist())
    rows = store.regions_of_image(bw.image_ids[0])
    assert [x.region_id for x in rows] == bw.region_ids.tolist()
    for row, reg in zip(rows, r.regions):
        assert row.bbox == reg.bbox and row.area == reg.area and row.kind == reg.kind
        assert row.rle == reg.rle and row.predicted_iou == reg.predicted_iou
        assert row.image_path == "/data/a.jpg" and (row.image_width, row.image_height) == (30, 40)
    img = store.get_image(bw.image_ids[0])
    assert (img.sha256, img.status, img.pipeline_key) == ("sha-/data/a.jpg", "indexed", "k1")
    got = store.embedding(int(bw.region_ids[1]), DIM)
    assert np.allclose(got, r.embeddings[1], atol=2e-3)
    ids, vecs = zip(*store.iter_embeddings(DIM))
    assert np.concatenate(ids).tolist() == bw.region_ids.tolist()
    with pytest.raises(NotFoundError):
        store.get_region(10**9)


def test_fetch_regions_keeps_order_and_filters(store):
    a = store.write_batch([make_result("/d/cats/a_1.jpg", n=3, ious=[0, 0.6, 0.95])], dim=DIM)
    b = store.write_batch([make_result("/d/cats%x/b.jpg", n=3, seed=1)], dim=DIM)
    c = store.write_batch([make_result("/d/Cats/c.jpg", n=2, seed=2)], dim=DIM)
    all_ids = np.concatenate([a.region_ids, b.region_ids, c.region_ids]).tolist()
    order = all_ids[::-1] + [10**9]
    assert [r.region_id for r in store.fetch_regions(order)] == all_ids[::-1]
    # prefix: '%' and '_' are literal, case-sensitive
    got = store.fetch_regions(all_ids, path_prefix="/d/cats")
    assert {r.image_path for r in got} == {"/d/cats/a_1.jpg", "/d/cats%x/b.jpg"}
    assert {r.image_path for r in store.fetch_regions(all_ids, path_prefix="/d/cats%")} == {"/d/cats%x/b.jpg"}
    assert store.fetch_regions(all_ids, path_prefix="/d/cats/a%") == []
    assert {r.image_path for r in store.fetch_regions(all_ids, path_prefix="/d/cats/a_")} == {"/d/cats/a_1.jpg"}
    assert all(r.area >= 200 for r in store.fetch_regions(all_ids, min_area=200))
    assert len(store.fetch_regions(all_ids, min_area=200)) == 2 + 2 + 1
    scored = store.fetch_regions(a.region_ids, min_score=0.9)
    assert [r.kind for r in scored] == ["whole", "mask"] and scored[1].predicted_iou == 0.95
    assert {r.kind for r in store.fetch_regions(all_ids, kind="whole")} == {"whole"}


def test_replace_changed_image_and_failures(store):
    first = store.write_batch([make_result("/x.jpg", n=3)], dim=DIM)
    second = store.write_batch([make_result("/x.jpg", n=2, sha="new")], [("/bad.jpg", None, "not an image")], dim=DIM)
    assert sorted(second.removed_region_ids.tolist()) == sorted(first.region_ids.tolist())
    assert min(second.region_ids) > max(first.region_ids)  # ids are never reused
    assert second.image_ids[0] != first.image_ids[0]
    assert store.counts() == {"images_indexed": 1, "images_failed": 1, "regions": 2, "embeddings": 2,
                              "videos_indexed": 0, "tracks": 0, "track_frames": 0}
    fails = store.failures()
    assert [(f.path, f.status, f.error) for f in fails] == [("/bad.jpg", "failed", "not an image")]
    # a failure replaced by a success
    store.write_batch([make_result("/bad.jpg", n=1)], dim=DIM)
    assert store.failures() == []


def test_ids_never_reused_after_delete(store):
    a = store.write_batch([make_result("/a.jpg", n=2)], dim=DIM)
    n, removed = store.delete_paths(["/a.jpg", "/missing.jpg"])
    assert n == 1 and sorted(removed.tolist()) == a.region_ids.tolist()
    b = store.write_batch([make_result("/a.jpg", n=2)], dim=DIM)
    assert min(b.region_ids) > max(a.region_ids) and b.image_ids[0] > a.image_ids[0]
    assert store.counts()["embeddings"] == 2


def test_cascade_on_delete(store):
    from sqlalchemy import delete

    from regionsearch.store import images

    store.write_batch([make_result("/a.jpg", n=2)], dim=DIM)
    with store.engine.begin() as conn:
        conn.execute(delete(images))
    assert store.counts() == {"images_indexed": 0, "images_failed": 0, "regions": 0, "embeddings": 0,
                              "videos_indexed": 0, "tracks": 0, "track_frames": 0}


def test_batch_validation(store):
    r = make_result("/a.jpg", n=2)
    with pytest.raises(StoreError):
        store.write_batch([r, make_result("/a.jpg")], dim=DIM)
    bad = make_result("/b.jpg", n=2)
    bad.embeddings = bad.embeddings[:1]
    with pytest.raises(StoreError):
        store.write_batch([bad], dim=DIM)
    assert store.counts()["regions"] == 0


def test_bulk_insert_is_fast(store):
    import time

    results = [make_result(f"/bulk/{i}.jpg", n=50, seed=i) for i in range(40)]
    t = time.perf_counter()
    bw = store.write_batch(results, dim=DIM)
    assert time.perf_counter() - t < 10
    assert bw.region_ids.size == 2000 and len(np.unique(bw.region_ids)) == 2000
    # region i of the batch got the i-th id: check through the stored embedding
    k = 1234
    assert np.allclose(store.embedding(int(bw.region_ids[k]), DIM), results[k // 50].embeddings[k % 50], atol=2e-3)
    assert store.embedding_stats() == (2000, int(bw.region_ids.max()), int(bw.region_ids.sum()))


def test_consistency_queries(store):
    from sqlalchemy import delete

    from regionsearch.store import embeddings

    a = store.write_batch([make_result("/a.jpg", n=2), make_result("/empty.jpg", n=0)], dim=DIM)
    with store.engine.begin() as conn:
        conn.execute(delete(embeddings).where(embeddings.c.region_id == int(a.region_ids[0])))
    assert store.regions_without_embeddings() == [(int(a.region_ids[0]), a.image_ids[0])]
    assert store.indexed_images_without_regions() == [a.image_ids[1]]


def test_decode_vectors_renormalises():
    v = np.random.default_rng(0).normal(size=(3, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    from regionsearch.store import encode_vectors

    out = decode_vectors(encode_vectors(v), DIM)
    assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-6) and np.allclose(out, v, atol=2e-3)
    with pytest.raises(StoreError):
        decode_vectors(encode_vectors(v), DIM * 2)


def test_bad_url():
    with pytest.raises(StoreError):
        MetadataStore("not a url")
