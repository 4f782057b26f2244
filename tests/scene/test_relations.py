"""Relations against hand-made masks, checked one definition at a time, and the vectorised
measurement against a brute-force per-pair computation on random masks."""

from __future__ import annotations

import numpy as np
import pytest

from regionsearch.errors import InvalidRequestError, UnknownNameError
from regionsearch.scene.relations import (PREDICATES, ObjectMask, Relation, holds, measure, relation_matrices,
                                          relations)


def rect(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def geom_of(*masks: np.ndarray):
    h, w = masks[0].shape
    return measure([ObjectMask.from_full(m) for m in masks], w, h)


def rels(*masks: np.ndarray) -> set[tuple[int, str, int]]:
    return {(r.subject, r.predicate, r.object) for r in relations(geom_of(*masks))}


def test_left_right_need_a_gap_of_5_percent_of_the_width():
    # 100 px wide: centroids must differ by more than 5 px
    a = rect(50, 100, 10, 20, 20, 30)   # cx 14.5
    b = rect(50, 100, 30, 20, 40, 30)   # cx 34.5
    c = rect(50, 100, 15, 0, 25, 5)     # cx 19.5: exactly 5 px right of a -> not right_of
    got = rels(a, b, c)
    assert (0, "left_of", 1) in got and (1, "right_of", 0) in got
    assert (0, "left_of", 2) not in got and (2, "right_of", 0) not in got
    assert (2, "left_of", 1) in got


def test_above_below_use_the_height():
    a = rect(200, 50, 0, 0, 10, 10)     # cy 4.5
    b = rect(200, 50, 0, 14, 10, 24)    # cy 18.5: 14 px lower, > 5% of 200 = 10
    c = rect(200, 50, 20, 10, 30, 20)   # cy 14.5: 10 px lower -> not below a
    got = rels(a, b, c)
    assert (0, "above", 1) in got and (1, "below", 0) in got
    assert (0, "above", 2) not in got and (2, "below", 0) not in got


def test_near_is_the_smallest_pixel_distance_within_5_percent_of_the_longer_side():
    # 100 x 60 image: r = 5 px. Pixel centres 5 apart (gap of 4 empty columns) -> near; 6 -> not
    a = rect(60, 100, 10, 10, 20, 20)   # last column 19
    b = rect(60, 100, 24, 10, 30, 20)   # first column 24: distance 5
    c = rect(60, 100, 26, 30, 30, 40)   # from a: dx 26-19=7 -> not near a
    d = rect(60, 100, 23, 24, 26, 28)   # diagonal from a's corner (19, 19): dx 4, dy 5 -> 6.40 > 5
    got = rels(a, b, c, d)
    assert (0, "near", 1) in got and (1, "near", 0) in got
    assert (0, "near", 2) not in got
    assert (0, "near", 3) not in got
    assert (1, "near", 3) in got  # b's bottom row 19 vs d's top row 24, columns overlap: distance 5


def test_near_uses_the_masks_not_their_boxes():
    # an L-shape whose box reaches b, but whose pixels stay 9 px away
    a = np.zeros((100, 100), bool)
    a[0:50, 0:5] = True
    a[45:50, 0:50] = True
    b = rect(100, 100, 40, 10, 45, 20)  # inside a's box; nearest a pixel is (row 45, col 40): 26 px away
    got = rels(a, b)
    assert (0, "near", 1) not in got and (0, "overlaps", 1) in got


def test_inside_uses_the_hole_filled_mask_and_a_90_percent_threshold():
    ring = rect(100, 100, 10, 10, 60, 60) & ~rect(100, 100, 20, 20, 50, 50)   # a frame with a hole
    dot = rect(100, 100, 30, 30, 40, 40)                                      # in the hole
    half = rect(100, 100, 40, 40, 70, 50)                                     # 20 of 30 columns inside
    got = rels(ring, dot, half)
    assert (1, "inside", 0) in got and (0, "contains", 1) in got
    assert (2, "inside", 0) not in got
    # inside excludes near and overlaps between the two; the half-inside one overlaps the ring
    assert (1, "near", 0) not in got and (1, "overlaps", 0) not in got
    assert (2, "overlaps", 0) in got and (0, "overlaps", 2) in got


def test_inside_at_exactly_90_percent():
    big = rect(50, 100, 0, 0, 50, 50)
    small = rect(50, 100, 41, 0, 51, 10)  # 10 columns, 9 inside: exactly 90%
    less = rect(50, 100, 42, 20, 52, 30)  # 8 of 10 inside
    got = rels(big, small, less)
    assert (1, "inside", 0) in got and (2, "inside", 0) not in got


def test_overlaps_needs_intersecting_boxes():
    a = rect(100, 100, 0, 0, 10, 10)
    b = rect(100, 100, 10, 0, 20, 10)  # touching edge, boxes do not intersect
    c = rect(100, 100, 5, 5, 15, 15)
    got = rels(a, b, c)
    assert (0, "overlaps", 1) not in got and (0, "near", 1) in got
    assert (0, "overlaps", 2) in got and (2, "overlaps", 0) in got


def test_relations_are_converses_and_never_reflexive():
    rng = np.random.default_rng(0)
    masks = []
    for _ in range(12):
        x, y = rng.integers(0, 150, 2)
        w, h = rng.integers(3, 60, 2)
        masks.append(rect(200, 200, x, y, x + w, y + h))
    mats = relation_matrices(geom_of(*masks))
    for a, b in [("left_of", "right_of"), ("above", "below"), ("inside", "contains"), ("near", "near"),
                 ("overlaps", "overlaps")]:
        assert np.array_equal(mats[a], mats[b].T)
    for p in PREDICATES:
        assert not mats[p].diagonal().any()


def test_vectorised_measurement_matches_brute_force():
    """Intersection, inside fraction and near on random blobs vs a direct full-frame computation."""
    import cv2

    rng = np.random.default_rng(1)
    H, W = 120, 160
    masks = []
    for _ in range(15):
        m = np.zeros((H, W), np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            cv2.circle(m, (int(rng.integers(0, W)), int(rng.integers(0, H))), int(rng.integers(3, 25)), 1, -1)
        if rng.random() < 0.3:
            cv2.circle(m, (int(rng.integers(0, W)), int(rng.integers(0, H))), int(rng.integers(2, 8)), 0, -1)
        masks.append(m.astype(bool))
    g = geom_of(*masks)
    r = 0.05 * max(W, H)
    ys, xs = np.mgrid[0:H, 0:W]
    for i, a in enumerate(masks):
        assert g.areas[i] == a.sum()
        assert np.isclose(g.centroids[i, 0], xs[a].mean()) and np.isclose(g.centroids[i, 1], ys[a].mean())
        # holes of a: background components not connected to the image border... of its own box
        for j, b in enumerate(masks):
            if i == j:
                continue
            assert g.intersection[i, j] == (a & b).sum()
            pa = np.argwhere(a)
            pb = np.argwhere(b)
            d = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1)).min()
            assert g.near[i, j] == (d <= r), (i, j, d)


