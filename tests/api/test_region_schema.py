"""The API's pydantic models are checked against the one region type of the library
(:class:`regionsearch.types.RegionRecord` and its :class:`SearchHit`): same fields, same order."""

from __future__ import annotations

from api.schemas import CandidateOut, Hit, RegionOut, SearchRequest
from regionsearch.search import MAX_K
from regionsearch.types import RegionRecord

RECORD = RegionRecord(region_id=7, image_id=3, image_path="/a.png", bbox=(1.0, 2.0, 3.0, 4.0), area=12,
                      rle={"size": [8, 9], "counts": "abc"}, predicted_iou=0.9, stability_score=0.8,
                      kind="mask", image_width=9, image_height=8)


def test_region_out_is_the_region_record():
    data = RECORD.to_json()
    assert list(data) == list(RegionOut.model_fields)
    assert RegionOut.model_validate(data).model_dump() == data


def test_hit_is_the_region_record_with_a_score():
    """Plus ``relation``, only in hits of relational queries (absent, not null, in the others)."""
    from dataclasses import replace

    data = RECORD.to_hit(0.25).to_json()
    assert list(data) + ["relation"] == list(Hit.model_fields) and data["score"] == 0.25
    assert Hit.model_validate(data).model_dump(exclude_unset=True) == data
    rel = {"predicate": "left_of", "object": {"region_id": 8, "bbox": [0.0, 1.0, 2.0, 3.0], "score": 0.5}}
    data = replace(RECORD.to_hit(0.25), relation=rel).to_json()
    assert list(data) == list(Hit.model_fields)
    assert Hit.model_validate(data).model_dump(exclude_unset=True) == data


def test_segment_text_candidate_is_a_hit_without_ids():
    data = {k: v for k, v in RECORD.to_hit(0.5).to_json().items() if k not in ("region_id", "image_id", "image_path")}
    assert list(data) == list(CandidateOut.model_fields)
    assert CandidateOut.model_validate(data).model_dump() == data


def test_openapi_states_the_shared_maximum_k():
    assert SearchRequest.model_json_schema()["properties"]["k"]["maximum"] == MAX_K == 1000


def test_track_hit_and_track_out_are_the_track_json():
    from dataclasses import replace

    from api.schemas import TrackHit, TrackOut
    from regionsearch.types import TrackFrameRecord, TrackInfo

    info = TrackInfo(video_id=3, video_path="/v.mp4", fps=25.0, duration_s=None, frame_start=4, frame_end=40,
                     t_start=0.16, t_end=1.6, best_frame=12, best_t=0.48)
    track = replace(RECORD, kind="track", track=info)
    data = track.to_hit(0.5).to_json()
    assert list(data) == list(TrackHit.model_fields) and data["kind"] == "track"
    assert data["best_frame"] == {"frame": 12, "t": 0.48, "bbox": [1.0, 2.0, 3.0, 4.0], "mask": RECORD.rle}
    assert TrackHit.model_validate(data).model_dump() == data
    frames = [TrackFrameRecord(4, 0.16, (0.0, 0.0, 1.0, 1.0), {"size": [8, 9], "counts": "x"}, 1)]
    doc = track.track_json(frames=frames)
    assert list(doc) == list(TrackOut.model_fields) and doc["frames"][0]["frame"] == 4
    assert TrackOut.model_validate(doc).model_dump() == doc
