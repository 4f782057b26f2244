"""Read-only views of indexed regions and images: metadata, crops, files, overlays, similar."""

from __future__ import annotations

import mimetypes
from typing import Annotated, Optional

import numpy as np
from fastapi import APIRouter, Query
from fastapi.responses import Response

from regionsearch.errors import InvalidRequestError, NotFoundError
from regionsearch.search import Query as SearchQuery
from regionsearch.search import MAX_K, SearchFilters

from ..deps import State
from ..schemas import K_DOC, MIN_AREA_DOC, MIN_SCORE_DOC, PATH_PREFIX_DOC, ImageOut, RegionOut, SearchResponse
from .common import PNG, ImageId, RegionId, errors, region_json

router = APIRouter(prefix="/v1", tags=["regions and images"])


@router.get("/regions/{region_id}", response_model=RegionOut, responses=errors(404, 422, 503))
def get_region(region_id: RegionId, state: State) -> dict:
    """One region: box (XYWH pixels), mask (COCO RLE), scores, its image."""
    return region_json(state.datadir().store.get_region(region_id))


@router.get("/regions/{region_id}/similar", response_model=SearchResponse, responses=errors(404, 422, 503))
def similar(region_id: RegionId, state: State,
            k: Annotated[int, Query(le=MAX_K, description=K_DOC)] = 10,
            per_image: Annotated[Optional[int], Query(ge=1, le=1000, description="at most this many hits per image")] = None,
            path_prefix: Annotated[Optional[str], Query(max_length=4096, description=PATH_PREFIX_DOC)] = None,
            min_area: Annotated[Optional[float], Query(ge=0, allow_inf_nan=False, description=MIN_AREA_DOC)] = None,
            min_score: Annotated[Optional[float], Query(ge=-1, le=1, allow_inf_nan=False,
                                                        description=MIN_SCORE_DOC)] = None) -> dict:
    """Regions most similar to an indexed region (itself excluded), with the filters of ``/v1/search``."""
    filters = SearchFilters(path_prefix=path_prefix or None, min_area=min_area, min_score=min_score, per_image=per_image)
    hits = state.search(state.datadir(), SearchQuery(region_id=region_id), k, filters)
    return {"query": {"kind": "region", "region_id": region_id}, "hits": [h.to_json() for h in hits]}


@router.get("/regions/{region_id}/crop.png", response_class=Response, responses={**PNG, **errors(404, 422, 503)})
def region_crop(region_id: RegionId, state: State,
                size: Annotated[int, Query(ge=16, le=1024, description="longest side in pixels")] = 256,
                context: Annotated[float, Query(ge=0, le=2, description="padding around the box, fraction of its larger side")] = 0.15) -> Response:
    """The region's box (with context) cut from its image; outside the mask dimmed, mask outlined."""
    from PIL import Image

    from regionsearch.masks import decode_rle, expand_box
    from regionsearch.render import to_png

    dd = state.datadir()
    row = dd.store.get_region(region_id)
    _, image = state.load_indexed_image(row.image_id, frame=row.track.best_frame if row.track else None)
    h, w = image.shape[:2]
    mask = decode_rle(row.rle)
    if mask.shape != (h, w):
        mask = np.ones((h, w), bool)
    x0, y0, x1, y1 = expand_box(row.bbox, context, w, h, square=False)
    crop = image[y0:y1, x0:x1].astype(np.float32)
    m = mask[y0:y1, x0:x1]
    if row.kind != "whole":
        crop[~m] *= 0.35
        edge = m & ~_erode(m)
        crop[edge] = (255, 215, 0)
    pil = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8))
    scale = size / max(pil.size)
    if scale < 1:
        pil = pil.resize((max(1, round(pil.size[0] * scale)), max(1, round(pil.size[1] * scale))), Image.BILINEAR)
    return Response(to_png(np.asarray(pil)), media_type="image/png", headers={"Cache-Control": "max-age=60"})


