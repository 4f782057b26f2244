"""sam2's full-resolution mask statistics, computed from the low-resolution logits.

sam2's generator upsamples every candidate's 256x256 logits bilinearly to the image size
(``F.interpolate(..., align_corners=False)``; ~700k values at 1024x683) only to count pixels
above two thresholds (the stability score), test that the mask is not empty and take its box.
That upsampling was ~40% of the project's per-prompt CPU time once the decoder was fast.

Each upsampled value is a convex combination of the four low-resolution values around it (the
"cell"), so a cell whose four corners all lie above a threshold yields only pixels above it, and
a cell whose corners all lie at or below it yields none. Only the *mixed* cells, where the mask
boundary passes, need their pixels evaluated, and those are evaluated with PyTorch's own index and
weight formulas (``area_pixel_compute_source_index``: ``src = max(scale * (dst + 0.5) - 0.5, 0)``,
``scale = in / out``, the upper neighbour clamped at the last row/column) and its order of
operations ``h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d)``.

Bit for bit: PyTorch's kernels are compiled with floating-point contraction, so some of those
multiply-adds are *fused* (one rounding instead of two); on this project's x86-64 CPUs (AVX2) the
source index is ``fma(scale, dst + 0.5, -0.5)`` and both sums are ``fma(x0, w0, x1 * w1)``.
Which ones are fused depends on the build, the CPU and the sizes (small outputs take another
kernel), so :func:`arithmetic` finds out once per device kind and pair of sizes by comparing the
candidate orders with ``F.interpolate`` on a probe, and the mixed cells are evaluated that way
(with no match, the chunk is upsampled by ``F.interpolate`` itself); fused multiply-adds are
computed exactly (float64 product, an exact two-sum and round-to-odd, so the rounding to float32
is the single rounding of a real FMA). Values at a threshold, which random-weight logits produce
by the thousand, then fall on the same side as in ``F.interpolate`` + threshold
(tests/segment/test_lowres.py: 40 seeds x 3 sizes of such noise, smooth and sparse logits,
integer and non-integer scales, up- and downsampling, thumbnails). For boxes only the mixed
cells outside the rows and columns already spanned by certain cells can move the box, so only
those are evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AxisMap:
    """How one axis of ``size_in`` values maps to ``size_out`` pixels.

    ``start[i]``/``count[i]``: the output pixels whose lower source index is ``i``;
    ``rows[i, j]`` the ``j``-th of them (-1 beyond ``count[i]``) and ``lo``/``hi`` their weights for
    the values at ``i`` and at ``min(i + 1, size_in - 1)`` (the padded neighbour); NaN beyond
    ``count[i]``.
    """

    start: Any
    count: Any
    rows: Any
    lo: Any
    hi: Any


def fma(x: Any, y: Any, z: Any) -> Any:
    """``x * y + z`` for float32 tensors with one rounding, as a fused multiply-add.

    The float64 product of two float32 values is exact; the float64 sum is made exact by a
    two-sum, and an inexact sum is rounded to odd before the rounding to float32 (24 + 2 <= 53
    bits), so the result is the correctly rounded FMA. (On MPS, which has no float64, on the CPU.)"""
    import torch

    if x.device.type == "mps":
        return fma(x.cpu(), y.cpu(), z.cpu()).to(x.device)
    p, q = x.double() * y.double(), z.double()
    s = p + q
    qv = s - p
    pv = s - qv
    err = (p - pv) + (q - qv)
    even = (s.view(torch.int64) & 1) == 0
    toward = torch.where(err > 0, torch.full_like(s, float("inf")), torch.full_like(s, float("-inf")))
    return torch.where((err != 0) & even, torch.nextafter(s, toward), s).float()


@dataclass(frozen=True)
class Arithmetic:
    """Which multiply-adds of the bilinear kernel are fused: the source index
    ``scale * (dst + 0.5) - 0.5`` (``index``), the sums along a row (``inner``) and the sum of
    the two rows (``outer``); for a sum ``x0 * w0 + x1 * w1``: ``None`` both products rounded,
    0 ``fma(x0, w0, x1 * w1)``, 1 ``fma(x1, w1, x0 * w0)``."""

    index: bool
    inner: int | None
    outer: int | None


#: the order PyTorch's CPU kernel was found to use on this project's AVX2 machines
FUSED = Arithmetic(True, 0, 0)
#: every product rounded (a build without contraction)
PLAIN = Arithmetic(False, None, None)


def _sum2(x0: Any, w0: Any, x1: Any, w1: Any, fused: int | None) -> Any:
    if fused is None:
        return x0 * w0 + x1 * w1
    return fma(x0, w0, x1 * w1) if fused == 0 else fma(x1, w1, x0 * w0)


def _bilinear(a: Any, b: Any, c: Any, d: Any, h0: Any, h1: Any, w0: Any, w1: Any, arith: Arithmetic) -> Any:
    """``h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d)`` in ``arith``'s arithmetic."""
    top, bottom = _sum2(a, w0, b, w1, arith.inner), _sum2(c, w0, d, w1, arith.inner)
    return _sum2(top, h0, bottom, h1, arith.outer)


