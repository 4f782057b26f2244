"""Plain data types shared by every layer. No torch import here (``import regionsearch`` stays cheap).

Conventions used throughout the project:

* images are ``HWC uint8 RGB`` numpy arrays;
* boxes are ``XYWH`` in pixels of the original image (floats allowed);
* masks travel as COCO RLE dicts ``{"size": [h, w], "counts": "<str>"}``;
* embeddings are ``float32`` and L2-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

#: what the OpenAPI/JSON-Schema pattern ``\S`` (ECMA-262) counts as white space, so "empty" means the
#: same to the API's validation as to the schema its clients read
JSON_SCHEMA_SPACE = "\t\n\x0b\x0c\r \u00a0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + \
    "\u2028\u2029\u202f\u205f\u3000\ufeff"

if TYPE_CHECKING:
    import numpy as np

#: ``track``: the searchable row of a video object track (see :class:`TrackInfo`)
RegionKind = Literal["mask", "whole", "track"]


@dataclass(frozen=True)
class Region:
    """One region of one image, as produced by a segmenter.

    ``bbox`` is XYWH pixels, ``area`` is the mask's pixel count, ``rle`` is COCO RLE with a
    ``str`` counts field. ``predicted_iou`` and ``stability_score`` are SAM's scores (``None``
    for the whole-image region).
    """

    bbox: tuple[float, float, float, float]
    area: int
    rle: dict[str, Any]
    predicted_iou: float | None = None
    stability_score: float | None = None
    kind: RegionKind = "mask"


@dataclass(frozen=True)
class MaskCandidate:
    """A prompted-segmentation result: a mask as RLE, its score, its box (XYWH pixels) and
    the low-resolution logits (``(1, 256, 256)``-style float32 array for SAM 2.1 at 1024 px) that
    can be fed back as a mask prompt."""

    rle: dict[str, Any]
    score: float
    bbox: tuple[float, float, float, float]
    area: int
    low_res_logits: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ImageRecord:
    """Metadata of one indexed (or failed) image."""

    id: int
    path: str
    sha256: str
    width: int | None
    height: int | None
    status: str
    error: str | None = None
    pipeline_key: str | None = None


@dataclass
class ImageResult:
    """Everything the pipeline produced for one image, ready for one commit: ``path`` as stored
    (see ``imageio.path_to_db``), ``embeddings`` float32 ``(len(regions), dim)``, L2-normalised, row
    ``i`` belongs to ``regions[i]``; ``file_size`` in bytes and ``file_mtime`` in seconds since the
    epoch, of the file when it was read (None when unknown)."""

    path: str
    sha256: str
    width: int
    height: int
    pipeline_key: str
    regions: list[Region]
    embeddings: "np.ndarray"
    file_size: int | None = None
    file_mtime: float | None = None


@dataclass(frozen=True)
class TrackInfo:
    """What a track region adds to its :class:`RegionRecord`: the video (``video_id`` is its row in
    the images table, ``video_path`` its stored path, ``fps`` its average frame rate,
    ``duration_s`` seconds or None) and the track's range. Frames count the video's own decoded
    frames from 0; times are presentation times in seconds. ``best_frame``/``best_t``: the frame
    whose mask and box the region row holds (the largest, best-scored view of the object)."""

    video_id: int
    video_path: str
    fps: float
    duration_s: float | None
    frame_start: int
    frame_end: int
    t_start: float
    t_end: float
    best_frame: int
    best_t: float

    def video_json(self) -> dict[str, Any]:
        return {"id": self.video_id, "path": self.video_path, "fps": float(self.fps),
                "duration_s": None if self.duration_s is None else float(self.duration_s)}


@dataclass(frozen=True)
class TrackFrameRecord:
    """One stored frame of a track: ``frame`` (decoded frame number from 0), ``t`` (seconds),
    ``bbox`` (XYWH pixels), ``rle`` (COCO RLE), ``area`` (pixels), ``score`` (predicted IoU or None)."""

    frame: int
    t: float
    bbox: tuple[float, float, float, float]
    rle: dict[str, Any]
    area: int
    score: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"frame": int(self.frame), "t": float(self.t), "bbox": [float(v) for v in self.bbox],
                "mask": {"size": list(self.rle["size"]), "counts": self.rle["counts"]}}


@dataclass
class VideoResult:
    """Everything indexing produced for one video, ready for one commit (like :class:`ImageResult`):
    the video's ``fps`` (average), ``duration_s``, ``n_frames`` (decoded frames), ``sample_fps``,
    ``rotation`` (degrees applied), ``codec``; ``width``/``height`` of the upright frames;
    ``tracks``: :class:`~regionsearch.video.tracks.Track` objects with ``embedding`` set (tracks
    without one are not stored)."""

    path: str
    sha256: str
    width: int
    height: int
    pipeline_key: str
    fps: float
    duration_s: float | None
    n_frames: int | None
    sample_fps: float
    rotation: int
    codec: str
    tracks: list[Any]
    file_size: int | None = None
    file_mtime: float | None = None

    @property
    def stored_tracks(self) -> list[Any]:
        """The tracks that are stored: those with frames and an embedding."""
        return [t for t in self.tracks if t.embedding is not None and t.frames]

    @property
    def regions(self) -> list[Region]:
        """One region per stored track: its best frame (box, area, mask, predicted IoU); these are
        the ``regions`` rows that carry the tracks' vector ids."""
        out = []
        for t in self.stored_tracks:
            b = t.best_frame
            out.append(Region(bbox=tuple(float(v) for v in b.bbox), area=int(b.area), rle=b.rle,
                              predicted_iou=float(b.score), kind="mask"))
        return out

    @property
    def embeddings(self) -> "np.ndarray":
        """float32 ``(len(regions), dim)``: the stored tracks' vectors, L2-normalised."""
        import numpy as np

        vecs = [np.asarray(t.embedding, np.float32) for t in self.stored_tracks]
        return np.stack(vecs) if vecs else np.zeros((0, 0), np.float32)


