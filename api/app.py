"""The FastAPI application: ``create_app(settings)`` and ``run_server(...)`` (``regionsearch serve``).

* lifespan: loads CLIP and SAM 2.1 and opens the data directory once, in a worker thread;
* errors: a :class:`~regionsearch.errors.RegionSearchError` becomes its ``http_status`` with
  ``{"error": message}``; request validation errors 422 ``{"error", "detail"}``; anything else
  500 ``{"error": "internal error"}`` with the traceback in the server log only;
* write endpoints need ``X-API-Key``; with no key configured they answer 503 (see
  :mod:`api.deps`); CORS is closed unless ``cors_origins`` is set;
* the web page is served at ``/`` from ``api/static`` (no build step).
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from regionsearch.errors import RegionSearchError

from .deps import ServiceState
from .settings import Settings

log = logging.getLogger("regionsearch.api")

STATIC_DIR = Path(__file__).resolve().parent / "static"
API_VERSION = "1"


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors[:3]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body",)) or "request"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "invalid request: " + "; ".join(parts) + more


def _clean(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"loc": [p if isinstance(p, (str, int)) else str(p) for p in e.get("loc", ())],
             "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors]


class _Guard:
    """Pure ASGI middleware: request-size precheck (413 from Content-Length before any body is
    read) and Prometheus request metrics."""

    def __init__(self, app: Any, state: ServiceState):
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.state.settings.max_upload_bytes + 1024 * 1024  # room for multipart framing
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    resp = JSONResponse({"error": f"the request body is larger than the limit of "
                                                  f"{self.state.settings.max_upload_bytes} bytes"}, status_code=413)
                    await resp(scope, receive, send)
                    return
        status = {"code": 500}
        start = time.perf_counter()

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("static" if scope["path"].startswith("/static") else "unmatched")
            m = self.state.metrics
            m.requests.labels(scope["method"], path, str(status["code"])).inc()
            m.latency.labels(scope["method"], path).observe(time.perf_counter() - start)


def _allowed_methods(app: FastAPI, scope: dict) -> list[str]:
    """Every method some route serves at the request's path (the routing's own matching)."""
    from starlette.routing import Match

    return [m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
            if any(route.matches({**scope, "method": m})[0] == Match.FULL for route in app.router.routes)]


DOCS_ASSETS_URL = "/static-docs"


def _offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their JavaScript/CSS served by this service from
    the installed ``fastapi-offline`` package (FastAPI's self-hosted docs recipe), not a CDN, so
    the docs work on an air-gapped machine."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.responses import HTMLResponse

    import fastapi_offline

    assets = Path(fastapi_offline.__file__).resolve().parent / "static"
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=assets), name="docs-assets")
    openapi_url, redirect_url = app.openapi_url or "/openapi.json", app.swagger_ui_oauth2_redirect_url

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(openapi_url=root + openapi_url, title=f"{app.title} - Swagger UI",
                                   oauth2_redirect_url=redirect_url,
                                   swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png")

    if redirect_url:
        @app.get(redirect_url, include_in_schema=False)
        async def swagger_ui_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=root + openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png", with_google_fonts=False)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service for ``settings`` (default: from ``REGIONSEARCH_*`` environment variables)."""
    settings = settings or Settings.from_env()
    state = ServiceState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(state.start)
        log.info("regionsearch API ready (data dir %s, writes %s)", state.engine.data_dir,
                 "enabled" if settings.writes_enabled else "disabled: no API key")
        try:
            yield
        finally:
            await run_in_threadpool(state.stop)

    app = FastAPI(
        title="regionsearch",
        version=API_VERSION,
        summary="Text search over image regions (SAM 2.1 + CLIP) and interactive segmentation",
        description=(
            "Boxes in responses are XYWH pixels; boxes in prompts are XYXY pixels; masks are COCO RLE "
            "`{size: [h, w], counts}`. Errors are `{\"error\": message}`. Write endpoints need the "
            "`X-API-Key` header and answer 503 when the server has no key configured."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = state
    _offline_docs(app)

    def openapi() -> dict[str, Any]:
        # FastAPI's generated schema plus the limits the service enforces and response links
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            from .openapi import document_limits

            spec = get_openapi(title=app.title, version=app.version, summary=app.summary,
                               description=app.description, routes=app.routes)
            app.openapi_schema = document_limits(spec, settings, max_k=state.max_k)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(RegionSearchError)
    async def domain_error(request: Request, exc: RegionSearchError) -> JSONResponse:
        status = int(getattr(exc, "http_status", 500))
        if status >= 500 and status != 503:
            log.error("domain error on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = list(exc.errors())
        return JSONResponse({"error": _validation_message(errs), "detail": _clean(errs)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "not found"
        headers = exc.headers
        if exc.status_code == 405:
            # Starlette names only the methods of the first route matching the path; several
            # routes share a path (GET and DELETE /v1/images/{id}), so list them all
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(app, request.scope))}
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error"}, status_code=500)

    from .routes import browse, health, images, regions, scene, search, segment, store, tracks, video_segment, videos

    for module in (health, search, regions, browse, segment, video_segment, images, scene, store, tracks, videos):
        app.include_router(module.router)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Content-Type", "X-API-Key"])
    app.add_middleware(_Guard, state=state)
    return app


def run_server(host: str = "127.0.0.1", port: int = 8000, config: str | None = None, data_dir: str | None = None,
               db: str | None = None, device: str | None = None, **overrides: Any) -> None:
    """Serve the API with uvicorn (``regionsearch serve``); other settings come from the env."""
    import uvicorn

    settings = Settings.from_env(config=config, data_dir=data_dir, db=db, device=device, **overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower())
