"""Videos in an indexing run: read stage (size checks, streamed sha256, lookup) and model stage
(lazy decode at ``video.sample_fps`` -> keyframe masks + propagation -> tracks -> one vector per
track), producing a :class:`~regionsearch.types.VideoResult` that the data dir commits like an
image: one transaction with its video row, tracks and per-frame masks. Bad videos raise
:class:`~regionsearch.errors.InvalidVideoError` (an ``InvalidImageError``) and are recorded with
their reason like bad images."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from regionsearch.config import Config
from regionsearch.errors import InvalidImageError, InvalidVideoError
from regionsearch.imageio import check_input_file, path_to_db
from regionsearch.pipeline import StageTimes
from regionsearch.types import VideoResult

log = logging.getLogger(__name__)


def record_video_pipeline(datadir: Any, config: Config, settings: dict[str, Any]) -> None:
    """Remember what the video pipeline key means (``info`` lists the settings of every key)."""
    datadir.store.record_pipeline(config.video_pipeline_key(), settings | {"video": config.video_settings()})


def is_video(path: str, config: Config) -> bool:
    """Index ``path`` as a video (container magic bytes, else a video extension)?"""
    from regionsearch.video.decode import is_video_file

    return is_video_file(path, config.video.extensions)


def read_video(path: str, config: Config, datadir: Any, lock: Any) -> tuple[str, Any]:
    """``("video", (sha, size, mtime))``, ``("done"|"moved", None)`` or ``("failed", (sha, reason))``:
    the file is hashed in pieces (never read whole) and looked up under the video pipeline key
    (:meth:`~regionsearch.config.Config.video_pipeline_key`); decoding happens in :func:`process_video`."""
    from regionsearch.video.decode import file_sha256

    key = config.video_pipeline_key()
    sha: str | None = None
    try:
        try:
            size = check_input_file(path, config.video.max_bytes)
            sha = file_sha256(path)
        except OSError as exc:
            raise InvalidVideoError(f"cannot read file: {exc.strerror or exc}") from exc
        with lock:
            state = datadir.lookup(path_to_db(path), sha, key)
        if state in ("done", "moved"):
            return state, None
        try:
            mtime: float | None = os.stat(path).st_mtime
        except OSError:
            mtime = None
        return "video", (sha, size, mtime)
    except InvalidImageError as exc:
        return "failed", (sha, str(exc))


def process_video(path: str, item: tuple[Any, ...], pipeline: Any, times: StageTimes) -> tuple[str, Any]:
    """Decode, track and embed one video: ``("new", VideoResult)`` or ``("failed", (sha, reason))``."""
    from regionsearch.video.tracks import track_video

    key = pipeline.config.video_pipeline_key()
    sha, size, mtime = item
    cfg = pipeline.config.video
    t0 = time.perf_counter()
    try:
        vt = track_video(path, pipeline, cfg)
    except InvalidImageError as exc:
        return "failed", (sha, str(exc))
    except (RuntimeError, ValueError, MemoryError) as exc:
        log.exception("model failure on %s", path)
        return "failed", (sha, f"processing failed: {exc.__class__.__name__}: {exc}")
    st = vt.stats
    times.segment += st.segment_s + st.propagate_s
    times.embed += st.crop_s + st.embed_s
    times.decode += max(0.0, time.perf_counter() - t0 - (st.segment_s + st.propagate_s + st.crop_s + st.embed_s))
    info = vt.info
    return "new", VideoResult(path=path_to_db(path), sha256=sha, width=int(info.width), height=int(info.height),
                              pipeline_key=key, fps=float(info.fps), duration_s=info.duration_s,
                              n_frames=info.n_frames, sample_fps=float(cfg.sample_fps or 0.0),
                              rotation=int(info.rotation), codec=info.codec, tracks=vt.tracks,
                              file_size=size, file_mtime=mtime)