def axis_map(size_in: int, size_out: int, device: Any = "cpu", arith: Arithmetic = PLAIN) -> AxisMap:
    """PyTorch's bilinear (``align_corners=False``) source indices and weights for one axis."""
    import torch

    scale = torch.tensor(size_in / size_out, dtype=torch.float32)
    dst = torch.arange(size_out, dtype=torch.float32) + 0.5
    half = torch.full_like(dst, -0.5)
    src = fma(scale.expand_as(dst), dst, half) if arith.index else scale * dst + half
    src = torch.clamp(src, min=0.0)
    i0 = torch.clamp(src.floor().long(), max=size_in - 1)
    l1 = torch.clamp(src - i0.float(), 0.0, 1.0)
    l0 = 1.0 - l1
    count = torch.bincount(i0, minlength=size_in)
    start = torch.cumsum(count, 0) - count
    width = max(1, int(count.max()))
    j = torch.arange(width)
    rows = start[:, None] + j[None, :]
    valid = j[None, :] < count[:, None]
    rows = torch.where(valid, rows, torch.full_like(rows, -1))
    safe = rows.clamp(min=0)
    nan = torch.full((), float("nan"))  # padding: every value computed there is NaN, never > t
    lo = torch.where(valid, l0[safe], nan)
    hi = torch.where(valid, l1[safe], nan)
    return AxisMap(*(t.to(device) for t in (start, count, rows, lo, hi)))


#: arithmetic found per (device kind, low-resolution size, image size); a corpus has a few sizes
_ARITHMETIC: dict[tuple[Any, ...], Arithmetic | None] = {}
_ARITHMETIC_MAX = 512
#: cells of the probe whose pixels are compared (~30k pixels; a wrong order differs on ~1/3 of them)
_PROBE_CELLS = 2048


def _candidates() -> list[Arithmetic]:
    import itertools

    out = [FUSED, PLAIN]
    for c in itertools.product((True, False), (None, 0, 1), (None, 0, 1)):
        if Arithmetic(*c) not in out:
            out.append(Arithmetic(*c))
    return out


