"""``POST /v1/segment/video``: interactive video segmentation, per-frame masks streamed as NDJSON.

A video as a ``multipart/form-data`` upload (``file`` + the prompt as a JSON string in
``prompt``) or, as ``application/json``, by ``video_id`` (resolved by :func:`video_for_id`, the
one place that knows where indexed videos live). The prompt — points with labels, a box, or a
mask (COCO RLE at the video's size) — is on decoded frame ``frame``; the object is propagated
``forward``, ``backward`` or ``both`` ways through ``[frame_start, frame_end]`` at ``sample_fps``
(see :mod:`regionsearch.video.interactive`) with the configured propagator
(``video.propagator``). The answer is ``application/x-ndjson``: one JSON object per line,
``{"frame", "t", "bbox": [x, y, w, h], "mask": RLE, "score"}``, frame ``k`` first, then
backward, then forward, each line sent as soon as it is computed.

Frame features are cached (LRU of ``video_feature_cache_frames``, keyed by the video's sha256
and the frame index), so a second request on the same video — a correction click — costs
decoder passes, not image-encoder passes. The model work runs in worker threads.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from typing import Any, Literal, Optional

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from regionsearch.errors import InvalidRequestError, NotFoundError

from ..deps import ServiceState, State
from ..schemas import RLE, JsonInt
from .common import MAX_ID, errors

router = APIRouter(prefix="/v1", tags=["segmentation"])

NDJSON = "application/x-ndjson"
MAX_FRAME = 10_000_000


class SegmentVideoRequest(BaseModel):
    """A prompt on one frame of a video and how far to carry it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    video_id: Optional[JsonInt] = Field(default=None, description="an indexed video (JSON body only)")
    frame: JsonInt = Field(default=0, ge=0, le=MAX_FRAME, description="the prompted frame: index of the video's "
                           "decoded frames from 0")
    points: Optional[list[list[float]]] = Field(default=None, description="[[x, y], ...] pixels on that frame")
    labels: Optional[list[JsonInt]] = Field(default=None, description="one per point: 1 foreground, 0 background")
    box: Optional[list[float]] = Field(default=None, description="[x0, y0, x1, y1] pixels on that frame")
    mask: Optional[RLE] = Field(default=None, description="the object's mask on that frame (COCO RLE, the "
                                "video's size)")
    direction: Literal["forward", "backward", "both"] = Field(default="forward")
    frame_start: JsonInt = Field(default=0, ge=0, le=MAX_FRAME, description="first frame of the range")
    frame_end: Optional[JsonInt] = Field(default=None, ge=0, le=MAX_FRAME,
                                         description="last frame of the range (default: the video's last)")
    sample_fps: Optional[float] = Field(default=None, gt=0, le=240, description="frames per second of video "
                                        "to segment (default: the service config's video.sample_fps); the "
                                        "prompted frame is always included")


class FrameMaskOut(BaseModel):
    """One line of the NDJSON answer."""

    frame: int = Field(description="decoded frame index")
    t: float = Field(description="presentation time, seconds")
    bbox: list[float] = Field(description="XYWH pixels")
    mask: RLE
    score: float = Field(description="the propagator's score: predicted IoU (chain) or object presence (memory)")


def video_for_id(state: ServiceState, video_id: int) -> tuple[str, str]:
    """``(path, sha256)`` of an indexed video; ``NotFoundError`` when there is none. Uses the
    store's ``get_video(id)`` (a record with ``path`` and ``sha256``) where the store has one."""
    store = state.datadir().store
    getter = getattr(store, "get_video", None)
    if getter is None:
        raise NotFoundError(f"video {video_id} not found (this data dir holds no videos)")
    rec = getter(video_id)
    if rec is None:
        raise NotFoundError(f"video {video_id} not found")
    from regionsearch.imageio import path_from_db

    return path_from_db(str(rec.path)), str(rec.sha256)


class _VideoTools:
    """Per-service: the frame-feature cache and the propagator factory."""

    def __init__(self, state: ServiceState):
        from regionsearch.cache import LRUCache
        from regionsearch.segment.prompt import PromptSegmenter

        self.state = state
        self.size = state.settings.video_feature_cache_frames
        self.features: Any = LRUCache(self.size)
        self.propagator = state.engine.config.video.propagator
        sam = state.engine.pipeline.sam_model
        self.sam = sam
        self.segmenter = PromptSegmenter(sam, cache_size=self.size) if self.propagator == "chain" else None

    def make(self) -> Any:
        if self.propagator == "chain":
            from regionsearch.video.tracks import ChainPropagator

            return ChainPropagator(self.segmenter)
        from regionsearch.video.memory import MemoryPropagator

        return MemoryPropagator(self.sam, feature_cache=self.features)


