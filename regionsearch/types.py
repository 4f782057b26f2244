"""Plain data types shared by every layer. No torch import here (``import regionsearch`` stays cheap).

Conventions used throughout the project:

* images are ``HWC uint8 RGB`` numpy arrays;
* boxes are ``XYWH`` in pixels of the original image (floats allowed);
* masks travel as COCO RLE dicts ``{"size": [h, w], "counts": "<str>"}``;
* embeddings are ``float32`` and L2-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

RegionKind = Literal["mask", "whole"]


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


@dataclass(frozen=True)
class SearchHit:
    """One ranked search result; :meth:`to_json` is the contract shared by the CLI and the API.

    ``relation`` is set by relational queries only: ``{"predicate", "object": {"region_id",
    "bbox", "score"}}`` (plus ``"scene": true`` when the object is the whole image); the JSON
    of other hits has no ``relation`` key.
    """

    region_id: int
    image_id: int
    image_path: str
    score: float
    bbox: tuple[float, float, float, float]
    area: int
    mask: dict[str, Any]
    predicted_iou: float | None
    stability_score: float | None
    kind: RegionKind
    relation: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        doc = {
            "region_id": self.region_id,
            "image_id": self.image_id,
            "image_path": self.image_path,
            "score": float(self.score),
            "bbox": [float(v) for v in self.bbox],
            "area": int(self.area),
            "mask": {"size": list(self.mask["size"]), "counts": self.mask["counts"]},
            "predicted_iou": self.predicted_iou,
            "stability_score": self.stability_score,
            "kind": self.kind,
        }
        if self.relation is not None:
            doc["relation"] = self.relation
        return doc