def arithmetic(size_in: tuple[int, int], size_out: tuple[int, int], device: Any = "cpu") -> Arithmetic | None:
    """The arithmetic ``F.interpolate(mode="bilinear", align_corners=False)`` uses from
    ``size_in`` to ``size_out`` on ``device``'s kind, or None when no candidate reproduces it.

    PyTorch picks its kernel by size (on this CPU, outputs up to 64x64 take another path), so
    the answer is found per pair of sizes: a random probe of ``size_in`` is upsampled by
    ``F.interpolate`` and the pixels of a sample of its cells are compared, bit for bit, with each
    candidate order (a few ms, once per image size)."""
    import torch
    import torch.nn.functional as F

    kind = torch.device(device).type
    key = (kind, tuple(size_in), tuple(size_out))
    if key not in _ARITHMETIC:
        g = torch.Generator().manual_seed(0)
        probe = (torch.randn(1, *size_in, generator=g) * 0.3 + 0.1).to(device)
        ref = F.interpolate(probe[:, None], tuple(size_out), mode="bilinear", align_corners=False)[0, 0]
        found = None
        for arith in _candidates():
            m = LowResMasks(probe, axis_map(size_in[0], size_out[0], device, arith),
                            axis_map(size_in[1], size_out[1], device, arith), arith=arith)
            cells = (m.cell_pixels() > 0).nonzero()
            cells = cells[torch.randperm(cells.shape[0], generator=g)[:_PROBE_CELLS].to(cells.device)]
            cells = torch.cat([torch.zeros_like(cells[:, :1]), cells], 1)
            values, rows, cols = m.pixels(cells)
            rows, cols = rows.expand_as(values), cols.expand_as(values)
            valid = (rows >= 0) & (cols >= 0)
            if torch.equal(values[valid], ref[rows[valid], cols[valid]]):
                found = arith
                break
        if len(_ARITHMETIC) >= _ARITHMETIC_MAX:
            _ARITHMETIC.pop(next(iter(_ARITHMETIC)))
        _ARITHMETIC[key] = found
    return _ARITHMETIC[key]


