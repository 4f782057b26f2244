"""Retrieval metrics over ranked regions: COCO-style matching, precision/recall@k, AP, and the
segmentation ceiling.

Definitions (the contract the tests check by hand):

* **Matching** (:func:`match_ranked_detailed`) follows COCO's greedy matching in rank order. The
  regions are ranked by descending score with a *stable* sort, so regions with equal scores keep
  the order in which they were given. Each region is compared with the ground-truth instances of
  the evaluated category in its own image:

  1. among the *counted* instances (neither ``iscrowd`` nor ``ignore``) not yet matched, the one
     with the highest IoU is taken if that IoU is ``>= iou_thr`` (IoU ties: lower index in the
     image's instance list) -> the region is a **hit** and the instance is matched;
  2. otherwise, among the crowd / ``ignore`` instances (a crowd region may absorb any number of
     regions, a non-crowd ``ignore`` instance only one), if one has IoU ``>= iou_thr`` the region is
     **ignored**: dropped from the ranking, neither hit nor false positive. For crowd instances the
     IoU is COCO's crowd IoU, ``|region & crowd| / |region|`` (``pycocotools.mask.iou`` with
     ``iscrowd``);
  3. otherwise it is a **false positive** — in particular a duplicate of an already matched
     instance.

  IoU is mask IoU (``use_masks=True``) or box IoU on XYWH boxes (``use_masks=False``, the path for
  box-only datasets).
* **precision@k** = hits among the first ``k`` (non-ignored) ranks / ``k``; when fewer than ``k``
  regions were returned the missing ranks count as misses.
* **recall@k** = hits among the first ``k`` ranks / number of counted instances; NaN when the
  category has no counted instance.
* **AP** is COCO's 101-point interpolated average precision: precision is made monotone
  (``p(r) = max precision at recall >= r``) and averaged at recall 0, 0.01, ..., 1 (a recall level
  never reached contributes 0). It is NaN when the category has no counted instance.
* **Means** in :func:`summarize` are taken over the categories with at least one counted
  instance (as COCO does), ignoring NaN; a category without ground truth is still reported.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pycocotools import mask as mask_utils

from ..errors import InvalidRequestError
from .coco import GtInstance

#: Status codes of :attr:`MatchResult.status`.
HIT, FALSE_POSITIVE, IGNORED = 1, 0, -1

#: Name of the AP definition, written into reports.
AP_METHOD = "coco-101-point-interpolated"

_RECALL_LEVELS = np.linspace(0.0, 1.0, 101)

GtsByImage = Mapping[Hashable, Sequence[GtInstance]]


@dataclass(frozen=True)
class RankedRegion:
    """One retrieved region: the COCO image it belongs to, its search score (higher is better),
    its mask as COCO RLE (``{"size": [h, w], "counts": ...}``) and/or its box (XYWH pixels).

    Mask IoU needs ``rle``; box IoU uses ``bbox`` or, when absent, the box of ``rle``.
    ``region_id`` is carried through for reports only.
    """

    image_id: Hashable
    score: float
    rle: Mapping[str, Any] | None = field(default=None, repr=False)
    bbox: tuple[float, float, float, float] | None = None
    region_id: int | None = None


class RegionGeometry(Protocol):
    """Anything with a mask and a box: :class:`RankedRegion`, :class:`regionsearch.types.Region`."""

    @property
    def rle(self) -> Mapping[str, Any] | None: ...

    @property
    def bbox(self) -> Sequence[float] | None: ...


@dataclass(frozen=True, eq=False)
class MatchResult:
    """Outcome of matching one ranking against the ground truth of one category.

    ``order[r]`` is the input index of the region at rank ``r``; ``status[r]`` is :data:`HIT`,
    :data:`FALSE_POSITIVE` or :data:`IGNORED`; ``matched_gt[r]`` is the index (in its image's
    instance list) of the instance the region matched or was ignored against, -1 if none;
    ``best_iou[r]`` is its best IoU with any instance of the category in its image (0 if none).
    """

    order: np.ndarray
    status: np.ndarray
    matched_gt: np.ndarray
    best_iou: np.ndarray
    n_gt: int

    @property
    def hits(self) -> np.ndarray:
        """Boolean hit flags of the ranking with ignored regions dropped (rank order)."""
        return self.status[self.status != IGNORED] == HIT

    @property
    def n_ignored(self) -> int:
        return int(np.count_nonzero(self.status == IGNORED))


def count_gt(gts_by_image: GtsByImage, category_id: int) -> int:
    """Number of counted (non-crowd, non-ignored) instances of ``category_id``."""
    return sum(1 for gts in gts_by_image.values() for g in gts if g.category_id == category_id and not g.ignored)


def _iou_rows(ranked: Sequence[RankedRegion], order: np.ndarray, gts_by_image: GtsByImage, category_id: int,
              use_masks: bool) -> tuple[dict[int, np.ndarray], dict[Hashable, np.ndarray]]:
    """IoU rows per rank against the image's instances of ``category_id`` (computed image by image:
    one pycocotools call per image), and those instances' indices per image."""
    by_image: dict[Hashable, list[int]] = {}
    for rank, idx in enumerate(order):
        image_id = ranked[idx].image_id
        if image_id not in gts_by_image:
            raise InvalidRequestError(
                f"ranked region #{int(idx)} belongs to image {image_id!r}, which is not in the ground truth"
            )
        by_image.setdefault(image_id, []).append(rank)

    iou_rows: dict[int, np.ndarray] = {}
    gt_index: dict[Hashable, np.ndarray] = {}
    for image_id, ranks in by_image.items():
        gts = gts_by_image[image_id]
        idxs = np.asarray([j for j, g in enumerate(gts) if g.category_id == category_id], dtype=np.int64)
        gt_index[image_id] = idxs
        if idxs.size == 0:
            continue
        cat_gts = [gts[j] for j in idxs]
        dets = [ranked[order[r]] for r in ranks]
        ious = _iou_matrix(dets, cat_gts, use_masks, crowd=[g.iscrowd for g in cat_gts], where=image_id)
        for row, r in enumerate(ranks):
            iou_rows[r] = ious[row]
    return iou_rows, gt_index


