from __future__ import annotations

import numpy as np

from regionsearch.embed.crops import region_crop
from regionsearch.masks import (
    box_iou_xywh, decode_rle, encode_rle, expand_box, mask_iou, mask_to_bbox, rle_area, rle_iou, rle_to_bbox,
)


def _random_masks(seed: int, n: int = 6, shape=(40, 60)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = np.zeros(shape, dtype=bool)
        y, x = rng.integers(0, shape[0] - 5), rng.integers(0, shape[1] - 5)
        m[y:y + rng.integers(2, 20), x:x + rng.integers(2, 30)] = True
        out.append(m)
    return out


def test_rle_round_trip_and_geometry_match_brute_force():
    masks = _random_masks(0)
    rles = [encode_rle(m) for m in masks]
    for m, r in zip(masks, rles):
        assert isinstance(r["counts"], str) and r["size"] == [40, 60]
        assert np.array_equal(decode_rle(r), m)
        assert rle_area(r) == int(m.sum())
        assert rle_to_bbox(r) == mask_to_bbox(m)
    ious = rle_iou(rles, rles)
    brute = np.array([[mask_iou(a, b) for b in masks] for a in masks])
    assert np.allclose(ious, brute)


def test_uncompressed_rle_is_accepted():
    m = np.zeros((4, 3), dtype=bool)
    m[1:3, 1] = True
    # column-major runs: 5 zeros, 2 ones, 5 zeros
    assert np.array_equal(decode_rle({"size": [4, 3], "counts": [5, 2, 5]}), m)


def test_box_iou_and_expand_box():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 5, 10, 10], [20, 20, 5, 5]])
    assert np.allclose(box_iou_xywh(a, b), [[25 / 175, 0.0]])
    x0, y0, x1, y1 = expand_box((10, 10, 20, 10), 0.1, 100, 100)
    assert (x1 - x0) == (y1 - y0) == 24  # squared to the larger side, padded 2 px each side
    assert expand_box((0, 0, 5, 5), 0.5, 6, 6) == (0, 0, 6, 6)  # clipped


def test_crop_strategies():
    img = np.zeros((50, 50, 3), dtype=np.uint8)
    img[:, :] = (0, 0, 255)
    img[10:30, 10:30] = (255, 0, 0)
    mask = np.zeros((50, 50), dtype=bool)
    mask[10:30, 10:30] = True
    box = region_crop(img, mask, (10, 10, 20, 20), "box", 32, context=0.25)
    masked = region_crop(img, mask, (10, 10, 20, 20), "mask", 32, context=0.25)
    blurred = region_crop(img, mask, (10, 10, 20, 20), "blur", 32, context=0.25)
    for crop in (box, masked, blurred):
        assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8
        assert tuple(crop[16, 16]) == (255, 0, 0)  # the object stays sharp at the centre
    assert tuple(box[1, 1]) == (0, 0, 255)  # context kept
    assert tuple(masked[1, 1]) == (123, 117, 104)  # background = CLIP mean colour
    assert masked[1, 1, 2] != 255 and blurred[1, 1, 2] > 150  # blurred context still blue


def test_main_component_keeps_the_largest_8_connected_part():
    from regionsearch.masks import main_component

    m = np.zeros((40, 60), bool)
    m[5:25, 5:25] = True          # 400 px
    m[30:33, 50:53] = True        # a 9 px fragment far away
    m[25, 25] = True              # touches the big part diagonally: 8-connected to it
    main = main_component(m)
    assert main.sum() == 401 and not main[30:33, 50:53].any() and main[25, 25]
    one = np.zeros((10, 10), bool)
    one[2:4, 2:4] = True
    assert np.array_equal(main_component(one), one)
    assert not main_component(np.zeros((4, 4), bool)).any()