@dataclass
class LowResMasks:
    """A chunk of low-resolution logits ``(N, h, w)`` and their image-size ``(H, W)`` geometry."""

    logits: Any
    ys: AxisMap
    xs: AxisMap
    arith: Arithmetic = PLAIN
    #: ``(N, H, W)`` upsampled by ``F.interpolate`` when no candidate arithmetic reproduces it
    full: Any = None
    _pad: Any = None
    _scale: float | None = None

    @classmethod
    def build(cls, logits: Any, hw: tuple[int, int], arith: Arithmetic | None = None) -> "LowResMasks":
        """``arith``: the bilinear kernel's arithmetic; by default the one :func:`arithmetic` finds
        for these sizes on ``logits``' device, and when there is none the masks are upsampled
        with ``F.interpolate`` itself (small images: outputs up to 64x64 here)."""
        import torch.nn.functional as F

        n, h, w = logits.shape
        logits = logits.float()
        full = None
        if arith is None:
            arith = arithmetic((h, w), hw, logits.device)
            if arith is None:
                arith = PLAIN
                full = F.interpolate(logits[:, None], hw, mode="bilinear", align_corners=False)[:, 0]
        return cls(logits, axis_map(h, hw[0], logits.device, arith),
                   axis_map(w, hw[1], logits.device, arith), arith=arith, full=full)

    def _padded(self) -> Any:
        """``(N, h + 1, w + 1)``: the logits with the last row and column repeated (the upper
        neighbour of the last row/column is itself, as in PyTorch)."""
        import torch.nn.functional as F

        if self._pad is None:
            self._pad = F.pad(self.logits[:, None], (0, 1, 0, 1), mode="replicate")[:, 0].contiguous()
        return self._pad

    def corners(self) -> tuple[Any, Any, Any, Any]:
        """The four corner values of every cell, ``(N, h, w)`` views."""
        p = self._padded()
        return p[:, :-1, :-1], p[:, :-1, 1:], p[:, 1:, :-1], p[:, 1:, 1:]

    def cell_range(self) -> tuple[Any, Any]:
        """Per-cell minimum and maximum of the corners, ``(N, h, w)`` each."""
        import torch

        a, b, c, d = self.corners()
        return torch.minimum(torch.minimum(a, b), torch.minimum(c, d)), torch.maximum(torch.maximum(a, b), torch.maximum(c, d))

    def _gather(self, cells: Any) -> tuple[Any, ...]:
        """Corners ``(K, 1, 1)`` and weights (``h`` ``(K, R, 1)``, ``w`` ``(K, 1, C)``) of ``cells``."""
        n, h, w = self.logits.shape
        flat = (cells[:, 0] * (h + 1) + cells[:, 1]) * (w + 1) + cells[:, 2]
        padded = self._padded().flatten()
        a, b = padded[flat][:, None, None], padded[flat + 1][:, None, None]
        c, d = padded[flat + w + 1][:, None, None], padded[flat + w + 2][:, None, None]
        r, q = cells[:, 1], cells[:, 2]
        h0, h1 = self.ys.lo[r][:, :, None], self.ys.hi[r][:, :, None]
        w0, w1 = self.xs.lo[q][:, None, :], self.xs.hi[q][:, None, :]
        return a, b, c, d, h0, h1, w0, w1

    def _rows_cols(self, cells: Any) -> tuple[Any, Any]:
        return self.ys.rows[cells[:, 1]][:, :, None], self.xs.rows[cells[:, 2]][:, None, :]

    def pixels(self, cells: Any) -> tuple[Any, Any, Any]:
        """Upsampled values of the pixels of ``cells`` (``(K, 3)``: n, row, col), shaped ``(K, R, C)``,
        with their output rows and columns (-1 for padding), in :attr:`arith`'s arithmetic."""
        return (_bilinear(*self._gather(cells), self.arith), *self._rows_cols(cells))

    def above(self, cells: Any, t: float) -> tuple[Any, Any, Any]:
        """Which pixels of ``cells`` are ``> t`` (``(K, R, C)`` bool, padding False: NaN), with their
        output rows and columns. Evaluated in float32 with every product rounded, and again in
        :attr:`arith`'s arithmetic only where the two could disagree: the orders differ by a few
        units in the last place of the largest logit (~2.4e-7 of it), the margin is 1e-5 of it."""
        import torch

        rows, cols = self._rows_cols(cells)
        if self.full is not None:
            r, c = rows.expand(-1, -1, cols.shape[2]), cols.expand(-1, rows.shape[1], -1)
            k = cells[:, 0][:, None, None].expand_as(r)
            return (self.full[k, r.clamp(min=0), c.clamp(min=0)] > t) & (r >= 0) & (c >= 0), rows, cols
        parts = self._gather(cells)
        values = _bilinear(*parts, PLAIN)
        if self.arith != PLAIN:
            if self._scale is None:
                self._scale = float(self.logits.abs().max()) if self.logits.numel() else 0.0
            near = (values - t).abs() <= 1e-5 * (self._scale + abs(t))
            if bool(near.any()):
                k, i, j = near.nonzero(as_tuple=True)
                exact = _bilinear(*(x.expand_as(values)[k, i, j] for x in parts), self.arith)
                values = values.index_put((k, i, j), exact)
        return values > t, rows, cols

    def upsample(self) -> Any:
        """``(N, H, W)``: every pixel, as :meth:`pixels` evaluates them (to check the arithmetic)."""
        import torch

        if self.full is not None:
            return self.full
        n, h, w = self.logits.shape
        size = (int(self.ys.start[-1] + self.ys.count[-1]), int(self.xs.start[-1] + self.xs.count[-1]))
        cells = torch.cartesian_prod(torch.arange(n), torch.arange(h), torch.arange(w)).to(self.logits.device)
        values, rows, cols = self.pixels(cells)
        out = torch.zeros((n, size[0] + 1, size[1] + 1), device=self.logits.device)
        k = cells[:, 0][:, None, None].expand_as(values)
        out[k, rows.expand_as(values), cols.expand_as(values)] = values
        return out[:, :size[0], :size[1]]

    def cell_pixels(self) -> Any:
        """Number of output pixels of every cell, ``(h, w)`` int64."""
        return self.ys.count[:, None] * self.xs.count[None, :]


def _certain_count(above: Any, m: LowResMasks) -> Any:
    """Pixels of the cells marked in ``above`` ``(N, h, w)`` bool, per candidate (int64). Row sums
    in float32 are exact (each <= the image width), their weighted total is taken in float64."""
    rows = above.float() @ m.xs.count.float()
    return (rows.double() @ m.ys.count.double()).round().long()


