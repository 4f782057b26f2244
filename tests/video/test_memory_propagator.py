"""The ``memory`` propagator on the tiny SAM 2.1: what it holds does not grow with the number of
frames, a click prompt is the image predictor's mask, the feature cache skips the encoder.
(Tracking quality of the tiny memory path: benchmarks/results/video_tracks-memory.json; its
training barely moved it, see weights/MANIFEST.json "memory".)"""

from __future__ import annotations

import numpy as np
import pytest

from regionsearch.masks import mask_iou
from regionsearch.testing.clips import make_clip


@pytest.fixture(scope="module")
def sam_model():
    from regionsearch.config import load_config
    from regionsearch.pipeline import Pipeline

    return Pipeline(load_config("tiny")).sam_model


def _held_bytes(prop) -> int:
    """Bytes of every tensor the propagator keeps (stored outputs and the current features)."""
    import torch

    def size(x) -> int:
        if isinstance(x, torch.Tensor):
            return x.numel() * x.element_size()
        if isinstance(x, dict):
            return sum(size(v) for v in x.values())
        if isinstance(x, (list, tuple)):
            return sum(size(v) for v in x)
        return 0

    return size([o for o in prop.objects.values()]) + size(prop._feats)


def test_held_state_does_not_grow_with_the_number_of_frames(sam_model):
    """44 frames, 3 objects re-conditioned every 4 frames (as keyframes do): once the window of
    what attention reads is full (16 propagated + 2 conditioning outputs per object), the
    number of retained outputs and their bytes stay constant."""
    from regionsearch.video.memory import MemoryPropagator

    clip = make_clip(5, "slow", n_frames=44, size=96)
    prop = MemoryPropagator(sam_model)
    entries, held = [], []
    for t, image in enumerate(clip.frames):
        if t == 0:
            prop.begin(image)
        else:
            prop.step(image)
        if t % 4 == 0:
            for j, m in enumerate(clip.masks[t]):
                prop.add(j, m)
        entries.append(prop.memory_entries())
        held.append(_held_bytes(prop))
    n = len(clip.captions)
    assert prop.keep == 16
    # a keyframe replaces that frame's propagated output by a conditioning one: the count
    # repeats with the keyframe period once full
    assert max(entries) == n * (prop.keep + 2)
    assert all(entries[t] == entries[t - 4] for t in range(24, 44)), entries
    assert all(held[t] == held[t - 4] for t in range(24, 44)), held
    for obj in prop.objects.values():
        assert min(obj["non_cond_frame_outputs"]) >= 43 - prop.keep - 4
        assert list(obj["cond_frame_outputs"]) == [36, 40]


def test_click_prompt_is_the_image_predictor_mask(sam_model):
    from regionsearch.segment.prompt import PromptSegmenter
    from regionsearch.video.memory import MemoryPropagator
    from regionsearch.video.tracks import interior_point

    clip = make_clip(3, "slow", n_frames=1)
    seg = PromptSegmenter(sam_model)
    handle = seg.set_image(clip.frames[0])
    prop = MemoryPropagator(sam_model)
    prop.begin(clip.frames[0])
    for j, m in enumerate(clip.masks[0]):
        click = interior_point(m)
        got = prop.prompt([click], [1])
        ref = max(seg.predict(handle, points=[click], labels=[1], multimask=True)[0], key=lambda c: c.score)
        from regionsearch.masks import decode_rle

        assert mask_iou(got.mask, decode_rle(ref.rle)) >= 0.97, j
        assert abs(got.score - ref.score) < 0.02
        assert mask_iou(got.mask, m) >= 0.8
    with pytest.raises(Exception, match="point or a box"):
        prop.prompt(None, None)


def test_feature_cache_skips_the_image_encoder(sam_model):
    from regionsearch.cache import LRUCache
    from regionsearch.video.memory import MemoryPropagator

    clip = make_clip(4, "slow", n_frames=5)
    cache = LRUCache(8)
    masks = []
    for run in range(2):
        prop = MemoryPropagator(sam_model, feature_cache=cache)
        prop.begin(clip.frames[0], key=("clip", 0))
        prop.add(0, clip.masks[0, 0])
        masks.append([prop.step(clip.frames[t], key=("clip", t))[0].mask for t in range(1, 5)])
        assert prop.encoded == (5 if run == 0 else 0)
    for a, b in zip(*masks):
        np.testing.assert_array_equal(a, b)
