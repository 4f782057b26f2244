"""``regionsearch eval`` on YouTube-VIS-style ground truth: index the ground truth's videos with
the same pipeline as ``regionsearch index`` (or reuse the data directory), read the *stored*
tracks back and score them (:mod:`regionsearch.evaluation.video`).

* Videos: each ``videos[i].file_name`` (a video file; paths relative to the media root, by
  default the JSON's folder). YouTube-VIS's own distribution gives frame folders
  (``file_names``): encode them as video files first (e.g. ``ffmpeg -framerate 6 -i %05d.jpg
  video.mp4``) and point ``file_name`` at them.
* Frames: ground-truth frame numbers count the video's own decoded frames from 0, as the stored
  tracks do. A video is evaluated at its *sampled* frames (those the tracker looked at), found
  by decoding it again with the sampling it was indexed with (the ``videos`` row's
  ``sample_fps``; no model runs).
* Tracks: every stored track of the video with its per-frame RLE masks (``track_frames``).
* Retrieval: per category present in the evaluated videos, the category name (through the prompt
  templates) searched with ``media=video`` by :func:`regionsearch.search.search`, the one query
  path ``regionsearch search --media video`` uses; ranked tracks of other files are skipped.
* A ground-truth video that could not be indexed (a bad file, recorded as a failure like a bad
  image) is reported with its reason and left out of every figure.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config import Config
from ..errors import ConfigError
from ..search import Query, SearchFilters
from .video import PredTrack, TrackingResult, YtvisDataset, evaluate_tracking, load_ytvis, parse_ytvis, \
    precision_at_k_capped, retrieval_hits

log = logging.getLogger(__name__)

#: P@k cut-offs of track retrieval when none are given
DEFAULT_VIDEO_KS = (1, 3, 10)
#: the query of a category when no templates are given: its name as a user would type it
VIDEO_TEMPLATES = ("{}",)


def ground_truth_kind(path: str | os.PathLike[str]) -> str:
    """``"ytvis"`` for YouTube-VIS-style ground truth (a ``videos`` list and ``annotations`` with
    per-frame ``segmentations``), ``"coco"`` otherwise (``load_coco`` validates those)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"ground-truth file {str(p)!r} does not exist; pass a COCO or YouTube-VIS-style json")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"ground-truth file {str(p)!r} is not valid JSON ({exc})") from exc
    return "ytvis" if is_ytvis(data) else "coco"


def is_ytvis(data: Any) -> bool:
    """Whether a parsed JSON document looks like YouTube-VIS-style ground truth."""
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        return False
    anns = data.get("annotations")
    return isinstance(anns, list) and all(isinstance(a, dict) and "segmentations" in a for a in anns[:50])


@dataclass(frozen=True)
class CategoryRetrieval:
    """Track retrieval for one category: ``hits`` of the ranked tracks (top ``max(ks)``)."""

    category_id: int
    name: str
    n_objects: int
    hits: tuple[bool, ...]
    precision_at: dict[int, float]

    def to_json(self) -> dict[str, Any]:
        return {"category_id": self.category_id, "name": self.name, "objects": self.n_objects,
                "returned": len(self.hits), "hits": [bool(h) for h in self.hits],
                "precision_at": {str(k): _num(v) for k, v in self.precision_at.items()}}


