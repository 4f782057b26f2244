"""Object tracks from sampled video frames: keyframe masks + propagation + re-matching.

A *track* is one object's masks over a range of sampled frames. :class:`TrackBuilder` consumes
:class:`~regionsearch.video.decode.SampledFrame` objects one at a time:

* on a *keyframe* (every ``keyframe_every`` sampled frames, and at every scene cut) the
  automatic segmenter's masks are matched to the live tracks' propagated masks by the Hungarian
  algorithm on mask IoU (pairs below ``match_iou`` do not match): a matched track takes the
  keyframe mask (and the propagator is re-seeded with it), an unmatched mask that no live track
  already covers starts a new track; at a cut every live track ends first;
* on every other frame a :class:`Propagator` carries each live track's mask from the previous
  sampled frame to this one; a track ends when its object is lost: the proposal is missing, its
  predicted IoU is below ``min_score``, its area collapses below ``collapse`` x the track's
  recent area, or it duplicates (IoU >= ``match_iou``) a track that explains it better.

Masks are kept as COCO RLE (one per track and sampled frame), so memory grows with the number
of tracks, not with pixels. Crops for the per-track embedding are collected on the fly (at most
``2 * n_crops`` per track, at a stride that doubles as the track grows) so no frame has to be
decoded twice; :func:`embed_tracks` embeds ``n_crops`` of them spread over the track's time and
stores their mean, renormalised (L2), as the track's vector.

Propagators: :class:`ChainPropagator` (``chain``) uses SAM 2.1's *image* predictor: a point
inside the object's previous mask (its most interior pixel), shifted by the object's last
motion, prompts the next frame; of the 3 candidate masks the one with the best predicted IoU
is kept. Pixels are ``(x, y)``; masks are ``(H, W)`` bool at the frame's resolution.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from ..errors import ConfigError, InvalidRequestError, UnknownNameError
from ..masks import decode_rle, encode_rle, mask_iou, mask_to_bbox
from .decode import SampledFrame

log = logging.getLogger(__name__)

PROPAGATORS: tuple[str, ...] = ("chain",)

#: per-track crops embedded into the track's vector: several views average out single-frame
#: accidents (an occluder, a part at the border, motion) at a fixed CLIP cost per track
DEFAULT_N_CROPS = 4


@dataclass(frozen=True)
class Proposal:
    """A propagated mask: ``mask`` (H, W) bool, ``score`` the predicted IoU (0-1)."""

    mask: np.ndarray
    score: float


class Propagator(Protocol):
    """Carries objects' masks from one sampled frame to the next.

    Call order per frame: :meth:`step` with the new frame (proposals for the objects known so
    far), then :meth:`add` (new or corrected masks *on this frame*) and :meth:`remove`.
    """

    name: str

    def step(self, image: np.ndarray) -> dict[int, Proposal]: ...

    def add(self, obj_id: int, mask: np.ndarray) -> None: ...

    def remove(self, obj_id: int) -> None: ...

    def prompt(self, points: Sequence[Sequence[float]] | None, labels: Sequence[int] | None,
               box: Sequence[float] | None = None) -> Proposal: ...


def interior_point(mask: np.ndarray) -> tuple[float, float]:
    """The ``(x, y)`` pixel of ``mask`` farthest from its border (ties: the first in raster order)."""
    import cv2

    if not mask.any():
        raise InvalidRequestError("cannot pick a point inside an empty mask")
    padded = np.pad(mask.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x), float(y)


def centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


@dataclass
class _ChainObject:
    mask: np.ndarray
    centre: tuple[float, float]
    motion: tuple[float, float] = (0.0, 0.0)


class ChainPropagator:
    """``chain``: SAM 2.1's image predictor prompted with a point inside the previous mask,
    shifted by the object's last motion (centroid displacement between its last two masks).

    ``segmenter`` is a :class:`~regionsearch.segment.prompt.PromptSegmenter`; the image features
    of each frame are computed once and shared by every object.
    """

    name = "chain"

    def __init__(self, segmenter: Any):
        self.segmenter = segmenter
        self.objects: dict[int, _ChainObject] = {}
        self._handle: Any = None
        self._hw: tuple[int, int] = (0, 0)

    def _set(self, image: np.ndarray) -> None:
        self._handle = self.segmenter.set_image(image)
        self._hw = image.shape[:2]

    def _best(self, points: Sequence[Sequence[float]] | None, labels: Sequence[int] | None,
              box: Sequence[float] | None = None) -> Proposal:
        cands = self.segmenter.predict(self._handle, points=points, labels=labels, box=box, multimask=True)[0]
        best = max(cands, key=lambda c: c.score)
        return Proposal(decode_rle(best.rle), float(best.score))

    def step(self, image: np.ndarray) -> dict[int, Proposal]:
        self._set(image)
        h, w = self._hw
        out: dict[int, Proposal] = {}
        for obj_id, obj in self.objects.items():
            x, y = interior_point(obj.mask)
            x, y = x + obj.motion[0], y + obj.motion[1]
            if not (0 <= x < w and 0 <= y < h):
                continue  # moved out of the frame
            out[obj_id] = self._best([[x, y]], [1])
        return out

    def add(self, obj_id: int, mask: np.ndarray) -> None:
        if not mask.any():
            self.objects.pop(obj_id, None)
            return
        c = centroid(mask)
        old = self.objects.get(obj_id)
        motion = (c[0] - old.centre[0], c[1] - old.centre[1]) if old is not None else (0.0, 0.0)
        self.objects[obj_id] = _ChainObject(mask, c, motion)

    def remove(self, obj_id: int) -> None:
        self.objects.pop(obj_id, None)

    def prompt(self, points: Sequence[Sequence[float]] | None, labels: Sequence[int] | None,
               box: Sequence[float] | None = None) -> Proposal:
        """A mask on the current frame (the last one given to :meth:`step` or :meth:`begin`)."""
        if self._handle is None:
            raise InvalidRequestError("no frame yet: call begin(image) or step(image) first")
        return self._best(points, labels, box)

    def begin(self, image: np.ndarray) -> None:
        """Make ``image`` the current frame without propagating (for a first prompt)."""
        self._set(image)


def create_propagator(name: str, sam_model: Any, cache_size: int = 2) -> Propagator:
    """A propagator by name (``PROPAGATORS``) over a loaded SAM 2.1 model."""
    if name == "chain":
        from ..segment.prompt import PromptSegmenter

        return ChainPropagator(PromptSegmenter(sam_model, cache_size=cache_size))
    raise UnknownNameError("propagator", name, PROPAGATORS)


@dataclass(frozen=True)
class TrackFrame:
    """One track's mask on one sampled frame: ``index`` (decoded frame number), ``t`` (seconds),
    ``rle`` (COCO RLE), ``bbox`` (XYWH pixels), ``area`` (pixels), ``score`` (predicted IoU),
    ``keyframe`` (the mask came from the automatic segmenter, not from propagation)."""

    index: int
    t: float
    rle: dict[str, Any]
    bbox: tuple[float, float, float, float]
    area: int
    score: float
    keyframe: bool


@dataclass
class Track:
    """One object over time. ``embedding``: (dim,) float32 L2-normalised after :func:`embed_tracks`."""

    id: int
    frames: list[TrackFrame] = field(default_factory=list)
    embedding: np.ndarray | None = None
    _crops: list[tuple[int, int, np.ndarray]] = field(default_factory=list, repr=False)
    _crop_stride: int = field(default=1, repr=False)
    _seen: int = field(default=0, repr=False)

    @property
    def frame_start(self) -> int:
        return self.frames[0].index

    @property
    def frame_end(self) -> int:
        return self.frames[-1].index

    @property
    def t_start(self) -> float:
        return self.frames[0].t

    @property
    def t_end(self) -> float:
        return self.frames[-1].t

    @property
    def best_frame(self) -> TrackFrame:
        """The frame that shows the object best: largest area x predicted IoU."""
        return max(self.frames, key=lambda f: f.area * f.score)

    def masks_by_index(self) -> dict[int, dict[str, Any]]:
        """``{frame index: RLE}``."""
        return {f.index: f.rle for f in self.frames}

    def _offer_crop(self, index: int, area: int, crop_fn: Callable[[], np.ndarray], limit: int) -> None:
        if self._seen % self._crop_stride == 0:
            self._crops.append((index, area, crop_fn()))
            if len(self._crops) > limit:
                self._crops = self._crops[::2]
                self._crop_stride *= 2
        self._seen += 1


CropFn = Callable[[np.ndarray, np.ndarray, tuple[float, float, float, float]], np.ndarray]


@dataclass
class TrackStats:
    """What building cost: sampled frames, keyframes, seconds per stage."""

    frames: int = 0
    keyframes: int = 0
    segment_s: float = 0.0
    propagate_s: float = 0.0
    crop_s: float = 0.0
    embed_s: float = 0.0


class TrackBuilder:
    """Builds tracks from sampled frames (see the module doc for the rules).

    ``segmenter``: an automatic segmenter (``segment(image) -> list[Region]``);
    ``propagator``: see :class:`Propagator`; ``crop_fn(image, mask, bbox)``: the crop to embed
    (``None``: no crops, no embeddings); ``max_area``: keyframe masks covering more than this
    fraction of the frame are background, not objects; ``min_area``: pixels.
    """

    def __init__(self, segmenter: Any, propagator: Propagator, *, keyframe_every: int = 4,
                 match_iou: float = 0.5, min_score: float = 0.5, collapse: float = 0.25,
                 max_area: float = 0.4, min_area: int = 64, contained: float = 0.8,
                 crop_fn: CropFn | None = None, n_crops: int = DEFAULT_N_CROPS):
        if keyframe_every < 1:
            raise ConfigError(f"keyframe_every must be >= 1 sampled frame, got {keyframe_every}")
        if not 0.0 < match_iou <= 1.0:
            raise ConfigError(f"match_iou must be in (0, 1], got {match_iou}")
        if n_crops < 1:
            raise ConfigError(f"n_crops must be >= 1, got {n_crops}")
        self.segmenter, self.propagator = segmenter, propagator
        self.keyframe_every, self.match_iou, self.min_score = keyframe_every, match_iou, min_score
        self.collapse, self.max_area, self.min_area, self.contained = collapse, max_area, min_area, contained
        self.crop_fn, self.n_crops = crop_fn, n_crops
        self.live: dict[int, Track] = {}
        self.masks: dict[int, np.ndarray] = {}
        self.areas: dict[int, float] = {}
        self.done: list[Track] = []
        self.stats = TrackStats()
        self._next_id = 1
        self._since_key = 0

    # ------------------------------------------------------------------ helpers
    def _end(self, tid: int) -> None:
        track = self.live.pop(tid)
        self.masks.pop(tid, None)
        self.areas.pop(tid, None)
        self.propagator.remove(tid)
        if track.frames:
            self.done.append(track)

    def _record(self, tid: int, frame: SampledFrame, mask: np.ndarray, score: float, keyframe: bool) -> None:
        track = self.live[tid]
        bbox = mask_to_bbox(mask)
        area = int(mask.sum())
        track.frames.append(TrackFrame(frame.index, frame.t, encode_rle(mask), bbox, area, float(score), keyframe))
        self.masks[tid] = mask
        prev = self.areas.get(tid)
        self.areas[tid] = float(area) if prev is None else 0.5 * prev + 0.5 * area
        if self.crop_fn is not None:
            t0 = time.perf_counter()
            fn = self.crop_fn
            track._offer_crop(frame.index, area, lambda: fn(frame.image, mask, bbox), 2 * self.n_crops)
            self.stats.crop_s += time.perf_counter() - t0

    def _keyframe_masks(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        h, w = image.shape[:2]
        out: list[tuple[np.ndarray, float]] = []
        for region in self.segmenter.segment(image):
            if region.kind != "mask" or region.area < self.min_area or region.area > self.max_area * h * w:
                continue
            m = decode_rle(region.rle)
            # a part of a mask already kept (segmenters rank whole objects first) is not an object
            if any((m & k).sum() >= self.contained * region.area for k, _ in out):
                continue
            out.append((m, float(region.predicted_iou or 0.0)))
        return out

    # ------------------------------------------------------------------ main
    def feed(self, frame: SampledFrame) -> None:
        """Process the next sampled frame (frames must come in time order)."""
        from scipy.optimize import linear_sum_assignment

        self.stats.frames += 1
        if frame.cut:
            for tid in list(self.live):
                self._end(tid)
        t0 = time.perf_counter()
        proposals = self.propagator.step(frame.image) if self.live else {}
        self.stats.propagate_s += time.perf_counter() - t0
        current: dict[int, tuple[np.ndarray, float]] = {}
        for tid in list(self.live):
            p = proposals.get(tid)
            area = int(p.mask.sum()) if p is not None else 0
            if p is None or area == 0 or p.score < self.min_score or area < self.collapse * self.areas[tid]:
                self._end(tid)
                continue
            current[tid] = (p.mask, p.score)
        self._resolve_duplicates(current)
        keyframe = frame.cut or self._since_key % self.keyframe_every == 0
        matched: set[int] = set()
        if keyframe:
            self._since_key = 0
            self.stats.keyframes += 1
            t0 = time.perf_counter()
            found = self._keyframe_masks(frame.image)
            self.stats.segment_s += time.perf_counter() - t0
            tids = list(current)
            iou = np.zeros((len(tids), len(found)))
            for i, tid in enumerate(tids):
                for j, (m, _) in enumerate(found):
                    iou[i, j] = mask_iou(current[tid][0], m)
            matched_new: set[int] = set()
            if iou.size:
                rows, cols = linear_sum_assignment(-iou)
                for i, j in zip(rows, cols):
                    if iou[i, j] >= self.match_iou:
                        current[tids[i]] = found[j]
                        matched.add(tids[i])
                        matched_new.add(j)
            covered = np.zeros(frame.image.shape[:2], bool)
            for m, _ in current.values():
                covered |= m
            for j, (m, score) in enumerate(found):
                if j in matched_new or (m & covered).sum() >= 0.5 * m.sum():
                    continue
                tid = self._next_id
                self._next_id += 1
                self.live[tid] = Track(tid)
                current[tid] = (m, score)
                matched.add(tid)
                covered |= m
        for tid, (m, score) in current.items():
            self.propagator.add(tid, m)
            self._record(tid, frame, m, score, keyframe=tid in matched)
        self._since_key += 1

    def _resolve_duplicates(self, current: dict[int, tuple[np.ndarray, float]]) -> None:
        """Two tracks on one object: the one whose new mask agrees better with its own previous
        mask keeps it; the other object was lost (occluded) and its track ends."""
        tids = sorted(current)
        for a_i, a in enumerate(tids):
            for b in tids[a_i + 1:]:
                if a not in current or b not in current:
                    continue
                if mask_iou(current[a][0], current[b][0]) < self.match_iou:
                    continue
                fit_a = mask_iou(current[a][0], self.masks[a])
                fit_b = mask_iou(current[b][0], self.masks[b])
                loser = b if fit_a >= fit_b else a
                current.pop(loser)
                self._end(loser)

    def finish(self) -> list[Track]:
        """End every live track; all tracks, ordered by id."""
        for tid in list(self.live):
            self._end(tid)
        return sorted(self.done, key=lambda t: t.id)


def build_tracks(frames: Iterable[SampledFrame], segmenter: Any, propagator: Propagator,
                 **kwargs: Any) -> tuple[list[Track], TrackStats]:
    """Run a :class:`TrackBuilder` over ``frames``; returns ``(tracks, stats)``."""
    builder = TrackBuilder(segmenter, propagator, **kwargs)
    for frame in frames:
        builder.feed(frame)
    return builder.finish(), builder.stats


def embed_tracks(tracks: Sequence[Track], embedder: Any, n_crops: int = DEFAULT_N_CROPS,
                 stats: TrackStats | None = None) -> None:
    """Set each track's ``embedding``: the mean of the L2-normalised CLIP embeddings of
    ``n_crops`` of its collected crops (evenly spread over time), renormalised. Tracks without
    crops keep ``None``. One batched CLIP call for all tracks."""
    t0 = time.perf_counter()
    chosen: list[tuple[int, np.ndarray]] = []
    for i, track in enumerate(tracks):
        crops = track._crops
        if not crops:
            continue
        picks = np.unique(np.linspace(0, len(crops) - 1, min(n_crops, len(crops))).round().astype(int))
        chosen.extend((i, crops[p][2]) for p in picks)
    if not chosen:
        return
    vecs = embedder.embed_images([c for _, c in chosen])
    owners = np.array([i for i, _ in chosen])
    for i in np.unique(owners):
        mean = vecs[owners == i].mean(0)
        tracks[int(i)].embedding = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
    if stats is not None:
        stats.embed_s += time.perf_counter() - t0


def propagate_prompt(frames: Iterable[SampledFrame], propagator: Any, *, points: Sequence[Sequence[float]] | None = None,
                     labels: Sequence[int] | None = None, box: Sequence[float] | None = None,
                     min_score: float = 0.0) -> list[tuple[SampledFrame, Proposal]]:
    """Interactive tracking: a prompt on the first of ``frames`` (points ``(x, y)`` pixels with
    labels 1/0, and/or an XYXY box), then propagation through the following ones until the object
    is lost (no proposal or predicted IoU below ``min_score``). Returns ``(frame, proposal)``
    pairs; the frames' images are not kept beyond what the caller keeps."""
    out: list[tuple[SampledFrame, Proposal]] = []
    it = iter(frames)
    first = next(it, None)
    if first is None:
        return out
    propagator.begin(first.image)
    prop = propagator.prompt(points, labels, box)
    if not prop.mask.any():
        return out
    out.append((first, prop))
    propagator.add(0, prop.mask)
    for frame in it:
        step = propagator.step(frame.image).get(0)
        if step is None or not step.mask.any() or step.score < min_score:
            break
        out.append((frame, step))
        propagator.add(0, step.mask)
    return out
