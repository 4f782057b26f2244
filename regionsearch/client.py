"""Python client of the regionsearch HTTP API (httpx).

>>> from regionsearch.client import Client
>>> with Client("http://127.0.0.1:8000") as c:
...     hits = c.search("red car", k=5)["hits"]

Errors of the service become :class:`ApiError` (a :class:`~regionsearch.errors.RegionSearchError`)
carrying the HTTP status and the server's message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence, Union

from .errors import RegionSearchError

ImageInput = Union[bytes, str, "os.PathLike[str]"]


class ApiError(RegionSearchError):
    """The service answered with an error status; ``status`` and the server's message."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.http_status = status
        self.message = message


class ServerUnreachableError(RegionSearchError):
    """No answer from the service at all: nothing listens at the URL, the name does not resolve,
    the connection broke or timed out."""

    http_status = 503


def check_server_url(url: str) -> str:
    """``url`` without a trailing slash; :class:`~regionsearch.errors.InvalidRequestError` unless it
    is an ``http://`` or ``https://`` URL with a host."""
    from urllib.parse import urlsplit

    from .errors import InvalidRequestError

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidRequestError(f"the server URL must look like http://host:8000, got {url!r}")
    return url.strip().rstrip("/")


def _read(image: ImageInput) -> tuple[str, bytes]:
    if isinstance(image, (bytes, bytearray)):
        return "image", bytes(image)
    p = Path(image)
    return p.name, p.read_bytes()


