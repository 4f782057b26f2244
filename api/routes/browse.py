"""Browsing without a query: the indexed images, newest first, paged; a small preview of each."""

from __future__ import annotations

from typing import Annotated, Optional

from fastapi import APIRouter, Query
from fastapi.responses import Response

from ..deps import State
from ..schemas import ImageList
from .common import MAX_ID, ImageId, errors

router = APIRouter(prefix="/v1", tags=["regions and images"])

#: most images on one page of ``GET /v1/images``
MAX_PAGE = 200
JPEG = {200: {"content": {"image/jpeg": {}}, "description": "JPEG image"}}


@router.get("/images", response_model=ImageList, responses=errors(422, 503), summary="Indexed images, newest first")
def list_images(state: State,
                limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="images on this page")] = 24,
                before: Annotated[Optional[int], Query(ge=1, le=MAX_ID, description=(
                    "cursor: only images with a smaller id (the previous page's next_before); "
                    "omit for the first page"))] = None,
                path_prefix: Annotated[Optional[str], Query(max_length=4096, description=(
                    "only images whose stored path (or a further path of the same content) starts "
                    "with this string, case-sensitive"))] = None) -> dict:
    """Indexed images, newest first (the most recently indexed has the largest id), ``limit`` per
    page. ``next_before`` is the cursor of the next page (null on the last one); ``total`` counts
    every image matching ``path_prefix``. Each image's regions: ``GET /v1/images/{image_id}``."""
    page = state.datadir().store.list_images(limit, before=before, path_prefix=path_prefix or None)
    return {"images": [{"image_id": s.record.id, "path": s.record.path, "width": s.record.width,
                        "height": s.record.height, "regions": s.regions,
                        "indexed_at": s.indexed_at.isoformat() if s.indexed_at else None} for s in page.images],
            "next_before": page.next_before, "total": page.total}


@router.get("/images/{image_id}/thumb.jpg", response_class=Response, responses={**JPEG, **errors(404, 422, 503)})
def thumbnail(image_id: ImageId, state: State,
              size: Annotated[int, Query(ge=16, le=1024, description="longest side in pixels")] = 256) -> Response:
    """The image scaled down (never up) to ``size`` pixels on its longest side, as JPEG; for an
    indexed video, its first frame."""
    import io

    from PIL import Image

    video = state.datadir().store.get_video(image_id)
    _, image = state.load_indexed_image(image_id, frame=0 if video is not None else None)
    pil = Image.fromarray(image)
    pil.thumbnail((size, size), Image.BILINEAR)
    buf = io.BytesIO()
    pil.convert("RGB").save(buf, format="JPEG", quality=85)
    return Response(buf.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "max-age=60"})
