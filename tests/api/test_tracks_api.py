"""Tracks through the HTTP API: /v1/search with filters.media, the track hit schema, GET
/v1/tracks/{id}, a track's region and crop (one image + one moving-shapes clip, tiny models)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from .conftest import index_media, make_settings

pytestmark = pytest.mark.slow  # indexes a clip with the tiny models (~35 s of CPU)


@pytest.fixture(scope="module")
def video_client(tmp_path_factory, scenes):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from regionsearch.testing.clips import make_clip

    clip = make_clip(90_021, "slow", n_frames=4)
    data = index_media(tmp_path_factory.mktemp("api_video"), scenes[0].image, [clip.spec])
    with TestClient(create_app(make_settings(data)), raise_server_exceptions=False) as c:
        yield c, clip


def test_search_media_and_track_hit_schema(video_client):
    client, clip = video_client
    caption = clip.captions[0]
    r = client.post("/v1/search", json={"text": caption, "k": 5})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    top = hits[0]
    assert top["kind"] == "track" and top["video"]["path"].endswith("clip0.mp4")
    assert set(top) == {"kind", "region_id", "score", "video", "t_start", "t_end", "frame_start", "frame_end",
                        "best_frame"}
    assert all(h["kind"] == "region" and h["region_kind"] in ("mask", "whole") for h in hits if h["kind"] != "track")
    only_images = client.post("/v1/search", json={"text": caption, "k": 5, "filters": {"media": "image"}}).json()
    assert only_images["hits"] and all(h["kind"] == "region" for h in only_images["hits"])
    only_videos = client.post("/v1/search", json={"text": caption, "k": 50, "filters": {"media": "video"}}).json()
    assert only_videos["hits"] and all(h["kind"] == "track" for h in only_videos["hits"])
    bad = client.post("/v1/search", json={"text": caption, "filters": {"media": "films"}})
    assert bad.status_code == 422


def test_get_track_region_and_crop(video_client):
    from PIL import Image

    client, clip = video_client
    top = client.post("/v1/search", json={"text": clip.captions[0], "k": 1, "filters": {"media": "video"}}).json()
    tid = top["hits"][0]["region_id"]
    r = client.get(f"/v1/tracks/{tid}")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["kind"] == "track" and doc["region_id"] == tid and doc["frames"]
    frames = [f["frame"] for f in doc["frames"]]
    assert frames == sorted(frames) and frames[0] == doc["frame_start"] and frames[-1] == doc["frame_end"]
    assert all(set(f) == {"frame", "t", "bbox", "mask"} for f in doc["frames"])
    assert doc["best_frame"]["frame"] in frames
    region = client.get(f"/v1/regions/{tid}").json()
    assert region["kind"] == "track" and region["mask"] == doc["best_frame"]["mask"]
    crop = client.get(f"/v1/regions/{tid}/crop.png?size=64")
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/png"
    assert max(Image.open(io.BytesIO(crop.content)).size) == 64
    missing = client.get("/v1/tracks/987654")
    assert missing.status_code == 404 and "no track with id 987654" in missing.json()["error"]
    image_region = next(h for h in client.post("/v1/search", json={"text": "scene", "k": 5,
                                                                   "filters": {"media": "image"}}).json()["hits"])
    not_track = client.get(f"/v1/tracks/{image_region['region_id']}")
    assert not_track.status_code == 404 and "not a track" in not_track.json()["error"]
    assert client.get("/v1/tracks/0").status_code == 422
    assert np.isfinite(doc["t_end"])


def test_a_video_file_is_served_streamed_with_ranges(video_client):
    client, _ = video_client
    top = client.post("/v1/search", json={"text": "shape", "k": 1, "filters": {"media": "video"}}).json()["hits"][0]
    vid = top["video"]["id"]
    full = client.get(f"/v1/images/{vid}/file")
    assert full.status_code == 200 and full.headers["content-type"] == "video/mp4"
    assert full.content[4:8] == b"ftyp"
    part = client.get(f"/v1/images/{vid}/file", headers={"Range": "bytes=0-15"})
    assert part.status_code == 206 and part.content == full.content[:16]


def test_segment_video_by_the_id_of_an_indexed_video(video_client):
    """POST /v1/segment/video with ``video_id``: the stored video is read from disk (no upload); a
    click inside the track's best-frame mask follows the object (per-frame masks overlap the
    stored track's masks); an unknown id or an image's id is a 404."""
    import json

    from regionsearch.masks import decode_rle, mask_iou

    client, clip = video_client
    top = client.post("/v1/search", json={"text": clip.captions[0], "k": 1, "filters": {"media": "video"}}).json()
    track = client.get(f"/v1/tracks/{top['hits'][0]['region_id']}").json()
    first = track["frames"][0]
    ys, xs = np.nonzero(decode_rle(first["mask"]))
    i = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))  # the mask pixel nearest its centroid
    body = {"video_id": track["video"]["id"], "frame": first["frame"], "points": [[float(xs[i]), float(ys[i])]],
            "labels": [1], "direction": "forward"}
    r = client.post("/v1/segment/video", json=body)
    assert r.status_code == 200, r.text
    lines = [json.loads(line) for line in r.text.splitlines() if line]
    by_frame = {d["frame"]: d for d in lines}
    shared = [f for f in track["frames"] if f["frame"] in by_frame]
    assert shared, (sorted(by_frame), [f["frame"] for f in track["frames"]])
    ious = [mask_iou(decode_rle(by_frame[f["frame"]]["mask"]), decode_rle(f["mask"])) for f in shared]
    assert np.mean(ious) >= 0.5, ious
    assert client.post("/v1/segment/video", json={**body, "video_id": 987654}).status_code == 404
    image_id = client.post("/v1/search", json={"text": "scene", "k": 1, "filters": {"media": "image"}}).json()["hits"][0]["image_id"]
    assert client.post("/v1/segment/video", json={**body, "video_id": image_id}).status_code == 404


def test_video_frame_jpeg_with_and_without_the_track_outline(video_client):
    """GET /v1/videos/{id}/frames/{frame}.jpg: the decoded frame (close to the linear decode, JPEG
    aside), scaled down only; ``?track=`` changes pixels along the track's mask on that frame and
    nowhere far from it; 404s for frames out of range, non-videos and tracks of nothing here."""
    from PIL import Image

    from regionsearch.imageio import path_from_db
    from regionsearch.masks import decode_rle
    from regionsearch.video.decode import read_frame

    client, clip = video_client
    top = client.post("/v1/search", json={"text": clip.captions[0], "k": 1, "filters": {"media": "video"}}).json()
    track = client.get(f"/v1/tracks/{top['hits'][0]['region_id']}").json()
    vid, f = track["video"]["id"], track["frames"][-1]
    url = f"/v1/videos/{vid}/frames/{f['frame']}.jpg"
    plain = client.get(url + "?size=4096&quality=95")
    assert plain.status_code == 200 and plain.headers["content-type"] == "image/jpeg", plain.text
    assert "x-track-mask" not in plain.headers
    got = np.asarray(Image.open(io.BytesIO(plain.content)).convert("RGB")).astype(int)
    truth = read_frame(path_from_db(track["video"]["path"]), f["frame"]).astype(int)
    assert got.shape == truth.shape and np.abs(got - truth).mean() < 4
    small = client.get(url + "?size=100")
    assert max(Image.open(io.BytesIO(small.content)).size) == 100

    drawn = client.get(url + f"?size=4096&quality=95&track={track['region_id']}")
    assert drawn.status_code == 200 and drawn.headers["x-track-mask"] == "drawn"
    diff = np.abs(np.asarray(Image.open(io.BytesIO(drawn.content)).convert("RGB")).astype(int) - got).sum(2) > 40
    mask = decode_rle(f["mask"])
    near = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    near[max(0, ys.min() - 4):ys.max() + 5, max(0, xs.min() - 4):xs.max() + 5] = True
    assert diff[mask].mean() > 0.5 and diff[~near].mean() < 0.01

    n = client.get(f"/v1/tracks/{track['region_id']}").json()["video"]
    last = client.get(f"/v1/videos/{vid}/frames/{clip.spec.n_frames - 1}.jpg")
    assert last.status_code == 200 and n["id"] == vid
    out = client.get(f"/v1/videos/{vid}/frames/{clip.spec.n_frames}.jpg")
    assert out.status_code == 404 and "has no frame" in out.json()["error"]
    image_hit = client.post("/v1/search", json={"text": "scene", "k": 1, "filters": {"media": "image"}}).json()["hits"][0]
    assert client.get(f"/v1/videos/{image_hit['image_id']}/frames/0.jpg").status_code == 404
    not_track = client.get(url + f"?track={image_hit['region_id']}")
    assert not_track.status_code == 404 and "not a track" in not_track.json()["error"]
    part = client.get(url + "?box=10,20,50,40.5&quality=95")
    assert part.status_code == 200 and Image.open(io.BytesIO(part.content)).size == (50, 41)
    part = np.asarray(Image.open(io.BytesIO(part.content)).convert("RGB")).astype(int)
    assert np.abs(part - truth[20:61, 10:60]).mean() < 4
    clipped = client.get(url + f"?box=200,0,500,10&track={track['region_id']}")
    assert clipped.status_code == 200 and Image.open(io.BytesIO(clipped.content)).size == (truth.shape[1] - 200, 10)
    outside = client.get(url + f"?box={truth.shape[1]},0,5,5")
    assert outside.status_code == 422 and "does not overlap" in outside.json()["error"]
    assert client.get(url + "?box=1,2,3").status_code == 422
    assert client.get(f"/v1/videos/{vid}/frames/-1.jpg").status_code == 422
    assert client.get(url + "?size=8").status_code == 422


def test_readyz_counts_videos_and_tracks(video_client):
    client, _ = video_client
    index = client.get("/readyz").json()["index"]
    info = client.get("/v1/info").json()
    assert index["videos_indexed"] == info["videos_indexed"] >= 1
    assert index["tracks"] == info["tracks"] >= 1
    # the video's pipeline (the images' key + the video settings) is current, like the image's
    assert len(info["pipelines"]) == 2 and all(p["current"] for p in info["pipelines"]), info["pipelines"]
