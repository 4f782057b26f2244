"""Ranking policy of search_vector: regions before scenes (whole-image regions), on a real DataDir."""

from __future__ import annotations

import numpy as np
import pytest

from regionsearch.datadir import DataDir, ImageResult, Manifest
from regionsearch.errors import InvalidRequestError
from regionsearch.search import SearchFilters, search_vector
from regionsearch.types import Region

DIM = 8
MANIFEST = Manifest(embedder="test", pretrained=None, dim=DIM, pipeline_key="k", segmenter={}, crop={})


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def _rect(y0, y1, x0, x1, piou=0.9, stab=None, size=40):
    """A region whose mask is the rectangle [y0:y1, x0:x1] of a ``size`` x ``size`` image."""
    from regionsearch.masks import encode_rle, mask_to_bbox

    m = np.zeros((size, size), bool)
    m[y0:y1, x0:x1] = True
    return Region(bbox=mask_to_bbox(m), area=int(m.sum()), rle=encode_rle(m), predicted_iou=piou,
                  stability_score=stab)


def _cosine(c):
    """A unit vector whose cosine with the query (the first axis) is ``c``."""
    return _unit(np.array([c, np.sqrt(1 - c * c), 0, 0], np.float32))


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
    from regionsearch.search import RegionSet

    regions = [_rect(0, 20, 0, 20),    # the object
               _rect(0, 20, 0, 18),    # near-copy: IoU 0.9
               _rect(0, 8, 0, 8),      # a part of it: IoU 0.16, but all of it lies inside
               _rect(0, 20, 0, 21),    # the object plus a sliver: IoU 0.95
               _rect(25, 40, 25, 40)]  # another object
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
    from regionsearch.search import RegionSet

    regions = [_rect(0, 20, 0, 20), _rect(0, 20, 0, 19), _rect(25, 40, 25, 40), _rect(22, 30, 0, 10)]
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
    from regionsearch.search import RegionSet

    regions = [_rect(0, 12, 0, 20, 0.85, 0.80),    # a part of the object, scores 1.0
               _rect(0, 20, 0, 20, 0.98, 0.97),    # the object, 0.99
               _rect(0, 20, 0, 22, 0.99, 0.99),    # the object plus a sliver: fits "best", scores 0.90
               _rect(25, 40, 25, 40, 0.9, 0.9)]    # another object, 0.5
    q = np.zeros(4, np.float32)
    q[0] = 1
    vectors = np.stack([_cosine(c) for c in (1.0, 0.99, 0.90, 0.5)])
    source = RegionSet(regions, vectors, 40, 40)
    hits = search_vector(source, q, k=5, dedupe_consensus=(None, 0.0, 0))
    assert [h.region_id for h in hits] == [1, 3]
    assert hits[0].score == pytest.approx(0.99, abs=1e-5)  # the shown member's own score
    # by default plus the consensus bonus: region 1 is a further member within 0.02 of the best (1.0)
    hits = search_vector(source, q, k=5)
    assert [h.region_id for h in hits] == [1, 3]
    assert hits[0].score == pytest.approx(0.99 + 0.01, abs=1e-5)
    assert [h.region_id for h in search_vector(source, q, k=5, dedupe_best_fit=None)] == [0, 3]
    assert [h.region_id for h in search_vector(source, q, k=5, dedupe_best_fit=0.2)] == [2, 3]
    assert [h.region_id for h in search_vector(source, q, k=5, filters=SearchFilters(dedupe=False))] == [0, 1, 2, 3]


def _consensus_source(specs):
    """A RegionSet of square masks: ``specs`` = (y0, x0, size, cosine with the query[, SAM's
    predicted IoU]) each."""
    from regionsearch.search import RegionSet

    regions, vectors = [], []
    for y0, x0, size, c, *piou in specs:
        regions.append(_rect(y0, y0 + size, x0, x0 + size, piou[0] if piou else 0.9, 0.9, size=64))
        vectors.append(_cosine(c))
    q = np.zeros(4, np.float32)
    q[0] = 1
    return RegionSet(regions, np.stack(vectors), 64, 64), q