@dataclass
class VideoEvalRun:
    """One evaluation of stored tracks against YouTube-VIS-style ground truth."""

    tracking: TrackingResult
    retrieval: list[CategoryRetrieval]
    ks: tuple[int, ...]
    index_seconds: float | None
    tracks: int
    evaluated_frames: int
    iou_thr: float = 0.5
    failures: list[dict[str, str]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_precision_at(self) -> dict[int, float]:
        """Mean over categories with at least one object of P@k (NaN when there are none)."""
        return {k: float(np.mean([c.precision_at[k] for c in self.retrieval])) if self.retrieval else math.nan
                for k in self.ks}

    def to_json(self) -> dict[str, Any]:
        t = self.tracking
        summary = {k: _num(v) for k, v in t.summary().items()}
        summary.update(tracks=self.tracks, evaluated_frames=self.evaluated_frames,
                       failed_videos=len(self.failures), categories=len(self.retrieval),
                       **{f"track_search_p@{k}": _num(v) for k, v in self.mean_precision_at.items()})
        seconds = None if self.index_seconds is None else round(self.index_seconds, 3)
        return {"ground_truth": "ytvis", "iou_thr": self.iou_thr, "ks": list(self.ks), "index_seconds": seconds,
                "config": self.config, "summary": summary, "failures": self.failures,
                "per_category": [c.to_json() for c in self.retrieval],
                "per_object": [{"video_id": o.video_id, "object_id": o.object_id, "category_id": o.category_id,
                                "miou": _num(o.miou), "frames": o.frames, "switches": o.switches,
                                "fragments": o.fragments} for o in t.objects],
                "switches_per_video": {str(v): n for v, n in t.switches_per_video.items()}}


def _num(v: Any) -> Any:
    """JSON-safe figure: NaN becomes null (no ground truth to measure it on)."""
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 6)
    return v


def video_paths(gt: YtvisDataset, media_root: Path) -> dict[int, Path]:
    """The file of every ground-truth video; ``ConfigError`` naming what is missing."""
    out: dict[int, Path] = {}
    missing: list[str] = []
    for vid, v in gt.videos.items():
        name = v.get("file_name")
        if not isinstance(name, str) or not name:
            if v.get("file_names"):
                raise ConfigError(f"{gt.source}: video {vid} is a folder of frames ('file_names'); eval indexes "
                                  "video files: encode the frames (e.g. ffmpeg -framerate 6 -i %05d.jpg video.mp4) "
                                  "and set 'file_name' to the video")
            raise ConfigError(f"{gt.source}: video {vid} has no 'file_name' (the video file, relative to --images)")
        out[vid] = media_root / name
        if not out[vid].is_file():
            missing.append(name)
    if missing:
        raise ConfigError(f"{len(missing)} video(s) of {gt.source} are not under {media_root} (e.g. {missing[0]}); "
                          "pass the folder their file_name entries are relative to with --images")
    return out


def _sampled_frames(path: Path, video_row: dict[str, Any], config: Config, length: int) -> list[int]:
    """The frame numbers the tracker looked at (same sampling as when indexed), below ``length``."""
    from ..video.decode import sample_frames

    vc = config.video
    sample_fps = video_row.get("sample_fps") or vc.sample_fps
    return [f.index for f in sample_frames(path, sample_fps, max_pixels=vc.max_pixels, max_bytes=vc.max_bytes)
            if f.index < length]


def _stored_tracks(datadir: Any, image_id: int, vid: int, length: int, size: list[int] | None,
                   name: str) -> list[PredTrack]:
    """Every stored track of a video as a :class:`PredTrack` (id = its region id)."""
    preds = []
    for rec in datadir.regions_of_image(image_id):
        if rec.kind != "track":
            continue
        _, frames = datadir.store.get_track(rec.region_id)
        masks = {f.frame: f.rle for f in frames if f.frame < length}
        for rle in masks.values():
            if size is not None and list(rle["size"]) != size:
                raise ConfigError(f"{name}: the ground-truth masks are {size[0]}x{size[1]} (HxW) but the video's "
                                  f"frames are {rle['size'][0]}x{rle['size'][1]}; the annotations do not fit this file")
            break
        preds.append(PredTrack(rec.region_id, vid, masks))
    return preds


def _gt_size(gt: YtvisDataset, vid: int) -> list[int] | None:
    for o in gt.objects_of(vid):
        for rle in o.masks.values():
            return [int(x) for x in rle["size"]]
    return None


@dataclass
class StoredTracks:
    """What the data dir holds for the ground truth's videos."""

    preds: list[PredTrack] = field(default_factory=list)
    frames: dict[int, list[int]] = field(default_factory=dict)
    video_of_path: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)