def match_ranked_detailed(
    ranked: Sequence[RankedRegion],
    gts_by_image: GtsByImage,
    category_id: int,
    iou_thr: float = 0.5,
    use_masks: bool = True,
) -> MatchResult:
    """Match ranked regions to the instances of ``category_id``; see the module doc for the rules.

    Every region's ``image_id`` must be a key of ``gts_by_image`` (images without instances map to
    an empty list), otherwise :class:`InvalidRequestError`: a region from an image outside the
    evaluated set cannot be judged.
    """
    _check_thr(iou_thr)
    n = len(ranked)
    scores = np.asarray([_finite_score(r.score, i) for i, r in enumerate(ranked)], dtype=np.float64)
    order = np.argsort(-scores, kind="stable") if n else np.zeros(0, dtype=np.int64)
    status = np.full(n, FALSE_POSITIVE, dtype=np.int8)
    matched_gt = np.full(n, -1, dtype=np.int64)
    best_iou = np.zeros(n, dtype=np.float64)

    iou_rows, gt_index = _iou_rows(ranked, order, gts_by_image, category_id, use_masks)
    matched: dict[Hashable, set[int]] = {}
    for rank in range(n):
        image_id = ranked[order[rank]].image_id
        idxs = gt_index[image_id]
        if idxs.size == 0:
            continue
        row = iou_rows[rank]
        best_iou[rank] = float(row.max())
        gts = gts_by_image[image_id]
        taken = matched.setdefault(image_id, set())
        for want_ignored in (False, True):
            pick, pick_iou = -1, -1.0
            for col, j in enumerate(idxs):
                g = gts[j]
                if g.ignored != want_ignored:
                    continue
                if j in taken and not g.iscrowd:
                    continue
                # strict '>' keeps the lower index on IoU ties
                if row[col] >= iou_thr and row[col] > pick_iou:
                    pick, pick_iou = int(j), float(row[col])
            if pick >= 0:
                status[rank] = IGNORED if want_ignored else HIT
                matched_gt[rank] = pick
                if not gts[pick].iscrowd:
                    taken.add(pick)
                break
    return MatchResult(order=order, status=status, matched_gt=matched_gt, best_iou=best_iou,
                       n_gt=count_gt(gts_by_image, category_id))


def match_ranked(
    ranked: Sequence[RankedRegion],
    gts_by_image: GtsByImage,
    category_id: int,
    iou_thr: float = 0.5,
    use_masks: bool = True,
) -> np.ndarray:
    """Hit flags (bool, rank order, ignored regions dropped) of a ranking; see the module doc."""
    return match_ranked_detailed(ranked, gts_by_image, category_id, iou_thr, use_masks).hits


def precision_at_k(hits: Sequence[bool] | np.ndarray, k: int) -> float:
    """Hits among the first ``k`` ranks divided by ``k`` (missing ranks are misses)."""
    _check_k(k)
    h = _as_hits(hits)
    return float(np.count_nonzero(h[:k])) / k


