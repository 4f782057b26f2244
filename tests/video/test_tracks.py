"""Track building: the keyframe/propagation/re-matching rules with an oracle (narrow unit tests),
then end to end on a moving-shapes clip with the tiny models and the chain propagator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from regionsearch.errors import ConfigError, UnknownNameError
from regionsearch.evaluation.video import PredTrack, evaluate_tracking, parse_ytvis
from regionsearch.masks import decode_rle, encode_rle, mask_iou, mask_to_bbox
from regionsearch.testing.clips import make_clip
from regionsearch.types import Region
from regionsearch.video.decode import SampledFrame
from regionsearch.video.tracks import (
    Proposal,
    TrackBuilder,
    build_tracks,
    create_propagator,
    interior_point,
    propagate_prompt,
)


class _Clock:
    index = 0


class OracleSegmenter:
    """Ground-truth masks of the current frame as automatic masks."""

    def __init__(self, clip, clock):
        self.clip, self.clock = clip, clock

    def segment(self, image):
        f = self.clock.index
        return [Region(bbox=mask_to_bbox(m), area=int(m.sum()), rle=encode_rle(m), predicted_iou=0.9,
                       stability_score=0.9) for m, p in zip(self.clip.masks[f], self.clip.present[f]) if p]


class OraclePropagator:
    """Moves each object to the ground-truth mask that best overlaps its last mask; ``lose``
    holds (object index, frame) pairs where it finds nothing."""

    name = "oracle"

    def __init__(self, clip, clock, lose=()):
        self.clip, self.clock, self.lose, self.objects = clip, clock, set(lose), {}

    def step(self, image):
        f = self.clock.index
        out = {}
        for oid, last in self.objects.items():
            ious = [mask_iou(last, m) for m in self.clip.masks[f]]
            j = int(np.argmax(ious))
            if (j, f) not in self.lose and self.clip.present[f, j]:
                out[oid] = Proposal(self.clip.masks[f, j], 0.9)
        return out

    def add(self, oid, mask):
        self.objects[oid] = mask

    def remove(self, oid):
        self.objects.pop(oid, None)

    def begin(self, image):
        pass


def _frames(clip, clock):
    for f, img in enumerate(clip.frames):
        clock.index = f
        yield SampledFrame(index=f, t=f / clip.spec.fps, image=img, cut=f == 0)


def _gt(clip):
    anns = [{"id": j + 1, "video_id": 1, "category_id": 1,
             "segmentations": [encode_rle(clip.masks[f, j]) if clip.present[f, j] else None
                               for f in range(len(clip.frames))]} for j in range(len(clip.captions))]
    return parse_ytvis({"videos": [{"id": 1, "length": len(clip.frames)}], "annotations": anns})


def _score(clip, tracks):
    preds = [PredTrack(t.id, 1, t.masks_by_index()) for t in tracks]
    return evaluate_tracking(_gt(clip), preds, {1: range(len(clip.frames))})


def test_oracle_tracks_are_the_objects():
    clip, clock = make_clip(31, "slow", n_frames=9), _Clock()
    tracks, stats = build_tracks(_frames(clip, clock), OracleSegmenter(clip, clock), OraclePropagator(clip, clock),
                                 keyframe_every=4, min_area=1)
    assert len(tracks) == len(clip.captions) and stats.keyframes == 3 and stats.frames == 9
    res = _score(clip, tracks)
    assert res.mean_miou == 1.0 and res.max_switches == 0 and res.fragments_per_object == 1.0
    for t in tracks:
        assert [f.keyframe for f in t.frames] == [i % 4 == 0 for i in range(9)]
        assert (t.frame_start, t.frame_end, t.t_end) == (0, 8, 8 / clip.spec.fps)


def test_a_lost_object_is_resumed_at_the_next_keyframe_or_becomes_a_new_track_without_reid():
    clip = make_clip(31, "slow", n_frames=9)
    for reid_frames, n_tracks, fragments, switches in ((None, 3, 1, 0), (0, 4, 2, 1)):
        clock = _Clock()
        prop = OraclePropagator(clip, clock, lose={(0, 2)})
        tracks, _ = build_tracks(_frames(clip, clock), OracleSegmenter(clip, clock), prop, keyframe_every=4,
                                 min_area=1, reid_frames=reid_frames)
        assert len(tracks) == n_tracks
        res = _score(clip, tracks)
        lost = [o for o in res.objects if o.object_id == 1][0]
        assert (lost.fragments, lost.switches) == (fragments, switches)
        assert lost.miou == pytest.approx(7 / 9)  # frames 2 and 3 missed, found again at keyframe 4
        resumed = [t for t in tracks if t.frame_start == 0 and 2 not in t.masks_by_index()]
        assert [sorted(t.masks_by_index()) for t in resumed] == ([[0, 1, 4, 5, 6, 7, 8]] if reid_frames is None
                                                                 else [[0, 1]])


def _red_behind_blue(n_frames, width, height, red_box, blue_box, blue_caption):
    """A clip of a red and a blue box (``*_box(t)`` = row slice, column slice at frame ``t``) on
    grey, the blue one drawn on top; the oracle masks are what shows of each."""
    from types import SimpleNamespace

    frames, masks = [], []
    for t in range(n_frames):
        red, blue = np.zeros((height, width), bool), np.zeros((height, width), bool)
        red[red_box(t)] = True
        blue[blue_box(t)] = True
        red &= ~blue
        img = np.full((height, width, 3), 120, np.uint8)
        img[red], img[blue] = (215, 35, 35), (35, 75, 215)
        frames.append(img)
        masks.append([red, blue])
    masks = np.array(masks)
    return SimpleNamespace(frames=np.stack(frames), masks=masks, present=masks.sum((2, 3)) >= 64,
                           spec=SimpleNamespace(fps=2.0), captions=["red square", blue_caption])


def _crossing_clip(n_frames=13, width=240, height=200):
    """A fast red square (20 px, 16 px/frame) enters from the left border, passes behind a
    static blue square (60 px, drawn on top) at frames 2-6 and comes out on the other side. Its
    first two masks (entering: the visible part grows) make its measured motion 9 px/frame, so
    where it reappears is ~2.5 sizes from where that motion predicts: a crossing of a fast
    object the tracker loses and must resume, not restart."""
    def red(t):
        x = -14 + 16 * t
        return slice(40, 60), slice(max(x, 0), max(x + 20, 0))

    return _red_behind_blue(n_frames, width, height, red, lambda t: (slice(20, 80), slice(20, 80)), "blue square")


@pytest.mark.parametrize("reid_motion, red_tracks, switches", [(1.0, 1, 0), (0.0, 2, 1)])
def test_a_fast_object_hidden_at_a_crossing_keeps_its_identity(reid_motion, red_tracks, switches):
    """The re-identification tolerance grows with the predicted travel (``reid_motion``); with
    only the size-based tolerance (0: the earlier rule) the red square comes back as a new track,
    an identity switch."""
    clip, clock = _crossing_clip(), _Clock()
    tracks, _ = build_tracks(_frames(clip, clock), OracleSegmenter(clip, clock), OraclePropagator(clip, clock),
                             keyframe_every=4, min_area=64, reid_motion=reid_motion)
    red = [t for t in tracks if any(mask_iou(decode_rle(f.rle), clip.masks[f.index, 0]) > 0.5 for f in t.frames)]
    assert len(red) == red_tracks and len(tracks) == red_tracks + 1
    res = _score(clip, tracks)
    assert res.max_switches == switches
    if red_tracks == 1:
        assert sorted(red[0].masks_by_index()) == [0, 1, *range(8, 13)]  # hidden 2-6, found at keyframe 8


def test_a_resumed_track_needs_its_colour_and_a_plausible_place():
    """The wider tolerance is still a gate: the same crossing with the red square coming back
    green, or coming back 5 sizes off its line, starts a new track."""
    for change in ("colour", "place"):
        clip, clock = _crossing_clip(), _Clock()
        for t in range(7, 13):
            red = clip.masks[t, 0]
            if change == "colour":
                clip.frames[t][red] = (40, 165, 55)
            else:
                moved = np.roll(red, 100, axis=0)  # 111 px off, tolerance 20 + 9 x 7 = 83
                clip.frames[t][red] = 120
                clip.frames[t][moved] = (215, 35, 35)
                clip.masks[t, 0] = moved
        tracks, _ = build_tracks(_frames(clip, clock), OracleSegmenter(clip, clock), OraclePropagator(clip, clock),
                                 keyframe_every=4, min_area=64)
        assert len(tracks) == 3, change


def _head_on_clip(n_frames=9, width=240, height=200):
    """A red square (30 px, 12 px/frame to the right) meets a wide blue rectangle (100 x 60 px,
    12 px/frame to the left, drawn on top) head on: on frame 3 only a 10 px sliver of the red
    square's back shows (its centroid moved 2 px, not 12), on frames 4-6 it is hidden, on frame
    7 it comes out behind the blue one, whole again on frame 8."""
    def blue(t):
        left = 92 - 12 * t
        return slice(25, 85), slice(max(left, 0), max(left + 100, 0))

    return _red_behind_blue(n_frames, width, height, lambda t: (slice(40, 70), slice(10 + 12 * t, 40 + 12 * t)),
                            blue, "blue rectangle")


@pytest.mark.parametrize("steady_area, red_tracks", [(None, 1), (float("inf"), 2)])
def test_a_partly_hidden_mask_does_not_set_the_motion(monkeypatch, steady_area, red_tracks):
    """The sliver of the red square on frame 3 is a third of its area: its centroid's step
    (2 px) is not the square's motion (12 px), which the track keeps, so the square is resumed
    where it comes out at keyframe 8. Taking every centroid step as the motion (``STEADY_AREA``
    infinite: the earlier rule) predicts it 60 px short of there and starts a new track."""
    from regionsearch.video import tracks as tracks_mod

    if steady_area is not None:
        monkeypatch.setattr(tracks_mod, "STEADY_AREA", steady_area)
    clip, clock = _head_on_clip(), _Clock()
    assert clip.masks[:, 0].sum((1, 2)).tolist() == [900, 900, 900, 300, 0, 0, 0, 480, 900]
    tracks, _ = build_tracks(_frames(clip, clock), OracleSegmenter(clip, clock), OraclePropagator(clip, clock),
                             keyframe_every=4, min_area=64)
    red = [t for t in tracks if any(mask_iou(decode_rle(f.rle), clip.masks[f.index, 0]) > 0.5 for f in t.frames)]
    assert len(red) == red_tracks and len(tracks) == red_tracks + 1
    assert _score(clip, tracks).max_switches == red_tracks - 1
    if red_tracks == 1:
        assert sorted(red[0].masks_by_index()) == [0, 1, 2, 3, 8]


def test_a_propagated_mask_of_another_colour_loses_the_track():
    clip, clock = make_clip(31, "slow", n_frames=3), _Clock()

    class Jumping(OraclePropagator):
        def step(self, image):  # every object jumps onto object 0 at frame 1
            return {k: Proposal(self.clip.masks[self.clock.index, 0], 0.9) for k in self.objects}

    tracks, _ = build_tracks(_frames(clip, clock), OracleSegmenter(clip, clock), Jumping(clip, clock),
                             keyframe_every=8, min_area=1)
    kept = [t for t in tracks if len(t.frames) > 1]
    assert len(kept) == 1 and mask_iou(clip.masks[0, 0], decode_rle(kept[0].frames[0].rle)) == 1.0


def test_collapsed_area_ends_a_track():
    clip, clock = make_clip(31, "slow", n_frames=4), _Clock()

    class Shrinking(OraclePropagator):
        def step(self, image):
            out = super().step(image)
            return {k: Proposal(p.mask & (np.arange(p.mask.shape[1]) < 2)[None], p.score) for k, p in out.items()}

    tracks, _ = build_tracks(_frames(clip, clock), OracleSegmenter(clip, clock), Shrinking(clip, clock),
                             keyframe_every=8, min_area=1)
    assert all(len(t.frames) == 1 for t in tracks)


def test_bad_builder_arguments():
    with pytest.raises(ConfigError, match="keyframe_every"):
        TrackBuilder(None, None, keyframe_every=0)  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError, match="chain"):
        create_propagator("telepathy", None)


@pytest.fixture(scope="module")
def pipeline():
    from regionsearch.config import load_config
    from regionsearch.pipeline import Pipeline

    return Pipeline(load_config("tiny"))


@pytest.mark.slow
def test_tiny_models_track_search_and_follow_a_click(pipeline):
    """A slow clip end to end (mp4 decode, AMG keyframes, chain propagation, embeddings)."""
    import tempfile
    from pathlib import Path

    from regionsearch.testing.clips import write_mp4
    from regionsearch.video.decode import sample_frames
    from regionsearch.video.tracks import track_video

    clip = make_clip(90_001, "slow", n_frames=6)
    emb = pipeline.embedder
    with tempfile.TemporaryDirectory() as tmp:
        path = write_mp4(clip.spec, Path(tmp) / "c.mp4")
        result = track_video(str(path), pipeline, dataclasses.replace(pipeline.config.video, keyframe_every=3))
        tracks = result.tracks
        assert result.sampled == [(i, i / 2.0) for i in range(6)] and result.stats.keyframes == 2
        assert (result.info.width, result.info.n_frames) == (256, 6)
        res = _score(clip, tracks)
        assert res.mean_miou >= 0.85 and res.max_switches == 0, res.summary()
        vecs = np.stack([t.embedding for t in tracks])
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
        # every caption's best track is the object's track
        preds = [PredTrack(t.id, 1, t.masks_by_index()) for t in tracks]
        gt = _gt(clip)
        from regionsearch.evaluation.video import spatiotemporal_iou

        for j, cap in enumerate(clip.captions):
            best = int(np.argmax(vecs @ emb.embed_texts([cap])[0]))
            assert spatiotemporal_iou(preds[best].masks, gt.objects[j].masks, range(6)) >= 0.5, cap
        # one click on the first frame follows the object through the clip
        j = 0
        click = interior_point(clip.masks[0, j])
        got = propagate_prompt(sample_frames(path, 2.0), create_propagator("chain", pipeline.sam_model),
                               points=[click], labels=[1])
        ious = [mask_iou(p.mask, clip.masks[fr.index, j]) for fr, p in got]
        assert len(got) == 6 and np.mean(ious) >= 0.85, ious


@pytest.mark.slow
def test_memory_propagator_runs_on_the_tiny_model_with_bounded_memory(pipeline):
    """sam2's memory path (memory encoder + attention + object pointers) end to end through the
    track builder; the tiny memory path is untrained, so only mechanics are checked here (quality
    figures: benchmarks/video_tracks.py --propagator memory)."""
    from regionsearch.video.memory import MemoryPropagator

    clip, clock = make_clip(31, "slow", n_frames=20, size=128), _Clock()
    prop = MemoryPropagator(pipeline.sam_model)
    peak = []

    class Watched(OracleSegmenter):
        def segment(self, image):
            peak.append(prop.memory_entries())
            return super().segment(image)

    tracks, stats = build_tracks(_frames(clip, clock), Watched(clip, clock), prop, keyframe_every=4, min_area=1,
                                 max_colour_shift=None, min_score=0.0, collapse=0.0)
    assert stats.frames == 20 and tracks
    n = len(clip.captions)
    assert max(peak) <= n * (prop.keep + 2)
    assert prop.memory_entries() == 0  # finish() removed every object
    for t in tracks:
        for f in t.frames:
            assert f.rle["size"] == [128, 128]
    # a click works on the memory propagator too (the image predictor's mask: test_memory_propagator.py)
    assert prop.prompt([[1, 1]], [1]).mask.shape == (128, 128)
