"""Overlays show masks: a fill chosen against the region's own colours, a contrasting double
outline, labels that never overlap (measured on the drawn pixels)."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from regionsearch.masks import encode_rle
from regionsearch.render import MIN_CONTRAST, PALETTE, render_overlay, srgb_to_lab

ALPHA = 0.45


def _disc(size: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def _scene(colour, background=(128, 128, 128), size=200):
    image = np.full((size, size, 3), background, np.uint8)
    mask = _disc(size, 100, 100, 50)
    image[mask] = colour
    return image, mask


def _hue_deg(rgb) -> float:
    r, g, b = (float(v) / 255 for v in rgb)
    return colorsys.rgb_to_hsv(r, g, b)[0] * 360


def _hue_gap(a: float, b: float) -> float:
    d = abs(a - b) % 360
    return min(d, 360 - d)


def _interior(mask: np.ndarray, margin: int = 6) -> np.ndarray:
    """Pixels at least ``margin`` inside ``mask`` (away from the outline rings)."""
    from PIL import Image, ImageFilter

    img = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MinFilter(2 * margin + 1))
    return np.asarray(img) > 0


def test_red_object_is_not_filled_red():
    red = (220, 30, 30)
    image, mask = _scene(red)
    drawn = render_overlay(image, [encode_rle(mask)], alpha=ALPHA).image.astype(np.float64)
    inside = _interior(mask)
    # the tint actually laid over the object, recovered from the drawn pixels
    tint = ((drawn[inside] - (1 - ALPHA) * image[inside]) / ALPHA).mean(axis=0)
    assert _hue_gap(_hue_deg(np.clip(tint, 0, 255)), _hue_deg(red)) >= 60, tint
    # and the tinted object looks different from the bare one (a red fill would change ~nothing)
    change = np.linalg.norm(srgb_to_lab(drawn[inside]) - srgb_to_lab(image[inside]), axis=1).mean()
    red_fill = (1 - ALPHA) * image[inside] + ALPHA * np.array(PALETTE[0])
    same_hue = np.linalg.norm(srgb_to_lab(red_fill) - srgb_to_lab(image[inside]), axis=1).mean()
    assert change >= 20 and change > 2 * same_hue, (change, same_hue)


@pytest.mark.parametrize("colour", [(220, 30, 30), (40, 90, 220), (60, 180, 70), (235, 210, 35), (245, 130, 20),
                                    (135, 50, 175), (240, 240, 240), (20, 20, 20)])
def test_fill_is_far_from_the_object_colour(colour):
    image, mask = _scene(colour)
    fill = render_overlay(image, [encode_rle(mask)]).colours[0]
    assert np.linalg.norm(srgb_to_lab(fill) - srgb_to_lab(colour)) >= MIN_CONTRAST, (colour, fill)


def _ring_outside(mask: np.ndarray) -> np.ndarray:
    from PIL import Image, ImageFilter

    grown = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(3))) > 0
    return grown & ~mask


@pytest.mark.parametrize("colour,background", [((240, 230, 60), (250, 250, 250)), ((30, 30, 90), (10, 10, 10)),
                                               ((200, 200, 200), (40, 40, 40))])
def test_outline_is_drawn_and_contrasts_with_the_region(colour, background):
    image, mask = _scene(colour, background)
    drawn = render_overlay(image, [encode_rle(mask)]).image
    ring = _ring_outside(mask)
    ring_l = srgb_to_lab(drawn[ring])[:, 0]
    region_l = float(srgb_to_lab(np.array(colour))[0])
    assert ring.sum() > 250  # the disc's perimeter (~314 px): the whole edge is outlined
    assert np.abs(ring_l - region_l).min() >= 30, (ring_l.min(), ring_l.max(), region_l)
    # an untouched pixel far from the mask keeps its colour
    assert (drawn[2, 2] == image[2, 2]).all()


@pytest.mark.parametrize("thickness", [None, 1, 3, 6])
def test_outline_rings_are_as_thick_as_asked(thickness):
    """``thickness``: pixels of each ring, measured along a row through a square's centre (the
    default on a 200 px image: 1)."""
    image = np.full((200, 200, 3), 128, np.uint8)
    mask = np.zeros((200, 200), bool)
    mask[50:150, 50:150] = True
    image[mask] = (30, 160, 60)
    drawn = render_overlay(image, [encode_rle(mask)], alpha=0.0, thickness=thickness).image
    row = np.abs(drawn[100].astype(int) - image[100].astype(int)).sum(1) > 30  # changed pixels of the centre row
    left = np.nonzero(mask[100])[0][0]
    changed = np.nonzero(row[: left + 20])[0]
    assert changed.size == 2 * (thickness or 1), changed
    assert changed.min() == left - (thickness or 1) and changed.max() == left + (thickness or 1) - 1


def test_regions_of_one_colour_get_distinguishable_fills():
    size = 300
    image = np.full((size, size, 3), 128, np.uint8)
    masks = [_disc(size, 40 + 70 * (i % 4), 40 + 70 * (i // 4), 25) for i in range(8)]
    for m in masks:
        image[m] = (220, 30, 30)
    colours = render_overlay(image, [encode_rle(m) for m in masks]).colours
    assert len(set(colours)) == len(colours), colours


def _crowded(n: int = 18, size: int = 320, seed: int = 0):
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 90, np.uint8)
    masks, boxes = [], []
    for _ in range(n):  # many small, overlapping discs packed in the middle: labels compete for room
        cx, cy = rng.uniform(90, 230, 2)
        r = float(rng.uniform(10, 30))
        m = _disc(size, cx, cy, r)
        image[m] = rng.integers(0, 256, 3)
        ys, xs = np.nonzero(m)
        masks.append(m)
        boxes.append([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1])
    return image, masks, boxes


def test_label_boxes_never_overlap_on_a_crowded_image():
    image, masks, boxes = _crowded()
    labels = [f"#{i + 1} 0.{300 - i}" for i in range(len(masks))]
    out = render_overlay(image, [encode_rle(m) for m in masks], boxes, labels, title="red circle")
    placed = [b[1:] for b in out.label_boxes] + [out.title_box]
    assert len(out.label_boxes) >= 8 and len(out.label_boxes) + out.labels_skipped == len(masks)
    for i, a in enumerate(placed):
        assert 0 <= a[0] < a[2] <= image.shape[1] and 0 <= a[1] < a[3] <= image.shape[0]
        for b in placed[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    # the boxes are where the labels were drawn: dark panels with white text on them
    for _, x0, y0, x1, y1 in out.label_boxes:
        panel = out.image[y0 + 1:y1 - 1, x0 + 1:x1 - 1].reshape(-1, 3)
        assert (panel.max(axis=1) <= 16).mean() > 0.4 and (panel.min(axis=1) >= 200).any()
    # the ranks drawn first: the best hits keep their labels
    assert [b[0] for b in out.label_boxes][:3] == [0, 1, 2]


def test_label_count_is_capped_and_font_grows_with_the_image():
    from regionsearch.render import font_px

    image, masks, boxes = _crowded(n=20, size=320, seed=1)
    out = render_overlay(image, [encode_rle(m) for m in masks], boxes, [str(i) for i in range(20)], max_labels=5)
    assert len(out.label_boxes) == 5 and out.labels_skipped == 15
    assert font_px(256, 256) >= 12 and font_px(2000, 1500) > font_px(640, 480) >= 12
