"""Ranking policy of search_vector: regions before scenes (whole-image regions), on a real DataDir."""

from __future__ import annotations

import numpy as np
import pytest

from regionsearch.datadir import DataDir, ImageResult, Manifest
from regionsearch.search import SearchFilters, search_vector
from regionsearch.types import Region

DIM = 8
MANIFEST = Manifest(embedder="test", pretrained=None, dim=DIM, pipeline_key="k", segmenter={}, crop={})


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def _image(path, vectors, kinds):
    regs = [Region((0.0, 0.0, 4.0, 4.0), 16, {"size": [8, 8], "counts": "PP0"}, 0.9, 0.95, kind=k) for k in kinds]
    return ImageResult(str(path), f"sha-{path.name}", 8, 8, "k", regs, np.stack([_unit(v) for v in vectors]))


@pytest.fixture
def dd(tmp_path):
    q = np.eye(DIM, dtype=np.float32)[0]
    other = np.eye(DIM, dtype=np.float32)[1]
    with DataDir.open(tmp_path / "data", MANIFEST) as d:
        d.commit([
            # A: the scene matches best (0.99), its object nearly as well (0.97): the object wins
            _image(tmp_path / "a.png", [q + 0.14 * other, q + 0.25 * other], ["whole", "mask"]),
            # B: the scene matches (0.95) and none of its objects does: the scene is the answer
            _image(tmp_path / "b.png", [q + 0.33 * other, other], ["whole", "mask"]),
        ])
        yield d, q


def _scores(hits):
    return [(h.image_path.rsplit("/", 1)[-1], h.kind) for h in hits]


def test_whole_image_gives_way_to_its_own_object_but_stays_when_no_object_matches(dd):
    d, q = dd
    hits = search_vector(d, q, k=3)
    got = _scores(hits)
    assert ("a.png", "whole") not in got  # its mask scores within the margin of it
    assert got[:2] == [("a.png", "mask"), ("b.png", "whole")]


def test_policy_off_and_whole_only_requests_keep_scenes(dd):
    d, q = dd
    assert _scores(search_vector(d, q, k=2, whole_margin=None)) == [("a.png", "whole"), ("a.png", "mask")]
    only = search_vector(d, q, k=2, filters=SearchFilters(kinds=("whole",)))
    assert _scores(only) == [("a.png", "whole"), ("b.png", "whole")]


def test_a_scene_that_clearly_beats_its_objects_is_kept(dd):
    d, q = dd
    # margin 0: the whole image of A (0.99) beats its mask (0.97), so it stays, first
    assert _scores(search_vector(d, q, k=1, whole_margin=0.0)) == [("a.png", "whole")]


def test_near_duplicates_collapse_into_the_best_hit_unless_dedupe_is_off():
    from regionsearch.masks import encode_rle, mask_to_bbox
    from regionsearch.search import RegionSet

    def region(y0, y1, x0, x1):
        m = np.zeros((40, 40), bool)
        m[y0:y1, x0:x1] = True
        return Region(bbox=mask_to_bbox(m), area=int(m.sum()), rle=encode_rle(m), predicted_iou=0.9)

    regions = [region(0, 20, 0, 20),    # the object
               region(0, 20, 0, 18),    # near-copy: IoU 0.9
               region(0, 8, 0, 8),      # a part of it: IoU 0.16, but all of it lies inside
               region(0, 20, 0, 21),    # the object plus a sliver: IoU 0.95
               region(25, 40, 25, 40)]  # another object
    q = np.zeros(4, np.float32)
    q[0] = 1
    vectors = np.stack([_unit(np.array([1.0, s, 0, 0], np.float32)) for s in (0.0, 0.1, 0.2, 0.3, 0.4)])
    source = RegionSet(regions, vectors, 40, 40)
    assert [h.region_id for h in search_vector(source, q, k=5)] == [0, 4]
    assert [h.region_id for h in search_vector(source, q, k=5, filters=SearchFilters(dedupe=False))] == [0, 1, 2, 3, 4]
    iou_only = search_vector(source, q, k=5, dedupe_contain=None)
    assert [h.region_id for h in iou_only] == [0, 2, 4]


