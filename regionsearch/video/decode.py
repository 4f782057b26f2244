"""Lazy video decoding with PyAV: sampled frames with timestamps, scene cuts, rotation.

:func:`probe_video` reads a video's header (size, rate, duration, rotation) and checks it;
:func:`sample_frames` yields :class:`SampledFrame` objects one at a time (only the current frame
and a 16x16 thumbnail of the previous one are held, never the whole video).

Conventions: ``index`` counts the video's own decoded frames from 0; ``t`` is the frame's
presentation time in seconds from the start of the stream (so variable-frame-rate videos keep
their real times); images are ``HWC uint8 RGB`` *upright* (the container's display rotation is
applied, as players do). Sampling keeps the first frame of every ``1 / sample_fps`` second slot
of presentation time, plus the first frame after every scene cut.

Every way a file can be bad raises :class:`~regionsearch.errors.InvalidVideoError` with a reason
(a subclass of ``InvalidImageError``, so indexing records it and moves on like a bad image).
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ..config import VideoConfig
from ..errors import ConfigError, InvalidImageError, InvalidVideoError, MissingDependencyError
from ..imageio import check_input_file

DEFAULT_MAX_PIXELS = VideoConfig.max_pixels  # per frame: 4K UHD fits, a decompression bomb does not
DEFAULT_MAX_BYTES = VideoConfig.max_bytes
CUT_THUMB = 16
#: a cut is a frame difference this many times the running typical difference (and above the threshold)
CUT_RATIO = 3.0

# magic bytes of video containers: a file that starts like one but cannot be opened is a broken
# video, not "some other file"
_MAGIC: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"), (4, b"moov"), (4, b"mdat"), (4, b"wide"), (4, b"free"),  # ISO BMFF / QuickTime
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"RIFF"),  # AVI
    (0, b"\x00\x00\x01\xba"), (0, b"\x00\x00\x01\xb3"),  # MPEG-PS / ES
    (0, b"\x47"),  # MPEG-TS sync byte
)


def _av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise MissingDependencyError("av", "video decoding") from exc
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header says. ``width``/``height``: pixels of the upright frame (after
    ``rotation``, degrees counter-clockwise applied to the stored frames); ``fps``: average frame
    rate; ``duration_s``: seconds (``None`` when the container does not say); ``n_frames``: the
    container's frame count (``None`` when unknown); ``size_bytes``: the file's size."""

    path: str
    width: int
    height: int
    fps: float
    duration_s: float | None
    n_frames: int | None
    rotation: int
    codec: str
    size_bytes: int