def read_stored_tracks(datadir: Any, gt: YtvisDataset, paths: dict[int, Path], config: Config) -> StoredTracks:
    """Stored tracks and sampled frames of every ground-truth video; videos that were not indexed
    as videos are listed in ``failures`` with the reason."""
    from ..imageio import path_to_db

    out = StoredTracks()
    for vid, path in paths.items():
        name = str(gt.videos[vid]["file_name"])
        key = path_to_db(os.path.abspath(path))
        rec = datadir.image_by_path(key)
        info = None if rec is None or rec.status != "indexed" else datadir.store.video_info(rec.id)
        if info is None:
            if rec is None:
                reason = "not indexed"
            elif rec.status != "indexed":
                reason = rec.error or rec.status  # the indexer's recorded failure
            else:
                reason = "indexed as an image, not a video"
            out.failures.append({"file_name": name, "reason": str(reason)})
            continue
        length = int(gt.videos[vid]["length"])
        out.frames[vid] = _sampled_frames(path, info, config, length)
        out.preds += _stored_tracks(datadir, rec.id, vid, length, _gt_size(gt, vid), name)
        out.video_of_path[key] = vid
    return out


def _category_query(engine: Any, name: str, templates: Sequence[str]) -> Query:
    """The query of a category: its text for one template (exactly what ``search`` gets), else
    the normalised mean of the templates' text embeddings."""
    texts = [t.format(name) for t in templates]
    if len(texts) == 1:
        return Query(text=texts[0])
    vecs = engine.pipeline.embedder.embed_texts(texts)
    q = vecs.mean(axis=0)
    return Query(vector=(q / max(float(np.linalg.norm(q)), 1e-12)).astype(np.float32))


def _ranked_tracks(engine: Any, query: Query, stored: StoredTracks, want: int) -> list[PredTrack]:
    """The top ``want`` stored tracks of the ground truth's videos for ``query`` (``media=video``),
    asking the index for more while tracks of other files fill the ranking."""
    by_id = {p.id: p for p in stored.preds}
    total = max(1, len(engine.datadir.index))
    limit = min(total, engine.config.search.max_k or total)  # the search's own maximum k
    k = min(limit, max(want, 1))
    while True:
        hits = engine.query(query, k, SearchFilters(media="video"))
        ranked = [by_id[h.region_id] for h in hits if h.image_path in stored.video_of_path and h.region_id in by_id]
        if len(ranked) >= want or len(hits) < k or k >= limit:
            return ranked[:want]
        k = min(limit, k * 4)


def evaluate_retrieval(engine: Any, gt: YtvisDataset, stored: StoredTracks, templates: Sequence[str],
                       ks: Sequence[int], iou_thr: float = 0.5) -> list[CategoryRetrieval]:
    """P@k of track search for every category with objects in the evaluated videos."""
    present = sorted({o.category_id for o in gt.objects if o.video_id in stored.frames})
    out = []
    for cid in present:
        name = gt.categories.get(cid, str(cid))
        ranked = _ranked_tracks(engine, _category_query(engine, name, templates), stored, max(ks))
        hits, n_rel = retrieval_hits(ranked, gt, cid, stored.frames, iou_thr)
        out.append(CategoryRetrieval(cid, name, n_rel, tuple(hits),
                                     {k: precision_at_k_capped(hits, n_rel, k) for k in ks}))
    return out


def load_video_gt(path: str | os.PathLike[str]) -> YtvisDataset:
    """YouTube-VIS-style ground truth, or a ``ConfigError`` saying the file is something else."""
    p = Path(path)
    if ground_truth_kind(p) != "ytvis":
        raise ConfigError(f"{p} is not YouTube-VIS-style ground truth (needs 'videos' and 'annotations' with "
                          "per-frame 'segmentations'); pass COCO image annotations with --coco")
    return load_ytvis(p)