def test_an_object_found_several_times_outranks_a_lone_mask_scoring_a_little_higher():
    """Issue #17: a group of near-duplicates ranks by its shown member's score plus
    ``dedupe_consensus`` per further member within ``dedupe_consensus_within`` of its best (at most
    ``dedupe_consensus_max``); without dedupe, or with the bonus off, scores are plain similarities."""
    source, q = _consensus_source([
        (0, 0, 10, 0.905),     # 0: a lone mask (the wrong shape a small CLIP likes)
        (20, 20, 20, 0.900),   # 1: an object ...
        (20, 20, 19, 0.895),   # 2: ... found again (IoU 0.90), within 0.02
        (20, 21, 19, 0.885),   # 3: ... and again (IoU 0.90), within 0.02
        (20, 20, 18, 0.870),   # 4: ... and again, 0.03 below its best: no evidence counted
        (45, 45, 15, 0.500)])  # 5: another object
    hits = search_vector(source, q, k=3)
    assert [h.region_id for h in hits] == [1, 0, 5]
    assert [round(h.score, 4) for h in hits] == [0.92, 0.905, 0.5]
    # the k = 1 answer is the same object: a search may not stop before the group's members come
    assert [h.region_id for h in search_vector(source, q, k=1)] == [1]
    # 0.002 per further member (0.904): the lone mask stays first; at most 1 counted, 0.91: it does not
    assert [h.region_id for h in search_vector(source, q, k=2, dedupe_consensus=(0.002, 0.02, 2))] == [0, 1]
    assert [h.region_id for h in search_vector(source, q, k=2, dedupe_consensus=(0.01, 0.02, 1))] == [1, 0]
    assert search_vector(source, q, k=2, dedupe_consensus=(0.01, 0.02, 1))[0].score == pytest.approx(0.91, abs=1e-5)
    # a wider window counts region 4 too, up to the most counted
    assert search_vector(source, q, k=1, dedupe_consensus=(0.01, 0.05, 5))[0].score == pytest.approx(0.93, abs=1e-5)
    # min_score is for the hit's score: the object (similarity 0.90, 0.92 with the bonus) passes 0.91
    kept = search_vector(source, q, k=3, filters=SearchFilters(min_score=0.91))
    assert [(h.region_id, round(h.score, 4)) for h in kept] == [(1, 0.92)]
    off = search_vector(source, q, k=3, dedupe_consensus=(None, 0.02, 2))
    assert [(h.region_id, round(h.score, 4)) for h in off] == [(0, 0.905), (1, 0.9), (5, 0.5)]
    plain = search_vector(source, q, k=6, filters=SearchFilters(dedupe=False))
    assert [(h.region_id, round(h.score, 4)) for h in plain] == [(0, 0.905), (1, 0.9), (2, 0.895), (3, 0.885),
                                                               (4, 0.87), (5, 0.5)]
    with pytest.raises(InvalidRequestError):
        search_vector(source, q, k=1, dedupe_consensus=(-0.01, 0.02, 2))


@pytest.mark.parametrize("consensus", [(0.01, 0.02, 2), (None, 0.02, 2)], ids=["consensus", "no-consensus"])
def test_the_top_k_are_the_same_whatever_k(consensus):
    """The top k of a search are the first k of a search for more, and a min_score at the k-th
    hit's score keeps exactly those k (the early stop is safe), on random overlapping masks with
    random scores and fits. Before, a search stopped making groups at k: a mask scoring above a
    group's better-fitting (shown, lower-scoring) member was left out, and came back with a larger k
    (fresh-clone CI, tests/e2e/test_search_quality.py::test_filters)."""
    rng = np.random.default_rng(7)
    for trial in range(30):
        specs = [(int(rng.integers(0, 40)), int(rng.integers(0, 40)), int(rng.integers(8, 24)),
                  float(rng.uniform(0.8, 0.95)), float(rng.uniform(0.5, 1.0))) for _ in range(40)]
        source, q = _consensus_source(specs)
        full = [(h.region_id, round(h.score, 6)) for h in search_vector(source, q, k=40, dedupe_consensus=consensus)]
        for k in (1, 2, 3, 5, 8):
            got = [(h.region_id, round(h.score, 6))
                   for h in search_vector(source, q, k=k, oversample=1, dedupe_consensus=consensus)]
            assert got == full[:k], (trial, k)
            at_least = search_vector(source, q, k=40, dedupe_consensus=consensus,
                                     filters=SearchFilters(min_score=got[-1][1] - 1e-6))
            assert [h.region_id for h in at_least] == [r for r, _ in got], (trial, k)


