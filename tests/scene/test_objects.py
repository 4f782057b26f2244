"""Object clean-up (near-duplicates, parts, fragments, specks), zero-shot labels and the scene
text on hand-made masks."""

from __future__ import annotations

import numpy as np

from regionsearch.masks import encode_rle
from regionsearch.scene.relations import ObjectMask, measure
from regionsearch.scene.scene import RegionInput, build_scene, describe, select_objects, zero_shot


def rect(x0, y0, x1, y1, h=100, w=100):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def geom(*masks):
    return measure([ObjectMask.from_full(m) for m in masks], 100, 100)


def test_near_duplicates_keep_the_better_sam_score():
    a, b = rect(10, 10, 50, 50), rect(10, 10, 50, 48)  # IoU 0.95
    g = geom(a, b)
    labels, scores = np.array([0, 0]), np.array([1.0, 1.0])
    assert select_objects(g, np.array([0.5, 0.9]), labels, scores) == [1]
    assert select_objects(g, np.array([0.9, 0.5]), labels, scores) == [0]
    c = rect(10, 10, 50, 40)  # IoU 0.75 with a: not a duplicate, but a part of the same label
    assert select_objects(geom(a, c), np.array([0.5, 0.9]), labels, scores) == [0]


def test_parts_fragments_and_real_objects_inside():
    big, small = rect(10, 10, 80, 80), rect(20, 20, 30, 30)
    g = geom(big, small)
    s = np.array([1.0, 1.0])
    # same label, inside: a part
    assert select_objects(g, np.array([0.9, 0.95]), np.array([0, 0]), s) == [0]
    # another label, SAM less sure of it than of the big one: a fragment
    assert select_objects(g, np.array([0.9, 0.8]), np.array([0, 1]), s) == [0]
    # another label and a better SAM score: an object inside another
    assert select_objects(g, np.array([0.9, 0.95]), np.array([0, 1]), s) == [0, 1]
    assert select_objects(g, np.array([0.9, 0.8]), np.array([0, 1]), s, fragments=False) == [0, 1]


def test_specks_are_dropped_before_measuring():
    m = rect(10, 10, 40, 40) | rect(90, 90, 92, 92)  # a 4-pixel speck far away
    o = ObjectMask.from_full(m).without_specks()
    assert (o.x0, o.y0, o.mask.shape) == (10, 10, (30, 30))
    keep = rect(10, 10, 40, 40) | rect(60, 10, 80, 30)  # a second real piece (occlusion) stays
    assert ObjectMask.from_full(keep).without_specks().mask.sum() == keep.sum()


def test_zero_shot_and_scene_text():
    text = np.eye(3, dtype=np.float32)
    idx, p = zero_shot(np.array([[0.9, 0.1, 0.0], [0.0, 0.2, 0.98]], np.float32), text, 100.0)
    assert idx.tolist() == [0, 2] and (p > 0.99).all()
    left, right = rect(5, 40, 25, 60), rect(70, 40, 95, 60)
    regions = [RegionInput(11, encode_rle(left), (5, 40, 20, 20), 400), RegionInput(12, encode_rle(right), (70, 40, 25, 20), 500)]
    emb = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    sc = build_scene({"id": 1, "path": "/x.png", "width": 100, "height": 100}, regions, emb,
                     ["red circle", "blue square", "cat"], text)
    doc = sc.to_json()
    assert [o["region_id"] for o in doc["objects"]] == [12, 11]  # largest first
    assert {(r["subject"], r["predicate"], r["object"]) for r in doc["relations"]} == {
        (11, "left_of", 12), (12, "right_of", 11)}
    assert doc["text"] == ("2 objects: blue square (right, 5% of image), red circle (left, 4% of image). "
                           "The red circle is left of the blue square.")
    assert sc.text == describe(sc.objects, sc.relations, 100, 100)
