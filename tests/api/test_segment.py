"""Prompted segmentation: cache, multimask ordering, refinement, uploads, limits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from regionsearch.masks import decode_rle

from .conftest import png_bytes


@pytest.fixture(scope="module")
def fresh_image_id(client, first_ids):
    """An indexed image whose embedding is not cached yet in this app (the cache is cleared)."""
    from regionsearch.segment.prompt import LRUCache

    seg = client.app.state.service.prompt_segmenter()
    seg.cache = LRUCache(seg.cache.size)
    return first_ids["image"]


def test_cached_false_then_true(client, fresh_image_id):
    body = {"image_id": fresh_image_id, "points": [[60, 60]], "labels": [1]}
    first = client.post("/v1/segment", json=body)
    assert first.status_code == 200, first.text
    assert first.json()["cached"] is False and first.json()["timings"]["embed_ms"] > 0
    second = client.post("/v1/segment", json={**body, "points": [[100, 120]]})
    assert second.json()["cached"] is True and second.json()["timings"]["embed_ms"] == 0
    assert second.json()["image_key"] == first.json()["image_key"]
    metrics = client.get("/metrics").text
    assert 'regionsearch_segment_embedding_cache_total{result="hit"}' in metrics


def test_multimask_three_sorted_by_score(client, first_ids):
    r = client.post("/v1/segment", json={"image_id": first_ids["image"], "points": [[80, 80], [20, 20]],
                                         "labels": [1, 0], "multimask_output": True})
    masks = r.json()["masks"]
    assert len(masks) == 3
    scores = [m["score"] for m in masks]
    assert scores == sorted(scores, reverse=True)
    info = client.get(f"/v1/images/{first_ids['image']}").json()
    for m in masks:
        assert m["rle"]["size"] == [info["height"], info["width"]]
        assert decode_rle(m["rle"]).sum() == m["area"]
    single = client.post("/v1/segment", json={"image_id": first_ids["image"], "points": [[80, 80]], "labels": [1],
                                              "multimask_output": False}).json()
    assert len(single["masks"]) == 1


def test_mask_input_refinement_round_trip(client, first_ids):
    iid = first_ids["image"]
    first = client.post("/v1/segment", json={"image_id": iid, "points": [[70, 70]], "labels": [1]}).json()
    handle = first["masks"][0]["logits_id"]
    refined = client.post("/v1/segment", json={"image_id": iid, "points": [[70, 70], [30, 200]], "labels": [1, 0],
                                               "mask_input": handle, "multimask_output": False})
    assert refined.status_code == 200, refined.text
    assert refined.json()["cached"] is True and len(refined.json()["masks"]) == 1
    # the same handle through the segmenter directly gives the same mask (the logits were used)
    state = client.app.state.service
    seg = state.prompt
    h = seg.handle(first["image_key"])
    direct = seg.predict(h, points=[[70, 70], [30, 200]], labels=[1, 0],
                         mask=seg.logits_for(handle, h.key), multimask=False)[0][0]
    assert direct.rle == refined.json()["masks"][0]["rle"]
    assert client.post("/v1/segment", json={"image_id": iid, "mask_input": "ab" * 12}).status_code == 404


def test_mask_input_of_other_image_rejected(client, scenes, first_ids):
    first = client.post("/v1/segment", json={"image_id": first_ids["image"], "points": [[70, 70]],
                                             "labels": [1]}).json()
    up = client.post("/v1/segment", files={"file": ("a.png", png_bytes(scenes[5].image), "image/png")},
                     data={"prompt": json.dumps({"points": [[10, 10]], "labels": [1]})}).json()
    r = client.post("/v1/segment", json={"image_key": up["image_key"], "mask_input": first["masks"][0]["logits_id"]})
    assert r.status_code == 422 and "another image" in r.json()["error"]


def test_upload_then_image_key(client, scenes):
    data = png_bytes(scenes[4].image)
    r = client.post("/v1/segment", files={"file": ("x.png", data, "image/png")},
                    data={"prompt": json.dumps({"box": [10, 10, 150, 150], "multimask_output": False})})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image_id"] is None and len(body["masks"]) == 1
    again = client.post("/v1/segment", json={"image_key": body["image_key"], "points": [[50, 50]], "labels": [1]})
    assert again.status_code == 200 and again.json()["cached"] is True
    assert client.post("/v1/segment", json={"image_key": "0" * 64, "points": [[1, 1]], "labels": [1]}).status_code == 404


def test_several_boxes(client, first_ids):
    r = client.post("/v1/segment", json={"image_id": first_ids["image"], "box": [[0, 0, 100, 100], [50, 50, 200, 220]],
                                         "multimask_output": True})
    assert r.status_code == 200, r.text
    masks = r.json()["masks"]
    assert len(masks) == 6 and sorted({m["prompt_index"] for m in masks}) == [0, 1]
    for p in (0, 1):
        s = [m["score"] for m in masks if m["prompt_index"] == p]
        assert s == sorted(s, reverse=True)


@pytest.mark.parametrize("prompt,status,fragment", [
    ({"points": [[1, 1]] * 9, "labels": [1] * 9}, 422, "at most 8 points"),
    ({"points": [[1, 1], [2, 2]], "labels": [1]}, 422, "same length"),
    ({"points": [[1, 1]], "labels": [2]}, 422, "labels"),
    ({"points": [[1, 2, 3]], "labels": [1]}, 422, "[x, y]"),
    ({"points": [[-5, 1]], "labels": [1]}, 422, "outside"),
    ({"box": [50, 50, 10, 10]}, 422, "x1 > x0"),
    ({"box": [1, 2, 3]}, 422, "[x0, y0, x1, y1]"),
    ({"box": [5000, 5000, 6000, 6000]}, 422, "overlap"),
    ({}, 422, "at least one prompt"),
    ({"points": [[1, 1]], "labels": [1], "mask_input": "../../etc"}, 422, "mask_input"),
    ({"points": [[1, 1]], "labels": [1], "image_key": "../../x"}, 422, "image_key"),
])
def test_bad_prompts(client, first_ids, prompt, status, fragment):
    body = {"image_id": first_ids["image"], **prompt}
    if "image_key" in prompt:
        body.pop("image_id")
    r = client.post("/v1/segment", json=body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


def test_segment_image_errors(client, scenes):
    assert client.post("/v1/segment", json={"image_id": 999999, "points": [[1, 1]], "labels": [1]}).status_code == 404
    assert client.post("/v1/segment", json={"points": [[1, 1]], "labels": [1]}).status_code == 422
    r = client.post("/v1/segment", content=b"abc", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = client.post("/v1/segment", files={"file": ("x.png", b"not an image", "image/png")},
                    data={"prompt": json.dumps({"points": [[1, 1]], "labels": [1]})})
    assert r.status_code == 422 and "not an image" in r.json()["error"]


def test_segment_text(client, first_ids, scenes):
    image = client.get(f"/v1/images/{first_ids['image']}").json()
    scene = scenes[int(image["path"].rsplit("scene", 1)[1].split(".")[0])]
    # the caption of the scene's largest visible instance: its mask must be the top region
    largest = int(np.argmax(scene.masks.reshape(len(scene.masks), -1).sum(1)))
    caption = scene.captions[largest]
    r = client.post("/v1/segment/text", json={"image_id": first_ids["image"], "text": caption, "k": 5})
    assert r.status_code == 200, r.text
    regions = r.json()["regions"]
    assert regions and len(regions) <= 5
    scores = [x["score"] for x in regions]
    assert scores == sorted(scores, reverse=True)
    top = decode_rle(regions[0]["mask"])
    same_class = [m for m, c in zip(scene.masks, scene.captions) if c == caption]
    best_iou = max((top & m).sum() / (top | m).sum() for m in same_class)
    assert best_iou >= 0.5, (caption, regions[0]["bbox"], best_iou)
    assert any(x["region_kind"] == "whole" for x in client.post(
        "/v1/segment/text", json={"image_id": first_ids["image"], "text": "scene", "k": 50}).json()["regions"])
    bad = client.post("/v1/segment/text", json={"image_id": first_ids["image"], "text": "", "k": 5})
    assert bad.status_code == 422


def test_segmenter_exactness_vs_predictor(client, scenes):
    """The cached-feature path with the float32 shared-work decoder gives what a fresh
    SAM2ImagePredictor gives; the service's default dtype (bfloat16 where native) stays close."""
    import torch

    from regionsearch.models.sam import make_image_predictor
    from regionsearch.segment.prompt import PromptSegmenter

    service_seg = client.app.state.service.prompt_segmenter()
    seg = PromptSegmenter(service_seg.model, dtype="float32")
    image = scenes[3].image
    h = seg.set_image(image)
    got = seg.predict(h, points=[[90, 90]], labels=[1], multimask=True)[0]
    default = service_seg.predict(service_seg.set_image(image), points=[[90, 90]], labels=[1], multimask=True)[0]
    pred = make_image_predictor(seg.model)
    with torch.inference_mode():
        pred.set_image(image)
        masks, scores, _ = pred.predict(point_coords=np.array([[90, 90]], np.float32),
                                        point_labels=np.array([1]), multimask_output=True, return_logits=True)
    order = np.argsort(-scores, kind="stable")
    np.testing.assert_allclose([c.score for c in got], scores[order], rtol=1e-5, atol=1e-5)
    for c, i in zip(got, order):
        # equal up to summation order: only pixels whose logit is within 1e-4 of 0 may differ
        differ = decode_rle(c.rle) != (masks[i] > 0)
        assert not differ[np.abs(masks[i]) >= 1e-4].any(), np.abs(masks[i][differ]).max()
    best, best_default = masks[order[0]] > 0, decode_rle(default[0].rle)
    assert best.any() and (best & best_default).sum() / (best | best_default).sum() >= 0.95