def recall_at_k(hits: Sequence[bool] | np.ndarray, n_gt: int, k: int) -> float:
    """Hits among the first ``k`` ranks divided by ``n_gt``; NaN when ``n_gt`` is 0."""
    _check_k(k)
    h = _as_hits(hits)
    _check_n_gt(h, n_gt)
    if n_gt == 0:
        return math.nan
    return float(np.count_nonzero(h[:k])) / n_gt


def pr_curve(hits: Sequence[bool] | np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw (recall, precision) after each rank, as float64 arrays of the ranking's length.

    Recall is all-zero when ``n_gt`` is 0."""
    h = _as_hits(hits)
    _check_n_gt(h, n_gt)
    tp = np.cumsum(h, dtype=np.float64)
    ranks = np.arange(1, h.size + 1, dtype=np.float64)
    precision = tp / ranks if h.size else np.zeros(0)
    recall = tp / n_gt if n_gt > 0 else np.zeros_like(tp)
    return recall, precision


def average_precision(hits: Sequence[bool] | np.ndarray, n_gt: int) -> float:
    """COCO 101-point interpolated AP of a ranking with ``n_gt`` counted instances; NaN if 0."""
    h = _as_hits(hits)
    _check_n_gt(h, n_gt)
    if n_gt == 0:
        return math.nan
    if h.size == 0:
        return 0.0
    recall, precision = pr_curve(h, n_gt)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, _RECALL_LEVELS, side="left")
    sampled = np.where(idx < recall.size, envelope[np.minimum(idx, recall.size - 1)], 0.0)
    return float(np.mean(sampled))


@dataclass(frozen=True)
class CategoryCeiling:
    """Counted instances of a category and how many are covered by some region."""

    covered: int
    total: int

    @property
    def fraction(self) -> float:
        """``covered / total``; NaN when the category has no counted instance."""
        return self.covered / self.total if self.total else math.nan


@dataclass(frozen=True)
class CeilingResult:
    """Segmentation ceiling: the share of counted instances covered by any indexed region at
    IoU ``>= iou_thr`` — the best recall any query could reach with these regions."""

    covered: int
    total: int
    per_category: Mapping[int, CategoryCeiling]
    iou_thr: float

    @property
    def fraction(self) -> float:
        return self.covered / self.total if self.total else math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            "covered": self.covered,
            "total": self.total,
            "fraction": _json_float(self.fraction),
            "iou_thr": self.iou_thr,
            "per_category": {
                str(cid): {"covered": c.covered, "total": c.total, "fraction": _json_float(c.fraction)}
                for cid, c in self.per_category.items()
            },
        }


def segmentation_ceiling(
    regions_by_image: Mapping[Hashable, Sequence[RegionGeometry | Mapping[str, Any]]],
    gts_by_image: GtsByImage,
    iou_thr: float = 0.5,
    use_masks: bool = True,
) -> CeilingResult:
    """Fraction of counted (non-crowd, non-ignored) instances that some region of their image
    overlaps with plain IoU ``>= iou_thr``, overall and per category.

    Regions are objects with ``rle``/``bbox`` attributes or bare RLE dicts. Instances of an image
    absent from ``regions_by_image`` are uncovered; regions of images absent from ``gts_by_image``
    are ignored.
    """
    _check_thr(iou_thr)
    covered: dict[int, int] = {}
    total: dict[int, int] = {}
    for image_id, gts in gts_by_image.items():
        counted = [g for g in gts if not g.ignored]
        for g in counted:
            total[g.category_id] = total.get(g.category_id, 0) + 1
            covered.setdefault(g.category_id, 0)
        regions = [_as_geometry(r) for r in regions_by_image.get(image_id, ())]
        if not counted or not regions:
            continue
        ious = _iou_matrix(regions, counted, use_masks, crowd=[False] * len(counted), where=image_id)
        hit = (ious >= iou_thr).any(axis=0)
        for g, h in zip(counted, hit):
            if h:
                covered[g.category_id] += 1
    per_cat = {cid: CategoryCeiling(covered=covered[cid], total=total[cid]) for cid in sorted(total)}
    return CeilingResult(covered=sum(covered.values()), total=sum(total.values()),
                         per_category=per_cat, iou_thr=iou_thr)


@dataclass(frozen=True)
class CategoryResult:
    """Figures of one category. ``precision_at``/``recall_at`` map each k to its value;
    ``recall``/``precision`` are the raw PR curve after each non-ignored rank (for plots)."""

    category_id: int
    name: str
    n_gt: int
    n_returned: int
    n_ignored: int
    n_hits: int
    precision_at: Mapping[int, float]
    recall_at: Mapping[int, float]
    ap: float
    recall: tuple[float, ...] = field(default=(), repr=False)
    precision: tuple[float, ...] = field(default=(), repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "category_id": self.category_id,
            "name": self.name,
            "n_gt": self.n_gt,
            "n_returned": self.n_returned,
            "n_ignored": self.n_ignored,
            "n_hits": self.n_hits,
            "precision_at": {str(k): _json_float(v) for k, v in self.precision_at.items()},
            "recall_at": {str(k): _json_float(v) for k, v in self.recall_at.items()},
            "ap": _json_float(self.ap),
            "pr_curve": {"recall": [float(v) for v in self.recall],
                         "precision": [float(v) for v in self.precision]},
        }


def evaluate_category(
    ranked: Sequence[RankedRegion],
    gts_by_image: GtsByImage,
    category_id: int,
    *,
    name: str | None = None,
    ks: Iterable[int] = (1, 5, 10, 100),
    iou_thr: float = 0.5,
    use_masks: bool = True,
) -> CategoryResult:
    """Match one category's ranking and compute P@k, R@k (for each k in ``ks``) and AP."""
    ks_t = _check_ks(ks)
    m = match_ranked_detailed(ranked, gts_by_image, category_id, iou_thr, use_masks)
    hits = m.hits
    recall, precision = pr_curve(hits, m.n_gt)
    return CategoryResult(
        category_id=int(category_id),
        name=name if name is not None else str(category_id),
        n_gt=m.n_gt,
        n_returned=len(ranked),
        n_ignored=m.n_ignored,
        n_hits=int(np.count_nonzero(hits)),
        precision_at={k: precision_at_k(hits, k) for k in ks_t},
        recall_at={k: recall_at_k(hits, m.n_gt, k) for k in ks_t},
        ap=average_precision(hits, m.n_gt),
        recall=tuple(float(v) for v in recall),
        precision=tuple(float(v) for v in precision),
    )


@dataclass(frozen=True)
class EvalSummary:
    """Per-category results and their means over the categories with ground truth."""

    ks: tuple[int, ...]
    per_category: tuple[CategoryResult, ...]
    mean_precision_at: Mapping[int, float]
    mean_recall_at: Mapping[int, float]
    mean_ap: float
    n_categories_evaluated: int
    iou_thr: float
    use_masks: bool
    ceiling: CeilingResult | None = None
    ap_method: str = AP_METHOD

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict; NaN figures become ``null``."""
        return {
            "ks": list(self.ks),
            "iou_thr": self.iou_thr,
            "iou_type": "mask" if self.use_masks else "box",
            "ap_method": self.ap_method,
            "n_categories": len(self.per_category),
            "n_categories_evaluated": self.n_categories_evaluated,
            "mean": {
                "precision_at": {str(k): _json_float(v) for k, v in self.mean_precision_at.items()},
                "recall_at": {str(k): _json_float(v) for k, v in self.mean_recall_at.items()},
                "ap": _json_float(self.mean_ap),
            },
            "ceiling": self.ceiling.to_json() if self.ceiling is not None else None,
            "per_category": [c.to_json() for c in self.per_category],
        }


def summarize(
    results: Sequence[CategoryResult],
    *,
    iou_thr: float = 0.5,
    use_masks: bool = True,
    ceiling: CeilingResult | None = None,
) -> EvalSummary:
    """Average per-category results over the categories with at least one counted instance.

    All results must share the same ks (:class:`InvalidRequestError` otherwise).
    """
    ks: tuple[int, ...] = tuple(results[0].precision_at) if results else ()
    for r in results:
        if tuple(r.precision_at) != ks:
            raise InvalidRequestError(
                f"category {r.name!r} was evaluated at k={list(r.precision_at)}, the others at k={list(ks)}"
            )
    with_gt = [r for r in results if r.n_gt > 0]
    return EvalSummary(
        ks=ks,
        per_category=tuple(results),
        mean_precision_at={k: _nanmean(r.precision_at[k] for r in with_gt) for k in ks},
        mean_recall_at={k: _nanmean(r.recall_at[k] for r in with_gt) for k in ks},
        mean_ap=_nanmean(r.ap for r in with_gt),
        n_categories_evaluated=len(with_gt),
        iou_thr=iou_thr,
        use_masks=use_masks,
        ceiling=ceiling,
    )


# --- helpers -------------------------------------------------------------------------------------


def _nanmean(values: Iterable[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(sum(vals) / len(vals)) if vals else math.nan


def _json_float(v: float) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def _check_thr(iou_thr: float) -> None:
    if not (0.0 < float(iou_thr) <= 1.0):
        raise InvalidRequestError(f"the IoU threshold must be in (0, 1], got {iou_thr!r}")


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidRequestError(f"k must be a positive integer, got {k!r}")


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks_t = tuple(ks)
    if not ks_t:
        raise InvalidRequestError("at least one k is needed (for example 1,5,10,100)")
    for k in ks_t:
        _check_k(k)
    if len(set(ks_t)) != len(ks_t):
        raise InvalidRequestError(f"the values of k must be distinct, got {list(ks_t)}")
    return tuple(int(k) for k in ks_t)


def _check_n_gt(hits: np.ndarray, n_gt: int) -> None:
    if n_gt < 0:
        raise InvalidRequestError(f"the number of ground-truth instances cannot be negative ({n_gt})")
    if np.count_nonzero(hits) > n_gt:
        raise InvalidRequestError(
            f"{int(np.count_nonzero(hits))} hits cannot come from {n_gt} ground-truth instance(s)"
        )


def _as_hits(hits: Sequence[bool] | np.ndarray) -> np.ndarray:
    h = np.asarray(hits)
    if h.ndim != 1:
        raise InvalidRequestError(f"hits must be a 1-D sequence of booleans, got shape {h.shape}")
    return h.astype(bool)


def _finite_score(score: float, i: int) -> float:
    s = float(score)
    if not math.isfinite(s):
        raise InvalidRequestError(f"ranked region #{i} has a non-finite score {score!r}")
    return s


class _Geom:
    __slots__ = ("rle", "bbox")

    def __init__(self, rle: Mapping[str, Any] | None, bbox: Sequence[float] | None):
        self.rle, self.bbox = rle, bbox


def _as_geometry(obj: RegionGeometry | Mapping[str, Any]) -> RegionGeometry:
    if isinstance(obj, Mapping):
        return _Geom(obj, None)
    return obj


def _iou_matrix(
    dets: Sequence[RegionGeometry],
    gts: Sequence[GtInstance],
    use_masks: bool,
    crowd: Sequence[bool],
    where: Hashable,
) -> np.ndarray:
    """(len(dets), len(gts)) float64 IoU; ``crowd[j]`` selects COCO crowd IoU for column j."""
    if use_masks:
        d_geo = []
        for i, d in enumerate(dets):
            if d.rle is None:
                raise InvalidRequestError(
                    f"a region of image {where!r} has no mask; evaluate with box IoU (use_masks=False)"
                )
            d_geo.append(_rle_for_iou(d.rle))
        g_geo = []
        for g in gts:
            if g.rle is None:
                raise InvalidRequestError(
                    f"ground-truth instance {g.id} of image {where!r} has no mask (box-only dataset); "
                    "evaluate with box IoU (use_masks=False)"
                )
            g_geo.append(_rle_for_iou(g.rle))
        sizes = {tuple(r["size"]) for r in d_geo} | {tuple(r["size"]) for r in g_geo}
        if len(sizes) > 1:
            raise InvalidRequestError(
                f"masks of image {where!r} have different sizes {sorted(sizes)}; regions must be "
                "encoded at the annotated image size"
            )
    else:
        d_geo = np.asarray([_box_of(d, where) for d in dets], dtype=np.float64).reshape(-1, 4)
        g_geo = np.asarray([g.bbox for g in gts], dtype=np.float64).reshape(-1, 4)
    ious = mask_utils.iou(d_geo, g_geo, [int(bool(c)) for c in crowd])
    return np.asarray(ious, dtype=np.float64).reshape(len(dets), len(gts))


def _rle_for_iou(rle: Mapping[str, Any]) -> dict[str, Any]:
    if "size" not in rle or "counts" not in rle:
        raise InvalidRequestError("a mask is not a COCO RLE dict with 'size' and 'counts'")
    counts = rle["counts"]
    if isinstance(counts, list):
        h, w = int(rle["size"][0]), int(rle["size"][1])
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def _box_of(d: RegionGeometry, where: Hashable) -> list[float]:
    if d.bbox is not None:
        box = [float(v) for v in d.bbox]
        if len(box) != 4:
            raise InvalidRequestError(f"a region of image {where!r} has a box that is not XYWH")
        return box
    if d.rle is None:
        raise InvalidRequestError(f"a region of image {where!r} has neither a mask nor a box")
    return [float(v) for v in mask_utils.toBbox(_rle_for_iou(d.rle))]
