"""Search: text -> regions, image -> similar regions."""

from __future__ import annotations

from typing import Annotated, Optional

from fastapi import APIRouter, File, Form, UploadFile

from regionsearch.errors import InvalidRequestError
from regionsearch.search import MAX_K, Query, SearchFilters

from ..deps import State, check_k, decode_upload, read_upload_sync
from ..schemas import K_DOC, MIN_AREA_DOC, MIN_SCORE_DOC, PATH_PREFIX_DOC, SearchRequest, SearchResponse
from .common import errors

router = APIRouter(prefix="/v1", tags=["search"])


def _filters(f) -> SearchFilters:
    return SearchFilters(path_prefix=f.path_prefix or None, min_area=f.min_area, min_score=f.min_score,
                         per_image=f.per_image, dedupe=f.dedupe, media=f.media)


@router.post("/search", response_model=SearchResponse, response_model_exclude_unset=True, responses=errors(413, 422, 503),
             summary="Regions best matching a text")
def search(body: SearchRequest, state: State) -> dict:
    """Ranked regions for a text query (cosine similarity of CLIP embeddings), in the CLI's JSON
    hit schema. ``filters.min_area`` is a fraction of the image when <= 1, else pixels."""
    hits = state.search(state.datadir(), Query(text=body.text), body.k, _filters(body.filters))
    return {"query": body.text, "hits": [h.to_json() for h in hits]}


def _parse_box(box: str, width: int, height: int) -> tuple[int, int, int, int]:
    try:
        x0, y0, x1, y1 = (float(v) for v in box.split(","))
    except ValueError:
        raise InvalidRequestError("box must be 'x0,y0,x1,y1' (pixels)") from None
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise InvalidRequestError(f"box must satisfy 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}")
    return int(x0), int(y0), max(int(x0) + 1, int(round(x1))), max(int(y0) + 1, int(round(y1)))


@router.post("/search/image", response_model=SearchResponse, responses=errors(413, 422, 503),
             summary="Regions similar to an uploaded image or a crop of it")
def search_image(
    state: State,
    file: Annotated[UploadFile, File(description="query image (PNG, JPEG, WebP, ...)")],
    k: Annotated[int, Form(le=MAX_K, description=K_DOC)] = 10,
    box: Annotated[Optional[str], Form(max_length=200, description="optional crop 'x0,y0,x1,y1' (pixels)")] = None,
    per_image: Annotated[Optional[int], Form(ge=1, le=1000, description="at most this many hits per image")] = None,
    path_prefix: Annotated[Optional[str], Form(max_length=4096, description=PATH_PREFIX_DOC)] = None,
    min_area: Annotated[Optional[float], Form(ge=0, allow_inf_nan=False, description=MIN_AREA_DOC)] = None,
    min_score: Annotated[Optional[float], Form(ge=-1, le=1, allow_inf_nan=False, description=MIN_SCORE_DOC)] = None,
) -> dict:
    """Regions most similar to an image (or the ``box`` crop of it), with the filters of ``/v1/search``."""
    s = state.settings
    check_k(k, state)
    image = decode_upload(read_upload_sync(file, s), s)
    query: dict = {"kind": "image", "width": int(image.shape[1]), "height": int(image.shape[0])}
    if box:
        x0, y0, x1, y1 = _parse_box(box, image.shape[1], image.shape[0])
        image = image[y0:y1, x0:x1]
        query["box"] = [x0, y0, x1, y1]
    filters = SearchFilters(path_prefix=path_prefix or None, min_area=min_area, min_score=min_score, per_image=per_image)
    hits = state.search(state.datadir(), Query(image=image), k, filters)
    return {"query": query, "hits": [h.to_json() for h in hits]}
