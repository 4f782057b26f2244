"""Video object tracks: one track with its mask at every sampled frame."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from ..deps import State
from ..schemas import TrackOut
from .common import MAX_ID, errors

router = APIRouter(prefix="/v1", tags=["tracks"])

TrackId = Annotated[int, Path(ge=1, le=MAX_ID, description="track id (the region_id of a track hit)")]


@router.get("/tracks/{track_id}", response_model=TrackOut, responses=errors(404, 422, 503),
            summary="A video object track with every stored frame")
def get_track(track_id: TrackId, state: State) -> dict:
    """The track's video (id, path, fps, duration), time range (seconds) and frame range (the
    video's own decoded frames from 0), its best frame, and ``frames``: ``{frame, t, bbox (XYWH
    pixels), mask (COCO RLE)}`` at every sampled frame it was seen on. 404 for an id that is not a track."""
    record, frames = state.datadir().store.get_track(track_id)
    return record.track_json(frames=frames)