@dataclass(frozen=True)
class SampledFrame:
    """One sampled frame: ``index`` (decoded frame number from 0), ``t`` (seconds),
    ``image`` (HWC uint8 RGB, upright), ``cut`` (a scene cut happened since the previous sampled
    frame; ``True`` for the first frame)."""

    index: int
    t: float
    image: np.ndarray
    cut: bool


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte pieces (videos are not read whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _looks_like_video(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    return any(head[off:off + len(magic)] == magic for off, magic in _MAGIC)


#: ISO BMFF brands of still images (HEIF/AVIF): an ``ftyp`` box alone does not make a video
_IMAGE_BRANDS = (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"heim", b"heis")


def is_video_file(path: str, extensions: "tuple[str, ...] | list[str]" = VideoConfig.extensions) -> bool:
    """Should indexing treat ``path`` as a video? By its container's magic bytes (ISO BMFF
    ``ftyp``/``moov``, Matroska/WebM, AVI, MPEG-PS, MPEG-TS with two sync bytes), whatever its
    name, so a mislabelled video is not decoded as a broken image; otherwise by its extension
    (so an empty or broken ``.mp4`` is reported as a bad video, not a bad image)."""
    head = b""
    try:
        # only a regular file is opened: opening a FIFO would block until a writer appears
        if stat.S_ISREG(os.stat(path).st_mode):
            with open(path, "rb") as fh:
                head = fh.read(192)
    except OSError:
        pass
    iso = head[4:8] == b"moov" or (head[4:8] == b"ftyp" and head[8:12] not in _IMAGE_BRANDS)
    strong = (iso or head[:4] == b"\x1a\x45\xdf\xa3"
              or (head[:4] == b"RIFF" and head[8:11] == b"AVI")
              or head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")
              or (len(head) > 188 and head[0] == 0x47 and head[188] == 0x47))
    return strong or os.path.splitext(path)[1].lower() in {e.lower() for e in extensions}


def _open(path: str) -> Any:
    av = _av()
    try:
        return av.open(path, "r")
    except av.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        if _looks_like_video(path):
            raise InvalidVideoError(f"truncated or corrupt video ({reason})") from exc
        raise InvalidVideoError("not a video (unrecognised format)") from exc


def _stream(container: Any) -> Any:
    if not container.streams.video:
        if container.streams.audio:
            raise InvalidVideoError("no video stream (audio only)")
        raise InvalidVideoError("no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _norm_rotation(deg: float) -> int:
    return int(90 * round(float(deg) / 90.0)) % 360


def probe_video(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS,
                max_bytes: int = DEFAULT_MAX_BYTES) -> VideoInfo:
    """Open a video, read its header and check it (see the module doc for the errors)."""
    p = os.fspath(path)
    try:
        size = check_input_file(p, max_bytes)
    except InvalidVideoError:
        raise
    except InvalidImageError as exc:
        raise InvalidVideoError(str(exc)) from exc
    with _open(p) as container:
        stream = _stream(container)
        return _info(p, container, stream, size, max_pixels)


def _first_frame_rotation(container: Any, stream: Any) -> int:
    """The display rotation, which PyAV exposes on decoded frames only: decode the first one."""
    av = _av()
    try:
        frame = next(iter(container.decode(stream)), None)
    except av.FFmpegError as exc:
        raise InvalidVideoError(f"truncated or corrupt video (the first frame does not decode: "
                                f"{getattr(exc, 'strerror', None) or exc})") from exc
    if frame is None:
        raise InvalidVideoError("no decodable video frames")
    return _norm_rotation(getattr(frame, "rotation", 0) or 0)


def _info(path: str, container: Any, stream: Any, size: int, max_pixels: int) -> VideoInfo:
    cc = stream.codec_context
    w, h = int(cc.width or 0), int(cc.height or 0)
    if w <= 0 or h <= 0:
        raise InvalidVideoError("video stream has no frame size (corrupt header)")
    if w * h > max_pixels:
        raise InvalidVideoError(f"video too large ({w}x{h} = {w * h} pixels per frame > limit {max_pixels})")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = float(container.duration) / 1_000_000
    rot = _first_frame_rotation(container, stream)
    if rot in (90, 270):
        w, h = h, w
    return VideoInfo(path=path, width=w, height=h, fps=fps, duration_s=duration,
                     n_frames=int(stream.frames) or None, rotation=rot, codec=str(cc.name), size_bytes=size)


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def sample_frames(path: str | os.PathLike[str], sample_fps: float | None = 2.0, *, cut_threshold: float = 0.06,
                  max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES,
                  max_frames: int | None = None) -> Iterator[SampledFrame]:
    """Yield sampled frames of a video lazily (see the module doc).

    ``sample_fps``: sampled frames per second of presentation time (``None`` or 0: every frame);
    ``cut_threshold``: a scene cut is declared where the mean absolute difference (fraction of
    255) between 16x16 thumbnails of consecutive decoded frames exceeds this *and* ``CUT_RATIO``
    times the running mean of earlier differences (so steady fast motion is not a cut); ``max_frames``: stop after
    that many sampled frames. Raises :class:`InvalidVideoError` (before the first frame for bad
    headers, during iteration for data that stops decoding, at the end when fewer than 90% of the
    frames the container announced could be decoded).
    """
    if sample_fps is not None and (not math.isfinite(sample_fps) or sample_fps < 0):
        raise ConfigError(f"sample_fps must be a positive number of frames per second (or 0 for all), got {sample_fps}")
    av = _av()
    p = os.fspath(path)
    info = probe_video(p, max_pixels=max_pixels, max_bytes=max_bytes)
    period = 1.0 / sample_fps if sample_fps else 0.0
    with _open(p) as container:
        stream = _stream(container)
        t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
        fallback_dt = 1.0 / info.fps if info.fps > 0 else 0.0
        index, last_slot, prev_thumb, pending_cut, emitted, t_prev = 0, -1, None, True, 0, -fallback_dt
        typical: float | None = None  # running mean of frame-to-frame differences without cuts
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.FFmpegError as exc:
                raise InvalidVideoError(f"truncated or corrupt video (decoding failed after frame {index}: "
                                        f"{getattr(exc, 'strerror', None) or exc})") from exc
            t = float(frame.time) - t0 if frame.time is not None else t_prev + fallback_dt
            t_prev = t
            thumb = frame.reformat(width=CUT_THUMB, height=CUT_THUMB, format="rgb24").to_ndarray().astype(np.int16)
            if prev_thumb is not None:
                diff = float(np.abs(thumb - prev_thumb).mean()) / 255.0
                if diff > cut_threshold and (typical is None or diff > CUT_RATIO * typical):
                    pending_cut = True
                else:
                    typical = diff if typical is None else 0.8 * typical + 0.2 * diff
            prev_thumb = thumb
            slot = int(math.floor(t / period + 1e-6)) if period else index
            if slot > last_slot or pending_cut:
                rotation = _norm_rotation(getattr(frame, "rotation", 0) or 0) or info.rotation
                image = _upright(frame.to_ndarray(format="rgb24"), rotation)
                yield SampledFrame(index=index, t=t, image=image, cut=pending_cut)
                emitted += 1
                last_slot, pending_cut = max(slot, last_slot), False
                if max_frames is not None and emitted >= max_frames:
                    return
            index += 1
    if index == 0:
        raise InvalidVideoError("no decodable video frames")
    if info.n_frames and index < 0.9 * info.n_frames:
        raise InvalidVideoError(f"truncated video (decoded {index} of the {info.n_frames} frames its header announces)")


def read_frame(path: str | os.PathLike[str], index: int, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Decoded frame number ``index`` (counted from 0, as in :class:`SampledFrame`) of a video,
    ``HWC uint8 RGB`` upright; decodes lazily up to it. :class:`InvalidVideoError` when the
    video has fewer frames (it changed since it was indexed) or is bad."""
    for frame in sample_frames(path, None, max_pixels=max_pixels, max_bytes=max_bytes,
                               max_frames=int(index) + 1):
        if frame.index == index:
            return frame.image
    raise InvalidVideoError(f"the video has no frame {index} (it changed since it was indexed?)")


class FrameSeeker:
    """Random access to the decoded frames of one video, by seeking: frame ``index`` (counted
    from 0, as in :class:`SampledFrame`) as ``HWC uint8 RGB`` upright.

    Opening reads the container's packets once (demuxing, no decoding) to learn every frame's
    presentation timestamp and which frames are keyframes; frame ``i`` is the ``i``-th smallest
    timestamp (decoders emit frames in presentation order). :meth:`read` then seeks to the
    keyframe at or before the frame and decodes from there, or, when the wanted frame lies ahead
    of the last one read with no keyframe in between, just decodes on (a player stepping through
    a video costs one pass, not one pass per frame). Never decodes the whole video for one frame
    unless the video has a single keyframe. Thread-safe (one read at a time).
    """

    def __init__(self, path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_BYTES):
        import threading

        self.path = os.fspath(path)
        self.info = probe_video(self.path, max_pixels=max_pixels, max_bytes=max_bytes)
        self._lock = threading.Lock()
        self._container: Any = None
        self._frames: Any = None  # the open decoder's frame iterator
        self._at: int | None = None  # pts of the frame the decoder emitted last
        av = _av()
        with _open(self.path) as container:
            stream = _stream(container)
            self.time_base = stream.time_base
            self.start = int(stream.start_time or 0)
            try:
                packets = [(int(p.pts), bool(p.is_keyframe)) for p in container.demux(stream)
                           if p.pts is not None and p.size]
            except av.FFmpegError as exc:
                raise InvalidVideoError(f"truncated or corrupt video ({getattr(exc, 'strerror', None) or exc})") from exc
        packets.sort()
        self.pts = [p for p, _ in packets]
        self.keyframes = [p for p, key in packets if key] or self.pts[:1]
        if not self.pts:
            raise InvalidVideoError("no video frames (the container holds no timed video packets)")

    @property
    def n_frames(self) -> int:
        """Frames the container holds (its packets with a timestamp)."""
        return len(self.pts)

    def time(self, index: int) -> float:
        """Presentation time of frame ``index``, seconds from the stream's start."""
        return float((self.pts[index] - self.start) * self.time_base)

    def read(self, index: int) -> np.ndarray:
        """Frame ``index``; :class:`InvalidVideoError` when there is no such frame or it does not decode."""
        import bisect

        if not 0 <= index < len(self.pts):
            raise InvalidVideoError(f"the video has no frame {index} (it has {len(self.pts)} frames: 0 to "
                                    f"{len(self.pts) - 1})")
        target = self.pts[index]
        with self._lock:
            key = self.keyframes[max(0, bisect.bisect_right(self.keyframes, target) - 1)]
            if self._at is None or not (key <= self._at < target):
                self._seek(key)
            return self._decode_to(target)

    def _seek(self, key: int) -> None:
        if self._container is None:
            self._container = _open(self.path)
        stream = self._container.streams.video[0]
        self._container.seek(key, stream=stream, backward=True, any_frame=False)
        self._frames = self._container.decode(stream)
        self._at = None

    def _decode_to(self, target: int) -> np.ndarray:
        av = _av()
        while True:
            try:
                frame = next(self._frames)
            except (StopIteration, av.FFmpegError) as exc:
                self.close()
                raise InvalidVideoError(f"frame at timestamp {target} does not decode (truncated or changed "
                                        "video?)") from exc
            if frame.pts is None:
                continue
            self._at = int(frame.pts)
            if self._at >= target:
                rotation = _norm_rotation(getattr(frame, "rotation", 0) or 0) or self.info.rotation
                return _upright(frame.to_ndarray(format="rgb24"), rotation)

    def close(self) -> None:
        """Close the open decoder (the next :meth:`read` opens it again)."""
        if self._container is not None:
            self._container.close()
        self._container, self._frames, self._at = None, None, None