class Client:
    """Calls the service at ``base_url``. ``api_key`` is sent as ``X-API-Key`` (write endpoints).
    ``http``: an existing ``httpx.Client`` to use instead (e.g. FastAPI's ``TestClient``)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None,
                 timeout: float = 60.0, http: Any = None):
        import httpx

        headers = {"X-API-Key": api_key} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._own = http is None
        self.http = http if http is not None else httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self._headers = headers

    def close(self) -> None:
        if self._own:
            self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing
    def _request(self, method: str, url: str, **kw: Any) -> Any:
        headers = {**self._headers, **kw.pop("headers", {})}
        try:
            resp = self.http.request(method, url, headers=headers, **kw)
        except Exception as exc:
            raise self._unreachable(exc) from None
        self._check(resp, url)
        return resp

    def _unreachable(self, exc: Exception) -> Exception:
        """A transport failure (httpx's ``TransportError``, ``InvalidURL``) as one sentence; other
        exceptions unchanged."""
        import httpx

        if not isinstance(exc, (httpx.TransportError, httpx.InvalidURL)):
            return exc
        what = "timed out" if isinstance(exc, httpx.TimeoutException) else (str(exc).splitlines() or [""])[0]
        return ServerUnreachableError(f"cannot reach the regionsearch server at {self.base_url} "
                                      f"({what or type(exc).__name__}); is `regionsearch serve` running there?")

    @staticmethod
    def _check(resp: Any, url: str) -> None:
        if resp.status_code < 400:
            return
        try:
            body = resp.json()
            message = body.get("error") if isinstance(body, dict) else None
        except (ValueError, AttributeError):
            message = None
        if resp.status_code == 404 and message == "not found":  # no such route: the URL is not the service's root
            message = None
        if message is None:  # not one of our error bodies: something else answers at that URL
            text = " ".join(resp.text.split())[:120]
            message = (f"{url} answered {text!r}: is this a regionsearch server (regionsearch serve)?" if resp.status_code
                       in (404, 405) else text or resp.reason_phrase)
        raise ApiError(resp.status_code, str(message))

    def _json(self, method: str, url: str, **kw: Any) -> Any:
        return self._request(method, url, **kw).json()

    # ------------------------------------------------------------------ search
    def search(self, text: str, k: int = 10, *, path_prefix: str | None = None, min_area: float | None = None,
               min_score: float | None = None, per_image: int | None = None, dedupe: bool = True,
               media: str | None = None) -> dict[str, Any]:
        """``{"query": text, "hits": [...]}`` (the CLI's JSON hit schema: ``"kind"`` is ``"region"``
        or ``"track"``). ``dedupe=False`` keeps near-duplicate regions of one image (``search
        --no-dedupe``); ``media``: ``image``, ``video`` or ``all`` (the service's default: all)."""
        filters = {k_: v for k_, v in dict(path_prefix=path_prefix, min_area=min_area, min_score=min_score,
                                            per_image=per_image, media=media).items() if v is not None}
        if not dedupe:
            filters["dedupe"] = False
        return self._json("POST", "/v1/search", json={"text": text, "k": k, "filters": filters})

    def search_image(self, image: ImageInput, k: int = 10, box: Sequence[float] | None = None,
                     per_image: int | None = None) -> dict[str, Any]:
        """Regions similar to an image (optionally its ``box`` crop, XYXY pixels)."""
        name, data = _read(image)
        form: dict[str, Any] = {"k": str(k)}
        if box is not None:
            form["box"] = ",".join(str(float(v)) for v in box)
        if per_image is not None:
            form["per_image"] = str(per_image)
        return self._json("POST", "/v1/search/image", data=form, files={"file": (name, data)})

    def similar(self, region_id: int, k: int = 10) -> dict[str, Any]:
        return self._json("GET", f"/v1/regions/{int(region_id)}/similar", params={"k": k})

    # ------------------------------------------------------------------ records
    def region(self, region_id: int) -> dict[str, Any]:
        return self._json("GET", f"/v1/regions/{int(region_id)}")

    def region_crop(self, region_id: int, size: int = 256) -> bytes:
        return self._request("GET", f"/v1/regions/{int(region_id)}/crop.png", params={"size": size}).content

    def image(self, image_id: int) -> dict[str, Any]:
        return self._json("GET", f"/v1/images/{int(image_id)}")

    def image_file(self, image_id: int) -> bytes:
        return self._request("GET", f"/v1/images/{int(image_id)}/file").content

    def overlay(self, image_id: int, regions: Sequence[int] | None = None) -> bytes:
        params = {"regions": ",".join(str(int(r)) for r in regions)} if regions else None
        return self._request("GET", f"/v1/images/{int(image_id)}/overlay.png", params=params).content

    # ------------------------------------------------------------------ segmentation
    def segment(self, *, image_id: int | None = None, image: ImageInput | None = None,
                image_key: str | None = None, points: Sequence[Sequence[float]] | None = None,
                labels: Sequence[int] | None = None, box: Sequence[float] | Sequence[Sequence[float]] | None = None,
                mask_input: str | None = None, multimask_output: bool = True) -> dict[str, Any]:
        """SAM 2.1 masks for a prompt on an indexed image, an uploaded image, or one sent before
        (``image_key``). ``mask_input`` is a ``logits_id`` from an earlier answer."""
        prompt: dict[str, Any] = {"multimask_output": multimask_output}
        if points is not None:
            prompt["points"] = [[float(v) for v in p] for p in points]
        if labels is not None:
            prompt["labels"] = [int(v) for v in labels]
        if box is not None:
            several = len(box) > 0 and isinstance(box[0], (list, tuple))
            prompt["box"] = [[float(v) for v in b] for b in box] if several else [float(v) for v in box]  # type: ignore[union-attr,arg-type]
        if mask_input is not None:
            prompt["mask_input"] = mask_input
        if image is not None:
            name, data = _read(image)
            return self._json("POST", "/v1/segment", data={"prompt": json.dumps(prompt)},
                              files={"file": (name, data)})
        if image_id is not None:
            prompt["image_id"] = int(image_id)
        if image_key is not None:
            prompt["image_key"] = image_key
        return self._json("POST", "/v1/segment", json=prompt)

    def segment_text(self, text: str, *, image_id: int | None = None, image: ImageInput | None = None,
                     image_key: str | None = None, k: int = 10) -> dict[str, Any]:
        """Candidate regions of one image ranked by similarity to ``text``."""
        body: dict[str, Any] = {"text": text, "k": k}
        if image is not None:
            name, data = _read(image)
            return self._json("POST", "/v1/segment/text", data={"prompt": json.dumps(body)},
                              files={"file": (name, data)})
        if image_id is not None:
            body["image_id"] = int(image_id)
        if image_key is not None:
            body["image_key"] = image_key
        return self._json("POST", "/v1/segment/text", json=body)

    # ------------------------------------------------------------------ writes (API key)
    def upload(self, image: ImageInput) -> dict[str, Any]:
        """Upload and index an image; ``{"image_id", "sha256", "status", "regions", ...}``."""
        name, data = _read(image)
        return self._json("POST", "/v1/images", files={"file": (os.path.basename(name) or "image", data)})

    def delete(self, image_id: int) -> dict[str, Any]:
        return self._json("DELETE", f"/v1/images/{int(image_id)}")

    # ------------------------------------------------------------------ the data dir as a whole
    def info(self, errors: bool = False) -> dict[str, Any]:
        """What ``regionsearch info --json`` prints for the service's data dir (``errors``: with
        ``failures``, the files that could not be indexed)."""
        return self._json("GET", "/v1/info", params={"errors": "true"} if errors else None)

    def export(self, text: str, out: str | os.PathLike[str], fmt: str = "coco", k: int = 100, *,
               path_prefix: str | None = None, labels: Sequence[str] = ()) -> dict[str, Any]:
        """Write the hits of ``text`` to the file ``out`` as ``fmt`` (coco, parquet, csv), built by the
        server (``regionsearch export --query``); streamed to ``out.partial`` then renamed. Returns
        ``{"path", "format", "regions", "images"}``."""
        body: dict[str, Any] = {"text": text, "k": k, "format": fmt, "labels": list(labels)}
        if path_prefix is not None:
            body["path_prefix"] = path_prefix
        path = Path(out)
        tmp = path.with_name(f".{path.name}.partial")
        try:
            with self.http.stream("POST", "/v1/export", json=body, headers=self._headers) as resp:
                if resp.status_code >= 400:
                    resp.read()
                self._check(resp, "/v1/export")
                with open(tmp, "wb") as f:
                    for part in resp.iter_bytes():
                        f.write(part)
                counts = (int(resp.headers.get("X-Regions", 0)), int(resp.headers.get("X-Images", 0)))
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            raise self._unreachable(exc) if isinstance(exc, Exception) else exc from None
        os.replace(tmp, path)
        return {"path": str(path), "format": fmt, "regions": counts[0], "images": counts[1]}

    # ------------------------------------------------------------------ operations
    def health(self) -> dict[str, Any]:
        return self._json("GET", "/healthz")

    def ready(self) -> dict[str, Any]:
        return self._json("GET", "/readyz")