def test_more_like_this_drops_near_duplicates_of_the_query_region():
    """A region's own near-copies (the same object found twice by SAM) are not "similar regions":
    with the query region excluded they would come first with a score of ~1.0."""
    from regionsearch.masks import encode_rle, mask_to_bbox
    from regionsearch.search import RegionSet

    def region(y0, y1, x0, x1):
        m = np.zeros((40, 40), bool)
        m[y0:y1, x0:x1] = True
        return Region(bbox=mask_to_bbox(m), area=int(m.sum()), rle=encode_rle(m), predicted_iou=0.9)

    regions = [region(0, 20, 0, 20), region(0, 20, 0, 19), region(25, 40, 25, 40), region(22, 30, 0, 10)]
    vectors = np.stack([_unit(np.array([1.0, s, 0, 0], np.float32)) for s in (0.0, 0.01, 0.3, 0.5)])
    source = RegionSet(regions, vectors, 40, 40)
    like_0 = search_vector(source, vectors[0], k=5, exclude=(0,))
    assert [h.region_id for h in like_0] == [2, 3]  # region 1 (IoU 0.95 with region 0) is dropped
    assert [h.region_id for h in search_vector(source, vectors[0], k=5, exclude=(0,),
                                               filters=SearchFilters(dedupe=False))] == [1, 2, 3]


def test_an_object_query_gets_no_scene_that_only_its_parts_match(tmp_path):
    """Issue #17: for an object query (a region scores at least as well as every whole image) a
    whole image none of whose objects answers it (a bag-of-words match of its parts) is no hit;
    with ``scenes_for_objects`` it is, as before."""
    q = np.eye(DIM, dtype=np.float32)[0]
    other = np.eye(DIM, dtype=np.float32)[1]
    with DataDir.open(tmp_path / "data", MANIFEST) as d:
        d.commit([
            # C: the scene scores 0.90, its only object 0.0
            _image(tmp_path / "c.png", [q + 0.48 * other, other], ["whole", "mask"]),
            # D: an object that is the query (1.0) in a scene that is not (0.45)
            _image(tmp_path / "d.png", [q + 2.0 * other, q], ["whole", "mask"]),
        ])
        assert _scores(search_vector(d, q, k=3)) == [("d.png", "mask"), ("c.png", "mask")]
        before = search_vector(d, q, k=3, scenes_for_objects=True)  # D's scene gives way to its object
        assert _scores(before) == [("d.png", "mask"), ("c.png", "whole"), ("c.png", "mask")]
        # asked for scenes only, or with the policy off, every scene stays
        only = search_vector(d, q, k=3, filters=SearchFilters(kinds=("whole",)))
        assert _scores(only) == [("c.png", "whole"), ("d.png", "whole")]
        assert len(search_vector(d, q, k=4, whole_margin=None)) == 4


def test_a_collapsed_group_is_shown_by_its_best_fitting_member():
    """Issue #17: SAM's part of an object (or the object plus a piece of its neighbour) can score a
    little above the object; the group is shown by the member SAM says fits best (predicted IoU x
    stability) among those within ``dedupe_best_fit`` of the best score, at its own score."""
    from regionsearch.masks import encode_rle, mask_to_bbox
    from regionsearch.search import RegionSet

    def region(y0, y1, x0, x1, piou, stab):
        m = np.zeros((40, 40), bool)
        m[y0:y1, x0:x1] = True
        return Region(bbox=mask_to_bbox(m), area=int(m.sum()), rle=encode_rle(m), predicted_iou=piou,
                      stability_score=stab)

    regions = [region(0, 12, 0, 20, 0.85, 0.80),    # a part of the object, scores 1.0
               region(0, 20, 0, 20, 0.98, 0.97),    # the object, 0.99
               region(0, 20, 0, 22, 0.99, 0.99),    # the object plus a sliver: fits "best", scores 0.90
               region(25, 40, 25, 40, 0.9, 0.9)]    # another object, 0.5
    q = np.zeros(4, np.float32)
    q[0] = 1
    vectors = np.stack([_unit(np.array([c, np.sqrt(1 - c * c), 0, 0], np.float32)) for c in (1.0, 0.99, 0.90, 0.5)])
    source = RegionSet(regions, vectors, 40, 40)
    hits = search_vector(source, q, k=5)
    assert [h.region_id for h in hits] == [1, 3]
    assert hits[0].score == pytest.approx(0.99, abs=1e-5)  # the shown member's own score
    assert [h.region_id for h in search_vector(source, q, k=5, dedupe_best_fit=None)] == [0, 3]
    assert [h.region_id for h in search_vector(source, q, k=5, dedupe_best_fit=0.2)] == [2, 3]
    assert [h.region_id for h in search_vector(source, q, k=5, filters=SearchFilters(dedupe=False))] == [0, 1, 2, 3]
