"""Full-resolution mask statistics from low-resolution logits equal sam2's upsample-then-count."""

from __future__ import annotations

import zlib
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from regionsearch.segment.lowres import PLAIN, LowResMasks, arithmetic, boxes_above, count_above, fma

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
    ((256, 256), (48, 60)),      # a thumbnail: PyTorch takes another kernel for outputs this small
    ((37, 53), (20, 30)),
])
def test_counts_boxes_and_emptiness_equal_the_upsampled_masks(kind, lowres, hw):
    _assert_equal_to_reference(_logits(kind, 5, *lowres, seed=zlib.crc32(repr((kind, lowres, hw)).encode()) % 10_000), hw)


def _assert_equal_to_reference(logits: torch.Tensor, hw: tuple[int, int], what: object = "") -> None:
    ref_counts, ref_boxes, ref_nonempty = _reference(logits, hw)
    m = LowResMasks.build(logits, hw)
    counts = count_above(m, THRESHOLDS)
    boxes, nonempty = boxes_above(m, 0.0)
    assert torch.equal(counts, ref_counts), (what, (counts - ref_counts).abs().max())
    assert torch.equal(nonempty, ref_nonempty), what
    assert torch.equal(boxes, ref_boxes), (what, boxes, ref_boxes)


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


@pytest.mark.parametrize("lowres,hw", [((256, 256), (683, 1024)), ((64, 64), (333, 517)), ((256, 256), (200, 150))])
def test_random_weight_logits_at_the_threshold_count_as_f_interpolate_does_for_many_seeds(lowres, hw):
    # 0.3 N(0, 1) + 0.1: nearly every cell crosses 0 and some upsampled values lie within float
    # rounding of it; these seeds include draws that were 1 pixel off before the kernel's fused
    # multiply-adds were reproduced (seed 0 at 683x1024)
    for seed in range(40):
        _assert_equal_to_reference(_logits("noise", 2, *lowres, seed=seed), hw, f"seed {seed}")


@pytest.mark.parametrize("lowres,hw", [((37, 53), (251, 97)), ((37, 53), (20, 30)),
                                       ((64, 64), (333, 517)), ((256, 256), (1024, 683))])
def test_the_arithmetic_found_reproduces_every_upsampled_value(lowres, hw):
    logits = _logits("noise", 2, *lowres, seed=7)
    ref = F.interpolate(logits[:, None], hw, mode="bilinear", align_corners=False)[:, 0]
    assert torch.equal(LowResMasks.build(logits, hw).upsample(), ref)
    # and the choice matters: where the kernel fuses multiply-adds, every product rounded differs
    found = arithmetic(lowres, hw)
    if found is not None:
        plain = LowResMasks.build(logits, hw, PLAIN).upsample()
        assert torch.equal(plain, ref) == (found == PLAIN)


def _rounded_fma(x: float, y: float, z: float) -> np.float32:
    """float32(x * y + z) rounded once, to nearest even, from exact rationals."""
    exact = Fraction(x) * Fraction(y) + Fraction(z)
    near = np.float32(float(exact))
    cands = [np.nextafter(near, np.float32(-np.inf)), near, np.nextafter(near, np.float32(np.inf))]
    best = min(abs(Fraction(float(c)) - exact) for c in cands)
    ties = [c for c in cands if abs(Fraction(float(c)) - exact) == best]
    return ties[0] if len(ties) == 1 else next(c for c in ties if int(c.view(np.int32)) % 2 == 0)


def test_fma_rounds_once_even_where_float64_would_round_twice():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(400).astype(np.float32)
    y = rng.random(400).astype(np.float32)
    z = rng.standard_normal(400).astype(np.float32)
    # z odd, x * y = half an ulp of z minus 2^-46 of that: the exact sum lies just below the
    # midpoint above z (so it rounds to z), the float64 sum rounds onto the midpoint and a second
    # rounding, to even, would go one ulp up
    for i, scale in enumerate((1.0, 2.0, 0.5, -1.0, 4.0, -0.25)):
        z[i] = np.float32(scale * (1.0 + 2.0 ** -23))
        x[i] = np.float32(scale * (1.0 + 2.0 ** -23) * 2.0 ** -24)
        y[i] = np.float32(1.0 - 2.0 ** -23)
    got = fma(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(z)).numpy()
    want = np.array([_rounded_fma(float(a), float(b), float(c)) for a, b, c in zip(x, y, z)], dtype=np.float32)
    naive = (x.astype(np.float64) * y + z).astype(np.float32)
    assert np.array_equal(got.view(np.int32), want.view(np.int32))
    assert not np.array_equal(naive.view(np.int32), want.view(np.int32))  # the cases are hard ones
