"""Video metrics against YouTube-VIS-style ground truth: track quality and track retrieval.

Ground truth (:func:`load_ytvis`): ``videos`` (``id``, ``length`` frames, optional
``file_name``/``fps``/``width``/``height``), ``annotations`` (one per object: ``video_id``,
``category_id``, ``segmentations``: per frame a COCO RLE or ``None`` where the object is absent)
and ``categories``. Frame numbers count the video's own frames from 0.

Predictions are :class:`PredTrack` objects: per-frame RLE masks at the frames the tracker looked
at. Everything is evaluated at those *evaluated frames* (the sampled frames of each video),
where ground truth and prediction can both exist:

* per frame, ground-truth objects and predicted masks are matched one to one by the Hungarian
  algorithm on mask IoU; an object's **track mIoU** is the mean over the evaluated frames where
  it is present of the IoU of its match (0 when unmatched);
* an object is *tracked* on a frame when its match has IoU >= ``iou_thr``; an **identity
  switch** is a tracked frame whose track differs from the object's previous tracked frame's
  (CLEAR-MOT); **fragments** is the number of distinct tracks that tracked the object (1 is
  ideal, 0 means never tracked);
* **track retrieval**: a ranked track is a hit for a category when its spatio-temporal IoU
  (summed intersections over summed unions across the evaluated frames) with a not yet matched
  object of that category in the same video is >= ``iou_thr``; P@k = hits in the top k divided
  by ``min(k, number of objects of the category)``, so a perfect ranking scores 1 whatever the
  number of objects.

Pure numpy + pycocotools (through :mod:`regionsearch.masks`) + scipy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..masks import rle_area, rle_iou

RLE = dict[str, Any]


@dataclass(frozen=True)
class GtObject:
    """One annotated object: ``masks`` maps frame number -> RLE (frames where it is present)."""

    id: int
    video_id: int
    category_id: int
    masks: dict[int, RLE]


@dataclass
class YtvisDataset:
    videos: dict[int, dict[str, Any]]
    objects: list[GtObject]
    categories: dict[int, str]
    source: str = "<memory>"

    def objects_of(self, video_id: int) -> list[GtObject]:
        return [o for o in self.objects if o.video_id == video_id]

    def category_id(self, name: str) -> int:
        for cid, n in self.categories.items():
            if n == name:
                return cid
        raise ConfigError(f"category {name!r} is not in {self.source}")


@dataclass(frozen=True)
class PredTrack:
    """A predicted track: ``masks`` maps frame number -> RLE; ``id`` unique within its video."""

    id: int
    video_id: int
    masks: dict[int, RLE]


def parse_ytvis(data: Any, source: str = "<memory>") -> YtvisDataset:
    """Validate a YouTube-VIS-style dict (``ConfigError`` with one sentence when unusable)."""
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list) or not isinstance(data.get("annotations"), list):
        raise ConfigError(f"{source} is not YouTube-VIS-style ground truth (needs 'videos' and 'annotations' lists)")
    videos: dict[int, dict[str, Any]] = {}
    for v in data["videos"]:
        if not isinstance(v, dict) or "id" not in v or "length" not in v:
            raise ConfigError(f"{source}: every video needs an 'id' and a 'length' (frames)")
        videos[int(v["id"])] = dict(v)
    categories = {int(c["id"]): str(c.get("name", c["id"])) for c in data.get("categories") or []}
    objects = []
    for a in data["annotations"]:
        vid = int(a.get("video_id", -1))
        if vid not in videos:
            raise ConfigError(f"{source}: annotation {a.get('id')} refers to unknown video {vid}")
        segs = a.get("segmentations")
        if not isinstance(segs, list) or len(segs) != int(videos[vid]["length"]):
            raise ConfigError(f"{source}: annotation {a.get('id')} needs one segmentation (or null) per frame of "
                              f"video {vid} ({videos[vid]['length']} frames)")
        masks = {f: s for f, s in enumerate(segs) if s is not None}
        objects.append(GtObject(int(a["id"]), vid, int(a["category_id"]), masks))
    return YtvisDataset(videos, objects, categories, source)


def load_ytvis(path: str | Path) -> YtvisDataset:
    """Read :func:`parse_ytvis` ground truth from a JSON file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"ground-truth file {str(p)!r} does not exist; pass a YouTube-VIS-style json")
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"ground-truth file {str(p)!r} is not valid JSON ({exc})") from exc
    return parse_ytvis(data, str(p))


@dataclass(frozen=True)
class ObjectResult:
    video_id: int
    object_id: int
    category_id: int
    miou: float
    frames: int
    switches: int
    fragments: int