def test_fill_holes_counts_hole_pixels_as_inside():
    donut = np.zeros((60, 60), bool)
    donut[10:50, 10:50] = True
    donut[20:40, 20:40] = False
    inner = rect(60, 60, 22, 22, 38, 38)
    g = geom_of(inner, donut)
    assert g.inside_frac[0, 1] == 1.0 and g.intersection[0, 1] == 0


def test_empty_and_single_scenes():
    g = measure([], 10, 10)
    assert relations(g) == []
    one = geom_of(rect(10, 10, 1, 1, 4, 4))
    assert relations(one) == []
    assert ObjectMask.from_full(np.zeros((5, 5), bool)).mask.shape == (0, 0)


def test_rle_and_full_crops_agree():
    from regionsearch.masks import encode_rle

    m = rect(40, 50, 7, 3, 20, 30)
    a, b = ObjectMask.from_full(m), ObjectMask.from_rle(encode_rle(m))
    assert (a.x0, a.y0) == (b.x0, b.y0) == (7, 3) and np.array_equal(a.mask, b.mask)


def test_bad_input_is_a_domain_error():
    with pytest.raises(InvalidRequestError):
        measure([], 0, 10)
    with pytest.raises(InvalidRequestError):
        ObjectMask.from_full(np.zeros((2, 2, 2), bool))
    g = geom_of(rect(10, 10, 0, 0, 2, 2), rect(10, 10, 8, 8, 10, 10))
    with pytest.raises(UnknownNameError):
        holds(g, "beside", 0, 1)
    assert holds(g, "left_of", 0, 1) and relations(g, ["above"]) == [Relation(0, "above", 1)]
