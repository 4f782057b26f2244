"""Automatic mask generation ("segment everything") with SAM 2.1 through sam2's generator.

Output: :class:`~regionsearch.types.Region` objects with COCO RLE masks at the original image
resolution, best first, capped at ``max_regions``, plus one whole-image region.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from ..config import SegmentConfig
from ..masks import counts_str, encode_rle
from ..types import Region

log = logging.getLogger(__name__)


def whole_image_region(height: int, width: int) -> Region:
    """The region covering the whole image (kind ``whole``), for scene-level queries."""
    mask = np.ones((height, width), dtype=bool)
    return Region(bbox=(0.0, 0.0, float(width), float(height)), area=height * width,
                  rle=encode_rle(mask), kind="whole")


def rank_score(region: Region) -> float:
    """The score used to keep the best ``max_regions`` masks: predicted IoU x stability."""
    return float(region.predicted_iou or 0.0) * float(region.stability_score or 0.0)


class AutomaticSegmenter:
    """``segment(image)`` -> regions, using sam2's ``SAM2AutomaticMaskGenerator``.

    One instance per thread of work: the underlying image predictor keeps per-image state.
    """

    def __init__(self, model: Any, cfg: SegmentConfig, min_region_area: int = 0):
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        from ..models.sam import backbone_feature_sizes

        self.cfg = cfg
        self.params = cfg.amg_params()
        self.min_region_area = min_region_area
        self._generator = SAM2AutomaticMaskGenerator(model, output_mode="coco_rle", **self.params)
        # sam2's predictor hard-codes the feature sizes of a 1024-px model
        self._generator.predictor._bb_feat_sizes = backbone_feature_sizes(model)
        self._lock = threading.Lock()

    def segment(self, image: np.ndarray) -> list[Region]:
        """Segment an ``HWC uint8 RGB`` image into regions (best first)."""
        import torch

        h, w = image.shape[:2]
        with self._lock, torch.inference_mode():
            records = self._generator.generate(image)
        regions = [
            Region(
                bbox=tuple(float(v) for v in rec["bbox"]),  # type: ignore[arg-type]
                area=int(rec["area"]),
                rle={"size": [int(s) for s in rec["segmentation"]["size"]],
                     "counts": _counts_str(rec["segmentation"]["counts"])},
                predicted_iou=float(rec["predicted_iou"]),
                stability_score=float(rec["stability_score"]),
                kind="mask",
            )
            for rec in records
            if int(rec["area"]) >= max(1, self.min_region_area)
        ]
        regions.sort(key=rank_score, reverse=True)
        regions = regions[: self.cfg.max_regions]
        if self.cfg.whole_image_region:
            regions.append(whole_image_region(h, w))
        return regions


def _counts_str(counts: Any) -> str:
    return str(counts_str(counts))
