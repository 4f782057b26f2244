"""Write endpoints: upload-and-index an image, delete an image. Both need the API key."""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from regionsearch.errors import InvalidImageError, InvalidRequestError

from ..deps import State, WriteAccess, decode_upload, read_upload_sync
from ..schemas import DeleteResponse, UploadResponse
from .common import ImageId, errors

router = APIRouter(prefix="/v1", tags=["indexing"])

_EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "BMP": "bmp", "GIF": "gif", "TIFF": "tif"}


def _format(data: bytes) -> str:
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
    except Exception:
        raise InvalidImageError("not an image (unrecognised format)") from None
    if fmt not in _EXT:
        raise InvalidRequestError(f"unsupported image format {fmt or 'unknown'}; send one of: "
                                  f"{', '.join(sorted(_EXT))}")
    return _EXT[fmt]


@router.post("/images", response_model=UploadResponse, status_code=201, dependencies=[WriteAccess],
             responses=errors(401, 403, 409, 413, 422, 503))
def upload(state: State, file: Annotated[UploadFile, File(description="the image to index")]) -> dict:
    """Store an image under ``<data_dir>/uploads/<sha256>.<ext>`` and index it (SAM 2.1 + CLIP).

    The client's file name is never used (names with path parts are refused). Uploading the same
    content again indexes nothing (``status: unchanged``).
    """
    from indexer.local import run_local
    from regionsearch.imageio import path_to_db, sha256_bytes

    s = state.settings
    data = read_upload_sync(file, s)
    image = decode_upload(data, s)  # refuses bombs/corrupt files before anything is written
    ext = _format(data)
    sha = sha256_bytes(data)
    state.datadir()  # 503 when the data dir is unusable
    folder = state.uploads_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sha}.{ext}"
    if not path.exists():
        tmp = folder / f".{sha}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)
    eng = state.engine
    with state.write_lock:
        writer = state.open_writer()
        try:
            report = run_local([str(path)], eng.config, writer, eng.pipeline, progress=False)
            if report.failed:
                reason = report.failures[0][1] if report.failures else "unknown reason"
                raise InvalidImageError(f"the image could not be indexed: {reason}")
            rec = writer.image_by_path(path_to_db(str(path)))
            if rec is None:
                same = writer.store.indexed_by_content(sha, eng.config.pipeline_key())
                rec = same[0] if same else None
            if rec is None:
                raise InvalidImageError("the image could not be indexed")
            n_regions = len(writer.regions_of_image(rec.id))
        finally:
            writer.close()
        state.maybe_reload(force=True)
    return {"image_id": rec.id, "sha256": sha, "status": "indexed" if report.indexed else "unchanged",
            "regions": n_regions, "width": int(image.shape[1]), "height": int(image.shape[0])}


@router.delete("/images/{image_id}", response_model=DeleteResponse, dependencies=[WriteAccess],
               responses=errors(401, 403, 404, 409, 422, 503))
def delete(image_id: ImageId, state: State) -> dict:
    """Remove an image with its regions and vectors (and its file when it was uploaded)."""
    from regionsearch.imageio import path_from_db

    state.datadir()
    with state.write_lock:
        writer = state.open_writer()
        try:
            rec = writer.store.get_image(image_id)
            n = writer.remove_paths([rec.path])
            writer.save()
        finally:
            writer.close()
        state.maybe_reload(force=True)
    path = os.path.realpath(path_from_db(rec.path))
    uploads = os.path.realpath(state.uploads_dir)
    if os.path.dirname(path) == uploads and os.path.isfile(path):
        os.unlink(path)
    return {"deleted": n, "image_id": image_id}
