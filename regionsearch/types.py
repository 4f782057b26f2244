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

    def to_hit(self, score: float) -> "SearchHit":
        return SearchHit(**{f.name: getattr(self, f.name) for f in fields(RegionRecord)}, score=float(score))

    def to_json(self) -> dict[str, Any]:
        """The API's region schema (``RegionOut``); ``mask`` is the COCO RLE."""
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
        region = super().to_json()
        head = {k: region.pop(k) for k in ("region_id", "image_id", "image_path")}
        del region["image_width"], region["image_height"]
        doc = head | {"score": float(self.score)} | region
        if self.relation is not None:
            doc["relation"] = self.relation
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "SearchHit":
        """The hit :meth:`to_json` wrote (e.g. one of the API's answers); the image size, which the
        hit schema leaves out, is None."""
        mask = doc["mask"]
        return cls(region_id=int(doc["region_id"]), image_id=int(doc["image_id"]), image_path=str(doc["image_path"]),
                   bbox=tuple(float(v) for v in doc["bbox"]), area=int(doc["area"]),  # type: ignore[arg-type]
                   rle={"size": list(mask["size"]), "counts": mask["counts"]}, predicted_iou=doc.get("predicted_iou"),
                   stability_score=doc.get("stability_score"), kind=doc["kind"], image_width=None, image_height=None,
                   score=float(doc["score"]), relation=doc.get("relation"))
