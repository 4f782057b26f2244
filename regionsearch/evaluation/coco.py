"""Loading of COCO "instances" annotation files into typed, validated structures.

Conventions (as everywhere in the project): boxes are ``XYWH`` pixels of the original image, masks
are COCO RLE dicts ``{"size": [h, w], "counts": "<str>"}``. Polygons and uncompressed RLE in the
file are converted to compressed RLE once, at load time, with ``pycocotools``.

Only ``pycocotools`` and the standard library are used; nothing here imports torch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ..errors import ConfigError, NotFoundError
from ..masks import rle_json

logger = logging.getLogger(__name__)

_REQUIRED_KEYS = ("images", "annotations", "categories")


@dataclass(frozen=True)
class Category:
    """One COCO category."""

    id: int
    name: str
    supercategory: str | None = None


@dataclass(frozen=True)
class CocoImage:
    """One COCO image: ``width`` and ``height`` in pixels, ``file_name`` relative to the image dir."""

    id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class GtInstance:
    """One ground-truth instance.

    ``rle`` is compressed COCO RLE with ``str`` counts (``None`` in a box-only dataset), ``bbox`` is
    XYWH pixels, ``area`` is the file's ``area`` (pixels; computed from the mask, else the box,
    when the file omits it). ``iscrowd`` instances use COCO crowd IoU semantics; ``ignore`` is the
    optional COCO ``ignore`` flag. Both kinds are excluded from the ground-truth count and a
    region matching them is dropped from the ranking (see :func:`~.metrics.match_ranked`).
    """

    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    area: float
    iscrowd: bool = False
    rle: dict[str, Any] | None = field(default=None, repr=False)
    ignore: bool = False

    @property
    def ignored(self) -> bool:
        """True for crowd or ``ignore`` instances: they neither count as ground truth nor as misses."""
        return self.iscrowd or self.ignore


@dataclass(frozen=True)
class CocoDataset:
    """A validated COCO instances file.

    ``instances`` maps every image id (including images without annotations) to its ground-truth
    instances in file order; ``has_masks`` is False for a box-only dataset (evaluate with box IoU).
    """

    categories: tuple[Category, ...]
    images: Mapping[int, CocoImage]
    instances: Mapping[int, tuple[GtInstance, ...]]
    has_masks: bool
    source: str = "<memory>"

    def category(self, category_id: int) -> Category:
        """The category with this id; :class:`NotFoundError` if there is none."""
        for cat in self.categories:
            if cat.id == category_id:
                return cat
        raise NotFoundError(f"category id {category_id} is not in {self.source}")

    def category_by_name(self, name: str) -> Category:
        """The category with this name; :class:`NotFoundError` listing the names if there is none."""
        for cat in self.categories:
            if cat.name == name:
                return cat
        names = ", ".join(sorted(c.name for c in self.categories))
        raise NotFoundError(f"category {name!r} is not in {self.source}; its categories are: {names}")

    def image_by_file_name(self) -> dict[str, CocoImage]:
        """Images keyed by their ``file_name`` (to map indexed paths back to COCO image ids)."""
        return {img.file_name: img for img in self.images.values()}

    def gts_by_image(self, category_id: int | None = None) -> dict[int, tuple[GtInstance, ...]]:
        """Instances per image id, optionally only those of one category (every image is a key)."""
        if category_id is None:
            return dict(self.instances)
        return {
            image_id: tuple(gt for gt in gts if gt.category_id == category_id)
            for image_id, gts in self.instances.items()
        }

    def n_gt(self, category_id: int) -> int:
        """Number of counted (non-crowd, non-ignored) instances of a category."""
        return sum(
            1 for gts in self.instances.values() for gt in gts
            if gt.category_id == category_id and not gt.ignored
        )


def load_coco(path: str | Path) -> CocoDataset:
    """Read and validate a COCO instances json file (``ConfigError`` with one sentence if unusable)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"COCO annotations file {str(p)!r} does not exist; pass the path of an instances json")
    if not p.is_file():
        raise ConfigError(f"COCO annotations path {str(p)!r} is not a file; pass the path of an instances json")
    try:
        with p.open("r", encoding="utf-8") as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"COCO annotations file {str(p)!r} is not valid JSON ({exc})") from exc
    return parse_coco(data, source=str(p))


def dataset_has_masks(data: Mapping[str, Any]) -> bool:
    """Whether a raw COCO dict carries masks: True if any annotation has a non-empty
    ``segmentation``; False for a box-only dataset (no annotation has one)."""
    anns = data.get("annotations") or []
    return any(isinstance(a, Mapping) and _has_segmentation(a.get("segmentation")) for a in anns)


