"""A faster "segment everything" for SAM 2.1, on sam2's own model and predictor.

It follows ``sam2.automatic_mask_generator.SAM2AutomaticMaskGenerator`` for the single-crop
case (``crop_n_layers=0``, no m2m refinement) and returns the same records, but reorders the
work so that the expensive full-resolution steps only touch masks that can survive:

1. **One image embedding** (``set_image``) per image, shared by every prompt batch (as sam2).
2. **Low-resolution filtering first.** sam2 upsamples *every* candidate (points x 3 multimask
   outputs) to the original image size before filtering by predicted IoU and stability, then
   RLE-encodes every survivor before NMS. Here, predicted IoU is filtered on the decoder output
   and the stability score is computed on the low-resolution logits (a ratio of areas, nearly
   resolution independent) with a small safety ``margin`` below the threshold; near-duplicates are
   removed by a lenient NMS on low-resolution boxes. Only these survivors are upsampled.
3. **Exact final decisions.** Survivors are upsampled exactly as sam2 does (bilinear from the
   low-resolution logits to the image size), their stability score is recomputed at full
   resolution and filtered with the real threshold, boxes come from the full-resolution masks
   and the real ``box_nms_thresh`` NMS runs on them, then RLE encoding (only for kept masks).
4. **Coarse-to-fine prompting** (optional, on by default): a grid with half the points per side
   first; points of the full grid are then only prompted where no accepted mask covers them
   (coverage measured on the low-resolution masks). On images with large objects most fine
   points are covered, so the decoder runs far fewer times.

Everything runs under ``torch.inference_mode``. Configurations this does not cover (crop layers,
m2m refinement) fall back to sam2's generator, so every parameter keeps its meaning.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import SegmentConfig
from ..types import Region
from .amg import rank_score, whole_image_region


#: low-resolution pixel count below which a mask skips the approximate NMS
MIN_LOWRES_AREA = 64


@dataclass
class AmgStats:
    """Counters of one ``generate`` call (for benchmarks)."""

    prompts: int = 0
    candidates: int = 0
    lowres_survivors: int = 0
    upsampled: int = 0
    kept: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def _stability(logits: Any, threshold: float, offset: float) -> Any:
    """sam2's stability score: IoU of the masks thresholded at ``threshold +- offset``."""
    import torch

    inter = (logits > (threshold + offset)).flatten(-2).sum(-1, dtype=torch.int32)
    union = (logits > (threshold - offset)).flatten(-2).sum(-1, dtype=torch.int32)
    return inter.float() / union.clamp(min=1).float()


def _mask_boxes(masks: Any) -> Any:
    """XYXY boxes (inclusive max, like sam2's ``batched_mask_to_box``) of ``(N, H, W)`` bool masks."""
    from sam2.utils.amg import batched_mask_to_box

    return batched_mask_to_box(masks)


