"""Interactive video segmentation: a prompt on frame ``k``, propagated through a frame range.

:class:`InteractiveRun` decodes a video lazily (PyAV), takes the frames of ``[start, end]`` on the
sampling grid of ``sample_fps`` (the first frame of every ``1 / sample_fps`` second slot of
presentation time, as indexing samples) plus frame ``k`` itself, segments the prompt (points with
labels, a box, or a mask) on frame ``k`` and carries it forward, backward or both ways with a
propagator (:func:`regionsearch.video.tracks.create_propagator`). :meth:`InteractiveRun.start`
does everything up to the prompt's mask (so a bad prompt or a frame outside the video is an
error before any result is sent); :meth:`InteractiveRun.rest` yields the other frames' masks one at a
time: backward first (``k - 1`` down to ``start``), then forward (``k + 1`` up to ``end``).

Backward propagation needs the frames before ``k`` again in reverse order: their images are kept
while decoding up to ``k`` (at most ``max_backward`` sampled frames). A propagator that takes a
``feature_cache`` (the ``memory`` one) reuses image features by ``(video key, frame index)``; the
``chain`` one caches by image content in its prompt segmenter: either way a second request on
the same video (a correction click) re-runs the decoder, not the image encoder.

Propagation stops where the propagator loses the object (``chain``: no point left inside the
frame; ``memory``: runs to the end of the range, a frame where the object is hidden has an empty
mask and a low score).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import InvalidRequestError
from ..masks import encode_rle, mask_to_bbox
from .decode import SampledFrame

DIRECTIONS = ("forward", "backward", "both")


@dataclass(frozen=True)
class FrameMask:
    """The object's mask on one frame: ``frame`` (decoded frame index), ``t`` (seconds),
    ``mask`` (H, W) bool, ``score`` (the propagator's: predicted IoU or object presence)."""

    frame: int
    t: float
    mask: np.ndarray
    score: float

    def to_json(self) -> dict[str, Any]:
        return {"frame": self.frame, "t": round(self.t, 6), "bbox": [float(v) for v in mask_to_bbox(self.mask)],
                "mask": encode_rle(self.mask), "score": round(float(self.score), 6)}


def on_grid(frames: Iterable[SampledFrame], sample_fps: float, keep: int, start: int = 0,
            end: int | None = None) -> Iterator[SampledFrame]:
    """The frames of ``[start, end]`` that open a ``1 / sample_fps`` slot, plus frame ``keep``.
    ``frames``: every decoded frame in order."""
    last_slot = -1
    for f in frames:
        if f.index < start:
            continue
        if end is not None and f.index > end:
            return
        slot = int(math.floor(f.t * sample_fps + 1e-6))
        if slot > last_slot or f.index == keep:
            last_slot = max(last_slot, slot)
            yield f


def _step(prop: Any, image: np.ndarray, key: Any) -> Any:
    if getattr(prop, "cache", None) is not None:
        return prop.step(image, key).get(0)
    return prop.step(image).get(0)


def _begin(prop: Any, image: np.ndarray, key: Any) -> None:
    if getattr(prop, "cache", None) is not None:
        prop.begin(image, key)
    else:
        prop.begin(image)


class InteractiveRun:
    """One request: see the module doc. ``frames``: every decoded frame of the video in order
    (:func:`regionsearch.video.decode.sample_frames` with ``sample_fps=None``), consumed lazily;
    ``make_propagator()``: a fresh propagator; ``video_key``: identifies the video in the
    propagator's feature cache."""

    def __init__(self, frames: Iterable[SampledFrame], make_propagator: Callable[[], Any], *, frame: int,
                 sample_fps: float, direction: str = "forward", start: int = 0, end: int | None = None,
                 video_key: Any = None, max_backward: int = 300):
        if direction not in DIRECTIONS:
            raise InvalidRequestError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        if not (start <= frame and (end is None or frame <= end)):
            raise InvalidRequestError(f"frame {frame} is outside the frame range [{start}, {end if end is not None else 'end'}]")
        self.k, self.direction, self.video_key, self.max_backward = frame, direction, video_key, max_backward
        self.make_propagator = make_propagator
        self._frames = on_grid(frames, sample_fps, frame, start, end if direction != "backward" else frame)
        self._before: list[SampledFrame] = []
        self._first: FrameMask | None = None

    def _key(self, index: int) -> Any:
        return None if self.video_key is None else (self.video_key, index)

    def start(self, points: Sequence[Sequence[float]] | None = None, labels: Sequence[int] | None = None,
              box: Sequence[float] | None = None, mask: np.ndarray | None = None) -> FrameMask:
        """Decode up to frame ``k`` and segment the prompt there (a ``mask`` is taken as is)."""
        first = None
        for f in self._frames:
            if f.index == self.k:
                first = f
                break
            if self.direction != "forward":
                self._before.append(f)
                if len(self._before) > self.max_backward:
                    raise InvalidRequestError(f"backward propagation over more than {self.max_backward} sampled frames; "
                                              "narrow the range with frame_start")
        if first is None:
            raise InvalidRequestError(f"frame {self.k} is not in the video (it has fewer frames)")
        h, w = first.image.shape[:2]
        if mask is not None:
            if mask.shape != (h, w):
                raise InvalidRequestError(f"the mask is {mask.shape[1]}x{mask.shape[0]}, the video {w}x{h}")
            if not mask.any():
                raise InvalidRequestError("the mask prompt is empty")
            self._first = FrameMask(first.index, first.t, mask.astype(bool), 1.0)
        else:
            prop = self.make_propagator()
            _begin(prop, first.image, self._key(first.index))
            p = prop.prompt(points, labels, box)
            self._first = FrameMask(first.index, first.t, p.mask, p.score)
        self._first_image = first.image
        return self._first

    def _seeded(self) -> Any:
        assert self._first is not None
        prop = self.make_propagator()
        _begin(prop, self._first_image, self._key(self.k))
        prop.add(0, self._first.mask)
        return prop

    def _run(self, prop: Any, frames: Iterable[SampledFrame]) -> Iterator[FrameMask]:
        for f in frames:
            p = _step(prop, f.image, self._key(f.index))
            if p is None:
                return
            yield FrameMask(f.index, f.t, p.mask, p.score)
            prop.add(0, p.mask)

    def rest(self) -> Iterator[FrameMask]:
        """The other frames' masks: backward first, then forward (see the module doc)."""
        if self._first is None:
            raise InvalidRequestError("call start() first")
        if self.direction in ("backward", "both"):
            before, self._before = self._before, []
            yield from self._run(self._seeded(), reversed(before))
        if self.direction in ("forward", "both"):
            yield from self._run(self._seeded(), self._frames)