def parse_coco(data: Any, source: str = "<memory>") -> CocoDataset:
    """Validate a decoded COCO instances dict and convert it to a :class:`CocoDataset`.

    Polygons and uncompressed RLE become compressed RLE (str counts). In a dataset with masks an
    annotation without a segmentation gets the rectangle of its box as mask (logged once).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source} is not a COCO instances file: the top level is not a JSON object")
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        raise ConfigError(
            f"{source} is not a COCO instances file: it lacks the key(s) {', '.join(missing)}"
        )
    for key in _REQUIRED_KEYS:
        if not isinstance(data[key], list):
            raise ConfigError(f"{source} is not a COCO instances file: {key!r} is not a list")

    categories = _parse_categories(data["categories"], source)
    images = _parse_images(data["images"], source)
    cat_ids = {c.id for c in categories}
    has_masks = dataset_has_masks(data)

    per_image: dict[int, list[GtInstance]] = {image_id: [] for image_id in images}
    n_box_fallback = 0
    seen_ann_ids: set[int] = set()
    for i, ann in enumerate(data["annotations"]):
        inst, box_fallback = _parse_annotation(i, ann, images, cat_ids, has_masks, seen_ann_ids, source)
        per_image[inst.image_id].append(inst)
        n_box_fallback += box_fallback
    if n_box_fallback:
        logger.warning("%s: %d annotation(s) have no segmentation; their box rectangle is used as mask",
                       source, n_box_fallback)
    return CocoDataset(
        categories=tuple(categories),
        images=images,
        instances={k: tuple(v) for k, v in per_image.items()},
        has_masks=has_masks,
        source=source,
    )


def _parse_annotation(i: int, ann: Any, images: Mapping[int, Any], cat_ids: set[int], has_masks: bool,
                      seen_ann_ids: set[int], source: str) -> tuple[GtInstance, bool]:
    """Annotation ``#i`` as a :class:`GtInstance`, and whether its box stood in for a missing mask."""
    if not isinstance(ann, Mapping):
        raise ConfigError(f"{source}: annotation #{i} is not a JSON object")
    ann_id = _int_field(ann, "id", f"annotation #{i}", source, default=i)
    where = f"annotation id {ann_id}"
    if ann_id in seen_ann_ids:
        raise ConfigError(f"{source}: annotation id {ann_id} appears more than once")
    seen_ann_ids.add(ann_id)
    image_id = _int_field(ann, "image_id", where, source)
    if image_id not in images:
        raise ConfigError(f"{source}: {where} refers to image id {image_id}, which is not in 'images'")
    category_id = _int_field(ann, "category_id", where, source)
    if category_id not in cat_ids:
        raise ConfigError(
            f"{source}: {where} refers to category id {category_id}, which is not in 'categories'"
        )
    img = images[image_id]
    iscrowd = bool(ann.get("iscrowd", 0))
    ignore = bool(ann.get("ignore", 0))
    rle: dict[str, Any] | None = None
    box_fallback = False
    seg = ann.get("segmentation")
    bbox = _parse_bbox(ann.get("bbox"), where, source)
    if has_masks:
        if _has_segmentation(seg):
            rle = _to_rle(seg, img, where, source)
        elif bbox is not None:
            rle = _box_rle(bbox, img)
            box_fallback = True
        else:
            raise ConfigError(f"{source}: {where} has neither a segmentation nor a bbox")
    if bbox is None:
        if rle is None:
            raise ConfigError(f"{source}: {where} has no bbox in a box-only dataset")
        bbox = tuple(float(v) for v in mask_utils.toBbox(rle))  # type: ignore[assignment]
    area_raw = ann.get("area")
    if area_raw is None:
        area = float(mask_utils.area(rle)) if rle is not None else float(bbox[2] * bbox[3])
    else:
        try:
            area = float(area_raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {where} has a non-numeric area {area_raw!r}") from exc
    return GtInstance(id=ann_id, image_id=image_id, category_id=category_id, bbox=bbox, area=area,
                      iscrowd=iscrowd, rle=rle, ignore=ignore), box_fallback


def _parse_categories(raw: Sequence[Any], source: str) -> list[Category]:
    out: list[Category] = []
    seen: set[int] = set()
    for i, c in enumerate(raw):
        if not isinstance(c, Mapping):
            raise ConfigError(f"{source}: category #{i} is not a JSON object")
        cid = _int_field(c, "id", f"category #{i}", source)
        if cid in seen:
            raise ConfigError(f"{source}: category id {cid} appears more than once")
        seen.add(cid)
        name = c.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{source}: category id {cid} has no name")
        sup = c.get("supercategory")
        out.append(Category(id=cid, name=name, supercategory=sup if isinstance(sup, str) else None))
    if not out:
        raise ConfigError(f"{source} has no categories; a COCO instances file needs at least one")
    return out


def _parse_images(raw: Sequence[Any], source: str) -> dict[int, CocoImage]:
    out: dict[int, CocoImage] = {}
    for i, im in enumerate(raw):
        if not isinstance(im, Mapping):
            raise ConfigError(f"{source}: image #{i} is not a JSON object")
        iid = _int_field(im, "id", f"image #{i}", source)
        where = f"image id {iid}"
        if iid in out:
            raise ConfigError(f"{source}: image id {iid} appears more than once")
        fname = im.get("file_name")
        if not isinstance(fname, str) or not fname:
            raise ConfigError(f"{source}: {where} has no file_name")
        width = _int_field(im, "width", where, source)
        height = _int_field(im, "height", where, source)
        if width <= 0 or height <= 0:
            raise ConfigError(f"{source}: {where} has a non-positive size {width}x{height}")
        out[iid] = CocoImage(id=iid, file_name=fname, width=width, height=height)
    return out


def _int_field(obj: Mapping[str, Any], key: str, where: str, source: str, default: int | None = None) -> int:
    value = obj.get(key, default)
    if value is None:
        raise ConfigError(f"{source}: {where} has no {key!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ConfigError(f"{source}: {where} has a non-integer {key!r} ({value!r})")
    return int(value)


def _parse_bbox(raw: Any, where: str, source: str) -> tuple[float, float, float, float] | None:
    if raw is None or (isinstance(raw, list) and not raw):
        return None
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        raise ConfigError(f"{source}: {where} has a bbox that is not [x, y, width, height]")
    try:
        x, y, w, h = (float(v) for v in raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {where} has a non-numeric bbox {raw!r}") from exc
    if w < 0 or h < 0:
        raise ConfigError(f"{source}: {where} has a bbox with negative width or height")
    return (x, y, w, h)


def _has_segmentation(seg: Any) -> bool:
    # Anything but a missing / empty value counts, so a malformed one reaches _to_rle and is refused.
    return not (seg is None or (isinstance(seg, (list, tuple, Mapping, str)) and len(seg) == 0))


def _to_rle(seg: Any, img: CocoImage, where: str, source: str) -> dict[str, Any]:
    """Polygon list, uncompressed RLE or compressed RLE -> compressed RLE with str counts."""
    h, w = img.height, img.width
    if isinstance(seg, list):
        polys = []
        for poly in seg:
            # pycocotools reads a 4-number list as a *box*, so short polygons must be refused here.
            if (not isinstance(poly, (list, tuple)) or len(poly) < 6 or len(poly) % 2
                    or not all(isinstance(v, (int, float)) for v in poly)):
                raise ConfigError(
                    f"{source}: {where} has a polygon that is not a flat list of at least 3 x,y pairs"
                )
            polys.append([float(v) for v in poly])
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
    elif isinstance(seg, Mapping):
        size = seg.get("size")
        if not isinstance(size, (list, tuple)) or len(size) != 2 or list(size) != [h, w]:
            raise ConfigError(
                f"{source}: {where} has an RLE of size {size!r}, but its image is {h}x{w} (height x width)"
            )
        counts = seg.get("counts")
        if counts is None:
            raise ConfigError(f"{source}: {where} has an RLE without counts")
        if isinstance(counts, list):
            if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != h * w:
                raise ConfigError(
                    f"{source}: {where} has an uncompressed RLE whose counts do not sum to {h}x{w} pixels"
                )
            rle = mask_utils.frPyObjects({"size": [h, w], "counts": list(counts)}, h, w)
        elif isinstance(counts, (str, bytes)):
            rle = {"size": [h, w], "counts": counts}
        else:
            raise ConfigError(f"{source}: {where} has an RLE whose counts are neither a list nor a string")
    else:
        raise ConfigError(f"{source}: {where} has a segmentation that is neither polygons nor RLE")
    return _normalise_rle(rle)


def _box_rle(bbox: tuple[float, float, float, float], img: CocoImage) -> dict[str, Any]:
    rle = mask_utils.frPyObjects(np.asarray([bbox], dtype=np.float64), img.height, img.width)[0]
    return _normalise_rle(rle)


def _normalise_rle(rle: Mapping[str, Any]) -> dict[str, Any]:
    return rle_json(rle)
