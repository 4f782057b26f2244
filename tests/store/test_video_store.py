"""Videos, tracks and per-frame track masks in the metadata store (SQLite and PostgreSQL), and the
0002 -> 0003 upgrade of an existing store."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import create_engine, inspect

from regionsearch.errors import NotFoundError
from regionsearch.masks import encode_rle
from regionsearch.store import MetadataStore
from regionsearch.types import VideoResult
from regionsearch.video.tracks import Track, TrackFrame

from test_metadata_store import DIM, make_result


def _frame(index: int, t: float, x: int, score: float = 0.9) -> TrackFrame:
    m = np.zeros((40, 60), bool)
    m[10:20, x:x + 8] = True
    return TrackFrame(index=index, t=t, rle=encode_rle(m), bbox=(float(x), 10.0, 8.0, 10.0), area=80,
                      score=score, keyframe=index == 0)


def make_video(path: str, n_tracks: int = 2, seed: int = 1) -> VideoResult:
    rng = np.random.default_rng(seed)
    tracks = []
    for i in range(n_tracks):
        emb = rng.normal(size=DIM).astype(np.float32)
        frames = [_frame(f * 15, f * 0.5, 4 * f + i, score=0.8 + 0.05 * (f == 2)) for f in range(i, i + 4)]
        tracks.append(Track(id=i, frames=frames, embedding=emb / np.linalg.norm(emb)))
    tracks.append(Track(id=99, frames=[_frame(0, 0.0, 1)], embedding=None))  # not embedded: not stored
    return VideoResult(path=path, sha256=f"sha-{path}", width=60, height=40, pipeline_key="k1", fps=30.0,
                       duration_s=4.0, n_frames=120, sample_fps=2.0, rotation=0, codec="h264", tracks=tracks)


@pytest.fixture
def store(db_url):
    s = MetadataStore(db_url)
    yield s
    s.close()


def test_video_tracks_round_trip(store):
    video = make_video("/v/a.mp4")
    bw = store.write_batch([make_result("/i/a.png"), video], dim=DIM)
    assert len(bw.image_ids) == 2 and bw.region_ids.size == 3 + 2
    track_ids = bw.region_ids[3:].tolist()
    rows = store.fetch_regions(bw.region_ids)
    assert [r.kind for r in rows] == ["whole", "mask", "mask", "track", "track"]
    t0 = rows[3]
    want = video.stored_tracks[0]
    assert t0.image_id == bw.image_ids[1] and t0.image_path == "/v/a.mp4"
    assert t0.track.frame_start == 0 and t0.track.frame_end == 45 and t0.track.t_end == 1.5
    assert t0.track.best_frame == want.best_frame.index == 30 and t0.rle == want.best_frame.rle
    assert t0.track.fps == 30.0 and t0.track.duration_s == 4.0
    rec, frames = store.get_track(track_ids[1])
    assert rec.track.video_id == bw.image_ids[1]
    assert [f.frame for f in frames] == [15, 30, 45, 60] and [f.t for f in frames] == [0.5, 1.0, 1.5, 2.0]
    assert [f.rle for f in frames] == [f.rle for f in video.stored_tracks[1].frames]
    assert frames[0].to_json()["bbox"] == [5.0, 10.0, 8.0, 10.0]
    # the track vectors are region embeddings: one id space, one vector index
    np.testing.assert_allclose(store.embeddings(track_ids, DIM),
                               np.stack([t.embedding for t in video.stored_tracks]), atol=2e-3)
    c = store.counts()
    assert (c["images_indexed"], c["videos_indexed"], c["tracks"], c["track_frames"]) == (1, 1, 2, 8)
    with pytest.raises(NotFoundError, match="not a track"):
        store.get_track(int(bw.region_ids[1]))
    with pytest.raises(NotFoundError, match="not in this data dir"):
        store.get_track(10**9)


def test_removing_or_replacing_a_video_deletes_its_tracks(store):
    bw = store.write_batch([make_video("/v/a.mp4"), make_video("/v/b.mp4", 1)], dim=DIM)
    again = store.write_batch([make_video("/v/a.mp4", 1, seed=3)], dim=DIM)  # re-indexed: replaces
    assert sorted(again.removed_region_ids.tolist()) == bw.region_ids[:2].tolist()
    assert store.counts()["tracks"] == 2 and store.counts()["track_frames"] == 8
    n, removed = store.delete_paths(["/v/a.mp4", "/v/b.mp4"])
    assert n == 2 and removed.size == 2
    assert store.counts() | {} == {"images_indexed": 0, "images_failed": 0, "regions": 0, "embeddings": 0,
                                   "videos_indexed": 0, "tracks": 0, "track_frames": 0}


def test_video_without_tracks_and_failed_video(store):
    empty = make_video("/v/empty.mp4", 0)
    bw = store.write_batch([empty], [("/v/bad.mp4", None, "not a video (unrecognised format)")], dim=DIM)
    assert bw.region_ids.size == 0 and store.video_info(bw.image_ids[0])["fps"] == 30.0
    assert store.video_info(bw.failure_ids[0]) is None
    assert [(f.path, f.error) for f in store.failures()] == [("/v/bad.mp4", "not a video (unrecognised format)")]
    # a video may show no object: that is not an image without regions (doctor's warning)
    assert store.indexed_images_without_regions() == [] and store.tracks_without_frames() == []
    with_tracks = store.write_batch([make_video("/v/t.mp4", 1)], dim=DIM)
    from sqlalchemy import delete

    from regionsearch.store.schema import track_frames

    with store.engine.begin() as conn:
        conn.execute(delete(track_frames))
    assert store.tracks_without_frames() == with_tracks.region_ids.tolist()


def test_upgrade_from_0002_keeps_data_and_adds_video_tables(db_url):
    from alembic import command

    from regionsearch.migrations import alembic_config, current_revision

    engine = create_engine(db_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0002")
    assert "videos" not in inspect(engine).get_table_names()
    # an 0002 store with data, written by the 0002 code path: plain inserts of what it had
    old = MetadataStore(db_url, migrate=False)
    assert old.revision == "0002" and not old.has_video_tables
    bw = old.write_batch([make_result("/i/old.png")], dim=DIM)
    # a reader of the old schema reads regions without the video tables (reading never migrates)
    reader = MetadataStore(db_url, readonly=True)
    assert [r.kind for r in reader.fetch_regions(bw.region_ids)] == ["whole", "mask", "mask"]
    assert reader.counts()["videos_indexed"] == 0
    reader.close()
    old.close()
    store = MetadataStore(db_url)  # a writer migrates
    with store.engine.connect() as conn:
        assert current_revision(conn) == "0003"
    assert {"videos", "tracks", "track_frames"} <= set(inspect(store.engine).get_table_names())
    assert [r.region_id for r in store.fetch_regions(bw.region_ids)] == bw.region_ids.tolist()
    new = store.write_batch([make_video("/v/new.mp4")], dim=DIM)
    assert [r.kind for r in store.fetch_regions(new.region_ids)] == ["track", "track"]
    assert int(new.region_ids.min()) > int(bw.region_ids.max())  # one id space, never reused
    store.close()
    engine.dispose()
