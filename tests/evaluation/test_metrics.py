"""Hand-computed cases for the retrieval metrics (and a seeded cross-check against COCOeval)."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from regionsearch.errors import InvalidRequestError
from regionsearch.evaluation import (
    FALSE_POSITIVE,
    HIT,
    IGNORED,
    GtInstance,
    RankedRegion,
    average_precision,
    evaluate_category,
    match_ranked,
    match_ranked_detailed,
    pr_curve,
    precision_at_k,
    recall_at_k,
    segmentation_ceiling,
    summarize,
)

H = W = 20
CAT, OTHER = 1, 2


def rect_rle(x: int, y: int, w: int, h: int, size: tuple[int, int] = (H, W)) -> dict:
    """RLE (str counts) of the rectangle of XYWH pixels (x, y, w, h)."""
    m = np.zeros(size, dtype=np.uint8)
    m[y:y + h, x:x + w] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def gt(ann_id: int, image_id, box, cat: int = CAT, iscrowd: bool = False, ignore: bool = False,
       masks: bool = True) -> GtInstance:
    x, y, w, h = box
    return GtInstance(id=ann_id, image_id=image_id, category_id=cat, bbox=(x, y, w, h), area=w * h,
                      iscrowd=iscrowd, rle=rect_rle(*box) if masks else None, ignore=ignore)


def reg(image_id, box, score: float, masks: bool = True) -> RankedRegion:
    return RankedRegion(image_id=image_id, score=score, rle=rect_rle(*box) if masks else None,
                        bbox=tuple(float(v) for v in box))


A, B, C = (0, 0, 4, 4), (10, 10, 5, 5), (0, 10, 6, 6)
FAR = (15, 0, 5, 5)


@pytest.fixture
def two_images() -> dict:
    # image 1: A and B of CAT, C of OTHER; image 2: A of CAT; image 3: no instances
    return {
        1: [gt(1, 1, A), gt(2, 1, B), gt(3, 1, C, cat=OTHER)],
        2: [gt(4, 2, A)],
        3: [],
    }


# --- ranking metrics on hit vectors ----------------------------------------------------------------


def test_precision_recall_at_k_by_hand():
    hits = [True, False, True, False]
    assert precision_at_k(hits, 1) == 1.0
    assert precision_at_k(hits, 2) == 0.5
    assert precision_at_k(hits, 4) == 0.5
    assert recall_at_k(hits, 4, 1) == 0.25
    assert recall_at_k(hits, 4, 3) == 0.5


def test_fewer_results_than_k_count_as_misses():
    assert precision_at_k([True], 5) == pytest.approx(0.2)
    assert precision_at_k([], 10) == 0.0
    assert recall_at_k([True], 2, 100) == 0.5


def test_ap_hand_computed_101_point():
    # rc = .25 .25 .5 .5 .5 .75 ; envelope = 1 2/3 2/3 .5 .5 .5
    # recall levels 0..0.25 (26) -> 1; 0.26..0.50 (25) -> 2/3; 0.51..0.75 (25) -> .5; 0.76..1 (25) -> 0
    hits = [True, False, True, False, False, True]
    expected = (26 * 1.0 + 25 * (2 / 3) + 25 * 0.5) / 101
    assert average_precision(hits, 4) == pytest.approx(expected, abs=1e-12)
    # [1,0,1] with 2 instances: 51 levels at 1, 50 at 2/3
    assert average_precision([True, False, True], 2) == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_ap_edge_cases():
    assert average_precision([True, True], 2) == 1.0
    assert average_precision([False, False], 2) == 0.0
    assert average_precision([], 3) == 0.0
    assert math.isnan(average_precision([], 0))
    assert math.isnan(average_precision([False], 0))
    assert math.isnan(recall_at_k([False], 0, 1))
    # a hit at rank 2 only, one instance: precision 0.5 at every recall level
    assert average_precision([False, True], 1) == pytest.approx(0.5)


def test_pr_curve_by_hand():
    rc, pr = pr_curve([True, False, True], 4)
    np.testing.assert_allclose(rc, [0.25, 0.25, 0.5])
    np.testing.assert_allclose(pr, [1.0, 0.5, 2 / 3])


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_k_is_refused(bad):
    with pytest.raises(InvalidRequestError):
        precision_at_k([True], bad)


def test_more_hits_than_gt_is_refused():
    with pytest.raises(InvalidRequestError):
        average_precision([True, True], 1)


# --- matching ------------------------------------------------------------------------------------


def test_perfect_ranking(two_images):
    ranked = [reg(1, A, 0.9), reg(2, A, 0.8), reg(1, B, 0.7)]
    res = evaluate_category(ranked, two_images, CAT, name="cat", ks=(1, 3, 5))
    assert res.n_gt == 3 and res.n_hits == 3 and res.n_returned == 3
    assert res.precision_at == {1: 1.0, 3: 1.0, 5: pytest.approx(0.6)}
    assert res.recall_at == {1: pytest.approx(1 / 3), 3: 1.0, 5: 1.0}
    assert res.ap == 1.0


def test_no_results(two_images):
    res = evaluate_category([], two_images, CAT, ks=(1, 10))
    assert res.n_gt == 3 and res.n_returned == 0
    assert res.precision_at == {1: 0.0, 10: 0.0}
    assert res.recall_at == {1: 0.0, 10: 0.0}
    assert res.ap == 0.0


def test_all_misses(two_images):
    # wrong place, wrong image, and the instance of the other category
    ranked = [reg(1, FAR, 0.9), reg(3, A, 0.8), reg(1, C, 0.7)]
    m = match_ranked_detailed(ranked, two_images, CAT)
    assert m.status.tolist() == [FALSE_POSITIVE] * 3
    assert m.hits.tolist() == [False, False, False]
    res = evaluate_category(ranked, two_images, CAT, ks=(1, 3))
    assert res.ap == 0.0 and res.precision_at[3] == 0.0 and res.recall_at[3] == 0.0


def test_iou_threshold_is_inclusive():
    gts = {1: [gt(1, 1, (0, 0, 4, 4))]}
    # 8 px region inside the 16 px instance: IoU exactly 0.5 -> hit; 7 px (IoU 7/16) -> miss
    assert match_ranked([reg(1, (0, 0, 4, 2), 1.0)], gts, CAT).tolist() == [True]
    m = np.zeros((H, W), dtype=np.uint8)
    m[0:2, 0:4] = 1
    m[1, 3] = 0
    rle = mask_utils.encode(np.asfortranarray(m))
    assert match_ranked([RankedRegion(1, 1.0, rle=rle)], gts, CAT).tolist() == [False]
    assert match_ranked([RankedRegion(1, 1.0, rle=rle)], gts, CAT, iou_thr=0.4).tolist() == [True]


def test_duplicates_of_one_gt_are_false_positives(two_images):
    ranked = [reg(2, A, 0.9), reg(2, A, 0.8), reg(2, (0, 0, 4, 3), 0.7)]
    m = match_ranked_detailed(ranked, two_images, CAT)
    assert m.status.tolist() == [HIT, FALSE_POSITIVE, FALSE_POSITIVE]
    assert m.matched_gt.tolist() == [0, -1, -1]
    assert m.best_iou.tolist() == [1.0, 1.0, 0.75]
    res = evaluate_category(ranked, two_images, CAT, ks=(3,))
    assert res.precision_at[3] == pytest.approx(1 / 3)
    assert res.recall_at[3] == pytest.approx(1 / 3)
    # one hit at rank 1 of three instances: precision 1 up to recall 1/3 (levels 0..0.33 = 34)
    assert res.ap == pytest.approx(34 / 101)


def test_ties_in_score_keep_the_given_order(two_images):
    hit, miss = reg(2, A, 0.5), reg(2, FAR, 0.5)
    m = match_ranked_detailed([miss, hit], two_images, CAT)
    assert m.order.tolist() == [0, 1]
    assert m.hits.tolist() == [False, True]
    assert match_ranked([hit, miss], two_images, CAT).tolist() == [True, False]
    # a higher score wins regardless of the given order
    m = match_ranked_detailed([miss, reg(2, A, 0.6)], two_images, CAT)
    assert m.order.tolist() == [1, 0]
    assert m.hits.tolist() == [True, False]
    # n_gt = 3 in the fixture: hit at rank 2 vs rank 1
    assert evaluate_category([miss, hit], two_images, CAT).ap == pytest.approx(0.5 * 34 / 101)
    assert evaluate_category([hit, miss], two_images, CAT).ap == pytest.approx(34 / 101)


def test_ties_in_iou_pick_lower_gt_index_then_the_other():
    top, bottom = (0, 0, 4, 2), (0, 2, 4, 2)
    gts = {1: [gt(1, 1, top), gt(2, 1, bottom)]}
    both = (0, 0, 4, 4)  # IoU 0.5 with each
    m = match_ranked_detailed([reg(1, both, 0.9), reg(1, both, 0.8), reg(1, both, 0.7)], gts, CAT)
    assert m.status.tolist() == [HIT, HIT, FALSE_POSITIVE]
    assert m.matched_gt.tolist() == [0, 1, -1]


def test_higher_iou_gt_is_preferred():
    g0, g1 = (0, 0, 4, 4), (0, 1, 4, 4)
    gts = {1: [gt(1, 1, g0), gt(2, 1, g1)]}
    r = (0, 1, 4, 4)  # IoU 12/20 with g0, 1.0 with g1
    m = match_ranked_detailed([reg(1, r, 1.0)], gts, CAT)
    assert m.matched_gt.tolist() == [1]


def test_crowd_region_is_ignored_with_crowd_iou():
    crowd_box = (0, 0, 10, 10)
    gts = {1: [gt(1, 1, crowd_box, iscrowd=True), gt(2, 1, (12, 12, 4, 4))]}
    inside = (1, 1, 2, 2)  # plain IoU 4/100, crowd IoU |r & crowd| / |r| = 1
    ranked = [reg(1, inside, 0.9), reg(1, (2, 2, 3, 3), 0.8), reg(1, (12, 12, 4, 4), 0.7), reg(1, FAR, 0.6)]
    m = match_ranked_detailed(ranked, gts, CAT)
    assert m.n_gt == 1  # the crowd instance is not counted
    assert m.status.tolist() == [IGNORED, IGNORED, HIT, FALSE_POSITIVE]  # crowd absorbs any number
    assert m.matched_gt.tolist() == [0, 0, 1, -1]
    assert m.hits.tolist() == [True, False]  # ignored regions dropped from the ranking
    res = evaluate_category(ranked, gts, CAT, ks=(1, 2, 4))
    assert res.n_ignored == 2 and res.n_returned == 4
    assert res.precision_at == {1: 1.0, 2: 0.5, 4: 0.25}
    assert res.ap == 1.0


def test_region_half_outside_crowd_is_false_positive():
    gts = {1: [gt(1, 1, (0, 0, 10, 10), iscrowd=True)]}
    # 3 of 8 pixels inside the crowd: crowd IoU 3/8 < 0.5
    assert match_ranked_detailed([reg(1, (7, 0, 8, 1), 1.0)], gts, CAT).status.tolist() == [FALSE_POSITIVE]


def test_real_instance_beats_overlapping_crowd():
    gts = {1: [gt(1, 1, (0, 0, 10, 10), iscrowd=True), gt(2, 1, (2, 2, 4, 4))]}
    m = match_ranked_detailed([reg(1, (2, 2, 4, 4), 1.0), reg(1, (2, 2, 4, 4), 0.9)], gts, CAT)
    # first: the counted instance; the duplicate then falls inside the crowd -> ignored, not FP
    assert m.status.tolist() == [HIT, IGNORED]
    assert m.matched_gt.tolist() == [1, 0]


def test_ignore_instance_absorbs_one_region_only():
    gts = {1: [gt(1, 1, A, ignore=True)]}
    m = match_ranked_detailed([reg(1, A, 0.9), reg(1, A, 0.8)], gts, CAT)
    assert m.n_gt == 0
    assert m.status.tolist() == [IGNORED, FALSE_POSITIVE]


def test_box_only_dataset_path():
    gts = {1: [gt(1, 1, A, masks=False), gt(2, 1, B, masks=False)], 2: []}
    ranked = [reg(1, (0, 0, 4, 2), 0.9, masks=False),   # box IoU 0.5 -> hit
              reg(1, (10, 10, 5, 5), 0.8, masks=False),  # exact -> hit
              reg(2, A, 0.7, masks=False)]               # image without instances -> FP
    m = match_ranked_detailed(ranked, gts, CAT, use_masks=False)
    assert m.status.tolist() == [HIT, HIT, FALSE_POSITIVE]
    # a region with a mask only: its box is derived from the mask
    assert match_ranked([RankedRegion(1, 1.0, rle=rect_rle(*A))], gts, CAT, use_masks=False).tolist() == [True]
    with pytest.raises(InvalidRequestError, match="box IoU"):
        match_ranked(ranked, gts, CAT, use_masks=True)


def test_box_iou_differs_from_mask_iou():
    # an L-shaped mask whose box equals the instance box: box IoU 1, mask IoU 7/16 (< 0.5)
    m = np.zeros((H, W), dtype=np.uint8)
    m[0:4, 0] = 1
    m[3, 0:4] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    gts = {1: [gt(1, 1, A)]}
    region = RankedRegion(1, 1.0, rle=rle)
    assert match_ranked([region], gts, CAT, use_masks=True).tolist() == [False]
    assert match_ranked([region], gts, CAT, use_masks=False).tolist() == [True]


def test_gt_less_category_and_summary(two_images):
    ks = (1, 5)
    cat = evaluate_category([reg(1, A, 0.9), reg(2, A, 0.8)], two_images, CAT, name="cat", ks=ks)
    other = evaluate_category([reg(1, C, 0.9)], two_images, OTHER, name="other", ks=ks)
    empty = evaluate_category([reg(1, A, 0.9), reg(3, A, 0.5)], two_images, 99, name="none", ks=ks)
    assert empty.n_gt == 0 and empty.n_hits == 0
    assert math.isnan(empty.ap) and math.isnan(empty.recall_at[1])
    assert empty.precision_at == {1: 0.0, 5: 0.0}
    s = summarize([cat, other, empty])
    assert s.n_categories_evaluated == 2 and len(s.per_category) == 3
    assert s.mean_precision_at[1] == 1.0
    assert s.mean_precision_at[5] == pytest.approx((2 / 5 + 1 / 5) / 2)
    assert s.mean_recall_at[5] == pytest.approx((2 / 3 + 1.0) / 2)
    # cat: hits at ranks 1,2 of 3 -> 67 levels (0..0.66) at 1; other: AP 1
    assert s.mean_ap == pytest.approx((67 / 101 + 1.0) / 2)
    doc = json.loads(json.dumps(s.to_json(), allow_nan=False))
    assert doc["mean"]["ap"] == pytest.approx(s.mean_ap)
    assert doc["per_category"][2]["ap"] is None
    assert doc["per_category"][2]["recall_at"]["1"] is None
    assert doc["per_category"][0]["pr_curve"]["precision"] == [1.0, 1.0]
    assert doc["iou_type"] == "mask" and doc["n_categories"] == 3


def test_summary_of_nothing_and_mismatched_ks(two_images):
    s = summarize([])
    assert math.isnan(s.mean_ap) and s.n_categories_evaluated == 0
    a = evaluate_category([], two_images, CAT, ks=(1,))
    b = evaluate_category([], two_images, CAT, ks=(5,))
    with pytest.raises(InvalidRequestError):
        summarize([a, b])


def test_bad_inputs_are_refused(two_images):
    with pytest.raises(InvalidRequestError, match="not in the ground truth"):
        match_ranked([reg(42, A, 1.0)], two_images, CAT)
    with pytest.raises(InvalidRequestError, match="non-finite"):
        match_ranked([reg(1, A, float("nan"))], two_images, CAT)
    with pytest.raises(InvalidRequestError, match="IoU threshold"):
        match_ranked([], two_images, CAT, iou_thr=0.0)
    with pytest.raises(InvalidRequestError, match="different sizes"):
        match_ranked([RankedRegion(1, 1.0, rle=rect_rle(*A, size=(10, 10)))], two_images, CAT)
    with pytest.raises(InvalidRequestError, match="no mask"):
        match_ranked([RankedRegion(1, 1.0, bbox=(0, 0, 4, 4))], two_images, CAT)
    with pytest.raises(InvalidRequestError):
        evaluate_category([], two_images, CAT, ks=())


# --- segmentation ceiling ----------------------------------------------------------------------


def test_segmentation_ceiling_by_hand(two_images):
    two_images = dict(two_images)
    two_images[3] = [gt(5, 3, (0, 0, 10, 10), iscrowd=True)]  # crowd: never counted
    regions = {
        1: [reg(1, A, 0), reg(1, (0, 10, 6, 3), 0)],  # covers A; C only at IoU 0.5 -> covered
        2: [reg(2, (0, 0, 2, 2), 0)],                 # IoU 0.25 with A -> not covered
        3: [reg(3, (0, 0, 10, 10), 0)],
        7: [reg(7, A, 0)],                            # image without ground truth: irrelevant
    }
    c = segmentation_ceiling(regions, two_images)
    assert (c.covered, c.total) == (2, 4)  # A@1, C@1 of A@1, B@1, C@1, A@2
    assert c.fraction == 0.5
    assert (c.per_category[CAT].covered, c.per_category[CAT].total) == (1, 3)
    assert (c.per_category[OTHER].covered, c.per_category[OTHER].total) == (1, 1)
    assert segmentation_ceiling(regions, two_images, iou_thr=0.2).covered == 3
    # bare RLE dicts are accepted; images absent from the regions are uncovered
    bare = segmentation_ceiling({1: [rect_rle(*B)]}, two_images)
    assert (bare.covered, bare.total) == (1, 4)
    assert json.loads(json.dumps(c.to_json()))["per_category"]["1"]["fraction"] == pytest.approx(1 / 3)


def test_segmentation_ceiling_boxes_and_empty():
    gts = {1: [gt(1, 1, A, masks=False)]}
    assert segmentation_ceiling({1: [reg(1, A, 0, masks=False)]}, gts, use_masks=False).fraction == 1.0
    empty = segmentation_ceiling({}, {1: []})
    assert empty.total == 0 and math.isnan(empty.fraction)


# --- cross-check against pycocotools' COCOeval -------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_matches_cocoeval_on_seeded_random_data(seed):
    """Crowds, duplicates, misses and images without instances, against COCOeval at IoU 0.5."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(seed)
    size = 48
    images, anns, dets = [], [], []
    gts_by_image: dict[int, list[GtInstance]] = {}
    ann_id = 0
    for image_id in range(1, 7):
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": size, "height": size})
        gts_by_image[image_id] = []
        for _ in range(int(rng.integers(0, 5))):
            ann_id += 1
            w, h = (int(v) for v in rng.integers(4, 16, size=2))
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            cat = int(rng.integers(1, 3))
            crowd = bool(rng.random() < 0.15)
            rle = rect_rle(x, y, w, h, size=(size, size))
            gts_by_image[image_id].append(GtInstance(ann_id, image_id, cat, (x, y, w, h), w * h, crowd, rle))
            anns.append({"id": ann_id, "image_id": image_id, "category_id": cat, "segmentation": rle,
                         "area": w * h, "bbox": [x, y, w, h], "iscrowd": int(crowd)})
            for _ in range(int(rng.integers(0, 3))):  # jittered copies: hits, duplicates, misses
                dx, dy = (int(v) for v in rng.integers(-2, 3, size=2))
                jx, jy = min(max(x + dx, 0), size - w), min(max(y + dy, 0), size - h)
                dets.append((image_id, cat, (jx, jy, w, h)))
        for _ in range(int(rng.integers(0, 3))):  # random boxes
            w, h = (int(v) for v in rng.integers(3, 12, size=2))
            dets.append((image_id, int(rng.integers(1, 3)),
                         (int(rng.integers(0, size - w)), int(rng.integers(0, size - h)), w, h)))
    scores = rng.permutation(len(dets)) / len(dets) + 0.01  # distinct scores
    coco_gt = COCO()
    coco_gt.dataset = {"images": images, "annotations": anns,
                       "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([
            {"image_id": i, "category_id": c, "segmentation": rect_rle(*b, size=(size, size)),
             "score": float(s)} for (i, c, b), s in zip(dets, scores)
        ])
        ev = COCOeval(coco_gt, coco_dt, iouType="segm")
        ev.params.iouThrs = np.array([0.5])
        ev.params.maxDets = [1000]
        ev.params.areaRng = [[0, 1e10]]
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
        ev.accumulate()
    nontrivial = 0
    for k, cat in enumerate(ev.params.catIds):
        ranked = [RankedRegion(i, float(s), rle=rect_rle(*b, size=(size, size)))
                  for (i, c, b), s in zip(dets, scores) if c == cat]
        ours = evaluate_category(ranked, gts_by_image, cat).ap
        theirs = float(np.mean(ev.eval["precision"][0, :, k, 0, 0]))
        assert ours == pytest.approx(theirs, abs=1e-9), cat
        nontrivial += 0.0 < theirs < 1.0
    assert nontrivial > 0