def _mixed(m: LowResMasks, lo: Any, hi: Any, t: float, where: Any = None) -> Any:
    """``(K, 3)`` indices of the cells (among ``where``, a bool mask) with pixels on both sides of
    ``t`` (cells without pixels left out: they exist only when downsampling)."""
    mixed = (lo <= t) & (hi > t)
    if where is not None:
        mixed &= where
    if not (bool((m.ys.count > 0).all()) and bool((m.xs.count > 0).all())):
        mixed &= m.cell_pixels() > 0
    return mixed.nonzero()


def count_above(m: LowResMasks, thresholds: tuple[float, ...], lo: Any = None, hi: Any = None) -> Any:
    """``(N, T)`` int64: for each candidate, the number of image-size pixels ``> t`` per threshold."""
    import torch

    if lo is None:
        lo, hi = m.cell_range()
    out = []
    for t in thresholds:
        counts = _certain_count(lo > t, m)
        mixed = _mixed(m, lo, hi, t)
        if mixed.shape[0]:
            above = m.above(mixed, t)[0].flatten(1).sum(1)
            counts = counts.index_add(0, mixed[:, 0], above)
        out.append(counts)
    return torch.stack(out, 1)


def _span(certain: Any, starts: Any, counts: Any, dim: int) -> tuple[Any, Any, Any, Any]:
    """First and last output pixel (along rows for ``dim=2``, columns for ``dim=1``) covered by
    ``certain`` cells, per candidate (an empty candidate gives (large, -1)), and the first and last
    such cell index (``size`` and -1 when empty)."""
    import torch

    any_ = certain.any(dim)  # (N, cells along the other axis)
    size = any_.shape[1]
    idx = torch.arange(size, device=any_.device)
    first = torch.where(any_, idx, size).amin(1)
    last = torch.where(any_, idx, -1).amax(1)
    big = int(starts[-1] + counts[-1]) + 1
    lo = torch.where(first < size, starts[first.clamp(max=size - 1)], torch.full_like(first, big))
    hi = torch.where(last >= 0, starts[last.clamp(min=0)] + counts[last.clamp(min=0)] - 1, torch.full_like(last, -1))
    return lo, hi, first, last


def boxes_above(m: LowResMasks, t: float, lo: Any = None, hi: Any = None) -> tuple[Any, Any]:
    """XYXY boxes (inclusive max, as sam2's ``batched_mask_to_box``; zeros when empty) of the
    image-size masks ``> t`` and whether each mask is non-empty."""
    import torch

    if lo is None:
        lo, hi = m.cell_range()
    certain = lo > t
    if not (bool((m.ys.count > 0).all()) and bool((m.xs.count > 0).all())):
        certain &= m.cell_pixels() > 0
    y0, y1, r0, r1 = _span(certain, m.ys.start, m.ys.count, 2)
    x0, x1, c0, c1 = _span(certain, m.xs.start, m.xs.count, 1)
    n, h, w = lo.shape
    rows_in = (torch.arange(h, device=lo.device)[None] >= r0[:, None]) & (torch.arange(h, device=lo.device)[None] <= r1[:, None])
    cols_in = (torch.arange(w, device=lo.device)[None] >= c0[:, None]) & (torch.arange(w, device=lo.device)[None] <= c1[:, None])
    cells = _mixed(m, lo, hi, t, ~(rows_in[:, :, None] & cols_in[:, None, :]))
    if cells.shape[0]:
        pos, rows, cols = m.above(cells, t)
        rows, cols = rows.expand_as(pos), cols.expand_as(pos)
        big = int(1 << 30)
        k = cells[:, 0]
        y0 = y0.scatter_reduce(0, k, torch.where(pos, rows, big).flatten(1).amin(1), "amin")
        y1 = y1.scatter_reduce(0, k, torch.where(pos, rows, -1).flatten(1).amax(1), "amax")
        x0 = x0.scatter_reduce(0, k, torch.where(pos, cols, big).flatten(1).amin(1), "amin")
        x1 = x1.scatter_reduce(0, k, torch.where(pos, cols, -1).flatten(1).amax(1), "amax")
    nonempty = y1 >= 0
    boxes = torch.stack([x0, y0, x1, y1], 1)
    return torch.where(nonempty[:, None], boxes, torch.zeros_like(boxes)), nonempty
