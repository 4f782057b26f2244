"""The scene of one image: labelled objects, their spatial relations and a compact text.

Objects are an image's mask regions, each without stray specks (pieces smaller than 5% of its
largest piece, :meth:`~regionsearch.scene.relations.ObjectMask.without_specks`; the object's
``mask``, box and centroid are of the cleaned mask), after two clean-ups:

* near-duplicates: of two masks with IoU >= ``duplicate_iou`` (0.8) only the better is kept
  (higher SAM quality ``predicted_iou x stability_score``, then higher label score);
* parts: a mask >= ``part_fraction`` (90%) inside a larger mask of the same label is dropped;
  so is one that far inside a larger mask of another label with a higher SAM quality
  (``drop_fragments``): CLIP often names a fragment of a shape differently (half a star reads as
  a triangle), and SAM scores such fragments lower than the whole.

Labels are zero-shot CLIP labels: each region's stored embedding against the vocabulary's text
embeddings (each name's prompt templates averaged, L2-normalised); ``label_score`` is the
softmax probability over the vocabulary of ``label_scale x cosine``.

Everything here is pure apart from :class:`Labeler` (which calls the given text embedder) and
the two entry points at the bottom, which receive the data directory / pipeline as arguments.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InvalidRequestError
from .relations import Geometry, ObjectMask, Relation, measure, relations
from .vocabulary import BUILTIN_NAMES, BUILTIN_TEMPLATES, check_names

#: relations written in ``text`` (each pair once; the others are their converses)
TEXT_PREDICATES: tuple[str, ...] = ("left_of", "above", "inside", "near", "overlaps")
#: at most this many relation sentences in ``text``
TEXT_MAX_RELATIONS = 60
_PHRASE = {"left_of": "left of", "right_of": "right of", "above": "above", "below": "below",
           "near": "near", "inside": "inside", "contains": "containing", "overlaps": "overlapping"}


@dataclass(frozen=True)
class RegionInput:
    """One stored (or freshly segmented) region: ``rle`` COCO RLE, ``bbox`` XYWH pixels;
    ``quality`` = SAM ``predicted_iou x stability_score`` (1 when unknown)."""

    region_id: int | None
    rle: dict[str, Any]
    bbox: tuple[float, float, float, float]
    area: int
    quality: float = 1.0


@dataclass(frozen=True)
class SceneObject:
    region_id: int | None
    label: str
    label_score: float
    bbox: tuple[float, float, float, float]
    area: int
    centroid: tuple[float, float]
    mask: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"region_id": self.region_id, "label": self.label, "label_score": round(float(self.label_score), 4),
                "bbox": [float(v) for v in self.bbox], "area": int(self.area),
                "centroid": [round(float(v), 2) for v in self.centroid],
                "mask": {"size": list(self.mask["size"]), "counts": self.mask["counts"]}}


@dataclass(frozen=True)
class Scene:
    """``image``: ``{"id", "path", "width", "height"}`` (id/path None for an unindexed file);
    ``relations`` index into ``objects``. In JSON a relation names its subject and object by
    region id (None for an image segmented on the fly) and by position in ``objects``
    (``subject_index``, ``object_index``)."""

    image: dict[str, Any]
    objects: list[SceneObject]
    relations: list[Relation]
    text: str

    def to_json(self) -> dict[str, Any]:
        ids = [o.region_id for o in self.objects]
        return {"image": dict(self.image), "objects": [o.to_json() for o in self.objects],
                "relations": [{"subject": ids[r.subject], "predicate": r.predicate, "object": ids[r.object],
                               "subject_index": r.subject, "object_index": r.object} for r in self.relations],
                "text": self.text}


# --------------------------------------------------------------------------- labels

class Labeler:
    """Text embeddings of label vocabularies, cached (a vocabulary is embedded once per process).

    ``embed_texts``: ``Sequence[str] -> (n, dim)`` float32 L2-normalised (a CLIP text tower).
    """

    def __init__(self, embed_texts: Callable[[Sequence[str]], np.ndarray], cache_size: int = 8):
        self.embed_texts = embed_texts
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._size = cache_size
        self._lock = threading.Lock()

    def matrix(self, names: Sequence[str], templates: Sequence[str]) -> np.ndarray:
        """``(len(names), dim)`` float32: each name's templates averaged, L2-normalised."""
        key = (tuple(names), tuple(templates))
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        bad = [t for t in templates if "{}" not in t]
        if bad:
            raise InvalidRequestError(f"a label template must contain {{}} for the name: {bad[0]!r}")
        acc = None
        for t in templates:
            vecs = np.asarray(self.embed_texts([t.format(n) for n in names]), np.float32)
            acc = vecs if acc is None else acc + vecs
        mat = acc / np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-12)
        with self._lock:
            self._cache[key] = mat
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return mat


