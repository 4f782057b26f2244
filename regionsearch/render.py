"""Overlay images: masks tinted over the image, boxes and labels (PNG for the CLI and API)."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

from .masks import decode_rle

PALETTE = [(255, 64, 64), (64, 160, 255), (64, 220, 96), (255, 200, 0), (200, 96, 255),
           (0, 220, 220), (255, 128, 0), (255, 64, 200)]


def overlay(image: np.ndarray, rles: Sequence[dict], bboxes: Sequence[Sequence[float]] = (),
            labels: Sequence[str] = (), alpha: float = 0.45, title: str | None = None) -> np.ndarray:
    """Tint each mask over ``image`` (HWC uint8 RGB), draw its XYWH box and label; returns RGB."""
    from PIL import Image, ImageDraw

    out = image.astype(np.float32).copy()
    for i, rle in enumerate(rles):
        mask = decode_rle(rle)
        if mask.shape != image.shape[:2]:
            continue
        colour = np.array(PALETTE[i % len(PALETTE)], dtype=np.float32)
        out[mask] = out[mask] * (1 - alpha) + colour * alpha
    pil = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for i, box in enumerate(bboxes):
        x, y, w, h = (float(v) for v in box)
        colour = PALETTE[i % len(PALETTE)]
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=colour, width=2)
        if i < len(labels) and labels[i]:
            tx, ty = x + 2, max(0.0, y - 12)
            draw.rectangle([tx - 1, ty, tx + 7 * len(labels[i]), ty + 11], fill=(0, 0, 0))
            draw.text((tx, ty), labels[i], fill=colour)
    if title:
        draw.rectangle([0, 0, 8 * len(title) + 6, 14], fill=(0, 0, 0))
        draw.text((3, 1), title, fill=(255, 255, 255))
    return np.asarray(pil)


def to_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