def run_video_eval(gt_path: str | os.PathLike[str], media_root: str | os.PathLike[str] | None, config: Config,
                   data_dir: str | os.PathLike[str], templates: Sequence[str] = VIDEO_TEMPLATES,
                   ks: Sequence[int] = DEFAULT_VIDEO_KS, progress: bool = True, db_url: str | None = None,
                   iou_thr: float = 0.5) -> VideoEvalRun:
    """Index the ground truth's videos with ``config`` (idempotent: a re-run reuses the data dir)
    and evaluate the stored tracks (see the module doc)."""
    from ..engine import Engine

    gt = load_video_gt(gt_path)
    if not ks or min(ks) < 1:
        raise ConfigError(f"--k must be positive integers, got {list(ks)}")
    root = Path(media_root) if media_root is not None else Path(gt_path).resolve().parent
    paths = video_paths(gt, root)
    with Engine(config, data_dir, db_url) as engine:
        t0 = time.perf_counter()
        report = engine.index([str(p) for p in paths.values()], progress=progress)
        seconds = time.perf_counter() - t0
        stored = read_stored_tracks(engine.datadir, gt, paths, config)
        tracking = evaluate_tracking(gt, stored.preds, stored.frames, iou_thr)
        retrieval = evaluate_retrieval(engine, gt, stored, templates, ks, iou_thr)
    v = config.video
    return VideoEvalRun(tracking=tracking, retrieval=retrieval, ks=tuple(ks), iou_thr=iou_thr,
                        index_seconds=seconds if report.indexed else None, tracks=len(stored.preds),
                        evaluated_frames=sum(len(f) for f in stored.frames.values()), failures=stored.failures,
                        config={"config": config.name, "preset": config.segment.preset, "crop": config.embed.crop,
                                "video": {"sample_fps": v.sample_fps, "keyframe_every": v.keyframe_every,
                                          "propagator": v.propagator, "n_crops": v.n_crops,
                                          "match_iou": v.match_iou}})


def _fmt(v: float, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def format_video_report(run: VideoEvalRun) -> str:
    """The tracking figures, then track retrieval P@k per category and their mean (plain text)."""
    t = run.tracking
    n_videos = len(t.switches_per_video)
    lines = [f"videos {n_videos}, objects {len(t.objects)}, stored tracks {run.tracks}, "
             f"evaluated frames {run.evaluated_frames}"
             + (", index reused (nothing to index)" if run.index_seconds is None else
                f", indexed in {run.index_seconds:.1f} s"),
             f"  track mIoU (mean over objects)     {_fmt(t.mean_miou)}",
             f"  objects with track mIoU >= 0.5     {_fmt(t.share_above(0.5))}",
             f"  identity switches per clip         {_fmt(t.switches_per_clip, 2)} (max {t.max_switches})",
             f"  fragments per object               {_fmt(t.fragments_per_object, 2)}", ""]
    head = ["category", "objects"] + [f"P@{k}" for k in run.ks]
    rows = [[c.name, str(c.n_objects)] + [_fmt(c.precision_at[k]) for k in run.ks] for c in run.retrieval]
    mean = [f"mean ({len(run.retrieval)})", str(sum(c.n_objects for c in run.retrieval))]
    mean += [_fmt(run.mean_precision_at[k]) for k in run.ks]
    widths = [max(len(r[i]) for r in [head, *rows, mean]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join([cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])

    sep = "-" * len(line(head))
    lines += [line(head), sep, *(line(r) for r in rows), sep, line(mean),
              f"track search by category name over tracks (media=video); hit: spatio-temporal mask IoU >= "
              f"{run.iou_thr:g} with an unmatched object of the category; P@k over min(k, objects)"]
    return "\n".join(lines)


def write_video_json(run: VideoEvalRun, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    """``run.to_json()`` (merged with ``extra``) written atomically to ``path``."""
    from .report import write_payload

    return write_payload({**(extra or {}), **run.to_json()}, path)