_TOOLS_LOCK = threading.Lock()


def video_tools(state: ServiceState) -> _VideoTools:
    with _TOOLS_LOCK:
        tools = getattr(state, "_video_tools", None)
        if tools is None:
            tools = _VideoTools(state)
            state._video_tools = tools  # type: ignore[attr-defined]
        return tools


async def _parse(request: Request, state: ServiceState) -> tuple[SegmentVideoRequest, bytes | None]:
    from .segment import parse_body

    req, data = await parse_body(request, SegmentVideoRequest, state, what="video")
    if data is not None and req.video_id is not None:
        raise InvalidRequestError("give either an uploaded file or video_id, not both")
    if data is None and req.video_id is None:
        raise InvalidRequestError("give the video: video_id or an uploaded file")
    if req.video_id is not None and not 1 <= req.video_id <= MAX_ID:
        raise InvalidRequestError("video_id out of range")
    return req, data


def _check_prompt(req: SegmentVideoRequest, state: ServiceState, width: int, height: int) -> Any:
    """The prompt's mask (decoded) or ``None``; errors for anything the model cannot take."""
    s = state.settings
    points, labels = req.points or [], req.labels or []
    given = [name for name, v in (("points", points), ("box", req.box), ("mask", req.mask)) if v]
    if not given:
        raise InvalidRequestError("give a prompt: points (with labels), box or mask")
    if req.mask is not None and len(given) > 1:
        raise InvalidRequestError("a mask prompt goes alone (no points or box with it)")
    from .segment import check_points

    check_points(points, labels, s.max_points, width, height, what="video")
    if req.box is not None:
        if len(req.box) != 4:
            raise InvalidRequestError("the box must be [x0, y0, x1, y1] (pixels)")
        x0, y0, x1, y1 = req.box
        if not (x1 > x0 and y1 > y0):
            raise InvalidRequestError("a box must have x1 > x0 and y1 > y0 (XYXY pixels)")
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            raise InvalidRequestError(f"box {req.box} does not overlap the {width}x{height} video")
    if req.mask is None:
        return None
    from regionsearch.masks import decode_rle

    if list(req.mask.size) != [height, width]:
        raise InvalidRequestError(f"the mask's size {req.mask.size} is not the video's [{height}, {width}]")
    try:
        return decode_rle(req.mask.model_dump())
    except Exception as exc:  # pycocotools raises plain exceptions for malformed counts
        raise InvalidRequestError(f"the mask is not a valid COCO RLE ({exc.__class__.__name__})") from None


def _open(state: ServiceState, req: SegmentVideoRequest, data: bytes | None) -> tuple[Any, Any, str | None]:
    """Validate, decode up to the prompted frame and segment it; returns ``(run, temp file)``."""
    from regionsearch.video.decode import probe_video, sample_frames
    from regionsearch.video.interactive import InteractiveRun

    tmp = None
    if data is not None:
        key = hashlib.sha256(data).hexdigest()
        fd, tmp = tempfile.mkstemp(prefix="rs-video-", suffix=".bin")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        path = tmp
    else:
        path, key = video_for_id(state, int(req.video_id or 0))
    try:
        vcfg = state.engine.config.video
        info = probe_video(path, max_pixels=min(vcfg.max_pixels, state.settings.max_pixels), max_bytes=vcfg.max_bytes)
        mask = _check_prompt(req, state, info.width, info.height)
        end = req.frame_end
        if end is not None and end < req.frame_start:
            raise InvalidRequestError(f"frame_end {end} is before frame_start {req.frame_start}")
        if info.n_frames and req.frame >= info.n_frames:
            raise InvalidRequestError(f"frame {req.frame} is not in the video (it has {info.n_frames} frames)")
        tools = video_tools(state)
        frames = sample_frames(path, None, max_pixels=min(vcfg.max_pixels, state.settings.max_pixels),
                               max_bytes=vcfg.max_bytes)
        run = InteractiveRun(frames, tools.make, frame=req.frame, sample_fps=req.sample_fps or vcfg.sample_fps,
                             direction=req.direction, start=req.frame_start, end=end, video_key=key,
                             max_backward=state.settings.video_max_backward_frames)
        first = run.start(req.points or None, req.labels or None, req.box, mask)
        return run, first, tmp
    except BaseException:
        if tmp is not None:
            os.unlink(tmp)
        raise


