"""Spatial relations between the objects of one image: pure, typed, vectorised.

Definitions (masks in pixels, image ``W x H``, centroid = mean pixel position of the mask):

* ``left_of(A, B)``: ``cx(A) < cx(B) - 0.05 W``; ``right_of`` is the converse;
* ``above(A, B)``: ``cy(A) < cy(B) - 0.05 H``; ``below`` is the converse;
* ``near(A, B)``: the smallest Euclidean distance between a pixel of A and a pixel of B (pixel
  centres) is ``<= 0.05 max(W, H)``, and neither is inside the other;
* ``inside(A, B)``: ``>= 90%`` of A's pixels lie in B's mask with its holes filled; ``contains``
  is the converse;
* ``overlaps(A, B)``: their boxes intersect and neither is inside the other.

Objects travel as :class:`ObjectMask` (a tight bool crop and its offset), so measuring a scene
never touches full-frame arrays: every pairwise quantity is an ``(N, N)`` numpy matrix; pixel
work is done only for the pairs whose boxes can satisfy a relation (boxes intersecting for
``inside``, box gap ``<= r`` for ``near``), on the crops' overlapping windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np

from ..errors import InvalidRequestError

#: every predicate, in the order used in outputs
PREDICATES: tuple[str, ...] = ("left_of", "right_of", "above", "below", "near", "inside", "contains", "overlaps")
#: converse of each predicate (``P(A, B)`` iff ``CONVERSE[P](B, A)``)
CONVERSE: dict[str, str] = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above",
                            "near": "near", "inside": "contains", "contains": "inside", "overlaps": "overlaps"}
#: centroid offsets for left/right (x W) and above/below (x H)
SIDE_MARGIN = 0.05
#: ``near``: largest gap between masks, as a fraction of the image's longer side
NEAR_FRACTION = 0.05
#: ``inside``: smallest fraction of A's pixels in B's hole-filled mask
INSIDE_FRACTION = 0.9
#: scene objects drop mask pieces smaller than this fraction of the mask's largest piece
SPECK_FRACTION = 0.05


@dataclass(frozen=True)
class ObjectMask:
    """One object's mask as a tight crop: ``mask`` is bool ``(h, w)``, placed at pixel
    ``(x0, y0)`` of the image."""

    x0: int
    y0: int
    mask: np.ndarray

    @classmethod
    def from_full(cls, mask: np.ndarray) -> "ObjectMask":
        """Crop a full-frame ``(H, W)`` bool mask to its tight box (an empty mask gives a 0x0 crop)."""
        m = np.asarray(mask, dtype=bool)
        if m.ndim != 2:
            raise InvalidRequestError(f"a mask must be 2-D (H, W), got shape {m.shape}")
        rows = np.flatnonzero(m.any(axis=1))
        cols = np.flatnonzero(m.any(axis=0))
        if rows.size == 0:
            return cls(0, 0, np.zeros((0, 0), bool))
        return cls(int(cols[0]), int(rows[0]), m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])

    @classmethod
    def from_rle(cls, rle: dict[str, Any]) -> "ObjectMask":
        """From COCO RLE ``{"size": [h, w], "counts"}``."""
        from ..masks import decode_rle, rle_to_bbox

        x, y, w, h = (int(round(v)) for v in rle_to_bbox(rle))
        if w == 0 or h == 0:
            return cls(0, 0, np.zeros((0, 0), bool))
        return cls(x, y, np.ascontiguousarray(decode_rle(rle)[y:y + h, x:x + w]))

    def without_specks(self, fraction: float = SPECK_FRACTION) -> "ObjectMask":
        """The mask without its connected pieces (8-connected) smaller than ``fraction`` of its
        largest piece, re-cropped; itself when nothing is dropped. Automatic masks often carry
        stray specks far from the object, which would stretch its box and fake ``near``."""
        import cv2

        if self.mask.size == 0:
            return self
        n, lab, stats, _ = cv2.connectedComponentsWithStats(self.mask.astype(np.uint8), connectivity=8)
        if n <= 2:
            return self
        areas = stats[1:, cv2.CC_STAT_AREA]
        keep = np.flatnonzero(areas >= fraction * areas.max()) + 1
        if len(keep) == n - 1:
            return self
        cleaned = ObjectMask.from_full(np.isin(lab, keep))
        return ObjectMask(self.x0 + cleaned.x0, self.y0 + cleaned.y0, cleaned.mask)

    def to_rle(self, width: int, height: int) -> dict[str, Any]:
        """COCO RLE of the mask placed in a ``width x height`` image."""
        from ..masks import encode_rle

        full = np.zeros((height, width), bool)
        h, w = self.mask.shape
        full[self.y0:self.y0 + h, self.x0:self.x0 + w] = self.mask
        return encode_rle(full)


@dataclass(frozen=True)
class Geometry:
    """Measured objects of one ``width x height`` image.

    ``boxes``: ``(N, 4)`` XYWH pixels; ``areas``: ``(N,)`` pixel counts; ``centroids``: ``(N, 2)``
    mean ``(x, y)`` pixel positions; ``intersection[i, j]``: pixels shared by masks i and j;
    ``inside_frac[i, j]``: fraction of i's pixels in j's hole-filled mask (diagonal 1);
    ``near[i, j]``: the masks are within ``NEAR_FRACTION x max(W, H)`` pixels (symmetric).
    """

    width: int
    height: int
    boxes: np.ndarray
    areas: np.ndarray
    centroids: np.ndarray
    intersection: np.ndarray
    inside_frac: np.ndarray
    near: np.ndarray

    def __len__(self) -> int:
        return int(self.areas.shape[0])

    def iou(self) -> np.ndarray:
        """``(N, N)`` mask IoU."""
        union = self.areas[:, None] + self.areas[None, :] - self.intersection
        return np.where(union > 0, self.intersection / np.maximum(union, 1), 0.0)

    def subset(self, keep: Sequence[int]) -> "Geometry":
        """The same measurements for objects ``keep`` (in that order)."""
        k = np.asarray(keep, dtype=np.int64)
        return Geometry(self.width, self.height, self.boxes[k], self.areas[k], self.centroids[k],
                        self.intersection[np.ix_(k, k)], self.inside_frac[np.ix_(k, k)], self.near[np.ix_(k, k)])


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every background component that does not touch the crop border filled."""
    import cv2

    h, w = mask.shape
    if h < 3 or w < 3:
        return mask
    pad = np.zeros((h + 2, w + 2), np.uint8)
    pad[1:-1, 1:-1] = mask
    flood = pad.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 2)
    return (flood[1:-1, 1:-1] != 2)


