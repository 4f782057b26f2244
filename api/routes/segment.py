"""Interactive segmentation (SAM 2.1 prompts) and text-ranked candidate regions of one image.

Both endpoints take either ``application/json`` (an indexed ``image_id`` or the ``image_key``
of an image sent before) or ``multipart/form-data`` with a ``file`` and the prompt as a JSON
string in the ``prompt`` field. The model work runs in a worker thread, never on the event loop.

Refinement: every returned mask carries a ``logits_id``, a handle of its low-resolution logits
kept server-side (LRU, ``logits_cache_size``); pass it as ``mask_input`` in the next prompt on
the same image. The logits themselves are not sent over the wire.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from regionsearch.errors import InvalidRequestError
from regionsearch.search import Query, RegionSet, SearchFilters
from regionsearch.segment.prompt import image_key

from ..deps import ServiceError, ServiceState, State, check_k, check_text, decode_upload, read_upload_sync
from ..schemas import SegmentRequest, SegmentResponse, SegmentTextRequest, SegmentTextResponse
from .common import errors

router = APIRouter(prefix="/v1", tags=["segmentation"])

#: /v1/segment/text ranks every candidate of the image by score alone: no filters, and the
#: whole-image region is never dropped in favour of its objects (it is a candidate like the others)
RANK_ALL = SearchFilters()


def _body_doc(model: type[BaseModel], prompt_doc: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": schema},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary", "description": "the image"},
                           "prompt": {"type": "string", "description": prompt_doc}}}},
    }}}


async def parse_body(request: Request, model: type[BaseModel], state: ServiceState,
                     what: str = "image") -> tuple[Any, bytes | None]:
    """A segmentation request: ``model`` validated from a JSON body, or from the multipart
    ``prompt`` field beside an uploaded ``file`` (``what``: the file's name in messages); returns
    the request and the uploaded bytes (None for a JSON body). Shared with /v1/segment/video."""
    ctype = request.headers.get("content-type", "").lower()
    data: bytes | None = None
    try:
        if ctype.startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_fields=4)
            unknown = sorted(set(form.keys()) - {"file", "prompt"})
            if unknown:
                raise InvalidRequestError(f"unknown form field {unknown[0]!r}; send 'file' and 'prompt'")
            file = form.get("file")
            if not isinstance(file, UploadFile):
                raise InvalidRequestError(f"a multipart request needs the {what} in a 'file' field")
            data = await run_in_threadpool(read_upload_sync, file, state.settings)
            raw = form.get("prompt") or "{}"
            if not isinstance(raw, str):
                raise InvalidRequestError("the 'prompt' field must be a JSON string")
            payload = json.loads(raw)
        elif ctype.startswith("application/json") or not ctype:
            payload = await request.json()
        else:
            raise ServiceError("send application/json or multipart/form-data", 415)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"the request body is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(payload, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    nulls = sorted(k for k, v in payload.items() if v is None)
    if nulls:  # the schema has no nulls: a field is given or left out
        raise InvalidRequestError(f"{nulls[0]} must not be null; leave it out instead")
    try:
        req = model.model_validate(payload)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None
    return req, data


async def _parse(request: Request, model: type[BaseModel], state: ServiceState) -> tuple[Any, bytes | None]:
    req, data = await parse_body(request, model, state)
    if data is not None and (req.image_id is not None or req.image_key is not None):
        raise InvalidRequestError("give either an uploaded file or image_id/image_key, not both")
    if data is None and req.image_id is None and req.image_key is None:
        raise InvalidRequestError("give the image: image_id, image_key or an uploaded file")
    if req.image_id is not None and req.image_key is not None:
        raise InvalidRequestError("give either image_id or image_key, not both")
    if req.image_id is not None and not 1 <= req.image_id <= 2**62:
        raise InvalidRequestError("image_id out of range")
    return req, data


def _image_handle(state: ServiceState, req: Any, data: bytes | None) -> tuple[Any, int | None]:
    """Features of the request's image, from the cache where possible."""
    seg = state.prompt_segmenter()
    if data is not None:
        image = decode_upload(data, state.settings)
        handle = seg.set_image(image, image_key(image))
        return handle, None
    if req.image_key is not None:
        return seg.handle(req.image_key), None
    rec = state.datadir().store.get_image(req.image_id)
    key = state.image_keys.get((rec.id, rec.sha256))
    if key is not None and key in seg.cache:
        return seg.handle(key), rec.id
    _, image = state.load_indexed_image(rec.id)
    key = image_key(image)
    state.image_keys.put((rec.id, rec.sha256), key)
    return seg.set_image(image, key), rec.id


def check_points(points: list, labels: list, max_points: int, width: int, height: int, what: str = "image") -> None:
    """Point prompts: at most ``max_points``, one 0/1 label each, every point ``[x, y]`` inside the
    ``width`` x ``height`` ``what`` (shared with /v1/segment/video)."""
    if len(points) > max_points:
        raise InvalidRequestError(f"at most {max_points} points per prompt, got {len(points)}")
    if len(points) != len(labels):
        raise InvalidRequestError(f"points and labels must have the same length ({len(points)} points, "
                                  f"{len(labels)} labels)")
    for p in points:
        if len(p) != 2:
            raise InvalidRequestError("each point must be [x, y] (pixels)")
        if not (0 <= p[0] <= width and 0 <= p[1] <= height):
            raise InvalidRequestError(f"point {p} is outside the {width}x{height} {what}")
    if any(v not in (0, 1) for v in labels):
        raise InvalidRequestError("labels must be 1 (foreground) or 0 (background)")


def _check_prompt(req: SegmentRequest, state: ServiceState, width: int, height: int) -> list[list[float]] | None:
    s = state.settings
    points = req.points or []
    labels = req.labels or []
    check_points(points, labels, s.max_points, width, height)
    boxes: list[list[float]] | None = None
    if req.box:
        boxes = [list(req.box)] if not isinstance(req.box[0], list) else [list(b) for b in req.box]  # type: ignore[arg-type]
        if len(boxes) > s.max_boxes:
            raise InvalidRequestError(f"at most {s.max_boxes} boxes per prompt, got {len(boxes)}")
        for b in boxes:
            if len(b) != 4:
                raise InvalidRequestError("each box must be [x0, y0, x1, y1] (pixels)")
            x0, y0, x1, y1 = b
            if not (x1 > x0 and y1 > y0):
                raise InvalidRequestError("a box must have x1 > x0 and y1 > y0 (XYXY pixels)")
            if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
                raise InvalidRequestError(f"box {b} does not overlap the {width}x{height} image")
    if not points and not boxes and not req.mask_input:
        raise InvalidRequestError("give at least one prompt: points (with labels), box or mask_input")
    return boxes


def _segment(state: ServiceState, req: SegmentRequest, data: bytes | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    handle, image_id = _image_handle(state, req, data)
    t1 = time.perf_counter()
    state.metrics.segment_cache.labels(result="hit" if handle.cached else "miss").inc()
    boxes = _check_prompt(req, state, handle.width, handle.height)
    seg = state.prompt_segmenter()
    mask = seg.logits_for(req.mask_input, handle.key) if req.mask_input else None
    results = seg.predict(handle, points=req.points or None, labels=req.labels or None, box=boxes, mask=mask,
                          multimask=req.multimask_output)
    t2 = time.perf_counter()
    masks = []
    for prompt_index, cands in enumerate(results):
        for c in cands:
            masks.append({"rle": c.rle, "score": c.score, "bbox": [float(v) for v in c.bbox], "area": c.area,
                          "prompt_index": prompt_index, "logits_id": seg.store_logits(handle.key, c.low_res_logits)})
    t3 = time.perf_counter()
    return {"image_key": handle.key, "image_id": image_id, "width": handle.width, "height": handle.height,
            "cached": handle.cached, "masks": masks,
            "timings": {"image_ms": round((t1 - t0) * 1000, 3), "embed_ms": round(handle.seconds * 1000, 3),
                        "predict_ms": round((t2 - t1) * 1000, 3), "encode_ms": round((t3 - t2) * 1000, 3),
                        "total_ms": round((t3 - t0) * 1000, 3)}}


@router.post("/segment", response_model=SegmentResponse, responses=errors(400, 404, 413, 415, 422, 503),
             openapi_extra=_body_doc(SegmentRequest, "the prompt as JSON: points, labels, box, mask_input, "
                                                     "multimask_output (see the JSON body schema)"))
async def segment(request: Request, state: State) -> dict:
    """SAM 2.1 masks for point / box / mask prompts on one image.

    ``points`` ``[[x, y], ...]`` pixels with ``labels`` (1 foreground, 0 background); ``box``
    ``[x0, y0, x1, y1]`` pixels or a list of boxes (one set of masks per box, ``prompt_index``);
    ``mask_input``: a ``logits_id`` from an earlier answer on the same image; ``multimask_output``:
    three candidates sorted by score, else one. Masks are COCO RLE at the image's resolution.
    ``cached`` says whether the image embedding came from the LRU cache (keyed by content hash).
    """
    req, data = await _parse(request, SegmentRequest, state)
    return await run_in_threadpool(_segment, state, req, data)


def _segment_text(state: ServiceState, req: SegmentTextRequest, data: bytes | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    text = check_text(req.text, state)
    check_k(req.k, state)
    image_id = None
    if data is not None:
        image = decode_upload(data, state.settings)
    elif req.image_key is not None:
        image = state.prompt_segmenter().cached_image(req.image_key)
    else:
        rec, image = state.load_indexed_image(req.image_id)
        image_id = rec.id
    key = image_key(image)
    t1 = time.perf_counter()
    pipe = state.engine.pipeline
    cached = state.amg.get(key)
    if cached is None:
        regions = pipe.segment(image)
        vectors = pipe.embedder.embed_images(pipe.crops(image, regions))
        cached = (regions, vectors)
        state.amg.put(key, cached)
    regions, vectors = cached
    t2 = time.perf_counter()
    candidates = RegionSet(regions, vectors, int(image.shape[1]), int(image.shape[0]))
    hits = state.search(candidates, Query(text=text), req.k, RANK_ALL, whole_margin=None)
    t3 = time.perf_counter()
    out = [{k: v for k, v in h.to_json().items() if k not in ("region_id", "image_id", "image_path")} for h in hits]
    return {"query": text, "image_key": key, "image_id": image_id, "width": int(image.shape[1]),
            "height": int(image.shape[0]), "regions": out,
            "timings": {"image_ms": round((t1 - t0) * 1000, 3), "segment_embed_ms": round((t2 - t1) * 1000, 3),
                        "rank_ms": round((t3 - t2) * 1000, 3)}}


@router.post("/segment/text", response_model=SegmentTextResponse, responses=errors(400, 404, 413, 415, 422, 503),
             openapi_extra=_body_doc(SegmentTextRequest, "JSON: text, k"))
async def segment_text(request: Request, state: State) -> dict:
    """All regions of one image (SAM 2.1 automatic masks), ranked by CLIP similarity to ``text``."""
    req, data = await _parse(request, SegmentTextRequest, state)
    return await run_in_threadpool(_segment_text, state, req, data)
