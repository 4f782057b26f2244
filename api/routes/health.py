"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from ..deps import State
from ..schemas import Health, Ready

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready, "description": "not ready"}})
def readyz(state: State) -> JSONResponse:
    """Models loaded and index open (with counts); 503 until then."""
    ready = state.is_ready()
    index: dict = {}
    if ready:
        try:
            state.maybe_reload()
            info = state.engine.datadir.info()
            index = {k: info[k] for k in ("images_indexed", "images_failed", "regions", "vectors", "index_type",
                                          "generation")}
            index.update({k: info.get(k, 0) for k in ("videos_indexed", "tracks")})
        except Exception as exc:  # the store went away: not ready, say why
            ready, index = False, {"error": str(exc).splitlines()[0][:300]}
    elif state.open_error:
        index = {"error": state.open_error}
    eng = state.engine
    body = {"ready": ready,
            "models": {"clip": bool(eng and eng.pipeline.embedder_loaded), "sam": state.prompt is not None},
            "index": index, "writes_enabled": state.settings.writes_enabled, "limits": _limits(state)}
    state.metrics.ready.set(1 if ready else 0)
    return JSONResponse(body, status_code=200 if ready else 503)


def _limits(state: State) -> dict[str, Optional[int]]:
    s = state.settings
    try:
        max_k = state.max_k
    except Exception:  # no config to read it from (the service cannot start): unknown
        max_k = None
    return {"max_k": max_k, "max_text_chars": s.max_text_chars, "max_upload_bytes": s.max_upload_bytes}


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
def metrics(state: State) -> Response:
    """Prometheus metrics: requests, latency, segmentation cache, index size."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