@dataclass(frozen=True)
class RegionRecord:
    """One stored region joined with its image: the one region type from the store to the API
    (``GET /v1/regions/{id}`` is :meth:`to_json`; a search hit is one plus its score).

    ``bbox`` is XYWH pixels, ``rle`` is COCO RLE ``{"size": [h, w], "counts": str}``,
    ``image_width``/``image_height`` are the image's size in pixels.
    """

    region_id: int
    image_id: int
    image_path: str
    bbox: tuple[float, float, float, float]
    area: int
    rle: dict[str, Any]
    predicted_iou: float | None
    stability_score: float | None
    kind: RegionKind
    image_width: int | None
    image_height: int | None
    #: set for ``kind == "track"`` (a video object track; the region row holds its best frame)
    track: TrackInfo | None = field(default=None, kw_only=True)

    def to_hit(self, score: float) -> "SearchHit":
        return SearchHit(**{f.name: getattr(self, f.name) for f in fields(RegionRecord)}, score=float(score))

    def to_json(self) -> dict[str, Any]:
        """The API's region schema (``RegionOut``); ``mask`` is the COCO RLE (a track's region is its
        best frame; :meth:`track_json` is the track schema)."""
        return {
            "region_id": self.region_id,
            "image_id": self.image_id,
            "image_path": self.image_path,
            "bbox": [float(v) for v in self.bbox],
            "area": int(self.area),
            "mask": {"size": list(self.rle["size"]), "counts": self.rle["counts"]},
            "predicted_iou": self.predicted_iou,
            "stability_score": self.stability_score,
            "kind": self.kind,
            "image_width": self.image_width,
            "image_height": self.image_height,
        }

    def track_json(self, score: float | None = None,
                   frames: "list[TrackFrameRecord] | None" = None) -> dict[str, Any]:
        """A track: ``{"kind": "track", "region_id", ["score",] "video": {"id", "path", "fps",
        "duration_s"}, "t_start", "t_end", "frame_start", "frame_end", "best_frame": {"frame", "t",
        "bbox", "mask"}}`` (the hit schema of ``search``), plus ``"frames": [{"frame", "t", "bbox",
        "mask"}, ...]`` when ``frames`` are given (``GET /v1/tracks/{id}``)."""
        tr = self.track
        if tr is None:
            raise ValueError(f"region {self.region_id} is not a track")
        doc: dict[str, Any] = {"kind": "track", "region_id": self.region_id}
        if score is not None:
            doc["score"] = float(score)
        best = TrackFrameRecord(tr.best_frame, tr.best_t, self.bbox, self.rle, self.area)
        doc |= {"video": tr.video_json(), "t_start": float(tr.t_start), "t_end": float(tr.t_end),
                "frame_start": int(tr.frame_start), "frame_end": int(tr.frame_end), "best_frame": best.to_json()}
        if frames is not None:
            doc["frames"] = [f.to_json() for f in frames]
        return doc


