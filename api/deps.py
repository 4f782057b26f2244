"""Service state shared by the routes (models, data directory, caches, metrics) and the
``Annotated`` dependencies that hand it out.

The service opens the data directory *read-only*: an indexing job in another process holds the
writer lock and keeps committing while searches go on; the service picks up each newly saved
index within ``reload_interval_s`` (saves are atomic renames, so a half-written index is never
read). Write endpoints (upload, delete) open the data directory for writing only for the
duration of the job, one at a time; while another process is indexing they answer 409.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
from fastapi import Depends, Request, UploadFile
from fastapi.security import APIKeyHeader

from regionsearch.errors import (DataDirBusyError, ImageTooLargeError, InvalidImageError, InvalidRequestError,
                                 NotFoundError, RegionSearchError)
from regionsearch.cache import LRUCache
from regionsearch.config import load_config
from regionsearch.search import check_k as _check_k
from regionsearch.search import check_text as _check_text

from .settings import Settings

log = logging.getLogger("regionsearch.api")


class ServiceError(RegionSearchError):
    """An error of the service itself, with its HTTP status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.http_status = status


def too_large(message: str) -> ServiceError:
    return ServiceError(message, 413)


class TextBatcher:
    """Coalesces concurrent query texts into one call of the CLIP text tower.

    At a handful of tokens per query the tower's cost is dominated by streaming its weights
    (~150 MB for ViT-B-32), so a batch of n texts costs about as much as one. One worker thread
    takes whatever queued up while the previous batch ran (no waiting window: a lone query is
    encoded at once).
    """

    def __init__(self, embedder: Any, max_batch: int = 64):
        import queue

        self.embedder = embedder
        self.max_batch = max_batch
        self._queue: "queue.Queue[Any]" = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="text-batcher", daemon=True)
        self._thread.start()

    def encode(self, text: str) -> np.ndarray:
        """The L2-normalised float32 embedding of one text (blocks the calling worker thread)."""
        from concurrent.futures import Future

        fut: Future = Future()
        self._queue.put((text, fut))
        return fut.result()

    def _run(self) -> None:
        import queue

        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            try:
                vectors = self.embedder.embed_texts([t for t, _ in batch])
            except BaseException as exc:  # hand the error to every waiting request
                for _, fut in batch:
                    fut.set_exception(exc)
                continue
            for (_, fut), vec in zip(batch, vectors):
                fut.set_result(vec)

    def close(self) -> None:
        self._queue.put(None)