def test_two_halves_of_an_object_become_one_hit_when_the_whole_object_holds_both():
    """Issue #17 (held-out seeds 90214 and 90217): SAM returned an object's two halves (IoU 0.25,
    neither 0.7 inside the other) and the whole object; each half scored above the whole, so the
    top 10 showed the object twice. The whole, within ``dedupe_merge`` of both halves' scores,
    makes their groups one, shown by it (it fits best): the object's box, not a half's."""
    from regionsearch.search import RegionSet

    regions = [_rect(10, 40, 10, 28, 0.80, 0.9, size=64),   # left half (and a little more), 0.914
               _rect(10, 40, 22, 40, 0.78, 0.9, size=64),   # right half, 0.913: IoU with the left 0.2
               _rect(10, 40, 10, 40, 0.96, 0.9, size=64),   # the whole object, 0.885: holds both
               _rect(50, 60, 50, 60, 0.90, 0.9, size=64)]   # another object, 0.5
    q = np.zeros(4, np.float32)
    q[0] = 1
    vectors = np.stack([_cosine(c) for c in (0.914, 0.913, 0.885, 0.5)])
    source = RegionSet(regions, vectors, 64, 64)
    hits = search_vector(source, q, k=5)
    # shown by the whole object (it fits best), at its own score plus one further find within 0.02
    # of the group's best (the right half)
    assert [h.region_id for h in hits] == [2, 3]
    assert hits[0].score == pytest.approx(0.885 + 0.01, abs=1e-5)
    assert [h.region_id for h in search_vector(source, q, k=5, dedupe_merge=None)] == [0, 1, 3]
    # the whole object scoring too far below the halves (0.05) is no evidence that they are one
    assert [h.region_id for h in search_vector(source, q, k=5, dedupe_merge=0.02)] == [0, 1, 3]
    assert [h.region_id for h in search_vector(source, q, k=1)] == [2]
    # without best_fit a group is shown by its best-scoring member, merged or not
    assert [h.region_id for h in search_vector(source, q, k=5, dedupe_best_fit=None)] == [0, 3]
    with pytest.raises(InvalidRequestError):
        search_vector(source, q, k=1, dedupe_merge=-1.0)


def test_two_halves_are_one_hit_whatever_order_the_whole_object_comes_in():
    """The whole object may score between the two halves, and fit worse than the first (so it
    does not show the group): it still ties the second half to the first half's group, as when it
    comes last (seed 90217, flip-averaged crops: a purple triangle's halves, IoU 0.28, 45% / 42%
    inside each other, at ranks 4 and 10 of one top 10, the whole object scoring between them)."""
    from regionsearch.search import RegionSet

    def run(scores, k=5, **kw):
        regions = [_rect(10, 40, 10, 28, 0.95, 0.9, size=64),   # left half, fits best
                   _rect(10, 40, 22, 40, 0.78, 0.9, size=64),   # right half: IoU with the left 0.2
                   _rect(10, 40, 10, 40, 0.80, 0.9, size=64),   # the whole object: holds both
                   _rect(50, 60, 50, 60, 0.90, 0.9, size=64)]   # another object
        vectors = np.stack([_cosine(c) for c in scores])
        q = np.array([1, 0, 0, 0], np.float32)
        return [h.region_id for h in search_vector(RegionSet(regions, vectors, 64, 64), q, k=k, **kw)]

    between = (0.914, 0.890, 0.905, 0.5)   # left, right, whole: the whole comes second
    last = (0.914, 0.905, 0.890, 0.5)      # the whole comes last: merged (the rule before)
    assert run(last) == [0, 3]
    assert run(between) == [0, 3]
    # the right half scoring more than dedupe_merge below the whole is not tied to it
    assert run((0.914, 0.840, 0.905, 0.5)) == [0, 1, 3]
    # the whole object more than dedupe_merge below the first half is no bridge
    assert run((0.914, 0.850, 0.860, 0.5)) == [0, 1, 3]
    assert run(between, dedupe_merge=None) == [0, 1, 3]
    # the same top hits whatever k
    for k in (1, 2):
        assert run(between, k=k) == [0, 3][:k]
