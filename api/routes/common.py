"""Shared pieces of the routes: documented error responses, id parameters, PNG responses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from ..schemas import ErrorBody

#: ids are SQL integer keys; the bound keeps them inside a signed 64-bit integer
MAX_ID = 2**62

RegionId = Annotated[int, Path(ge=1, le=MAX_ID, description="region id")]
ImageId = Annotated[int, Path(ge=1, le=MAX_ID, description="image id")]


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of error responses (all share :class:`ErrorBody`)."""
    text = {400: "bad request", 401: "missing API key", 403: "wrong API key", 404: "unknown id",
            409: "data dir busy or built with another pipeline", 413: "upload too large",
            415: "unsupported media type", 422: "invalid request", 500: "internal error",
            503: "not ready, or write endpoints disabled"}
    return {c: {"model": ErrorBody, "description": text.get(c, "error")} for c in codes}


PNG = {200: {"content": {"image/png": {}}, "description": "PNG image"}}


def region_json(row: Any) -> dict[str, Any]:
    """A :class:`~regionsearch.types.RegionRecord` in the ``RegionOut`` schema."""
    return row.to_json()
