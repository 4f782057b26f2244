"""POST /v1/segment/video: a click on one frame of an uploaded video, per-frame masks streamed as
NDJSON; single-click propagation quality on held-out slow clips; the frame-feature cache (a
correction click does not re-run the image encoder); directions, ranges and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from regionsearch.masks import decode_rle, mask_iou
from regionsearch.testing.clips import make_clip, write_mp4
from regionsearch.video.tracks import interior_point


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two held-out slow clips (8 frames, 2 fps) as mp4 bytes, with their ground truth."""
    out = []
    for seed in (61_001, 61_002):
        clip = make_clip(seed, "slow", n_frames=8)
        path = write_mp4(clip.spec, tmp_path_factory.mktemp("v") / "c.mp4")
        out.append((clip, path.read_bytes()))
    return out


def _post(client, data: bytes, prompt: dict):
    return client.post("/v1/segment/video", files={"file": ("c.mp4", data, "video/mp4")},
                       data={"prompt": json.dumps(prompt)})


def _lines(r) -> list[dict]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in r.text.splitlines() if line]


@pytest.fixture(scope="module")
def encoder_calls(client):
    """Counts image-encoder forward passes of the service's SAM 2.1."""
    sam = client.app.state.service.engine.pipeline.sam_model
    count = {"n": 0}
    handle = sam.image_encoder.register_forward_hook(lambda *_: count.__setitem__("n", count["n"] + 1))
    yield count
    handle.remove()


def test_single_click_propagation_miou_on_slow_clips(client, clips, encoder_calls):
    per_object = []
    for clip, data in clips:
        for j in range(len(clip.captions)):
            lines = _lines(_post(client, data, {"frame": 0, "points": [list(interior_point(clip.masks[0, j]))],
                                                "labels": [1]}))
            assert [ln["frame"] for ln in lines] == list(range(8))
            assert [ln["t"] for ln in lines] == [i / 2.0 for i in range(8)]
            ious = []
            for ln in lines:
                m = decode_rle(ln["mask"])
                assert ln["mask"]["size"] == [256, 256] and 0 <= ln["score"] <= 1.0 + 1e-6
                if m.any():
                    ys, xs = np.nonzero(m)
                    assert ln["bbox"] == [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                                          float(ys.max() - ys.min() + 1)]
                ious.append(mask_iou(m, clip.masks[ln["frame"], j]))
            per_object.append(float(np.mean(ious)))
    assert np.mean(per_object) >= 0.9, per_object


def test_a_correction_click_does_not_rerun_the_image_encoder(client, clips, encoder_calls):
    clip, data = clips[0]
    m = clip.masks[2, 1]
    click = list(interior_point(m))
    _lines(_post(client, data, {"frame": 2, "points": [click], "labels": [1], "direction": "both"}))
    before = encoder_calls["n"]
    ys, xs = np.nonzero(~m)
    lines = _lines(_post(client, data, {"frame": 2, "points": [click, [float(xs[0]), float(ys[0])]], "labels": [1, 0],
                                        "direction": "both"}))
    assert encoder_calls["n"] == before, "the second request on the same video re-ran the image encoder"
    assert [ln["frame"] for ln in lines] == [2, 1, 0, 3, 4, 5, 6, 7]
    assert np.mean([mask_iou(decode_rle(ln["mask"]), clip.masks[ln["frame"], 1]) for ln in lines]) >= 0.85


def test_backward_range_box_and_mask_prompts(client, clips):
    clip, data = clips[1]
    m = clip.masks[5, 0]
    ys, xs = np.nonzero(m)
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    lines = _lines(_post(client, data, {"frame": 5, "box": box, "direction": "backward", "frame_start": 2}))
    assert [ln["frame"] for ln in lines] == [5, 4, 3, 2]
    assert mask_iou(decode_rle(lines[0]["mask"]), m) >= 0.8
    from regionsearch.masks import encode_rle

    lines = _lines(_post(client, data, {"frame": 1, "mask": encode_rle(clip.masks[1, 2]), "frame_end": 4,
                                        "sample_fps": 1.0}))
    # 1 fps over a 2 fps video: frames 0, 2, 4, ... plus the prompted frame 1
    assert [ln["frame"] for ln in lines] == [1, 2, 4]
    np.testing.assert_array_equal(decode_rle(lines[0]["mask"]), clip.masks[1, 2])
    assert lines[0]["score"] == 1.0


@pytest.mark.parametrize("prompt, status, words", [
    ({"frame": 0}, 422, "give a prompt"),
    ({"frame": 50, "points": [[10, 10]], "labels": [1]}, 422, "not in the video"),
    ({"frame": 3, "points": [[10, 10]], "labels": [1], "frame_start": 4}, 422, "outside the frame range"),
    ({"frame": 0, "points": [[999, 10]], "labels": [1]}, 422, "outside the 256x256"),
    ({"frame": 0, "points": [[10, 10]], "labels": [1], "direction": "sideways"}, 422, "direction"),
    ({"frame": 0, "mask": {"size": [10, 10], "counts": "abc"}}, 422, "size"),
    ({"frame": 0, "box": [10, 10, 5, 20]}, 422, "x1 > x0"),
])
def test_bad_requests_get_one_line_errors(client, clips, prompt, status, words):
    r = _post(client, clips[0][1], prompt)
    assert r.status_code == status, r.text
    assert words in r.text


def test_bad_video_unknown_id_and_body_errors(client):
    r = _post(client, b"not a video at all" * 10, {"frame": 0, "points": [[1, 1]], "labels": [1]})
    assert r.status_code in (400, 415, 422) and "video" in r.json()["error"], r.text
    r = client.post("/v1/segment/video", json={"video_id": 12345, "points": [[1, 1]], "labels": [1]})
    assert r.status_code == 404 and "video 12345" in r.json()["error"]
    r = client.post("/v1/segment/video", json={"points": [[1, 1]], "labels": [1]})
    assert r.status_code == 422 and "video_id or an uploaded file" in r.json()["error"]


def test_openapi_documents_the_route(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/segment/video"]["post"]
    assert "application/x-ndjson" in op["responses"]["200"]["content"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["video_id"] and body["properties"]["points"]["maxItems"] == 8
    assert body["properties"]["frame_end"] == {**body["properties"]["frame_end"], "type": "integer", "maximum": 10_000_000}
    assert "le" not in body["properties"]["frame_end"]
    assert "$defs" not in json.dumps(op) and "#/$defs" not in json.dumps(op)
    form = op["requestBody"]["content"]["multipart/form-data"]
    assert form["encoding"]["prompt"]["contentType"] == "application/json"
    assert "video_id" not in form["schema"]["properties"]["prompt"]["properties"]