def _window(a: ObjectMask, b: ObjectMask) -> tuple[int, int, int, int] | None:
    x0, y0 = max(a.x0, b.x0), max(a.y0, b.y0)
    x1 = min(a.x0 + a.mask.shape[1], b.x0 + b.mask.shape[1])
    y1 = min(a.y0 + a.mask.shape[0], b.y0 + b.mask.shape[0])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _sub(o: ObjectMask, arr: np.ndarray, win: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = win
    return arr[y0 - o.y0:y1 - o.y0, x0 - o.x0:x1 - o.x0]


def _boundary(o: ObjectMask) -> np.ndarray:
    """``(n, 2)`` float64 ``(x, y)`` image positions of the mask's boundary pixels (those with a
    4-neighbour outside the mask). The closest pixels of two disjoint masks are boundary pixels:
    from an interior pixel, one step towards the other mask is still inside and strictly closer."""
    import cv2

    if o.mask.size == 0:
        return np.zeros((0, 2))
    m = o.mask.astype(np.uint8)
    inner = cv2.erode(m, _CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    ys, xs = np.nonzero(m > inner)
    return np.stack([xs + o.x0, ys + o.y0], axis=1).astype(np.float64)


_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
_BLOCK = 2048


def _within(pa: np.ndarray, pb: np.ndarray, box_a: np.ndarray, box_b: np.ndarray, r: float) -> bool:
    """Whether some point of ``pa`` is within ``r`` of some point of ``pb``; only the points
    within ``r`` of the other mask's box can be, so only those are compared."""
    def facing(p: np.ndarray, box: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = box[0] - r, box[1] - r, box[0] + box[2] - 1 + r, box[1] + box[3] - 1 + r
        return p[(p[:, 0] >= x0) & (p[:, 0] <= x1) & (p[:, 1] >= y0) & (p[:, 1] <= y1)]

    a, b = facing(pa, box_b), facing(pb, box_a)
    if len(a) == 0 or len(b) == 0:
        return False
    rr = r * r
    step = max(1, _BLOCK * _BLOCK // max(1, len(b)))
    for k in range(0, len(a), step):
        blk = a[k:k + step]
        d2 = (blk[:, None, 0] - b[None, :, 0]) ** 2 + (blk[:, None, 1] - b[None, :, 1]) ** 2
        if (d2 <= rr).any():
            return True
    return False


def _overlap_measures(objects: Sequence[ObjectMask], areas: np.ndarray,
                      ov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel intersections and inside fractions (against the hole-filled mask) of the pairs whose
    boxes overlap (``ov``, symmetric); other pairs share no pixel."""
    n = len(objects)
    inter = np.zeros((n, n), np.int64)
    inside = np.zeros((n, n), np.float64)
    filled: dict[int, np.ndarray] = {}
    for i, j in zip(*np.nonzero(np.triu(ov))):
        a, b = objects[i], objects[j]
        win = _window(a, b)
        if win is None:
            continue
        ma, mb = _sub(a, a.mask, win), _sub(b, b.mask, win)
        inter[i, j] = inter[j, i] = int(np.count_nonzero(ma & mb))
        for p, q, mp, oq in ((i, j, ma, b), (j, i, mb, a)):
            if areas[p] and INSIDE_FRACTION * areas[p] <= oq.mask.size:
                if q not in filled:
                    filled[q] = _fill_holes(oq.mask)
                inside[p, q] = np.count_nonzero(mp & _sub(oq, filled[q], win)) / areas[p]
    np.fill_diagonal(inside, 1.0)
    np.fill_diagonal(inter, areas)
    return inter, inside


def _near_matrix(objects: Sequence[ObjectMask], boxes: np.ndarray, cents: np.ndarray, near_cand: np.ndarray,
                 touching: np.ndarray, r: float) -> np.ndarray:
    """``near`` before the inside exclusion: masks sharing a pixel, or with boundary pixels within
    ``r``, among the candidate pairs (box gap <= r)."""
    n = len(objects)
    near = np.zeros((n, n), bool)
    pairs = [(i, j) for i, j in zip(*np.nonzero(np.triu(near_cand)))]
    todo: dict[int, list[int]] = {}
    for i, j in pairs:
        if touching[i, j]:
            near[i, j] = near[j, i] = True
        else:
            todo.setdefault(int(i), []).append(int(j))
    if todo:
        points = {k: _boundary(objects[k]) for k in set(todo) | {j for js in todo.values() for j in js}}
        # reach of each mask from its centroid: two masks whose centroids are farther apart than
        # their reaches + r cannot be within r (triangle inequality); no pixel work for those
        reach = {k: float(np.sqrt(((p - cents[k]) ** 2).sum(axis=1).max())) if len(p) else 0.0
                 for k, p in points.items()}
        for i, js in todo.items():
            for j in js:
                if float(np.hypot(*(cents[i] - cents[j]))) - reach[i] - reach[j] > r:
                    continue
                if _within(points[i], points[j], boxes[i], boxes[j], r):
                    near[i, j] = near[j, i] = True
    return near


def measure(objects: Sequence[ObjectMask], width: int, height: int,
            near_fraction: float = NEAR_FRACTION) -> Geometry:
    """Measure ``objects`` of a ``width x height`` image (see :class:`Geometry`)."""
    if width <= 0 or height <= 0:
        raise InvalidRequestError(f"the image size must be positive, got {width}x{height}")
    n = len(objects)
    boxes = np.zeros((n, 4), np.float64)
    areas = np.zeros(n, np.int64)
    cents = np.zeros((n, 2), np.float64)
    for i, o in enumerate(objects):
        h, w = o.mask.shape
        boxes[i] = (o.x0, o.y0, w, h)
        a = int(np.count_nonzero(o.mask))
        areas[i] = a
        if a:
            cents[i, 0] = o.x0 + float(o.mask.sum(axis=0) @ np.arange(w)) / a
            cents[i, 1] = o.y0 + float(o.mask.sum(axis=1) @ np.arange(h)) / a
    x1, y1 = boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]
    ov = ((boxes[:, None, 0] < x1[None]) & (boxes[None, :, 0] < x1[:, None])
          & (boxes[:, None, 1] < y1[None]) & (boxes[None, :, 1] < y1[:, None]))
    r = near_fraction * max(width, height)
    gx = np.maximum(0.0, np.maximum(boxes[:, None, 0] - x1[None] + 1, boxes[None, :, 0] - x1[:, None] + 1))
    gy = np.maximum(0.0, np.maximum(boxes[:, None, 1] - y1[None] + 1, boxes[None, :, 1] - y1[:, None] + 1))
    near_cand = (gx ** 2 + gy ** 2) <= r * r  # box gap <= r is necessary for the masks' gap <= r
    np.fill_diagonal(ov, False)
    np.fill_diagonal(near_cand, False)

    inter, inside = _overlap_measures(objects, areas, ov)
    near = _near_matrix(objects, boxes, cents, near_cand, inter > 0, r)
    return Geometry(int(width), int(height), boxes, areas, cents, inter, inside, near)


def relation_matrices(geom: Geometry) -> dict[str, np.ndarray]:
    """``{predicate: (N, N) bool}`` where ``[i, j]`` means ``predicate(i, j)``; diagonal False."""
    cx, cy = geom.centroids[:, 0], geom.centroids[:, 1]
    left = cx[:, None] < cx[None, :] - SIDE_MARGIN * geom.width
    above = cy[:, None] < cy[None, :] - SIDE_MARGIN * geom.height
    inside = geom.inside_frac >= INSIDE_FRACTION
    n = len(geom)
    np.fill_diagonal(inside, False)
    either = inside | inside.T
    b = geom.boxes
    x1, y1 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    box_ov = ((b[:, None, 0] < x1[None]) & (b[None, :, 0] < x1[:, None])
              & (b[:, None, 1] < y1[None]) & (b[None, :, 1] < y1[:, None]))
    out = {"left_of": left, "right_of": left.T.copy(), "above": above, "below": above.T.copy(),
           "near": geom.near & ~either, "inside": inside, "contains": inside.T.copy(),
           "overlaps": box_ov & ~either}
    eye = np.eye(n, dtype=bool)
    return {p: out[p] & ~eye for p in PREDICATES}


class Relation(NamedTuple):
    """``predicate(subject, object)``; subject and object are indices into the measured objects."""

    subject: int
    predicate: str
    object: int


def relation_array(geom: Geometry, predicates: Sequence[str] = PREDICATES) -> np.ndarray:
    """``(n, 3)`` int64 rows ``(subject, predicate index into PREDICATES, object)`` of every
    relation that holds, sorted by subject, predicate, object (no Python loop over pairs)."""
    unknown = [p for p in predicates if p not in PREDICATES]
    if unknown:
        from ..errors import UnknownNameError

        raise UnknownNameError("relation", unknown[0], PREDICATES)
    mats = relation_matrices(geom)
    n = len(geom)
    stack = np.stack([mats[p] if p in predicates else np.zeros((n, n), bool) for p in PREDICATES], axis=1)
    return np.stack(np.nonzero(stack), axis=1).astype(np.int64)


def relations(geom: Geometry, predicates: Sequence[str] = PREDICATES) -> list[Relation]:
    """Every relation that holds, ordered by subject, then predicate (``PREDICATES`` order), then object."""
    arr = relation_array(geom, predicates)
    return [Relation(i, PREDICATES[k], j) for i, k, j in arr.tolist()]


def holds(geom: Geometry, predicate: str, subject: int, obj: int) -> bool:
    """Whether ``predicate(subject, obj)`` holds (indices into the measured objects)."""
    if predicate not in PREDICATES:
        from ..errors import UnknownNameError

        raise UnknownNameError("relation", predicate, PREDICATES)
    return bool(relation_matrices(geom)[predicate][subject, obj])
