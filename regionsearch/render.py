"""Overlay images: each mask filled, outlined and labelled over its image (PNG for the CLI and API).

What makes a mask visible whatever it covers:

* **fill**: a semi-transparent tint whose colour is chosen against the region's own pixels. Each
  palette colour is scored by its CIELAB distance (Delta E 76) to the region's mean colour and
  its dominant colours; a colour closer than :data:`MIN_CONTRAST` to any of them is not used (a
  red object is never filled red), and among the rest the one farthest from the colours already
  given to other regions wins, so neighbours stay distinguishable;
* **double outline**: a ring just inside the mask in the fill colour (opaque) and a ring just
  outside it in black or white, whichever contrasts with the region's lightness, so the edge
  shows on dark and light surroundings alike;
* **labels**: a font sized to the image (:func:`font_px`), white text on a dark box edged in the
  region's colour, placed greedily in rank order at the first of a few spots around its region
  that overlaps no label (nor the title) already placed; a label with no free spot is skipped
  and at most ``max_labels`` are drawn, so labels never pile up.

:func:`render_overlay` returns the image with what it drew (colours, label boxes);
:func:`overlay` just the image.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .masks import decode_rle

#: fill colours (sRGB): saturated, far apart in hue and lightness
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128), (250, 190, 212), (128, 128, 255)]
#: the least CIELAB distance (Delta E 76) between a fill and the region's own colours
MIN_CONTRAST = 45.0
#: outline colours: on a light region (L* > 55) the dark one, else the light one
DARK, LIGHT = (0, 0, 0), (255, 255, 255)
#: labels drawn at most, by default
MAX_LABELS = 40


@dataclass
class Rendered:
    """An overlay: ``image`` (HWC uint8 RGB), the fill ``colours`` per mask (sRGB, None for a mask
    that was not drawn), the ``outlines`` (dark/light sRGB) and the ``label_boxes`` drawn
    (``(index, x0, y0, x1, y1)`` pixels, exclusive ends) and ``title_box``."""

    image: np.ndarray
    colours: list[tuple[int, int, int] | None] = field(default_factory=list)
    outlines: list[tuple[int, int, int] | None] = field(default_factory=list)
    label_boxes: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    labels_skipped: int = 0
    title_box: tuple[int, int, int, int] | None = None


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours: ``(..., 3)`` values 0-255 -> ``(..., 3)`` L* a* b*."""
    c = np.asarray(rgb, np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def region_colours(pixels: np.ndarray, top: int = 3, min_share: float = 0.12) -> np.ndarray:
    """The colours a fill must stand out from: the mean of ``pixels`` (``(n, 3)`` uint8 RGB) and
    the mean of each of its ``top`` most common coarse colour bins holding >= ``min_share`` of them."""
    px = np.asarray(pixels, np.float64).reshape(-1, 3)
    if len(px) > 4096:
        px = px[np.linspace(0, len(px) - 1, 4096).astype(np.int64)]
    bins = (px // 32).astype(np.int64) @ np.array([64, 8, 1])
    ids, counts = np.unique(bins, return_counts=True)
    out = [px.mean(axis=0)]
    for b in ids[np.argsort(-counts)][:top]:
        sel = bins == b
        if sel.mean() >= min_share:
            out.append(px[sel].mean(axis=0))
    return np.array(out)


def pick_colour(own: np.ndarray, used: Sequence[tuple[int, int, int]]) -> tuple[int, int, int]:
    """The palette colour for a region whose colours are ``own`` (``(m, 3)`` sRGB): at least
    :data:`MIN_CONTRAST` from each of them (else the farthest), and among those the one farthest
    from the ``used`` fills of earlier regions (ties: the farther from the region)."""
    pal = srgb_to_lab(np.array(PALETTE))
    d_own = np.linalg.norm(pal[:, None, :] - srgb_to_lab(own)[None, :, :], axis=2).min(axis=1)
    ok = d_own >= MIN_CONTRAST
    if not ok.any():
        return PALETTE[int(np.argmax(d_own))]
    if used:
        d_used = np.linalg.norm(pal[:, None, :] - srgb_to_lab(np.array(used))[None, :, :], axis=2).min(axis=1)
    else:
        d_used = np.full(len(PALETTE), 1e3)
    score = np.minimum(d_used, 60.0) * 1e3 + d_own  # distinct from the others first, then from the region
    return PALETTE[int(np.argmax(np.where(ok, score, -np.inf)))]


def outline_colour(own: np.ndarray) -> tuple[int, int, int]:
    """Black on a light region (mean L* > 55), white on a dark one."""
    return DARK if float(srgb_to_lab(own[0])[0]) > 55 else LIGHT


def font_px(width: int, height: int) -> int:
    """Label font size in pixels: about 1/45 of the image's longer side, 12 to 40."""
    return int(min(40, max(12, round(max(width, height) / 45))))


def _rings(mask: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """The ``t``-pixel rings just inside and just outside ``mask``, within its bounding box grown by
    ``t + 1`` (returned as the slices they apply to)."""
    from PIL import Image, ImageFilter

    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    y0, y1 = max(0, ys.min() - t - 1), min(h, ys.max() + t + 2)
    x0, x1 = max(0, xs.min() - t - 1), min(w, xs.max() + t + 2)
    sub = mask[y0:y1, x0:x1]
    img = Image.fromarray(sub.astype(np.uint8) * 255)
    grown = np.asarray(img.filter(ImageFilter.MaxFilter(2 * t + 1))) > 0
    shrunk = np.asarray(img.filter(ImageFilter.MinFilter(2 * t + 1))) > 0
    # the image border counts as outside: a mask touching it still shows its edge there
    edge = np.zeros_like(sub)
    edge[:t, :] |= y0 == 0
    edge[-t:, :] |= y1 == h
    edge[:, :t] |= x0 == 0
    edge[:, -t:] |= x1 == w
    inner = sub & (~shrunk | edge)
    return inner, grown & ~sub, (slice(y0, y1), slice(x0, x1))


def _fill_and_outline(image: np.ndarray, rles: Sequence[dict], alpha: float,
                      out: Rendered, thickness: int | None = None) -> list[np.ndarray | None]:
    """Tint every mask, then draw every double outline (so no fill covers an edge); returns the
    decoded masks (None where one does not fit the image)."""
    h, w = image.shape[:2]
    t = int(thickness) if thickness else max(1, round(max(h, w) / 300))
    canvas = image.astype(np.float32)
    masks: list[np.ndarray | None] = []
    for rle in rles:
        mask = decode_rle(rle)
        if mask.shape != (h, w) or not mask.any():
            masks.append(None)
            out.colours.append(None)
            out.outlines.append(None)
            continue
        own = region_colours(image[mask])
        colour = pick_colour(own, [c for c in out.colours if c is not None])
        canvas[mask] = canvas[mask] * (1 - alpha) + np.array(colour, np.float32) * alpha
        masks.append(mask)
        out.colours.append(colour)
        out.outlines.append(outline_colour(own))
    for mask, colour, line in zip(masks, out.colours, out.outlines):
        if mask is None:
            continue
        inner, outer, window = _rings(mask, t)
        part = canvas[window]
        part[outer] = line
        part[inner] = colour
    out.image = np.clip(canvas, 0, 255).astype(np.uint8)
    return masks


def _spots(box: tuple[float, float, float, float], mask: np.ndarray | None, lw: int, lh: int,
           width: int, height: int) -> list[tuple[int, int]]:
    """Candidate top-left corners of a ``lw`` x ``lh`` label for a region with XYWH ``box``: above
    it, inside its top-left corner, below it, on the mask's centroid, above its right end, inside
    its bottom-left corner; each kept inside the image."""
    x, y, bw, bh = box
    cx, cy = x + bw / 2, y + bh / 2
    if mask is not None:
        ys, xs = np.nonzero(mask)
        cx, cy = float(xs.mean()), float(ys.mean())
    raw = [(x, y - lh - 1), (x + 1, y + 1), (x, y + bh + 1), (cx - lw / 2, cy - lh / 2),
           (x + bw - lw, y - lh - 1), (x + 1, y + bh - lh - 1)]
    return [(int(min(max(0, px), max(0, width - lw))), int(min(max(0, py), max(0, height - lh)))) for px, py in raw]


def _hits(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _label_box(draw, font, text: str, pad: int) -> tuple[int, int]:
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    return int(x1 - min(0, x0)) + 2 * pad, int(y1 - min(0, y0)) + 2 * pad


def _draw_labels(pil, labels: Sequence[str], boxes: Sequence[Sequence[float]], masks: list[np.ndarray | None],
                 title: str | None, max_labels: int, out: Rendered) -> None:
    from PIL import ImageDraw, ImageFont

    draw = ImageDraw.Draw(pil)
    width, height = pil.size
    font = ImageFont.load_default(size=font_px(width, height))
    pad = max(2, font_px(width, height) // 6)
    taken: list[tuple[int, int, int, int]] = []
    if title:
        tw, th = _label_box(draw, font, title, pad)
        out.title_box = (0, 0, min(tw, width), min(th, height))
        draw.rectangle([0, 0, out.title_box[2] - 1, out.title_box[3] - 1], fill=(0, 0, 0))
        draw.text((pad, pad), title, fill=(255, 255, 255), font=font)
        taken.append(out.title_box)
    for i, text in enumerate(labels):
        if not text or i >= len(boxes):
            continue
        if len(out.label_boxes) >= max_labels:
            out.labels_skipped += 1
            continue
        lw, lh = _label_box(draw, font, text, pad)
        mask = masks[i] if i < len(masks) else None
        spot = next(((sx, sy, sx + lw, sy + lh) for sx, sy in _spots(tuple(float(v) for v in boxes[i]), mask,
                                                                     lw, lh, width, height)
                     if not any(_hits((sx, sy, sx + lw, sy + lh), t) for t in taken)), None)
        if spot is None:
            out.labels_skipped += 1
            continue
        edge = out.colours[i] if i < len(out.colours) and out.colours[i] else (255, 255, 255)
        draw.rectangle([spot[0], spot[1], spot[2] - 1, spot[3] - 1], fill=(16, 16, 16), outline=edge, width=1)
        draw.text((spot[0] + pad, spot[1] + pad), text, fill=(255, 255, 255), font=font)
        taken.append(spot)
        out.label_boxes.append((i, *spot))


def render_overlay(image: np.ndarray, rles: Sequence[dict], bboxes: Sequence[Sequence[float]] = (),
                   labels: Sequence[str] = (), alpha: float = 0.45, title: str | None = None,
                   max_labels: int = MAX_LABELS, thickness: int | None = None) -> Rendered:
    """Fill and outline each mask (COCO RLE) of ``image`` (HWC uint8 RGB), then label region ``i``
    (XYWH ``bboxes[i]`` pixels) with ``labels[i]``, most important first; ``title`` top left.
    A region whose mask does not fit the image is drawn as its box. ``thickness``: pixels of each
    of the two outline rings (default: 1 per 300 pixels of the image's longer side, at least 1;
    small pictures shown enlarged or thumbnails shown shrunk want more)."""
    from PIL import Image, ImageDraw

    out = Rendered(image)
    masks = _fill_and_outline(np.ascontiguousarray(image[..., :3]), rles, alpha, out, thickness)
    pil = Image.fromarray(out.image)
    draw = ImageDraw.Draw(pil)
    for i, box in enumerate(bboxes):
        if i >= len(masks) or masks[i] is None:  # no mask to show: the box stands in for it
            x, y, w, h = (float(v) for v in box)
            draw.rectangle([x, y, x + w - 1, y + h - 1], outline=PALETTE[i % len(PALETTE)], width=2)
    _draw_labels(pil, labels, bboxes, masks, title, max_labels, out)
    out.image = np.asarray(pil)
    return out


def overlay(image: np.ndarray, rles: Sequence[dict], bboxes: Sequence[Sequence[float]] = (),
            labels: Sequence[str] = (), alpha: float = 0.45, title: str | None = None,
            thickness: int | None = None) -> np.ndarray:
    """:func:`render_overlay`'s image (HWC uint8 RGB)."""
    return render_overlay(image, rles, bboxes, labels, alpha, title, thickness=thickness).image


def to_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
