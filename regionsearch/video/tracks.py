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
is kept. ``memory`` (:mod:`regionsearch.video.memory`) is SAM 2.1's own memory-based tracking
with pruned memories. Pixels are ``(x, y)``; masks are ``(H, W)`` bool at the frame's resolution.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..config import PROPAGATORS, VideoConfig
from ..errors import ConfigError, InvalidRequestError, UnknownNameError
from ..masks import decode_rle, encode_rle, mask_iou, mask_to_bbox
from .decode import SampledFrame
from .propagation import Proposal, Propagator

log = logging.getLogger(__name__)

#: per-track crops embedded into the track's vector: several views average out single-frame
#: accidents (an occluder, a part at the border, motion) at a fixed CLIP cost per track
DEFAULT_N_CROPS = VideoConfig.n_crops

#: a mask whose area changed by more than this factor since the last one is partly hidden (or
#: revealed): its centroid's displacement is not the object's motion
STEADY_AREA = 1.25


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
    if name == "memory":
        from .memory import MemoryPropagator

        return MemoryPropagator(sam_model)
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


@dataclass
class _State:
    """What the builder knows of a live (or recently lost) track."""

    track: Track
    mask: np.ndarray
    area: float
    colour: np.ndarray
    centre: tuple[float, float]
    motion: tuple[float, float] = (0.0, 0.0)
    seen: int = 0  # sampled-frame counter of the last recorded mask


