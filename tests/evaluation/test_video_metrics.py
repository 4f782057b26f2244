"""Video metrics against brute force on small hand-made and random masks."""

from __future__ import annotations

import numpy as np
import pytest

from regionsearch.errors import ConfigError
from regionsearch.evaluation.video import (
    PredTrack,
    evaluate_tracking,
    parse_ytvis,
    precision_at_k_capped,
    retrieval_hits,
    spatiotemporal_iou,
)
from regionsearch.masks import encode_rle


def _box(x, y, s=4, size=16):
    m = np.zeros((size, size), bool)
    m[y:y + s, x:x + s] = True
    return m


def _gt(objects, length):
    """objects: list of (category_id, {frame: mask})."""
    anns = [{"id": i + 1, "video_id": 1, "category_id": c,
             "segmentations": [encode_rle(ms[f]) if f in ms else None for f in range(length)]}
            for i, (c, ms) in enumerate(objects)]
    return parse_ytvis({"videos": [{"id": 1, "length": length}], "annotations": anns,
                        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]})


def test_perfect_tracks_score_one_and_a_swap_is_two_switches():
    a = {f: _box(f, 0) for f in range(6)}
    b = {f: _box(f, 8) for f in range(6)}
    gt = _gt([(1, a), (2, b)], 6)
    perfect = [PredTrack(10, 1, {f: encode_rle(m) for f, m in a.items()}),
               PredTrack(11, 1, {f: encode_rle(m) for f, m in b.items()})]
    res = evaluate_tracking(gt, perfect, {1: range(6)})
    assert res.mean_miou == 1.0 and res.switches_per_video == {1: 0} and res.fragments_per_object == 1.0
    # the tracker swaps identities from frame 3 on: each object switches once
    swapped = [PredTrack(10, 1, {f: encode_rle(a[f] if f < 3 else b[f]) for f in range(6)}),
               PredTrack(11, 1, {f: encode_rle(b[f] if f < 3 else a[f]) for f in range(6)})]
    res = evaluate_tracking(gt, swapped, {1: range(6)})
    assert res.mean_miou == 1.0 and res.switches_per_video == {1: 2} and res.fragments_per_object == 2.0


def test_lost_frames_count_zero_and_only_evaluated_frames_count():
    a = {f: _box(2, 2) for f in range(4)}
    gt = _gt([(1, a)], 4)
    half = [PredTrack(1, 1, {0: encode_rle(a[0]), 1: encode_rle(a[1])})]
    assert evaluate_tracking(gt, half, {1: range(4)}).mean_miou == pytest.approx(0.5)
    assert evaluate_tracking(gt, half, {1: [0, 1]}).mean_miou == pytest.approx(1.0)
    res = evaluate_tracking(gt, [], {1: range(4)})
    assert res.mean_miou == 0.0 and res.share_above(0.5) == 0.0 and res.objects[0].fragments == 0


def test_spatiotemporal_iou_matches_brute_force():
    rng = np.random.default_rng(0)
    masks_a = {f: rng.random((12, 12)) < 0.4 for f in range(5) if f != 2}
    masks_b = {f: rng.random((12, 12)) < 0.4 for f in range(5) if f != 4}
    inter = sum((masks_a.get(f, np.zeros((12, 12), bool)) & masks_b.get(f, np.zeros((12, 12), bool))).sum() for f in range(5))
    union = sum((masks_a.get(f, np.zeros((12, 12), bool)) | masks_b.get(f, np.zeros((12, 12), bool))).sum() for f in range(5))
    got = spatiotemporal_iou({f: encode_rle(m) for f, m in masks_a.items()},
                             {f: encode_rle(m) for f, m in masks_b.items()}, range(5))
    assert got == pytest.approx(inter / union)


def test_retrieval_hits_each_object_once_and_capped_precision():
    a = {f: _box(0, 0) for f in range(3)}
    b = {f: _box(8, 8) for f in range(3)}
    gt = _gt([(1, a), (1, b), (2, {0: _box(0, 8)})], 3)
    ta = PredTrack(1, 1, {f: encode_rle(m) for f, m in a.items()})
    tb = PredTrack(2, 1, {f: encode_rle(m) for f, m in b.items()})
    hits, n = retrieval_hits([ta, ta, tb], gt, 1, {1: range(3)})
    assert hits == [True, False, True] and n == 2
    assert precision_at_k_capped(hits, n, 1) == 1.0
    assert precision_at_k_capped(hits, n, 3) == 1.0  # both objects found in the top 3
    assert precision_at_k_capped([False, True], 1, 1) == 0.0
    assert np.isnan(precision_at_k_capped([True], 0, 1))


def test_malformed_ground_truth_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="videos"):
        parse_ytvis({"images": []})
    with pytest.raises(ConfigError, match="one segmentation"):
        parse_ytvis({"videos": [{"id": 1, "length": 3}],
                     "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "segmentations": [None]}]})
    from regionsearch.evaluation.video import load_ytvis

    with pytest.raises(ConfigError, match="does not exist"):
        load_ytvis(tmp_path / "nope.json")