class FastAutomaticSegmenter:
    """``segment(image)`` -> regions; ``generate(image)`` -> sam2-style records.

    ``margin`` loosens the low-resolution stability pre-filter (the exact filter follows);
    ``coarse_to_fine`` enables the two-level prompting. Not thread-safe per instance (a lock
    serialises calls).
    """

    def __init__(self, model: Any, cfg: SegmentConfig, min_region_area: int = 0, coarse_to_fine: bool = True,
                 margin: float = 0.05, lowres_nms_slack: float = 0.15, mask_threshold: float = 0.0):
        from ..models.sam import make_image_predictor

        self.model = model
        self.cfg = cfg
        self.params = cfg.amg_params()
        self.min_region_area = min_region_area
        self.coarse_to_fine = coarse_to_fine
        self.margin = margin
        self.lowres_nms_slack = lowres_nms_slack
        self.mask_threshold = mask_threshold
        self.predictor = make_image_predictor(model)
        self.stats = AmgStats()
        self._lock = threading.Lock()
        self._fallback: Any = None
        if self.params["crop_n_layers"] > 0 or self.params["use_m2m"]:
            from .amg import AutomaticSegmenter

            self._fallback = AutomaticSegmenter(model, cfg, min_region_area)

    # ------------------------------------------------------------------ public
    def segment(self, image: np.ndarray) -> list[Region]:
        """Segment an ``HWC uint8 RGB`` image into regions (best first, capped, + whole image)."""
        if self._fallback is not None:
            return self._fallback.segment(image)
        h, w = image.shape[:2]
        regions = [
            Region(bbox=tuple(rec["bbox"]), area=rec["area"], rle=rec["segmentation"],  # type: ignore[arg-type]
                   predicted_iou=rec["predicted_iou"], stability_score=rec["stability_score"], kind="mask")
            for rec in self.generate(image) if rec["area"] >= max(1, self.min_region_area)
        ]
        regions.sort(key=rank_score, reverse=True)
        regions = regions[: self.cfg.max_regions]
        if self.cfg.whole_image_region:
            regions.append(whole_image_region(h, w))
        return regions

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """sam2-compatible records: segmentation (COCO RLE, str counts), area, bbox (XYWH),
        predicted_iou, stability_score, point_coords."""
        import torch

        with self._lock, torch.inference_mode():
            return self._generate(image)

    # ------------------------------------------------------------------ internals
    def _generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        import torch
        from sam2.utils.amg import build_point_grid

        p = self.params
        stats = AmgStats()
        t0 = time.perf_counter()
        self.predictor.set_image(image)
        stats.seconds["embed_image"] = time.perf_counter() - t0
        h, w = image.shape[:2]
        n = int(p["points_per_side"])
        scale = np.array([[w, h]], dtype=np.float64)

        t1 = time.perf_counter()
        if self.coarse_to_fine and n >= 8:
            coarse = build_point_grid(max(2, n // 2)) * scale
            cand = self._decode_points(coarse, (h, w), stats)
            cand = self._lowres_nms(cand)
            fine = build_point_grid(n) * scale
            fine = fine[~self._covered(cand, fine, (h, w))]
            more = self._decode_points(fine, (h, w), stats)
            cand = self._lowres_nms(self._cat(cand, more))
        else:
            cand = self._lowres_nms(self._decode_points(build_point_grid(n) * scale, (h, w), stats))
        stats.seconds["decode_and_filter"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        records = self._finalise(cand, (h, w), stats)
        stats.seconds["finalise"] = time.perf_counter() - t2
        self.predictor.reset_predictor()
        stats.kept = len(records)
        self.stats = stats
        return records

    @staticmethod
    def _cat(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        import torch

        return {k: torch.cat([a[k], b[k]]) for k in a}

    def _decode_points(self, points: np.ndarray, hw: tuple[int, int], stats: AmgStats) -> dict[str, Any]:
        """Run the prompt encoder + mask decoder on single-point prompts; keep the candidates that
        pass the predicted-IoU filter and the (margin-loosened) low-resolution stability filter."""
        import torch

        p = self.params
        model, pred = self.model, self.predictor
        feats = pred._features
        image_embed = feats["image_embed"][-1].unsqueeze(0)
        high_res = [lvl[-1].unsqueeze(0) for lvl in feats["high_res_feats"]]
        dense_pe = model.sam_prompt_encoder.get_dense_pe()
        out: dict[str, list[Any]] = {"logits": [], "iou": [], "points": []}
        bs = max(1, int(p["points_per_batch"]))
        for i in range(0, len(points), bs):
            pts = torch.as_tensor(points[i:i + bs], dtype=torch.float32, device=pred.device)
            if pts.shape[0] == 0:
                continue
            coords = pred._transforms.transform_coords(pts, normalize=True, orig_hw=hw)[:, None, :]
            labels = torch.ones((pts.shape[0], 1), dtype=torch.int, device=pts.device)
            sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            logits, iou, _, _ = model.sam_mask_decoder(
                image_embeddings=image_embed, image_pe=dense_pe, sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense, multimask_output=bool(p["multimask_output"]),
                repeat_image=pts.shape[0] > 1, high_res_features=high_res,
            )
            stats.prompts += int(pts.shape[0])
            c = logits.shape[1]
            logits = logits.flatten(0, 1)
            iou = iou.flatten(0, 1)
            pts_rep = pts.repeat_interleave(c, dim=0)
            stats.candidates += int(logits.shape[0])
            keep = iou > p["pred_iou_thresh"] if p["pred_iou_thresh"] > 0 else torch.ones_like(iou, dtype=torch.bool)
            if p["stability_score_thresh"] > 0:
                stab = _stability(logits, self.mask_threshold, p["stability_score_offset"])
                keep &= stab >= (p["stability_score_thresh"] - self.margin)
            keep &= (logits > self.mask_threshold).flatten(-2).any(-1)
            out["logits"].append(logits[keep])  # unclamped: sam2 upsamples the raw logits
            out["iou"].append(iou[keep])
            out["points"].append(pts_rep[keep])
        if not out["logits"]:
            lh, lw = feats["high_res_feats"][0].shape[-2:]
            return {"logits": torch.zeros((0, lh, lw)), "iou": torch.zeros((0,)), "points": torch.zeros((0, 2))}
        res = {k: torch.cat(v) for k, v in out.items()}
        stats.lowres_survivors += int(res["logits"].shape[0])
        return res

    def _lowres_boxes(self, logits: Any, hw: tuple[int, int]) -> Any:
        import torch

        h, w = hw
        lh, lw = logits.shape[-2:]
        boxes = _mask_boxes(logits > self.mask_threshold).float()
        sx, sy = w / lw, h / lh
        return boxes * torch.tensor([sx, sy, sx, sy]) + torch.tensor([0.0, 0.0, sx, sy])

    def _lowres_nms(self, cand: dict[str, Any]) -> dict[str, Any]:
        """Drop near-duplicates cheaply (lenient IoU threshold); the exact NMS runs later.

        Only masks of at least ``MIN_LOWRES_AREA`` low-resolution pixels take part: the boxes of
        smaller masks are too coarsely quantised at low resolution to decide on, so they go to
        the exact NMS untouched.
        """
        import torch
        from torchvision.ops import nms

        if cand["logits"].shape[0] <= 1:
            return cand
        hw = self.predictor._orig_hw[-1]
        large = (cand["logits"] > self.mask_threshold).flatten(-2).sum(-1) >= MIN_LOWRES_AREA
        idx_large = torch.nonzero(large).flatten()
        if idx_large.numel() <= 1:
            return cand
        boxes = self._lowres_boxes(cand["logits"][idx_large], hw)
        thr = min(0.98, float(self.params["box_nms_thresh"]) + self.lowres_nms_slack)
        kept = idx_large[nms(boxes, cand["iou"][idx_large].float(), thr)]
        keep = torch.cat([kept, torch.nonzero(~large).flatten()]).sort().values
        return {k: v[keep] for k, v in cand.items()}

    def _covered(self, cand: dict[str, Any], points: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """Which ``points`` (image pixels) fall inside an accepted low-resolution mask."""
        if cand["logits"].shape[0] == 0 or len(points) == 0:
            return np.zeros(len(points), dtype=bool)
        h, w = hw
        cover = (cand["logits"] > self.mask_threshold).any(0).cpu().numpy()
        lh, lw = cover.shape
        xs = np.clip((points[:, 0] / w * lw).astype(int), 0, lw - 1)
        ys = np.clip((points[:, 1] / h * lh).astype(int), 0, lh - 1)
        return cover[ys, xs]

    def _finalise(self, cand: dict[str, Any], hw: tuple[int, int], stats: AmgStats) -> list[dict[str, Any]]:
        """Upsample survivors exactly as sam2 does, apply the exact filters and NMS, encode RLE."""
        import torch
        import torch.nn.functional as F
        from sam2.utils.amg import area_from_rle, box_xyxy_to_xywh, coco_encode_rle, mask_to_rle_pytorch
        from torchvision.ops import batched_nms

        p = self.params
        h, w = hw
        if cand["logits"].shape[0] == 0:
            return []
        masks, ious, stabs, points, boxes = [], [], [], [], []
        chunk = 32
        for i in range(0, cand["logits"].shape[0], chunk):
            logits = F.interpolate(cand["logits"][i:i + chunk, None].float(), (h, w), mode="bilinear",
                                   align_corners=False)[:, 0]
            stats.upsampled += int(logits.shape[0])
            stab = _stability(logits, self.mask_threshold, p["stability_score_offset"])
            keep = stab >= p["stability_score_thresh"] if p["stability_score_thresh"] > 0 else torch.ones_like(stab, dtype=torch.bool)
            # masks that vanish at full resolution are not regions (sam2 would emit them with area 0)
            keep &= (logits > self.mask_threshold).flatten(-2).any(-1)
            m = logits[keep] > self.mask_threshold
            masks.append(m)
            ious.append(cand["iou"][i:i + chunk][keep])
            stabs.append(stab[keep])
            points.append(cand["points"][i:i + chunk][keep])
            boxes.append(_mask_boxes(m))
        m_all = torch.cat(masks)
        if m_all.shape[0] == 0:
            return []
        iou_all, stab_all, pts_all, box_all = torch.cat(ious), torch.cat(stabs), torch.cat(points), torch.cat(boxes)
        keep = batched_nms(box_all.float(), iou_all.float(), torch.zeros_like(box_all[:, 0]),
                           iou_threshold=float(p["box_nms_thresh"]))
        m_all, iou_all, stab_all, pts_all, box_all = (t[keep] for t in (m_all, iou_all, stab_all, pts_all, box_all))
        rles = mask_to_rle_pytorch(m_all)
        if p["min_mask_region_area"] > 0:
            rles, iou_all, stab_all, pts_all, box_all = self._remove_small(rles, iou_all, stab_all, pts_all, box_all)
        records = []
        for idx, rle in enumerate(rles):
            seg = coco_encode_rle(rle)
            records.append({
                "segmentation": {"size": [int(s) for s in seg["size"]], "counts": seg["counts"]},
                "area": int(area_from_rle(rle)),
                "bbox": [float(v) for v in box_xyxy_to_xywh(box_all[idx]).tolist()],
                "predicted_iou": float(iou_all[idx]),
                "point_coords": [pts_all[idx].tolist()],
                "stability_score": float(stab_all[idx]),
            })
        return records

    def _remove_small(self, rles, ious, stabs, pts, boxes):  # type: ignore[no-untyped-def]
        """sam2's ``postprocess_small_regions``: fill small holes, drop small islands, re-NMS
        preferring unchanged masks."""
        import torch
        from sam2.utils.amg import batched_mask_to_box, mask_to_rle_pytorch, remove_small_regions, rle_to_mask
        from torchvision.ops import batched_nms

        area = int(self.params["min_mask_region_area"])
        new, scores = [], []
        for rle in rles:
            mask = rle_to_mask(rle)
            mask, changed_h = remove_small_regions(mask, area, mode="holes")
            mask, changed_i = remove_small_regions(mask, area, mode="islands")
            new.append(torch.as_tensor(mask)[None])
            scores.append(float(not (changed_h or changed_i)))
        masks = torch.cat(new)
        boxes = batched_mask_to_box(masks)
        keep = batched_nms(boxes.float(), torch.as_tensor(scores), torch.zeros_like(boxes[:, 0]),
                           iou_threshold=float(self.params["box_nms_thresh"]))
        rles = mask_to_rle_pytorch(masks[keep])
        return rles, ious[keep], stabs[keep], pts[keep], boxes[keep]
