"""Prompted (interactive) segmentation with SAM 2.1: points, boxes and mask prompts.

Built on sam2's ``SAM2ImagePredictor``: ``set_image`` computes the image features once
(``predictor._features`` and ``predictor._orig_hw``) and the prompt-independent part of the mask
decoder (:class:`~.decoder.SharedWorkDecoder`); every later prompt on the same image runs only
the prompt encoder and the prompt-dependent part of the decoder. Feature sets live in an LRU cache keyed by a content
hash of the decoded pixels, so a second prompt on the same image (by id or re-uploaded) skips the
image encoder. One predictor is shared; a lock guards its per-image state, which is swapped in
from the cache before each prediction.

Low-resolution mask logits of every returned candidate are kept in a second LRU cache under an
opaque handle (hex string), so a client can refine a mask by passing the handle back as the mask
prompt without shipping the logits around.

Coordinates: points are ``(x, y)`` pixels of the original image; boxes are ``XYXY`` pixels;
returned boxes are ``XYWH`` pixels; masks are COCO RLE at the original resolution.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..cache import LRUCache
from ..errors import InvalidRequestError, NotFoundError
from ..masks import encode_rle, mask_to_bbox
from ..types import MaskCandidate


def image_key(image: np.ndarray) -> str:
    """Content hash of an ``HWC uint8 RGB`` image (shape + pixels), hex sha256."""
    h = hashlib.sha256()
    h.update(repr(tuple(image.shape)).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


@dataclass(frozen=True)
class ImageEmbeddingHandle:
    """Refers to one cached feature set. ``cached``: the features were reused, not computed;
    ``seconds``: time spent in ``set_image`` (0 when cached)."""

    key: str
    height: int
    width: int
    cached: bool
    seconds: float = 0.0


@dataclass
class _Entry:
    features: dict[str, Any]
    orig_hw: list[tuple[int, int]]
    image: np.ndarray = field(repr=False)
    context: Any = field(default=None, repr=False)  # the decoder's per-image ImageContext


@dataclass(frozen=True)
class _Logits:
    image_key: str
    logits: np.ndarray  # (1, h, w) float32


class PromptSegmenter:
    """``set_image`` + ``predict`` over one shared ``SAM2ImagePredictor`` with cached features.

    ``cache_size``: image feature sets kept (LRU); ``logits_cache_size``: mask-logit handles kept;
    ``dtype``: the mask decoder's dtype (``segment.dtype``: auto|float32|bfloat16|float16);
    ``encoder_dtype``: the image encoder's (``segment.encoder_dtype``).
    """

    def __init__(self, model: Any, cache_size: int = 16, logits_cache_size: int = 256,
                 mask_threshold: float = 0.0, dtype: str = "auto", encoder_dtype: str = "float32"):
        from ..models.sam import make_image_predictor
        from .decoder import SharedWorkDecoder, resolve_dtype

        self.model = model
        self.predictor = make_image_predictor(model, mask_threshold=mask_threshold)
        self.decoder = SharedWorkDecoder(model, resolve_dtype(dtype, self.predictor.device))
        self.encoder_dtype = resolve_dtype(encoder_dtype, self.predictor.device)
        self.cache: LRUCache[str, _Entry] = LRUCache(cache_size)
        self.logits: LRUCache[str, _Logits] = LRUCache(logits_cache_size)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def low_res_size(self) -> int:
        """Side of the low-resolution logits (``image_size / 4``: 256 for a 1024-px model)."""
        return int(self.model.image_size) // 4

    # ------------------------------------------------------------------ images
    def set_image(self, image: np.ndarray, key: str | None = None) -> ImageEmbeddingHandle:
        """Compute (or reuse) the features of an ``HWC uint8 RGB`` image."""
        import torch

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidRequestError("the image must be HWC uint8 RGB")
        key = key or image_key(image)
        h, w = image.shape[:2]
        if self.cache.get(key) is not None:
            self.hits += 1
            return ImageEmbeddingHandle(key, h, w, cached=True)
        t0 = time.perf_counter()
        with self._lock, torch.inference_mode():
            entry = self.cache.get(key)  # computed by a concurrent caller meanwhile
            if entry is None:
                from .decoder import encode_image

                feats = encode_image(self.predictor, image, self.encoder_dtype)
                ctx = self.decoder.prepare(feats["image_embed"][-1:], [lvl[-1:] for lvl in feats["high_res_feats"]])
                entry = _Entry(feats, list(self.predictor._orig_hw), image, ctx)
                self.predictor.reset_predictor()
                self.cache.put(key, entry)
                self.misses += 1
                return ImageEmbeddingHandle(key, h, w, cached=False, seconds=time.perf_counter() - t0)
        self.hits += 1
        return ImageEmbeddingHandle(key, h, w, cached=True)

    def handle(self, key: str) -> ImageEmbeddingHandle:
        """The handle of an image whose features are still cached (``NotFoundError`` if evicted)."""
        entry = self.cache.get(key)
        if entry is None:
            raise NotFoundError(f"image_key {key!r} is not (or no longer) cached; send the image again")
        h, w = entry.orig_hw[0]
        self.hits += 1
        return ImageEmbeddingHandle(key, int(h), int(w), cached=True)

    def cached_image(self, key: str) -> np.ndarray:
        """The pixels of a cached image (``NotFoundError`` if evicted)."""
        entry = self.cache.get(key)
        if entry is None:
            raise NotFoundError(f"image_key {key!r} is not (or no longer) cached; send the image again")
        return entry.image

    def logits_for(self, handle_id: str, key: str) -> np.ndarray:
        """The stored low-res logits of ``handle_id``; they must belong to image ``key``."""
        item = self.logits.get(handle_id)
        if item is None:
            raise NotFoundError(f"mask_input {handle_id!r} is unknown or expired; run the prompt again "
                                f"without mask_input")
        if item.image_key != key:
            raise InvalidRequestError("mask_input belongs to another image")
        return item.logits

    # ------------------------------------------------------------------ prompts
    def validate(self, handle: ImageEmbeddingHandle, points: Sequence[Sequence[float]] | None,
                 labels: Sequence[int] | None, boxes: Sequence[Sequence[float]] | None) -> None:
        """Raise :class:`InvalidRequestError` for prompts SAM cannot take."""
        pts = list(points or [])
        lbl = list(labels or [])
        if len(pts) != len(lbl):
            raise InvalidRequestError(f"points and labels must have the same length ({len(pts)} points, "
                                      f"{len(lbl)} labels)")
        for p in pts:
            if len(p) != 2 or not all(np.isfinite(v) for v in p):
                raise InvalidRequestError("each point must be [x, y] with finite pixel coordinates")
        if any(int(v) not in (0, 1) for v in lbl):
            raise InvalidRequestError("labels must be 1 (foreground) or 0 (background)")
        for b in boxes or []:
            if len(b) != 4 or not all(np.isfinite(v) for v in b):
                raise InvalidRequestError("each box must be [x0, y0, x1, y1] with finite pixel coordinates")
            x0, y0, x1, y1 = b
            if x1 <= x0 or y1 <= y0:
                raise InvalidRequestError("a box must have x1 > x0 and y1 > y0 (XYXY pixels)")
        if boxes and len(boxes) > 1 and pts:
            raise InvalidRequestError("points can be combined with one box only, not several")

    def predict(self, handle: ImageEmbeddingHandle, *, points: Sequence[Sequence[float]] | None = None,
                labels: Sequence[int] | None = None, box: Sequence[Sequence[float]] | Sequence[float] | None = None,
                mask: np.ndarray | None = None, multimask: bool = True) -> list[list[MaskCandidate]]:
        """Masks for one prompt per box (or one prompt when there is no box or a single box).

        Returns one list of candidates per prompt, each sorted by score (best first): three when
        ``multimask`` else one. ``mask`` is a low-res logits array ``(1, s, s)`` from an earlier
        call (see :attr:`low_res_size`).
        """
        import torch

        boxes = _as_boxes(box)
        self.validate(handle, points, labels, boxes)
        if not points and not boxes and mask is None:
            raise InvalidRequestError("give at least one prompt: points, box or mask_input")
        s = self.low_res_size
        if mask is not None:
            mask = np.asarray(mask, dtype=np.float32)
            if mask.shape == (s, s):
                mask = mask[None]
            if mask.shape != (1, s, s):
                raise InvalidRequestError(f"mask_input must have shape (1, {s}, {s}), got {tuple(mask.shape)}")
            if boxes and len(boxes) > 1:
                raise InvalidRequestError("mask_input can be combined with one box only, not several")
        entry = self.cache.get(handle.key)
        if entry is None:
            raise NotFoundError(f"image_key {handle.key!r} is no longer cached; send the image again")
        coords = np.asarray(points, dtype=np.float32).reshape(-1, 2) if points else None
        lab = np.asarray(labels, dtype=np.int32).reshape(-1) if points else None
        box_arr = np.asarray(boxes, dtype=np.float32) if boxes else None
        if box_arr is not None and len(box_arr) == 1:
            box_arr = box_arr[0]
        with self._lock, torch.inference_mode():
            p = self.predictor
            p._features, p._orig_hw, p._is_image_set, p._is_batch = entry.features, entry.orig_hw, True, False
            try:
                masks, scores, low = self._predict(entry, coords, lab, box_arr, mask, multimask)
            finally:
                p.reset_predictor()
        out: list[list[MaskCandidate]] = []
        for m_b, s_b, l_b in zip(masks, scores, low):
            order = np.argsort(-np.asarray(s_b), kind="stable")
            cands = []
            for i in order:
                m = np.asarray(m_b[i]) > 0
                cands.append(MaskCandidate(rle=encode_rle(m), score=float(s_b[i]), bbox=mask_to_bbox(m),
                                           area=int(m.sum()),
                                           low_res_logits=np.asarray(l_b[i], dtype=np.float32)[None]))
            out.append(cands)
        return out

    def _predict(self, entry: _Entry, coords: Any, labels: Any, box: Any, mask: Any,
                 multimask: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """sam2's ``SAM2ImagePredictor.predict`` with the shared-work decoder in place of
        ``sam_mask_decoder``: the same prompt transforms, prompt encoder and post-processing.
        Returns ``(B, C, H, W)`` bool masks, ``(B, C)`` scores and ``(B, C, s, s)`` low-res logits
        clamped to +-32, as sam2 returns them."""
        import torch

        p = self.predictor
        mask_input, coords_t, labels_t, box_t = p._prep_prompts(coords, labels, box, mask, True)
        points = (coords_t, labels_t) if coords_t is not None else None
        if box_t is not None:  # boxes go first, as two points labelled 2 and 3 (sam2's _predict)
            box_coords = box_t.reshape(-1, 2, 2)
            box_labels = torch.tensor([[2, 3]], dtype=torch.int, device=box_t.device).repeat(box_coords.shape[0], 1)
            points = (box_coords, box_labels) if points is None else \
                (torch.cat([box_coords, points[0]], 1), torch.cat([box_labels, points[1]], 1))
        sparse, dense = self.model.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)
        low, iou = self.decoder.decode(entry.context, sparse, dense if mask_input is not None else None, multimask)
        masks = p._transforms.postprocess_masks(low, entry.orig_hw[0]) > p.mask_threshold
        low = torch.clamp(low, -32.0, 32.0)
        return masks.cpu().numpy(), iou.cpu().numpy(), low.cpu().numpy()

    def store_logits(self, key: str, logits: np.ndarray) -> str:
        """Keep low-res logits of image ``key``; returns their handle id (hex)."""
        handle_id = secrets.token_hex(12)
        self.logits.put(handle_id, _Logits(key, np.asarray(logits, dtype=np.float32)))
        return handle_id


def _as_boxes(box: Any) -> list[list[float]] | None:
    """``None``, one ``[x0, y0, x1, y1]`` or several -> list of boxes."""
    if box is None:
        return None
    arr = list(box)
    if not arr:
        return None
    if all(isinstance(v, (int, float, np.floating, np.integer)) for v in arr):
        return [[float(v) for v in arr]]
    return [[float(v) for v in b] for b in arr]
