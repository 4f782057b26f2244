"""The data directory as a whole: what it holds (``GET /v1/info``, the CLI's ``info``) and a
query's hits taken away as a file (``POST /v1/export``, the CLI's ``export --query``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from regionsearch.search import Query as SearchQuery
from regionsearch.search import SearchFilters

from ..deps import State, check_k
from ..schemas import ExportRequest, InfoOut
from .common import errors

router = APIRouter(prefix="/v1", tags=["data"])

#: media type of each export format
EXPORT_MEDIA = {"coco": "application/json", "parquet": "application/vnd.apache.parquet", "csv": "text/csv"}
EXPORT_SUFFIX = {"coco": "json", "parquet": "parquet", "csv": "csv"}


@router.get("/info", response_model=InfoOut, response_model_exclude_none=False, responses=errors(422, 503))
def info(state: State, errors_: Annotated[bool, Query(alias="errors", description="also list the files that "
                                                     "could not be indexed, with reasons")] = False) -> dict:
    """Counts, models (the manifest), index type, disk size and the settings each image was indexed
    with: the JSON ``regionsearch info --json`` prints for the service's data directory."""
    from regionsearch.datadir import mark_current

    dd = state.datadir()
    data = mark_current(dd.info(), state.engine.config.video_pipeline_key())
    if errors_:
        data["failures"] = [{"path": f.path, "reason": f.error} for f in dd.failures()]
    return data


_EXPORT_RESPONSES = {200: {"description": "the file: COCO instances JSON, Parquet or CSV, as the format asks",
                           "content": {"application/json": {"schema": {"type": "object"}},
                                       "application/vnd.apache.parquet": {"schema": {"type": "string",
                                                                                     "format": "binary"}},
                                       "text/csv": {"schema": {"type": "string"}}},
                           "headers": {"X-Regions": {"description": "regions in the file",
                                                     "schema": {"type": "integer"}},
                                       "X-Images": {"description": "images they belong to",
                                                    "schema": {"type": "integer"}}}},
                     **errors(413, 422, 503)}


@router.post("/export", response_class=FileResponse, responses=_EXPORT_RESPONSES,
             summary="A text query's hits as a COCO, Parquet or CSV file")
def export(body: ExportRequest, state: State) -> FileResponse:
    """The ``k`` best regions for ``text`` (ranked, with scores; near-duplicates collapsed) written
    as ``regionsearch export --query`` writes them: COCO instances JSON with RLE masks, Parquet with
    each region's CLIP embedding, or CSV. The file is built in a temporary folder on the server,
    streamed, then deleted."""
    from regionsearch.export import export_regions

    # an omitted k is the default (100) capped at the service's max_k, as the schema's default says
    k = body.k if "k" in body.model_fields_set or state.max_k is None else min(body.k, state.max_k)
    check_k(k, state)
    dd = state.datadir()
    hits = state.search(dd, SearchQuery(text=body.text), k, SearchFilters(path_prefix=body.path_prefix or None))
    names = [t.strip() for t in body.labels if t.strip()]
    vectors = state.engine.pipeline.embedder.embed_texts(names) if names else None
    folder = tempfile.mkdtemp(prefix="regionsearch-export-")
    try:
        report = export_regions(dd, os.path.join(folder, f"regions.{EXPORT_SUFFIX[body.format]}"), body.format,
                                hits=hits, labels=names, label_vectors=vectors)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(report.path, media_type=EXPORT_MEDIA[body.format], filename=os.path.basename(report.path),
                        headers={"X-Regions": str(report.regions), "X-Images": str(report.images)},
                        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))

