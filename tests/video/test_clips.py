"""Moving-shapes clips: seeded, exact visible masks, presets, mp4 + YouTube-VIS export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from regionsearch.errors import ConfigError, UnknownNameError
from regionsearch.masks import decode_rle
from regionsearch.testing.clips import PRESETS, clip_spec, export_ytvis, make_clip


def test_same_seed_same_clip_other_seed_other_clip():
    a, b, c = make_clip(3, "slow", n_frames=4), make_clip(3, "slow", n_frames=4), make_clip(4, "slow", n_frames=4)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_visible_masks_are_exact_and_disjoint(preset):
    clip = make_clip(11, preset, n_frames=12)
    n = len(clip.spec.objects)
    assert PRESETS[preset].n_objects[0] <= n <= PRESETS[preset].n_objects[1]
    assert len(set(clip.captions)) == n and len({o.colour for o in clip.spec.objects}) == n
    for frame, masks in zip(clip.frames, clip.masks):
        assert masks.sum(0).max() <= 1  # occlusion: a pixel belongs to at most one object
        for obj, m in zip(clip.spec.objects, masks):
            assert (frame[m] == obj.rgb).all()
    # present <=> visible area >= min_visible of the frame
    areas = clip.masks.reshape(clip.masks.shape[0], n, -1).sum(-1)
    np.testing.assert_array_equal(clip.present, areas >= clip.spec.min_visible * 256 * 256)


def test_slow_objects_stay_fast_objects_cross_enter_and_leave():
    slow = [make_clip(s, "slow", n_frames=16) for s in range(3)]
    assert all(c.present.all() for c in slow)
    fast = [make_clip(s, "fast", n_frames=24) for s in range(4)]
    assert any(not c.present.all() for c in fast)  # someone enters or leaves
    occluded = 0
    for c in fast:
        full_area = c.masks.reshape(24, len(c.captions), -1).sum(-1).max(0)
        occluded += int((c.masks.reshape(24, len(c.captions), -1).sum(-1) < 0.8 * full_area).any())
    assert occluded >= 2  # crossing objects hide each other
    speeds = [np.hypot(*o.velocity) for c in fast for o in c.spec.objects]
    assert min(speeds) >= 8 and max(speeds) <= 20


def test_bad_arguments_raise_domain_errors():
    with pytest.raises(UnknownNameError, match="slow"):
        clip_spec(1, "sideways")
    with pytest.raises(ConfigError, match="even"):
        clip_spec(1, size=255)


def test_export_ytvis_writes_mp4_and_exact_ground_truth(tmp_path):
    from regionsearch.video.decode import sample_frames

    specs = [clip_spec(5, "fast", n_frames=10), clip_spec(6, "slow", n_frames=6, size=(320, 192))]
    path = export_ytvis(specs, tmp_path)
    data = json.loads(path.read_text())
    assert [v["length"] for v in data["videos"]] == [10, 6]
    assert (data["videos"][1]["width"], data["videos"][1]["height"]) == (320, 192)
    names = {c["id"]: c["name"] for c in data["categories"]}
    for vid, spec in enumerate(specs, start=1):
        clip = make_clip(spec.seed, spec.preset, n_frames=spec.n_frames, size=(spec.width, spec.height))
        anns = [a for a in data["annotations"] if a["video_id"] == vid]
        assert sorted(names[a["category_id"]] for a in anns) == sorted(
            c for j, c in enumerate(clip.captions) if clip.present[:, j].any())
        for a in anns:
            j = clip.captions.index(a["caption"])
            assert len(a["segmentations"]) == spec.n_frames
            for f, seg in enumerate(a["segmentations"]):
                assert (seg is not None) == bool(clip.present[f, j])
                if seg is not None:
                    np.testing.assert_array_equal(decode_rle(seg), clip.masks[f, j])
        decoded = list(sample_frames(tmp_path / data["videos"][vid - 1]["file_name"], None))
        assert [f.index for f in decoded] == list(range(spec.n_frames))
        err = np.mean([np.abs(f.image.astype(int) - clip.frames[f.index].astype(int)).mean() for f in decoded])
        assert err < 4.0  # H.264 at crf 18 changes pixels a little
