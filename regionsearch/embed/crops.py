"""Region crops for CLIP (pure functions on numpy arrays).

Strategies (``EmbedConfig.crop``):

* ``box``: the box padded by ``context`` x its larger side, squared, clipped to the image;
* ``mask``: the same window with every pixel outside the mask set to the CLIP mean colour
  (which normalises to zero, i.e. "no signal");
* ``blur``: the same window with the background outside the mask Gaussian-blurred, so the
  object stays sharp while its context is still visible.

All crops are returned square (padded with the CLIP mean colour) and resized to ``size``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import UnknownNameError
from ..masks import expand_box

CLIP_MEAN_RGB = (0.48145466, 0.4578275, 0.40821073)
STRATEGIES = ("box", "mask", "blur")


def _fill_colour(mean: Sequence[float]) -> np.ndarray:
    return np.array([round(255 * m) for m in mean], dtype=np.uint8)


def region_crop(image: np.ndarray, mask: np.ndarray | None, bbox: Sequence[float], strategy: str,
                size: int, context: float = 0.15, blur_sigma: float = 8.0,
                mean: Sequence[float] = CLIP_MEAN_RGB) -> np.ndarray:
    """One ``(size, size, 3)`` uint8 crop of a region of an ``HWC uint8 RGB`` image.

    ``mask`` is the region's ``(H, W)`` bool mask (ignored by ``box``; ``None`` means the box is
    the region). ``bbox`` is XYWH pixels.
    """
    import cv2

    if strategy not in STRATEGIES:
        raise UnknownNameError("crop strategy", strategy, STRATEGIES)
    h, w = image.shape[:2]
    x0, y0, x1, y1 = expand_box(bbox, context, w, h, square=True)
    window = image[y0:y1, x0:x1]
    fill = _fill_colour(mean)
    if strategy != "box" and mask is not None:
        m = mask[y0:y1, x0:x1]
        if strategy == "mask":
            window = np.where(m[:, :, None], window, fill[None, None, :]).astype(np.uint8)
        else:
            sigma = max(0.5, float(blur_sigma))
            blurred = cv2.GaussianBlur(window, (0, 0), sigmaX=sigma, sigmaY=sigma)
            window = np.where(m[:, :, None], window, blurred).astype(np.uint8)
    return square_resize(window, size, fill)


def square_resize(window: np.ndarray, size: int, fill: np.ndarray) -> np.ndarray:
    """Pad ``window`` to a square with ``fill`` (centred) and resize to ``size`` x ``size``."""
    import cv2

    hh, ww = window.shape[:2]
    side = max(hh, ww, 1)
    canvas = np.empty((side, side, 3), dtype=np.uint8)
    canvas[:] = fill
    oy, ox = (side - hh) // 2, (side - ww) // 2
    canvas[oy:oy + hh, ox:ox + ww] = window
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(canvas, (size, size), interpolation=interp)
