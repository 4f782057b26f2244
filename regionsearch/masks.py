"""Pure, typed mask geometry: COCO RLE encode/decode, boxes, IoU, crops.

Masks are ``bool``/``uint8`` arrays of shape ``(H, W)``; RLE dicts are COCO's
``{"size": [h, w], "counts": str}`` (compressed counts as a UTF-8 string, JSON-friendly);
boxes are ``XYWH`` pixels.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

RLE = dict[str, Any]


def _mask_utils() -> Any:
    from pycocotools import mask as mask_utils

    return mask_utils


def counts_str(counts: Any) -> Any:
    """COCO RLE counts as ``str`` (pycocotools gives ``bytes``); other values are returned unchanged."""
    return counts.decode("ascii") if isinstance(counts, bytes) else counts


def rle_json(rle: Any) -> RLE:
    """A COCO RLE mapping as the project's JSON shape ``{"size": [h, w], "counts": str}``."""
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts_str(rle["counts"])}


def encode_rle(mask: np.ndarray) -> RLE:
    """Encode a ``(H, W)`` boolean mask as COCO RLE with ``str`` counts."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    return rle_json(_mask_utils().encode(np.asfortranarray(mask.astype(np.uint8))))


def _to_coco(rle: RLE) -> dict[str, Any]:
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        return _mask_utils().frPyObjects(rle, int(rle["size"][0]), int(rle["size"][1]))
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode_rle(rle: RLE) -> np.ndarray:
    """Decode COCO RLE (compressed str/bytes or uncompressed list counts) to a bool ``(H, W)`` mask."""
    return _mask_utils().decode(_to_coco(rle)).astype(bool)


def rle_area(rle: RLE) -> int:
    return int(_mask_utils().area(_to_coco(rle)))


def rle_to_bbox(rle: RLE) -> tuple[float, float, float, float]:
    """Tight XYWH box of an RLE mask (zeros for an empty mask)."""
    x, y, w, h = _mask_utils().toBbox(_to_coco(rle)).tolist()
    return (float(x), float(y), float(w), float(h))


def mask_to_bbox(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight XYWH box (pixels) of a boolean mask; ``(0, 0, 0, 0)`` when empty."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if ys.size == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1))


def rle_iou(a: Sequence[RLE], b: Sequence[RLE], crowd: Sequence[bool] | None = None) -> np.ndarray:
    """Pairwise mask IoU ``(len(a), len(b))``; ``crowd[j]`` uses COCO crowd semantics for ``b[j]``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    flags = [int(bool(c)) for c in crowd] if crowd is not None else [0] * len(b)
    return np.asarray(_mask_utils().iou([_to_coco(r) for r in a], [_to_coco(r) for r in b], flags))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of the same shape."""
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return float(inter / union) if union else 0.0


def box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of XYWH boxes ``(n, 4)`` x ``(m, 4)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax1, ay1, ax2, ay2 = a[:, 0], a[:, 1], a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(ax1[:, None], bx1[None]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(ay1[:, None], by1[None]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def expand_box(bbox: Sequence[float], context: float, width: int, height: int,
               square: bool = True) -> tuple[int, int, int, int]:
    """Pad an XYWH box by ``context`` x its larger side on every side (optionally squared),
    clipped to the image; returns integer ``(x0, y0, x1, y1)`` with x1/y1 exclusive."""
    x, y, w, h = (float(v) for v in bbox)
    side = max(w, h, 1.0)
    pad = context * side
    cx, cy = x + w / 2.0, y + h / 2.0
    half_w = (side if square else w) / 2.0 + pad
    half_h = (side if square else h) / 2.0 + pad
    x0 = int(np.floor(max(0.0, cx - half_w)))
    y0 = int(np.floor(max(0.0, cy - half_h)))
    x1 = int(np.ceil(min(float(width), cx + half_w)))
    y1 = int(np.ceil(min(float(height), cy + half_h)))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)