def _erode(m: np.ndarray) -> np.ndarray:
    out = m.copy()
    out[1:, :] &= m[:-1, :]
    out[:-1, :] &= m[1:, :]
    out[:, 1:] &= m[:, :-1]
    out[:, :-1] &= m[:, 1:]
    return out


@router.get("/images/{image_id}", response_model=ImageOut, responses=errors(404, 422, 503))
def get_image(image_id: ImageId, state: State) -> dict:
    """An image's record and all its regions (masks as COCO RLE)."""
    dd = state.datadir()
    rec = dd.store.get_image(image_id)
    return {"image_id": rec.id, "path": rec.path, "sha256": rec.sha256, "width": rec.width, "height": rec.height,
            "status": rec.status, "error": rec.error,
            "regions": [region_json(r) for r in dd.regions_of_image(image_id)]}


@router.get("/images/{image_id}/file", response_class=Response,
            responses={200: {"content": {"image/*": {}, "video/*": {}, "application/octet-stream": {}},
                             "description": "the original file (an indexed video's id gives the video, streamed; "
                                            "HTTP range requests work)"},
                       **errors(404, 422, 503)})
def image_file(image_id: ImageId, state: State) -> Response:
    """The original image (or video) file, as indexed (path from the database, never from the request)."""
    from regionsearch.imageio import path_from_db, read_file_bytes

    dd = state.datadir()
    rec = dd.store.get_image(image_id)
    path = path_from_db(rec.path)
    if rec.status == "indexed" and dd.store.video_info(image_id) is not None:
        return _video_file(image_id, path)
    try:
        data = read_file_bytes(path, state.engine.config.ingest.max_bytes)
    except Exception as exc:
        raise NotFoundError(f"the file of image {image_id} is not available on the server") from exc
    media = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if not media.startswith("image/"):
        media = "application/octet-stream"
    return Response(data, media_type=media, headers={"Cache-Control": "max-age=60",
                                                     "X-Content-Type-Options": "nosniff"})


def _video_file(image_id: int, path: str) -> Response:
    """An indexed video, streamed from disk (never read whole), with range support for players."""
    import os

    from fastapi.responses import FileResponse

    if not os.path.isfile(path):
        raise NotFoundError(f"the file of video {image_id} is not available on the server")
    media = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if not media.startswith("video/"):
        media = "application/octet-stream"
    return FileResponse(path, media_type=media, headers={"Cache-Control": "max-age=60",
                                                          "X-Content-Type-Options": "nosniff"})


@router.get("/images/{image_id}/overlay.png", response_class=Response, responses={**PNG, **errors(404, 422, 503)})
def overlay(image_id: ImageId, state: State,
            regions: Annotated[Optional[str], Query(max_length=4000, pattern=r"^\d{1,18}(,\d{1,18})*$",
                                                    description="comma-separated region ids of this image "
                                                                "(default: all its mask regions)")] = None) -> Response:
    """The image with the given regions tinted, boxed and numbered."""
    from regionsearch.render import overlay as render_overlay
    from regionsearch.render import to_png

    dd = state.datadir()
    rec = dd.store.get_image(image_id)
    rows = dd.regions_of_image(rec.id)
    if regions:
        wanted = [int(v) for v in regions.split(",")]
        if len(wanted) > state.settings.max_overlay_regions:
            raise InvalidRequestError(f"at most {state.settings.max_overlay_regions} regions per overlay")
        by_id = {r.region_id: r for r in rows}
        missing = [i for i in wanted if i not in by_id]
        if missing:
            raise NotFoundError(f"region {missing[0]} is not a region of image {image_id}")
        rows = [by_id[i] for i in wanted]
    else:
        rows = [r for r in rows if r.kind == "mask"][: state.settings.max_overlay_regions]
    _, image = state.load_indexed_image(rec.id)
    out = render_overlay(image, [r.rle for r in rows], [r.bbox for r in rows], [str(r.region_id) for r in rows])
    return Response(to_png(out), media_type="image/png")