def _lines(run: Any, first: Any, tmp: str | None):
    try:
        yield json.dumps(first.to_json()) + "\n"
        for fm in run.rest():
            yield json.dumps(fm.to_json()) + "\n"
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` inlined (OpenAPI resolves refs from the root)."""
    defs = schema.pop("$defs", {})

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            if "$ref" in x and x["$ref"].startswith("#/$defs/"):
                return walk({k: v for k, v in defs[x["$ref"].rsplit("/", 1)[-1]].items() if k != "title"})
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    out = walk(schema)
    out.pop("title", None)
    return out


#: container formats a multipart ``file`` part may hold (PyAV decides; these are the common ones)
VIDEO_MEDIA_TYPES = "video/mp4, video/quicktime, video/webm, video/x-matroska, video/x-msvideo, application/octet-stream"


def document(spec: dict[str, Any], max_points: int) -> None:
    """The limits of ``/v1/segment/video`` in the served schema (called by ``api.openapi``): no
    nulls, point/label/box shapes, at least one prompt, ``video_id`` in a JSON body,
    the multipart ``prompt`` part as a JSON object."""
    import copy

    op = spec.get("paths", {}).get("/v1/segment/video", {}).get("post")
    if op is None:
        return
    content = op["requestBody"]["content"]
    body = content["application/json"]["schema"]
    props = body["properties"]
    for name, prop in props.items():
        options = prop.pop("anyOf", None)
        if options:
            prop.update(next(o for o in options if o.get("type") != "null"))
            prop.pop("default", None)
    point = {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 2, "maxItems": 2}
    props["points"].update(type="array", items=point, minItems=1, maxItems=max_points)
    props["labels"].update(type="array", items={"type": "integer", "enum": [0, 1]}, minItems=1, maxItems=max_points)
    props["box"].update(type="array", items={"type": "number"}, minItems=4, maxItems=4)
    props["video_id"].update(minimum=1, maximum=MAX_ID)
    for name in ("frame", "frame_start", "frame_end"):  # pydantic writes ge/le inside an Optional's anyOf
        props[name].pop("ge", None)
        props[name].pop("le", None)
        props[name].update(minimum=0, maximum=MAX_FRAME)
    groups = {"anyOf": [{"required": ["points", "labels"]}, {"required": ["box"]}, {"required": ["mask"]}],
              "dependentRequired": {"points": ["labels"], "labels": ["points"]}}
    # "a mask goes alone" is stated in words, not as dependentSchemas/not: schemathesis 4.32's
    # coverage phase crashes on a "not" beside a binary multipart part ("Unsupported type: 'Binary'")
    props["mask"]["description"] += "; alone: not with points or a box"
    prompt = {"type": "object", "additionalProperties": False,
              "properties": {k: copy.deepcopy(v) for k, v in props.items() if k != "video_id"}, **copy.deepcopy(groups)}
    body.update(groups)
    body["required"] = ["video_id"]
    form = content["multipart/form-data"]
    form["schema"]["properties"]["file"]["minLength"] = 1
    form["schema"]["properties"]["prompt"] = {**prompt, "description": form["schema"]["properties"]["prompt"]["description"]}
    form["schema"]["required"] = ["file", "prompt"]
    form["schema"]["additionalProperties"] = False
    form["encoding"] = {"file": {"contentType": VIDEO_MEDIA_TYPES}, "prompt": {"contentType": "application/json"}}


def _body_doc() -> dict[str, Any]:
    schema = _inline(SegmentVideoRequest.model_json_schema())
    line = _inline(FrameMaskOut.model_json_schema())
    return {
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": schema},
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary", "description": "the video"},
                               "prompt": {"type": "string", "description": "the prompt as JSON (see the JSON "
                                          "body schema, without video_id)"}}}},
        }},
        "responses": {"200": {"description": "one JSON object per line (NDJSON), one line per frame",
                              "content": {NDJSON: {"schema": line}}}},
    }


@router.post("/segment/video", response_class=StreamingResponse, responses=errors(400, 404, 413, 415, 422, 503),
             openapi_extra=_body_doc())
async def segment_video(request: Request, state: State) -> StreamingResponse:
    """Segment an object through a video from a prompt on one frame; per-frame masks as NDJSON.

    ``frame``: the prompted frame (decoded frame index); ``points`` ``[[x, y], ...]`` pixels with
    ``labels`` (1/0), or ``box`` ``[x0, y0, x1, y1]``, or ``mask`` (COCO RLE at the video's size);
    ``direction``: ``forward`` (default), ``backward`` or ``both``; ``frame_start`` / ``frame_end``:
    the range (inclusive); ``sample_fps``: frames per second of video to segment (default: the
    service's ``video.sample_fps``). Lines: ``{"frame", "t", "bbox", "mask", "score"}``, the prompted
    frame first, then backward, then forward. Frame features are cached: a correction click on the
    same video re-runs the mask decoder only.
    """
    req, data = await _parse(request, state)
    run, first, tmp = await run_in_threadpool(_open, state, req, data)
    return StreamingResponse(_lines(run, first, tmp), media_type=NDJSON)