@dataclass
class TrackingResult:
    """Per-object results plus the summary figures (means over objects / videos)."""

    objects: list[ObjectResult] = field(default_factory=list)
    switches_per_video: dict[int, int] = field(default_factory=dict)

    @property
    def mean_miou(self) -> float:
        return float(np.mean([o.miou for o in self.objects])) if self.objects else float("nan")

    def share_above(self, thr: float = 0.5) -> float:
        """Fraction of objects whose track mIoU is >= ``thr``."""
        return float(np.mean([o.miou >= thr for o in self.objects])) if self.objects else float("nan")

    @property
    def switches_per_clip(self) -> float:
        return float(np.mean(list(self.switches_per_video.values()))) if self.switches_per_video else float("nan")

    @property
    def max_switches(self) -> int:
        return max(self.switches_per_video.values(), default=0)

    @property
    def fragments_per_object(self) -> float:
        return float(np.mean([o.fragments for o in self.objects])) if self.objects else float("nan")

    def summary(self) -> dict[str, float]:
        return {"objects": len(self.objects), "videos": len(self.switches_per_video),
                "track_miou": self.mean_miou, "share_miou_ge_0.5": self.share_above(0.5),
                "switches_per_clip": self.switches_per_clip, "max_switches": self.max_switches,
                "fragments_per_object": self.fragments_per_object}


def _check_thr(iou_thr: float) -> None:
    if not 0.0 < iou_thr <= 1.0:
        raise ConfigError(f"iou_thr must be in (0, 1], got {iou_thr}")


def evaluate_tracking(gt: YtvisDataset, tracks: Iterable[PredTrack], frames: Mapping[int, Sequence[int]],
                      iou_thr: float = 0.5) -> TrackingResult:
    """Track mIoU, identity switches and fragments per object (see the module doc).

    ``frames``: the evaluated frame numbers of each video to score (videos not in it are
    skipped); tracks' masks at other frames are ignored.
    """
    from scipy.optimize import linear_sum_assignment

    _check_thr(iou_thr)
    by_video: dict[int, list[PredTrack]] = {}
    for t in tracks:
        by_video.setdefault(t.video_id, []).append(t)
    result = TrackingResult()
    for vid, evaluated in frames.items():
        objs = gt.objects_of(vid)
        preds = by_video.get(vid, [])
        ious: dict[int, list[float]] = {o.id: [] for o in objs}
        last: dict[int, int | None] = {o.id: None for o in objs}
        switches: dict[int, int] = {o.id: 0 for o in objs}
        seen: dict[int, set[int]] = {o.id: set() for o in objs}
        for f in sorted(set(int(x) for x in evaluated)):
            present = [o for o in objs if f in o.masks]
            if not present:
                continue
            cands = [p for p in preds if f in p.masks]
            match: dict[int, tuple[int, float]] = {}
            if cands:
                m = rle_iou([o.masks[f] for o in present], [p.masks[f] for p in cands])
                rows, cols = linear_sum_assignment(-m)
                match = {present[r].id: (cands[c].id, float(m[r, c])) for r, c in zip(rows, cols) if m[r, c] > 0}
            for o in present:
                tid, iou = match.get(o.id, (None, 0.0))
                ious[o.id].append(iou)
                if tid is not None and iou >= iou_thr:
                    if last[o.id] is not None and last[o.id] != tid:
                        switches[o.id] += 1
                    last[o.id] = tid
                    seen[o.id].add(tid)
        for o in objs:
            if not ious[o.id]:
                continue
            result.objects.append(ObjectResult(vid, o.id, o.category_id, float(np.mean(ious[o.id])),
                                               len(ious[o.id]), switches[o.id], len(seen[o.id])))
        result.switches_per_video[vid] = sum(switches.values())
    return result


def spatiotemporal_iou(a: Mapping[int, RLE], b: Mapping[int, RLE], frames: Iterable[int]) -> float:
    """Summed per-frame intersections over summed unions across ``frames`` (0 when both are empty)."""
    inter = union = 0.0
    for f in frames:
        ma, mb = a.get(f), b.get(f)
        if ma is None and mb is None:
            continue
        if ma is None or mb is None:
            union += rle_area(ma if ma is not None else mb)  # type: ignore[arg-type]
            continue
        area_a, area_b = rle_area(ma), rle_area(mb)
        iou = float(rle_iou([ma], [mb])[0, 0])
        i = iou * (area_a + area_b) / (1.0 + iou) if iou > 0 else 0.0
        inter += i
        union += area_a + area_b - i
    return inter / union if union > 0 else 0.0


def retrieval_hits(ranked: Sequence[PredTrack], gt: YtvisDataset, category_id: int,
                   frames: Mapping[int, Sequence[int]], iou_thr: float = 0.5) -> tuple[list[bool], int]:
    """Hit flags of a ranked track list for one category, and the number of its objects
    (in the videos of ``frames``). Each object can be hit once; later duplicates are misses."""
    _check_thr(iou_thr)
    objs = [o for o in gt.objects if o.category_id == category_id and o.video_id in frames]
    used: set[int] = set()
    hits = []
    for t in ranked:
        best, best_iou = None, 0.0
        for o in objs:
            if o.video_id != t.video_id or o.id in used:
                continue
            iou = spatiotemporal_iou(t.masks, o.masks, frames[t.video_id])
            if iou > best_iou:
                best, best_iou = o, iou
        hit = best is not None and best_iou >= iou_thr
        if hit:
            used.add(best.id)  # type: ignore[union-attr]
        hits.append(bool(hit))
    return hits, len(objs)


def precision_at_k_capped(hits: Sequence[bool], n_relevant: int, k: int) -> float:
    """Hits in the top ``k`` divided by ``min(k, n_relevant)``; NaN when nothing is relevant."""
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if n_relevant <= 0:
        return float("nan")
    return float(sum(bool(h) for h in hits[:k])) / min(k, n_relevant)