@dataclass(frozen=True)
class SearchHit(RegionRecord):
    """One ranked search result: a region record and its similarity ``score`` (cosine, higher is
    better); :meth:`to_json` is the hit schema shared by the CLI and the API.

    ``relation`` is set by relational queries only: ``{"predicate", "object": {"region_id",
    "bbox", "score"}}`` (plus ``"scene": true`` when the object is the whole image); the JSON
    of other hits has no ``relation`` key.
    """

    score: float
    relation: dict[str, Any] | None = None

    @property
    def mask(self) -> dict[str, Any]:
        """The region's COCO RLE (the hit schema's name for it)."""
        return self.rle

    def to_json(self) -> dict[str, Any]:
        """Image regions: ``kind`` is ``"region"`` and ``region_kind`` says ``mask`` or ``whole``;
        tracks: :meth:`RegionRecord.track_json` with the score."""
        if self.track is not None:
            return self.track_json(self.score)
        region = super().to_json()
        region["region_kind"] = region.pop("kind")
        head = {k: region.pop(k) for k in ("region_id", "image_id", "image_path")}
        del region["image_width"], region["image_height"]
        doc = {"kind": "region"} | head | {"score": float(self.score)} | region
        if self.relation is not None:
            doc["relation"] = self.relation
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "SearchHit":
        """The hit :meth:`to_json` wrote (e.g. one of the API's answers), a region or a track; the
        image size, which the hit schema leaves out, is None."""
        if doc.get("kind") == "track":
            return cls._track_from_json(doc)
        mask = doc["mask"]
        return cls(region_id=int(doc["region_id"]), image_id=int(doc["image_id"]), image_path=str(doc["image_path"]),
                   bbox=tuple(float(v) for v in doc["bbox"]), area=int(doc["area"]),  # type: ignore[arg-type]
                   rle={"size": list(mask["size"]), "counts": mask["counts"]}, predicted_iou=doc.get("predicted_iou"),
                   stability_score=doc.get("stability_score"), kind=doc.get("region_kind", doc["kind"]),
                   image_width=None, image_height=None, score=float(doc["score"]), relation=doc.get("relation"))

    @classmethod
    def _track_from_json(cls, doc: dict[str, Any]) -> "SearchHit":
        """A track hit (:meth:`RegionRecord.track_json`) back as a hit on its best frame."""
        video, best = doc["video"], doc["best_frame"]
        mask = best["mask"]
        info = TrackInfo(video_id=int(video["id"]), video_path=str(video["path"]), fps=float(video["fps"]),
                         duration_s=video.get("duration_s"), frame_start=int(doc["frame_start"]),
                         frame_end=int(doc["frame_end"]), t_start=float(doc["t_start"]), t_end=float(doc["t_end"]),
                         best_frame=int(best["frame"]), best_t=float(best["t"]))
        rle = {"size": list(mask["size"]), "counts": mask["counts"]}
        return cls(region_id=int(doc["region_id"]), image_id=info.video_id, image_path=info.video_path,
                   bbox=tuple(float(v) for v in best["bbox"]), area=_rle_area(rle),  # type: ignore[arg-type]
                   rle=rle, predicted_iou=None, stability_score=None, kind="track", image_width=None,
                   image_height=None, score=float(doc["score"]), track=info)


def _rle_area(rle: dict[str, Any]) -> int:
    """Pixels of a COCO RLE (compressed string counts or a list of run lengths)."""
    from .masks import rle_area

    return int(rle_area(rle))
