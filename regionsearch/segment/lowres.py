"""sam2's full-resolution mask statistics, computed from the low-resolution logits.

sam2's generator upsamples every candidate's 256x256 logits bilinearly to the image size
(``F.interpolate(..., align_corners=False)``; ~700k values at 1024x683) only to count pixels
above two thresholds (the stability score), test that the mask is not empty and take its box.
That upsampling was ~40% of the project's per-prompt CPU time once the decoder was fast.

Each upsampled value is a convex combination of the four low-resolution values around it (the
"cell"), so a cell whose four corners all lie above a threshold yields only pixels above it, and
a cell whose corners all lie at or below it yields none. Only the *mixed* cells, where the mask
boundary passes, need their pixels evaluated, with PyTorch's own index and weight formulas
(``area_pixel_compute_source_index``: ``src = max(scale * (dst + 0.5) - 0.5, 0)``, ``scale = in /
out``, the upper neighbour clamped at the last row/column) and its order of operations
``h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d)``. For boxes only the mixed cells outside the
rows and columns already spanned by certain cells can move the box, so only those are evaluated.

The results equal the full-resolution computation up to float rounding of values within ~1e-6
of a threshold (tests/segment/test_lowres.py compares them with ``F.interpolate`` on smooth and
noisy logits, integer and non-integer scales, up- and downsampling).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AxisMap:
    """How one axis of ``size_in`` values maps to ``size_out`` pixels.

    ``start[i]``/``count[i]``: the output pixels whose lower source index is ``i``;
    ``rows[i, j]`` the ``j``-th of them (-1 beyond ``count[i]``) and ``lo``/``hi`` their weights for
    the values at ``i`` and at ``min(i + 1, size_in - 1)`` (the padded neighbour).
    """

    start: Any
    count: Any
    rows: Any
    lo: Any
    hi: Any


def axis_map(size_in: int, size_out: int, device: Any = "cpu") -> AxisMap:
    """PyTorch's bilinear (``align_corners=False``) source indices and weights for one axis."""
    import torch

    scale = torch.tensor(size_in / size_out, dtype=torch.float32)
    dst = torch.arange(size_out, dtype=torch.float32)
    src = torch.clamp(scale * (dst + 0.5) - 0.5, min=0.0)
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
    lo = torch.where(valid, l0[safe], torch.zeros(()))
    hi = torch.where(valid, l1[safe], torch.zeros(()))
    return AxisMap(*(t.to(device) for t in (start, count, rows, lo, hi)))


@dataclass
class LowResMasks:
    """A chunk of low-resolution logits ``(N, h, w)`` and their image-size ``(H, W)`` geometry."""

    logits: Any
    ys: AxisMap
    xs: AxisMap
    _pad: Any = None

    @classmethod
    def build(cls, logits: Any, hw: tuple[int, int]) -> "LowResMasks":
        n, h, w = logits.shape
        return cls(logits.float(), axis_map(h, hw[0], logits.device), axis_map(w, hw[1], logits.device))

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

    def pixels(self, cells: Any) -> tuple[Any, Any, Any]:
        """Upsampled values of the pixels of ``cells`` (``(K, 3)``: n, row, col), shaped ``(K, R, C)``,
        with their output rows and columns (-1 for padding)."""
        n, h, w = self.logits.shape
        flat = (cells[:, 0] * (h + 1) + cells[:, 1]) * (w + 1) + cells[:, 2]
        padded = self._padded().flatten()
        a, b = padded[flat][:, None, None], padded[flat + 1][:, None, None]
        c, d = padded[flat + w + 1][:, None, None], padded[flat + w + 2][:, None, None]
        r, q = cells[:, 1], cells[:, 2]
        h0, h1 = self.ys.lo[r][:, :, None], self.ys.hi[r][:, :, None]
        w0, w1 = self.xs.lo[q][:, None, :], self.xs.hi[q][:, None, :]
        values = h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d)
        return values, self.ys.rows[r][:, :, None], self.xs.rows[q][:, None, :]

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
            values, rows, cols = m.pixels(mixed)
            above = ((values > t) & (rows >= 0) & (cols >= 0)).flatten(1).sum(1)
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
        values, rows, cols = m.pixels(cells)
        pos = (values > t) & (rows >= 0) & (cols >= 0)
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
