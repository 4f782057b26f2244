"""Full-resolution mask statistics from low-resolution logits equal sam2's upsample-then-count."""

from __future__ import annotations

import zlib

import pytest
import torch
import torch.nn.functional as F

from regionsearch.segment.lowres import LowResMasks, boxes_above, count_above

THRESHOLDS = (1.0, 0.0, -1.0)


def _logits(kind: str, n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "smooth":  # blobs, like real mask logits: boundaries cross few cells
        coarse = torch.randn(n, 1, max(2, h // 16), max(2, w // 16), generator=g) * 8
        return F.interpolate(coarse, (h, w), mode="bicubic", align_corners=False)[:, 0] \
            + 0.05 * torch.randn(n, h, w, generator=g)
    if kind == "noise":  # random-weight logits: nearly every cell crosses 0
        return 0.3 * torch.randn(n, h, w, generator=g) + 0.1
    if kind == "sparse":  # one small object, mostly empty masks and an all-negative one
        x = torch.full((n, h, w), -5.0)
        for i in range(n - 1):
            r, c = int(torch.randint(0, h - 3, (1,), generator=g)), int(torch.randint(0, w - 3, (1,), generator=g))
            x[i, r:r + 2, c:c + 3] = 0.5 + i
        return x
    raise ValueError(kind)


def _reference(logits: torch.Tensor, hw: tuple[int, int]):
    from sam2.utils.amg import batched_mask_to_box

    full = F.interpolate(logits[:, None], hw, mode="bilinear", align_corners=False)[:, 0]
    counts = torch.stack([(full > t).flatten(1).sum(1) for t in THRESHOLDS], 1)
    return counts, batched_mask_to_box(full > 0.0), (full > 0.0).flatten(1).any(1)


@pytest.mark.parametrize("kind", ["smooth", "noise", "sparse"])
@pytest.mark.parametrize("lowres,hw", [
    ((256, 256), (1024, 683)),   # hiera-tiny, landscape photo: non-integer scale on one axis
    ((256, 256), (683, 1024)),
    ((256, 256), (1024, 1024)),  # integer scale
    ((256, 256), (200, 150)),    # downsampling: some low-resolution cells have no pixel
    ((64, 64), (333, 517)),      # tiny test model's logits
    ((64, 64), (64, 64)),        # identity
])
def test_counts_boxes_and_emptiness_equal_the_upsampled_masks(kind, lowres, hw):
    logits = _logits(kind, 5, *lowres, seed=zlib.crc32(repr((kind, lowres, hw)).encode()) % 10_000)
    ref_counts, ref_boxes, ref_nonempty = _reference(logits, hw)
    m = LowResMasks.build(logits, hw)
    counts = count_above(m, THRESHOLDS)
    boxes, nonempty = boxes_above(m, 0.0)
    assert torch.equal(counts, ref_counts), (counts - ref_counts).abs().max()
    assert torch.equal(nonempty, ref_nonempty)
    assert torch.equal(boxes, ref_boxes), (boxes, ref_boxes)


def test_a_mask_whose_corners_exceed_the_threshold_but_no_pixel_does_is_empty():
    # one low-resolution value just above 0 between negatives: when downsampled 4x no output pixel
    # samples it, so the mask is empty although a cell corner is positive
    logits = torch.full((1, 64, 64), -1.0)
    logits[0, 10, 10] = 0.01
    ref_counts, ref_boxes, ref_nonempty = _reference(logits, (16, 16))
    m = LowResMasks.build(logits, (16, 16))
    boxes, nonempty = boxes_above(m, 0.0)
    assert torch.equal(count_above(m, THRESHOLDS), ref_counts)
    assert torch.equal(nonempty, ref_nonempty) and torch.equal(boxes, ref_boxes)