class Metrics:
    """Prometheus metrics of one app (own registry, so several apps can live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("regionsearch_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("regionsearch_http_request_seconds", "HTTP request latency (seconds)",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.segment_cache = Counter("regionsearch_segment_embedding_cache_total",
                                     "image-embedding cache lookups of prompted segmentation", ["result"],
                                     registry=self.registry)
        self.reloads = Counter("regionsearch_index_reloads_total", "index reloads after another process saved",
                               registry=self.registry)
        self.regions = Gauge("regionsearch_index_vectors", "vectors in the served index", registry=self.registry)
        self.ready = Gauge("regionsearch_ready", "1 when models and index are loaded", registry=self.registry)


@dataclass
class ServiceState:
    """Everything the routes need; built once by the app's lifespan."""

    settings: Settings
    engine: Any = None
    prompt: Any = None
    metrics: Metrics = field(default_factory=Metrics)
    open_error: Optional[str] = None
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    _reload_lock: threading.Lock = field(default_factory=threading.Lock)
    _prompt_lock: threading.Lock = field(default_factory=threading.Lock)
    _batcher: Optional[TextBatcher] = None
    _batcher_lock: threading.Lock = field(default_factory=threading.Lock)
    _last_check: float = 0.0
    images: LRUCache = field(default_factory=lambda: LRUCache(8))
    image_keys: LRUCache = field(default_factory=lambda: LRUCache(1024))
    amg: LRUCache = field(default_factory=lambda: LRUCache(8))
    frames: LRUCache = field(default_factory=lambda: LRUCache(24))
    seekers: LRUCache = field(default_factory=lambda: LRUCache(8))

    # ------------------------------------------------------------------ startup
    def start(self) -> None:
        """Load models and open the data directory (runs in a worker thread)."""
        from regionsearch.engine import Engine
        from regionsearch.manifest import check_data_dir_path, default_data_dir, load_config_for

        import indexer  # noqa: F401  (registers the indexing runners; the API is a composition root)

        s = self.settings
        # an existing data dir serves with the models it was indexed with (no --config needed)
        existing = check_data_dir_path(s.data_dir or default_data_dir(), must_exist=False)
        cfg = load_config_for(existing, s.config, {"device": s.device} if s.device else None)
        self.engine = Engine(cfg, s.data_dir, s.db, readonly=True)
        self.amg = LRUCache(s.segment_cache_size)
        self.frames = LRUCache(s.video_frame_cache_frames)
        if s.preload_models:
            self.engine.pipeline.embedder
            self.prompt_segmenter()
        try:
            self._ensure_data_dir()
            dd = self.engine.datadir
            self.metrics.regions.set(len(dd.index))
        except RegionSearchError as exc:
            self.open_error = str(exc)
            log.error("data dir not available: %s", exc)
        self.metrics.ready.set(1 if self.is_ready() else 0)

    def _ensure_data_dir(self) -> None:
        """Create an empty data dir when there is none (a read-only open needs a manifest)."""
        from regionsearch.manifest import MANIFEST_NAME

        if (Path(self.engine.data_dir) / MANIFEST_NAME).exists():
            return
        with self.open_writer():
            pass

    def stop(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        if self.engine is not None:
            self.engine.close()

    def is_ready(self) -> bool:
        return (self.engine is not None and self.open_error is None and self.engine.is_open
                and self.engine.pipeline.embedder_loaded and self.prompt is not None)

    # ------------------------------------------------------------------ access
    @property
    def max_k(self) -> int:
        """The largest ``k``: the settings' ``max_k``, else the config's ``search.max_k`` (the CLI's;
        None: no bound). Known before :meth:`start` too (the OpenAPI schema states it)."""
        if self.settings.max_k:
            return self.settings.max_k
        cfg = self.engine.config if self.engine is not None else load_config(self.settings.config)
        return cfg.search.max_k

    def encode_text(self, text: str) -> np.ndarray:
        """With :meth:`encode_image`, the service's :class:`~regionsearch.search.QueryEncoder`."""
        return self.text_vector(text)

    def text_vector(self, text: str) -> np.ndarray:
        """CLIP embedding of an already validated query text, batched with concurrent queries."""
        with self._batcher_lock:
            if self._batcher is None:
                self._batcher = TextBatcher(self.engine.pipeline.embedder)
        return self._batcher.encode(text)

    def encode_image(self, image: np.ndarray) -> np.ndarray:
        return self.engine.pipeline.encode_image(image)

    def search(self, source: Any, query: Any, k: int, filters: Any = None, **config: Any) -> list[Any]:
        """:func:`regionsearch.search.search` with the service's encoder and limits; ``config``
        overrides fields of the config's ``search`` section (e.g. ``whole_margin=None``)."""
        import dataclasses

        from regionsearch.search import search

        cfg = dataclasses.replace(self.engine.config.search, **config) if config else self.engine.config.search
        return search(source, query, k, filters, encoder=self, config=cfg, max_k=self.max_k,
                      max_text_chars=self.settings.max_text_chars)

    def prompt_segmenter(self) -> Any:
        with self._prompt_lock:
            if self.prompt is None:
                from regionsearch.segment.prompt import PromptSegmenter

                self.prompt = PromptSegmenter(self.engine.pipeline.sam_model, self.settings.segment_cache_size,
                                              self.settings.logits_cache_size, dtype=self.engine.config.segment.dtype,
                                              encoder_dtype=self.engine.config.segment.encoder_dtype)
            return self.prompt

    def datadir(self) -> Any:
        """The read-only data dir, reloaded at most every ``reload_interval_s`` when another
        process saved a newer index."""
        if self.engine is None:
            raise ServiceError("the service is starting", 503)
        if self.open_error is not None:
            raise ServiceError(f"the data directory is not available: {self.open_error}", 503)
        self.maybe_reload()
        return self.engine.datadir

    def maybe_reload(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_check < self.settings.reload_interval_s:
            return
        if not self._reload_lock.acquire(blocking=force):
            return  # another request is checking; keep serving the current index
        try:
            self._last_check = time.monotonic()
            dd = self.engine.datadir
            if dd.reload_if_changed():
                self.metrics.reloads.inc()
                log.info("reloaded the index (%d vectors)", len(dd.index))
            self.metrics.regions.set(len(dd.index))
        finally:
            self._reload_lock.release()

    def open_writer(self) -> Any:
        """A writable data dir for one write job (409 while another process is writing)."""
        try:
            return self.engine.open_datadir(readonly=False)
        except DataDirBusyError as exc:
            raise ServiceError("the data directory is being written by another process (an indexing "
                               "job); try again when it has finished", 409) from exc

    @property
    def uploads_dir(self) -> Path:
        return Path(self.engine.data_dir).resolve() / "uploads"

    def load_indexed_image(self, image_id: int, frame: int | None = None) -> tuple[Any, np.ndarray]:
        """The record and pixels (``HWC uint8 RGB``) of an indexed image, or of decoded frame
        ``frame`` of an indexed video (found by seeking, see :meth:`video_frame`). The path comes
        from the database only, never from a request."""
        from regionsearch.imageio import load_image, path_from_db

        rec = self.datadir().store.get_image(image_id)
        if frame is not None:
            return rec, self.video_frame(rec, int(frame))
        key = (rec.id, rec.sha256)
        arr = self.images.get(key)
        if arr is not None:
            return rec, arr
        try:
            cfg = self.engine.config.ingest
            array = load_image(path_from_db(rec.path), max_pixels=cfg.max_pixels, max_bytes=cfg.max_bytes).array
        except InvalidImageError as exc:
            raise NotFoundError(f"the file of image {image_id} cannot be read on the server ({exc})") from exc
        self.images.put(key, array)
        return rec, array

    def video_frame(self, rec: Any, frame: int) -> np.ndarray:
        """Decoded frame ``frame`` (from 0) of the indexed video ``rec`` (an images row), ``HWC
        uint8 RGB`` upright. Kept in an LRU of ``video_frame_cache_frames``; each video's
        :class:`~regionsearch.video.decode.FrameSeeker` (its frame timestamps and open decoder) in
        another, so nearby frames cost a seek and a short decode. ``NotFoundError`` for a frame the
        video does not have or a file that cannot be read."""
        from regionsearch.imageio import path_from_db
        from regionsearch.video.decode import FrameSeeker

        key = (rec.id, rec.sha256, frame)
        arr = self.frames.get(key)
        if arr is not None:
            return arr
        try:
            seeker = self.seekers.get(key[:2])
            if seeker is None:
                vcfg = self.engine.config.video
                seeker = FrameSeeker(path_from_db(rec.path), max_pixels=vcfg.max_pixels, max_bytes=vcfg.max_bytes)
                self.seekers.put(key[:2], seeker)
            array = seeker.read(frame)
        except InvalidImageError as exc:
            raise NotFoundError(f"frame {frame} of video {rec.id} cannot be read on the server ({exc})") from exc
        self.frames.put(key, array)
        return array


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


State = Annotated[ServiceState, Depends(get_state)]

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="required by write endpoints (upload, delete)")


def require_api_key(state: State, key: Annotated[Optional[str], Depends(api_key_header)]) -> None:
    """Write endpoints: 503 when the service has no key configured, 401 without the header,
    403 with a wrong key."""
    s = state.settings
    if not s.writes_enabled:
        raise ServiceError("write endpoints are disabled: the server has no API key configured "
                           "(set REGIONSEARCH_API_KEY)", 503)
    if not key:
        raise ServiceError("this endpoint needs an API key in the X-API-Key header", 401)
    expected = s.api_key.get_secret_value()  # type: ignore[union-attr]
    if not secrets.compare_digest(key.encode("utf-8", "surrogateescape"), expected.encode("utf-8")):
        raise ServiceError("wrong API key", 403)


WriteAccess = Depends(require_api_key)

_BAD_NAME_CHARS = set("/\\\x00")


def check_filename(name: str | None) -> None:
    """Upload file names are never used for storage, but a name that tries to climb directories
    is refused outright."""
    if not name:
        return
    if any(c in _BAD_NAME_CHARS for c in name) or ".." in name or any(ord(c) < 32 for c in name):
        raise InvalidRequestError("the upload's file name must be a plain file name (no '/', '\\', '..' "
                                  "or control characters)")


def read_upload_sync(file: UploadFile, settings: Settings) -> bytes:
    """The upload's bytes, refusing more than ``max_upload_bytes`` (413) or nothing (422)."""
    check_filename(file.filename)
    limit = settings.max_upload_bytes
    chunks, total = [], 0
    while True:
        chunk = file.file.read(1 << 20)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise too_large(f"the upload is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    if total == 0:
        raise InvalidRequestError("the uploaded file is empty")
    return b"".join(chunks)


def decode_upload(data: bytes, settings: Settings) -> np.ndarray:
    """Decode uploaded bytes to ``HWC uint8 RGB`` (413 above ``max_pixels``, 422 if not an image)."""
    from regionsearch.imageio import decode_image

    try:
        return decode_image(data, settings.max_pixels)
    except ImageTooLargeError as exc:
        raise too_large(str(exc)) from exc


def check_k(k: int, state: ServiceState) -> int:
    """Validate ``k`` before any expensive work (upload decoding); :func:`ServiceState.search`
    applies the same check."""
    return _check_k(k, state.max_k)


def check_text(text: str, state: ServiceState) -> str:
    return _check_text(text, state.settings.max_text_chars)
