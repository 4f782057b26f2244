"""Frames of indexed videos as JPEG, optionally with a track's outline: what the web page's track
strips and player show (they never need the browser to decode the video's codec)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import numpy as np
from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from regionsearch.errors import InvalidRequestError, NotFoundError

from ..deps import State
from .browse import JPEG
from .common import MAX_ID, errors
from .video_segment import MAX_FRAME

router = APIRouter(prefix="/v1", tags=["tracks"])

VideoId = Annotated[int, Path(ge=1, le=MAX_ID, description="video id (a track hit's video.id: its images row)")]
FrameNo = Annotated[int, Path(ge=0, le=MAX_FRAME, description="decoded frame index, from 0 (a track frame's "
                                                               "frame)")]
_NUMBER = r"\d{1,6}(\.\d{1,6})?"
BOX_PATTERN = rf"^{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}$"


@router.get("/videos/{video_id}/frames/{frame}.jpg", response_class=Response,
            responses={**JPEG, **errors(404, 422, 503)}, summary="One frame of an indexed video, as JPEG")
def video_frame(video_id: VideoId, frame: FrameNo, state: State,
                track: Annotated[Optional[int], Query(ge=1, le=MAX_ID, description=(
                    "a track of this video: its mask on this frame is tinted and outlined (nothing is "
                    "drawn on a frame the track has no mask for; header X-Track-Mask says which)"))] = None,
                box: Annotated[Optional[str], Query(max_length=64, pattern=BOX_PATTERN, description=(
                    "only this part of the frame: x,y,w,h pixels (XYWH, clipped to the frame), e.g. a "
                    "track's boxes grown by some context"))] = None,
                size: Annotated[int, Query(ge=16, le=4096, description="longest side in pixels (never "
                                                                       "scaled up)")] = 640,
                quality: Annotated[int, Query(ge=30, le=95, description="JPEG quality")] = 85) -> Response:
    """Decoded frame ``frame`` (from 0, as a track's ``frames[].frame``) of indexed video
    ``video_id``, upright, scaled down to ``size`` pixels on its longest side. Found by seeking
    (the keyframe before it, then a short decode; recent frames are cached), never by decoding
    the whole video. With ``track``: that track's mask on this frame drawn in the overlay style
    (a tint that contrasts with the object, a double outline). 404 for an id that is not an
    indexed video, a frame the video does not have, or a track of another video; 422 for a
    ``box`` outside the frame."""
    import io

    from PIL import Image

    rec = state.datadir().store.get_video(video_id)
    if rec is None:
        raise NotFoundError(f"video {video_id} not found (not an indexed video)")
    if rec.n_frames and frame >= rec.n_frames:
        raise NotFoundError(f"video {video_id} has no frame {frame} (it has {rec.n_frames} frames: 0 to "
                            f"{rec.n_frames - 1})")
    mask = _track_mask(state, video_id, frame, track) if track is not None else None
    _, image = state.load_indexed_image(video_id, frame=frame)
    if box is not None:
        window = _window(box, image.shape[1], image.shape[0])
        image = image[window]
        mask = None if mask is None else mask[window]
    pil = Image.fromarray(image)
    scale = size / max(pil.size)
    if scale < 1:
        pil = pil.resize((max(1, round(pil.size[0] * scale)), max(1, round(pil.size[1] * scale))), Image.BILINEAR)
    headers = {"Cache-Control": "max-age=60"}
    if track is not None:
        headers["X-Track-Mask"] = "drawn" if mask is not None and mask.any() else "none"
    out = _draw(np.asarray(pil), mask) if mask is not None else np.asarray(pil)
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="JPEG", quality=quality)
    return Response(buf.getvalue(), media_type="image/jpeg", headers=headers)


def _window(box: str, width: int, height: int) -> tuple[slice, slice]:
    """The rows and columns of an ``x,y,w,h`` box (pixels) inside a ``width`` x ``height`` frame."""
    import math

    x, y, w, h = (float(v) for v in box.split(","))
    x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
    x1, y1 = min(width, max(x0 + 1, math.ceil(x + w))), min(height, max(y0 + 1, math.ceil(y + h)))
    if x0 >= width or y0 >= height:
        raise InvalidRequestError(f"box {box} does not overlap the {width}x{height} frame")
    return slice(y0, y1), slice(x0, x1)


def _track_mask(state: Any, video_id: int, frame: int, track: int) -> np.ndarray | None:
    """The track's mask (bool, the video's size) on ``frame``; None when it has none there."""
    from regionsearch.masks import decode_rle

    record, frames = state.datadir().store.get_track(track)
    if record.track is None or record.track.video_id != video_id:
        raise NotFoundError(f"track {track} is not a track of video {video_id}")
    hit = next((f for f in frames if f.frame == frame), None)
    return None if hit is None else decode_rle(hit.rle)


def _draw(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask`` (any size) scaled to ``image`` and drawn over it with :func:`regionsearch.render.overlay`."""
    from PIL import Image

    from regionsearch.masks import encode_rle
    from regionsearch.render import overlay

    h, w = image.shape[:2]
    if mask.shape != (h, w):
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.BILINEAR)) >= 128
    if not mask.any():
        return image
    # rings of at least 2 pixels: strips show these pictures shrunk
    return overlay(image, [encode_rle(mask)], alpha=0.3, thickness=max(2, round(max(h, w) / 200)))