_LABELERS: "weakref.WeakKeyDictionary[Any, Labeler]" = weakref.WeakKeyDictionary()
_LABELERS_LOCK = threading.Lock()


def labeler_for(embedder: Any) -> Labeler:
    """The process-wide :class:`Labeler` of a text embedder (one vocabulary cache per model)."""
    with _LABELERS_LOCK:
        lab = _LABELERS.get(embedder)
        if lab is None:
            lab = _LABELERS[embedder] = Labeler(embedder.embed_texts)
        return lab


def zero_shot(embeddings: np.ndarray, text: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Best label index and its softmax probability for each row of ``embeddings`` ``(n, dim)``
    against ``text`` ``(V, dim)`` (both L2-normalised)."""
    if len(embeddings) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    logits = scale * (np.asarray(embeddings, np.float64) @ np.asarray(text, np.float64).T)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    idx = p.argmax(axis=1)
    return idx, p[np.arange(len(idx)), idx]


def select_objects(geom: Geometry, quality: np.ndarray, label_idx: np.ndarray, label_score: np.ndarray,
                   duplicate_iou: float = 0.8, part_fraction: float = 0.9, fragments: bool = True) -> list[int]:
    """Indices of the regions that are objects (see the module docstring), in input order.
    ``fragments``: also drop a region >= ``part_fraction`` inside a larger one of *any* label
    whose SAM quality is higher (a piece SAM was less sure of than the whole)."""
    n = len(geom)
    order = sorted(range(n), key=lambda i: (-float(quality[i]), -float(label_score[i]), -int(geom.areas[i]), i))
    iou = geom.iou()
    kept: list[int] = []
    for i in order:
        if geom.areas[i] == 0 or any(iou[i, j] >= duplicate_iou for j in kept):
            continue
        kept.append(i)
    final = [i for i in kept
             if not any(j != i and geom.areas[j] > geom.areas[i] and geom.inside_frac[i, j] >= part_fraction
                        and (label_idx[j] == label_idx[i] or (fragments and quality[j] > quality[i]))
                        for j in kept)]
    return sorted(final)


# --------------------------------------------------------------------------- text

def _where(cx: float, cy: float, w: int, h: int) -> str:
    col = "left" if cx < w / 3 else ("right" if cx >= 2 * w / 3 else "center")
    row = "top" if cy < h / 3 else ("bottom" if cy >= 2 * h / 3 else "middle")
    if row == "middle":
        return "center" if col == "center" else col
    return row if col == "center" else f"{row} {col}"


def object_names(labels: Sequence[str]) -> list[str]:
    """Display names: the label, numbered (``red circle 2``) when it occurs more than once."""
    counts: dict[str, int] = {}
    for lb in labels:
        counts[lb] = counts.get(lb, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for lb in labels:
        if counts[lb] > 1:
            seen[lb] = seen.get(lb, 0) + 1
            out.append(f"{lb} {seen[lb]}")
        else:
            out.append(lb)
    return out


def describe(objects: Sequence[SceneObject], rels: Sequence[Relation], width: int, height: int,
             max_relations: int = TEXT_MAX_RELATIONS) -> str:
    """A compact deterministic description: objects with position and size, then relations
    (``TEXT_PREDICATES`` only: each pair once; several predicates of one pair joined)."""
    if not objects:
        return "0 objects."
    names = object_names([o.label for o in objects])
    total = float(width * height) or 1.0
    parts = [f"{nm} ({_where(o.centroid[0], o.centroid[1], width, height)}, "
             f"{max(1, round(100 * o.area / total)) if o.area else 0}% of image)"
             for nm, o in zip(names, objects)]
    head = f"{len(objects)} object{'s' if len(objects) != 1 else ''}: " + ", ".join(parts) + "."
    by_pair: dict[tuple[int, int], list[str]] = {}
    for r in rels:
        if r.predicate not in TEXT_PREDICATES:
            continue
        if r.predicate in ("near", "overlaps") and r.subject > r.object:
            continue
        by_pair.setdefault((r.subject, r.object), []).append(_PHRASE[r.predicate])
    sentences = []
    for (i, j), phrases in sorted(by_pair.items()):
        joined = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        sentences.append(f"The {names[i]} is {joined} the {names[j]}.")
    more = len(sentences) - max_relations
    if more > 0:
        sentences = sentences[:max_relations] + [f"({more} more relations in the JSON.)"]
    return " ".join([head] + sentences)


# --------------------------------------------------------------------------- scenes

def build_scene(image: dict[str, Any], regions: Sequence[RegionInput], embeddings: np.ndarray,
                names: Sequence[str], text_matrix: np.ndarray, *, label_scale: float = 100.0,
                duplicate_iou: float = 0.8, part_fraction: float = 0.9, fragments: bool = True) -> Scene:
    """The scene of one image from its mask regions and their embeddings ``(n, dim)``.

    ``image`` must carry ``width`` and ``height`` (pixels); objects are ordered by area,
    largest first (ties: region order).
    """
    w, h = int(image["width"]), int(image["height"])
    raw = [ObjectMask.from_rle(r.rle) for r in regions]
    masks = [m.without_specks() for m in raw]
    geom = measure(masks, w, h)
    idx, prob = zero_shot(embeddings, text_matrix, label_scale)
    quality = np.asarray([r.quality for r in regions], np.float64)
    keep = select_objects(geom, quality, idx, prob, duplicate_iou, part_fraction, fragments)
    keep = sorted(keep, key=lambda i: (-int(geom.areas[i]), i))
    sub = geom.subset(keep)
    objects = [SceneObject(region_id=regions[i].region_id, label=str(names[int(idx[i])]), label_score=float(prob[i]),
                           bbox=tuple(float(v) for v in geom.boxes[i]), area=int(geom.areas[i]),
                           centroid=(float(geom.centroids[i, 0]), float(geom.centroids[i, 1])),
                           mask=regions[i].rle if masks[i] is raw[i] else masks[i].to_rle(w, h))
               for i in keep]
    rels = relations(sub)
    return Scene(image=dict(image), objects=objects, relations=rels, text=describe(objects, rels, w, h))


def vocabulary(scene_cfg: Any, labels: Sequence[str] | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(names, templates)``: the given labels (with the config's templates when it has a
    vocabulary of its own, else the built-in ones), else the config's, else the built-in list."""
    templates = tuple(scene_cfg.templates) or BUILTIN_TEMPLATES
    if labels is not None:
        return check_names(labels), templates
    return (check_names(scene_cfg.vocabulary) if scene_cfg.vocabulary else BUILTIN_NAMES), templates


def stored_embeddings(datadir: Any, region_ids: Sequence[int]) -> np.ndarray:
    """The stored CLIP embeddings of ``region_ids`` in a data dir, float32 ``(n, dim)`` in that order."""
    return datadir.store.embeddings(region_ids, datadir.manifest.dim)


def _quality(row: Any) -> float:
    if row.predicted_iou is None or row.stability_score is None:
        return 1.0
    return float(row.predicted_iou) * float(row.stability_score)


def scene_of_indexed(datadir: Any, image_id: int, labeler: Labeler, scene_cfg: Any,
                     labels: Sequence[str] | None = None) -> Scene:
    """The scene of an indexed image from its stored regions and embeddings (no model but the
    text tower runs). ``datadir``: an open :class:`~regionsearch.datadir.DataDir`."""
    rec = datadir.store.get_image(image_id)
    if rec.status != "indexed" or not rec.width or not rec.height:
        raise InvalidRequestError(f"image {image_id} is not indexed ({rec.status}: {rec.error or 'no regions'})")
    rows = [r for r in datadir.regions_of_image(rec.id) if r.kind == "mask"]
    vecs = stored_embeddings(datadir, [r.region_id for r in rows])
    regions = [RegionInput(r.region_id, r.rle, r.bbox, r.area, _quality(r)) for r in rows]
    names, templates = vocabulary(scene_cfg, labels)
    return build_scene({"id": rec.id, "path": rec.path, "width": rec.width, "height": rec.height}, regions, vecs,
                       names, labeler.matrix(names, templates), label_scale=scene_cfg.label_scale,
                       duplicate_iou=scene_cfg.duplicate_iou, part_fraction=scene_cfg.part_fraction,
                       fragments=scene_cfg.drop_fragments)


def scene_of_array(image: np.ndarray, pipeline: Any, labeler: Labeler, scene_cfg: Any,
                   labels: Sequence[str] | None = None, path: str | None = None) -> Scene:
    """The scene of an image that is not indexed (``HWC uint8 RGB``): segmented and embedded on
    the fly with ``pipeline`` (a :class:`~regionsearch.pipeline.Pipeline`); nothing is stored.
    Objects have ``region_id`` None."""
    regs, vecs = pipeline.process(image)
    keep = [i for i, r in enumerate(regs) if r.kind == "mask"]
    regions = [RegionInput(None, regs[i].rle, regs[i].bbox, regs[i].area,
                           float(regs[i].predicted_iou or 1.0) * float(regs[i].stability_score or 1.0)) for i in keep]
    names, templates = vocabulary(scene_cfg, labels)
    h, w = image.shape[:2]
    return build_scene({"id": None, "path": path, "width": int(w), "height": int(h)}, regions,
                       vecs[keep] if keep else np.zeros((0, vecs.shape[1] if vecs.ndim == 2 else 1), np.float32),
                       names, labeler.matrix(names, templates), label_scale=scene_cfg.label_scale,
                       duplicate_iou=scene_cfg.duplicate_iou, part_fraction=scene_cfg.part_fraction,
                       fragments=scene_cfg.drop_fragments)