def mean_colour(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean RGB (float, 0-255) of ``image`` inside ``mask``."""
    return image[mask].reshape(-1, 3).mean(0) if mask.any() else np.zeros(3)


def shift_mask(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``mask`` moved by ``(dx, dy)`` pixels (rounded); what leaves the frame is dropped."""
    h, w = mask.shape
    ix, iy = int(round(dx)), int(round(dy))
    out = np.zeros_like(mask)
    if abs(ix) >= w or abs(iy) >= h:
        return out
    out[max(iy, 0):h + min(iy, 0), max(ix, 0):w + min(ix, 0)] = mask[max(-iy, 0):h - max(iy, 0), max(-ix, 0):w - max(ix, 0)]
    return out


class TrackBuilder:
    """Builds tracks from sampled frames (see the module doc for the rules).

    ``segmenter``: an automatic segmenter (``segment(image) -> list[Region]``);
    ``propagator``: see :class:`Propagator`; ``crop_fn(image, mask, bbox)``: the crop to embed
    (``None``: no crops, no embeddings); ``max_area``: keyframe masks covering more than this
    fraction of the frame are background, not objects; ``min_area``: pixels.

    Appearance and re-identification: ``max_colour_shift`` (RGB units, Euclidean) is how far a
    propagated mask's mean colour may drift from the track's before the object counts as lost
    (the prompt slid onto another object; ``None`` disables); a track lost less than
    ``reid_frames`` sampled frames ago (default: two keyframe intervals, so an object hidden
    across one keyframe can still come back) can be resumed at a keyframe by an unmatched mask
    whose centre lies within ``reid_distance`` x the object's size (square root of its area) +
    ``reid_motion`` x the distance it was predicted to travel of where its last motion predicts,
    with an area at most 3x the track's (smaller is fine: it may be partly hidden) and a colour
    within ``max_colour_shift``; masks and lost tracks are paired by the Hungarian algorithm on
    the relative distance + the relative colour change (the gap stays a gap). The prediction uses
    the track's motion (centroid step per sampled frame), which a mask whose area changed by more
    than ``STEADY_AREA`` x does not update: the centroid of an object going behind another one
    (or out of the frame) moves with its visible part, and the object is lost right after.
    """

    def __init__(self, segmenter: Any, propagator: Propagator, *, keyframe_every: int = 4,
                 match_iou: float = 0.5, min_score: float = 0.5, collapse: float = 0.25,
                 max_area: float = 0.4, min_area: int = 64, contained: float = 0.8,
                 max_colour_shift: float | None = 60.0, reid_frames: int | None = None, reid_distance: float = 1.0,
                 reid_motion: float = 1.0, crop_fn: CropFn | None = None, n_crops: int = DEFAULT_N_CROPS):
        if keyframe_every < 1:
            raise ConfigError(f"keyframe_every must be >= 1 sampled frame, got {keyframe_every}")
        if not 0.0 < match_iou <= 1.0:
            raise ConfigError(f"match_iou must be in (0, 1], got {match_iou}")
        if n_crops < 1:
            raise ConfigError(f"n_crops must be >= 1, got {n_crops}")
        self.segmenter, self.propagator = segmenter, propagator
        self.keyframe_every, self.match_iou, self.min_score = keyframe_every, match_iou, min_score
        self.collapse, self.max_area, self.min_area, self.contained = collapse, max_area, min_area, contained
        self.max_colour_shift = max_colour_shift
        self.reid_frames = 2 * keyframe_every if reid_frames is None else reid_frames
        self.reid_distance, self.reid_motion = reid_distance, reid_motion
        self.crop_fn, self.n_crops = crop_fn, n_crops
        self.live: dict[int, _State] = {}
        self.lost: dict[int, _State] = {}
        self.done: list[Track] = []
        self.stats = TrackStats()
        self._next_id = 1
        self._since_key = 0

    # ------------------------------------------------------------------ helpers
    def _lose(self, tid: int) -> None:
        self.lost[tid] = self.live.pop(tid)
        self.propagator.remove(tid)

    def _expire(self, everything: bool = False) -> None:
        for tid in list(self.lost):
            if everything or self.stats.frames - self.lost[tid].seen > self.reid_frames:
                self.done.append(self.lost.pop(tid).track)

    def _record(self, tid: int, frame: SampledFrame, mask: np.ndarray, score: float, keyframe: bool) -> None:
        st = self.live[tid]
        bbox = mask_to_bbox(mask)
        area = int(mask.sum())
        st.track.frames.append(TrackFrame(frame.index, frame.t, encode_rle(mask), bbox, area, float(score), keyframe))
        c = centroid(mask)
        gap = max(1, self.stats.frames - st.seen)
        if st.track.frames[:-1]:
            # the centroid of a mask whose area jumps (the object goes behind another one or out
            # of the frame) moves with its visible part, not with the object: keep the motion
            if len(st.track.frames) == 2 or 1 / STEADY_AREA <= area / max(st.area, 1.0) <= STEADY_AREA:
                st.motion = ((c[0] - st.centre[0]) / gap, (c[1] - st.centre[1]) / gap)
            st.colour = 0.5 * st.colour + 0.5 * mean_colour(frame.image, mask)
            st.area = 0.5 * st.area + 0.5 * area
        st.mask, st.centre, st.seen = mask, c, self.stats.frames
        if self.crop_fn is not None:
            t0 = time.perf_counter()
            fn = self.crop_fn
            st.track._offer_crop(frame.index, area, lambda: fn(frame.image, mask, bbox), 2 * self.n_crops)
            self.stats.crop_s += time.perf_counter() - t0

    def _start(self, frame: SampledFrame, mask: np.ndarray) -> int:
        tid = self._next_id
        self._next_id += 1
        self.live[tid] = _State(Track(tid), mask, float(mask.sum()), mean_colour(frame.image, mask), centroid(mask),
                                seen=self.stats.frames)
        return tid

    def _colour_ok(self, a: np.ndarray, b: np.ndarray) -> bool:
        return self.max_colour_shift is None or float(np.linalg.norm(a - b)) <= self.max_colour_shift

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
        self.stats.frames += 1
        if frame.cut:
            for tid in list(self.live):
                self._lose(tid)
            self._expire(everything=True)
        stepped = bool(self.live)
        current = self._propagate(frame) if stepped else {}
        self._resolve_duplicates(current, frame.image)
        keyframe = frame.cut or self._since_key % self.keyframe_every == 0
        matched = self._keyframe(frame, current) if keyframe else set()
        if current and not stepped:
            self.propagator.begin(frame.image)  # the frame new objects are added on
        for tid, (m, score) in current.items():
            self.propagator.add(tid, m)
            self._record(tid, frame, m, score, keyframe=tid in matched)
        self._expire()
        self._since_key += 1

    def _propagate(self, frame: SampledFrame) -> dict[int, tuple[np.ndarray, float]]:
        """Live tracks' masks carried onto ``frame`` (mask, predicted IoU); tracks whose proposal
        is missing, empty, unsure, collapsed or of another colour are lost."""
        t0 = time.perf_counter()
        proposals = self.propagator.step(frame.image)
        self.stats.propagate_s += time.perf_counter() - t0
        current: dict[int, tuple[np.ndarray, float]] = {}
        for tid in list(self.live):
            st, p = self.live[tid], proposals.get(tid)
            area = int(p.mask.sum()) if p is not None else 0
            why = ("no proposal" if p is None or area == 0 else f"score {p.score:.2f}" if p.score < self.min_score
                   else f"area {area} < {self.collapse} x {st.area:.0f}" if area < self.collapse * st.area
                   else "colour" if not self._colour_ok(mean_colour(frame.image, p.mask), st.colour) else "")
            if why:
                log.debug("frame %d: track %d lost (%s)", frame.index, tid, why)
                self._lose(tid)
                continue
            current[tid] = (p.mask, p.score)
        return current

    def _keyframe(self, frame: SampledFrame, current: dict[int, tuple[np.ndarray, float]]) -> set[int]:
        """Automatic masks on a keyframe: Hungarian re-matching of ``current`` (updated in place),
        re-identification of lost tracks, new tracks for uncovered masks; the matched track ids."""
        from scipy.optimize import linear_sum_assignment

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
        matched: set[int] = set()
        used: set[int] = set()
        if iou.size:
            rows, cols = linear_sum_assignment(-iou)
            for i, j in zip(rows, cols):
                if iou[i, j] >= self.match_iou:
                    current[tids[i]] = found[j]
                    matched.add(tids[i])
                    used.add(j)
        covered = np.zeros(frame.image.shape[:2], bool)
        for m, _ in current.values():
            covered |= m
        fresh = [j for j, (m, _) in enumerate(found) if j not in used and (m & covered).sum() < 0.5 * m.sum()]
        for j, tid in self._reidentify(frame, [found[j][0] for j in fresh]).items():
            self.live[tid] = self.lost.pop(tid)
            current[tid] = found[fresh[j]]
            matched.add(tid)
            used.add(fresh[j])
        for j in fresh:
            if j in used:
                continue
            m, score = found[j]
            if (m & covered).sum() >= 0.5 * m.sum():
                continue
            tid = self._start(frame, m)
            current[tid] = (m, score)
            matched.add(tid)
            covered |= m
        return matched

    def _reid_cost(self, st: _State, c: tuple[float, float], area: float, colour: np.ndarray) -> tuple[float, float]:
        """How well a mask (centre ``c``, ``area``, mean ``colour``) continues the lost track
        ``st``: ``(cost, distance)``; the cost is infinite outside the gates (see the class doc).

        The distance is the centre's from where the track's last motion predicts, in units of the
        tolerance ``reid_distance`` x size + ``reid_motion`` x predicted travel: a prediction over
        a longer gap or at a higher speed is less sure (and the visible part of a partly hidden
        object is off-centre), so a fast object hidden at a crossing is still found where it
        reappears. A track seen on one frame only has no motion yet: one size per frame is its
        travel. The cost adds the colour change (as a fraction of ``max_colour_shift``)."""
        gap = self.stats.frames - st.seen
        size = max(float(np.sqrt(st.area)), 1.0)
        speed = float(np.hypot(*st.motion)) if len(st.track.frames) >= 2 else size
        px, py = st.centre[0] + st.motion[0] * gap, st.centre[1] + st.motion[1] * gap
        d = float(np.hypot(c[0] - px, c[1] - py)) / (self.reid_distance * size + self.reid_motion * speed * gap)
        shift = float(np.linalg.norm(colour - st.colour))
        if d > 1.0 or area > 3.0 * st.area or not self._colour_ok(colour, st.colour):
            return np.inf, d
        return d + (shift / self.max_colour_shift if self.max_colour_shift else 0.0), d

    def _reidentify(self, frame: SampledFrame, masks: list[np.ndarray]) -> dict[int, int]:
        """Unmatched keyframe masks (index into ``masks``) that resume recently lost tracks:
        Hungarian assignment on :meth:`_reid_cost` (predicted position + appearance)."""
        from scipy.optimize import linear_sum_assignment

        lost = list(self.lost)
        if not lost or not masks:
            return {}
        cost = np.full((len(masks), len(lost)), np.inf)
        for i, m in enumerate(masks):
            c, area, colour = centroid(m), float(m.sum()), mean_colour(frame.image, m)
            for j, tid in enumerate(lost):
                st = self.lost[tid]
                cost[i, j], d = self._reid_cost(st, c, area, colour)
                log.debug("frame %d: mask %d at (%.0f, %.0f) for lost track %d: distance %.2f area x%.2f colour %.0f "
                          "cost %.2f", frame.index, i, c[0], c[1], tid, d, area / max(st.area, 1.0),
                          float(np.linalg.norm(colour - st.colour)), cost[i, j])
        finite = np.where(np.isfinite(cost), cost, 1e6)
        rows, cols = linear_sum_assignment(finite)
        return {int(i): lost[int(j)] for i, j in zip(rows, cols) if np.isfinite(cost[i, j])}

    def _resolve_duplicates(self, current: dict[int, tuple[np.ndarray, float]], image: np.ndarray) -> None:
        """Two tracks on one object: the one that explains the new mask better keeps it (overlap
        with its previous mask moved by its last motion, less its colour change); the other object
        was lost (occluded, or the prompt slid off it)."""
        tids = sorted(current)
        for a_i, a in enumerate(tids):
            for b in tids[a_i + 1:]:
                if a not in current or b not in current:
                    continue
                if mask_iou(current[a][0], current[b][0]) < self.match_iou:
                    continue

                def fit(tid: int) -> float:
                    st = self.live[tid]
                    moved = shift_mask(st.mask, *st.motion)
                    drift = float(np.linalg.norm(mean_colour(image, current[tid][0]) - st.colour)) / 255.0
                    return mask_iou(current[tid][0], moved) - drift

                loser = b if fit(a) >= fit(b) else a
                current.pop(loser)
                self._lose(loser)

    def finish(self) -> list[Track]:
        """End every track; all tracks with at least one frame, ordered by id."""
        for tid in list(self.live):
            self._lose(tid)
        self._expire(everything=True)
        return sorted((t for t in self.done if t.frames), key=lambda t: t.id)


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


def mask_crop_fn(embed_cfg: Any, embedder: Any) -> CropFn:
    """The crop function of the image pipeline (``EmbedConfig`` strategy, context and blur at
    the embedder's input size), for a :class:`TrackBuilder`."""
    from ..embed.crops import region_crop

    def crop(image: np.ndarray, mask: np.ndarray, bbox: tuple[float, float, float, float]) -> np.ndarray:
        return region_crop(image, mask, bbox, embed_cfg.crop, embedder.image_size, embed_cfg.context,
                           embed_cfg.blur_sigma, embedder.bundle.mean)

    return crop


@dataclass
class VideoTracks:
    """The result of :func:`track_video`: the header, the embedded tracks, the cost, and the
    ``(index, t)`` of every sampled frame (the frames the tracks were evaluated on)."""

    info: Any
    tracks: list[Track]
    stats: TrackStats
    sampled: list[tuple[int, float]]


def track_video(path: str, pipeline: Any, video: VideoConfig | None = None) -> VideoTracks:
    """Decode ``path`` lazily, build and embed its tracks with ``pipeline``'s models (a
    :class:`regionsearch.pipeline.Pipeline`: its segmenter, SAM 2.1 model, embedder and crop
    settings) and ``video`` (default: the pipeline config's ``video`` section). Bad files raise
    :class:`~regionsearch.errors.InvalidVideoError`."""
    from .decode import probe_video, sample_frames

    cfg = video or pipeline.config.video
    info = probe_video(path, max_pixels=cfg.max_pixels, max_bytes=cfg.max_bytes)
    sampled: list[tuple[int, float]] = []

    def frames() -> Iterable[SampledFrame]:
        for f in sample_frames(path, cfg.sample_fps, max_pixels=cfg.max_pixels, max_bytes=cfg.max_bytes):
            sampled.append((f.index, f.t))
            yield f

    emb = pipeline.embedder
    tracks, stats = build_tracks(frames(), pipeline.segmenter, create_propagator(cfg.propagator, pipeline.sam_model),
                                 keyframe_every=cfg.keyframe_every, match_iou=cfg.match_iou, crop_fn=mask_crop_fn(pipeline.config.embed, emb), n_crops=cfg.n_crops)
    embed_tracks(tracks, emb, n_crops=cfg.n_crops, stats=stats)
    return VideoTracks(info, tracks, stats, sampled)
