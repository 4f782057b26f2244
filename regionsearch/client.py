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
        resp = self.http.request(method, url, headers=headers, **kw)
        if resp.status_code >= 400:
            try:
                message = resp.json().get("error") or resp.text
            except (ValueError, AttributeError):
                message = resp.text
            raise ApiError(resp.status_code, str(message))
        return resp

    def _json(self, method: str, url: str, **kw: Any) -> Any:
        return self._request(method, url, **kw).json()

    # ------------------------------------------------------------------ search
    def search(self, text: str, k: int = 10, *, path_prefix: str | None = None, min_area: float | None = None,
               min_score: float | None = None, per_image: int | None = None) -> dict[str, Any]:
        """``{"query": text, "hits": [...]}`` (the CLI's JSON hit schema)."""
        filters = {k_: v for k_, v in dict(path_prefix=path_prefix, min_area=min_area, min_score=min_score,
                                            per_image=per_image).items() if v is not None}
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

    # ------------------------------------------------------------------ operations
    def health(self) -> dict[str, Any]:
        return self._json("GET", "/healthz")

    def ready(self) -> dict[str, Any]:
        return self._json("GET", "/readyz")
