"""A faster "segment everything" for SAM 2.1, on sam2's own model and predictor.

It follows ``sam2.automatic_mask_generator.SAM2AutomaticMaskGenerator`` for the single-crop
case (``crop_n_layers=0``, no m2m refinement) and returns the same records; it changes where the
work goes. Measured on this CPU with hiera-tiny (``benchmarks/index_throughput.py``): the mask
decoder costs ~0.1-0.3 s per point prompt (the two-way transformer and the upscaling run on the
64x64 image tokens once per prompt), while upsampling a candidate to 512x512 and scoring its
stability costs ~5 ms. So the number of prompts decides the speed, and filtering on low
resolution saves little:

1. **One image embedding** (``set_image``) per image, shared by every prompt batch (as sam2).
2. **Exact filters, cheap order.** Predicted IoU is filtered on the decoder output, as sam2
   does. The stability score and the box of each candidate's full-resolution mask (sam2
   upsamples every candidate bilinearly from its raw low-resolution logits to compute them) are
   computed exactly from the low-resolution logits (:mod:`.lowres`: only the cells the mask
   boundary crosses are upsampled), filtered with the real threshold, and only the score, the
   box and the low-resolution logits are kept; the real ``box_nms_thresh`` NMS runs on the
   full-resolution boxes, and only the kept masks are upsampled and RLE-encoded (sam2
   RLE-encodes every candidate that passes the filters).
   An earlier version also pre-filtered stability on the low-resolution logits and ran a
   lenient NMS there; with the tiny model that lost masks (agreement with sam2 0.83 instead of
   1.0) for a few per cent of speed, so it was removed.
3. **Coarse-to-fine prompting** (``coarse_to_fine``, off by default, see ``SegmentConfig``): a grid with
   ``1/coarse_step`` of the points per side first; points of the full grid are then prompted
   only where the finest accepted mask of no coarse prompt covers them (see ``_covered``). On
   images with large objects most fine points are covered, so the decoder runs far fewer times.
   With ``coarse_to_fine=False`` the output equals sam2's (tested).
4. **Cache-sized decoder batches** on CPU (see ``_decode_batch``).
5. **The shared-work decoder** (:mod:`.decoder`): sam2's mask decoder restructured so that the
   prompt-independent work is done once per image; ``segment.dtype`` chooses its precision
   (``float32``: sam2's masks up to summation order) and ``segment.compile`` compiles it.

Measured before the shared-work decoder, hiera-tiny (random weights) on 512-px photos, one
thread: sam2's generator 358 s per image, this one (one grid) 127 s, with coarse-to-fine x4
137 s (random weights give few stable masks, so coverage is low and the coarse pass is extra
work). Current figures: ``benchmarks/results/index_throughput-speed.json``.

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


#: CPU decoder batches hold at most this many image-token values (4 prompts for hiera-tiny's
#: 64x64x256 tokens, 256 for the tiny test model's 16x16x64); see ``_decode_batch``
CPU_DECODE_ELEMENTS = 4 * 64 * 64 * 256

#: candidates scored from their low-resolution logits at a time (see :mod:`.lowres`); 32 of
#: hiera-tiny's 256x256 logits are 8 MB per intermediate
LOWRES_CHUNK = 32


@dataclass
class AmgStats:
    """Counters of one ``generate`` call (for benchmarks)."""

    prompts: int = 0
    candidates: int = 0
    lowres_survivors: int = 0  # candidates passing the predicted-IoU filter
    scored: int = 0  # candidates whose stability score and box were computed (from low resolution)
    upsampled: int = 0  # masks upsampled to image size (the ones kept by the NMS)
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

    ``coarse_to_fine`` enables the two-level prompting, starting from a grid ``coarse_step``
    times sparser; ``chunk``: kept masks upsampled at a time for RLE encoding (small, so they stay
    in the CPU cache; the results do not depend on it).
    Not thread-safe per instance (a lock serialises calls).
    """

    def __init__(self, model: Any, cfg: SegmentConfig, min_region_area: int = 0, coarse_to_fine: bool = False,
                 coarse_step: int = 4, mask_threshold: float = 0.0, chunk: int = 2):
        from ..models.sam import make_image_predictor
        from .decoder import SharedWorkDecoder, resolve_dtype

        self.model = model
        self.cfg = cfg
        self.params = cfg.amg_params()
        self.min_region_area = min_region_area
        self.coarse_to_fine = coarse_to_fine
        self.coarse_step = max(2, int(coarse_step))
        self.chunk = chunk
        self.mask_threshold = mask_threshold
        self.predictor = make_image_predictor(model)
        device = next(model.parameters()).device
        self.decoder = SharedWorkDecoder(model, resolve_dtype(cfg.dtype, device),
                                         compile_batch=self._decode_batch(model, device) if cfg.compile else 0)
        self.encoder_dtype = resolve_dtype(cfg.encoder_dtype, device)
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
        from sam2.utils.amg import build_point_grid

        from .decoder import encode_image

        p = self.params
        stats = AmgStats()
        t0 = time.perf_counter()
        feats = encode_image(self.predictor, image, self.encoder_dtype)
        ctx = self.decoder.prepare(feats["image_embed"][-1:], [lvl[-1:] for lvl in feats["high_res_feats"]])
        stats.seconds["embed_image"] = time.perf_counter() - t0
        h, w = image.shape[:2]
        n = int(p["points_per_side"])
        scale = np.array([[w, h]], dtype=np.float64)

        t1 = time.perf_counter()
        if self.coarse_to_fine and n >= 2 * self.coarse_step:
            coarse = build_point_grid(max(2, n // self.coarse_step)) * scale
            acc = self._accept(self._decode_points(ctx, coarse, (h, w), stats), (h, w), stats)
            fine = build_point_grid(n) * scale
            fine = fine[~self._covered(acc, fine, (h, w))]
            acc = self._cat(acc, self._accept(self._decode_points(ctx, fine, (h, w), stats), (h, w), stats))
        else:
            acc = self._accept(self._decode_points(ctx, build_point_grid(n) * scale, (h, w), stats), (h, w), stats)
        stats.seconds["decode_and_filter"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        records = self._finalise(acc, (h, w), stats)
        stats.seconds["finalise"] = time.perf_counter() - t2
        self.predictor.reset_predictor()
        stats.kept = len(records)
        self.stats = stats
        return records

    @staticmethod
    def _cat(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        import torch

        return {k: torch.cat([a[k], b[k]]) for k in a}

    def _decode_points(self, ctx: Any, points: np.ndarray, hw: tuple[int, int], stats: AmgStats) -> dict[str, Any]:
        """Prompt encoder + the shared-work mask decoder (``ctx``: this image's
        :class:`~.decoder.ImageContext`) on single-point prompts; keep the candidates that pass the
        predicted-IoU filter (sam2's own test on the decoder output) and are not empty (an empty
        low-resolution mask stays empty when upsampled)."""
        import torch

        p = self.params
        model, pred = self.model, self.predictor
        out: dict[str, list[Any]] = {"logits": [], "iou": [], "points": []}
        bs = self._decode_batch(model, pred.device)
        for i in range(0, len(points), bs):
            pts = torch.as_tensor(points[i:i + bs], dtype=torch.float32, device=pred.device)
            if pts.shape[0] == 0:
                continue
            coords = pred._transforms.transform_coords(pts, normalize=True, orig_hw=hw)[:, None, :]
            labels = torch.ones((pts.shape[0], 1), dtype=torch.int, device=pts.device)
            sparse, _ = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            t0 = time.perf_counter()
            logits, iou = self.decoder.decode(ctx, sparse, None, bool(p["multimask_output"]))
            stats.seconds["decoder"] = stats.seconds.get("decoder", 0.0) + time.perf_counter() - t0
            stats.prompts += int(pts.shape[0])
            c = logits.shape[1]
            logits = logits.flatten(0, 1)
            iou = iou.flatten(0, 1)
            pts_rep = pts.repeat_interleave(c, dim=0)
            stats.candidates += int(logits.shape[0])
            keep = iou > p["pred_iou_thresh"] if p["pred_iou_thresh"] > 0 else torch.ones_like(iou, dtype=torch.bool)
            keep &= (logits > self.mask_threshold).flatten(-2).any(-1)
            out["logits"].append(logits[keep])  # unclamped: sam2 upsamples the raw logits
            out["iou"].append(iou[keep])
            out["points"].append(pts_rep[keep])
        if not out["logits"]:
            lh, lw = (4 * s for s in ctx.hw)
            # on the predictor's device: coarse-to-fine concatenates these with the other pass's (CUDA)
            dev = pred.device
            return {"logits": torch.zeros((0, lh, lw), device=dev), "iou": torch.zeros((0,), device=dev),
                    "points": torch.zeros((0, 2), device=dev)}
        res = {k: torch.cat(v) for k, v in out.items()}
        stats.lowres_survivors += int(res["logits"].shape[0])
        return res

    def _decode_batch(self, model: Any, device: Any) -> int:
        """Prompts per decoder call. The results do not depend on it, only the speed and memory
        do: on CPU the decoder is memory-bound and each prompt of a batch has its own
        ``(hw, C)`` image tokens from layer 1 on (and 16x as many upscaled values), so a batch
        holds at most :data:`CPU_DECODE_ELEMENTS` image-token values (4 prompts for hiera-tiny);
        on GPU ``points_per_batch`` as sam2."""
        bs = max(1, int(self.params["points_per_batch"]))
        if getattr(device, "type", str(device)) != "cpu":
            return bs
        h, w = model.sam_prompt_encoder.image_embedding_size
        per_prompt = int(h * w * model.sam_mask_decoder.transformer_dim)
        return max(1, min(bs, 2 ** int(np.log2(max(1, CPU_DECODE_ELEMENTS // per_prompt)))))

    def _upsample(self, logits: Any, hw: tuple[int, int]) -> Any:
        """Low-resolution logits -> image-size logits, exactly as sam2's predictor does."""
        import torch.nn.functional as F

        return F.interpolate(logits[:, None].float(), hw, mode="bilinear", align_corners=False)[:, 0]

    def _accept(self, cand: dict[str, Any], hw: tuple[int, int], stats: AmgStats) -> dict[str, Any]:
        """sam2's exact stability filter at full resolution; adds ``stab`` and the full-resolution
        ``boxes``. The image-size masks are never formed here: :mod:`.lowres` counts their pixels
        above the two stability thresholds and takes their boxes from the low-resolution logits
        (only cells the mask boundary crosses are evaluated pixel by pixel), which equals sam2's
        upsample-then-count (tested) at ~1/5 of the CPU time on hiera-tiny. :meth:`_finalise`
        upsamples only the masks that survive the NMS."""
        import torch

        from .lowres import LowResMasks, boxes_above, count_above

        p = self.params
        off, thr = float(p["stability_score_offset"]), float(self.mask_threshold)
        keep_all, stabs, boxes = [], [], []
        for i in range(0, cand["logits"].shape[0], LOWRES_CHUNK):
            m = LowResMasks.build(cand["logits"][i:i + LOWRES_CHUNK], hw)
            lo, hi = m.cell_range()
            counts = count_above(m, (thr + off, thr - off), lo, hi)
            stab = counts[:, 0].float() / counts[:, 1].clamp(min=1).float()
            box, nonempty = boxes_above(m, thr, lo, hi)
            stats.scored += int(stab.shape[0])
            keep = stab >= p["stability_score_thresh"] if p["stability_score_thresh"] > 0 \
                else torch.ones_like(stab, dtype=torch.bool)
            # masks that vanish at full resolution are not regions (sam2 would emit them with area 0)
            keep &= nonempty
            keep_all.append(keep)
            stabs.append(stab[keep])
            boxes.append(box[keep])
        if not keep_all:
            dev = cand["logits"].device
            return {**cand, "stab": torch.zeros((0,), device=dev),
                    "boxes": torch.zeros((0, 4), dtype=torch.int64, device=dev)}
        keep = torch.cat(keep_all)
        return {**{k: v[keep] for k, v in cand.items()}, "stab": torch.cat(stabs), "boxes": torch.cat(boxes)}

    def _covered(self, acc: dict[str, Any], points: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """Which ``points`` (image pixels) an accepted coarse prompt already answers for.

        A fine point is skipped only when it lies inside the *finest* accepted mask of some coarse
        prompt (the smallest of that prompt's accepted multimask candidates): both points then
        sit on the same smallest part, and sam2 returns the same masks for either. (Coverage by
        any accepted mask also skips points inside a large "whole object" or background mask and
        loses the small parts within it.)
        """
        import torch

        if acc["logits"].shape[0] == 0 or len(points) == 0:
            return np.zeros(len(points), dtype=bool)
        h, w = hw
        fg = acc["logits"] > self.mask_threshold
        area = fg.flatten(-2).sum(-1)
        _, prompt = torch.unique(acc["points"], dim=0, return_inverse=True)
        smallest = torch.full((int(prompt.max()) + 1,), torch.iinfo(area.dtype).max, dtype=area.dtype)
        smallest = smallest.scatter_reduce(0, prompt, area, reduce="amin")
        cover = fg[area == smallest[prompt]].any(0).cpu().numpy()
        lh, lw = cover.shape
        xs = np.clip((points[:, 0] / w * lw).astype(int), 0, lw - 1)
        ys = np.clip((points[:, 1] / h * lh).astype(int), 0, lh - 1)
        return cover[ys, xs]

    def _finalise(self, acc: dict[str, Any], hw: tuple[int, int], stats: AmgStats) -> list[dict[str, Any]]:
        """sam2's NMS on the full-resolution boxes, then the kept masks upsampled again and RLE-encoded."""
        import torch
        from sam2.utils.amg import area_from_rle, box_xyxy_to_xywh, coco_encode_rle, mask_to_rle_pytorch
        from torchvision.ops import batched_nms

        p = self.params
        if acc["logits"].shape[0] == 0:
            return []
        keep = batched_nms(acc["boxes"].float(), acc["iou"].float(), torch.zeros_like(acc["boxes"][:, 0]),
                           iou_threshold=float(p["box_nms_thresh"]))
        logits, iou_all, stab_all, pts_all, box_all = (acc[k][keep] for k in ("logits", "iou", "stab", "points", "boxes"))
        rles = []
        for i in range(0, logits.shape[0], self.chunk):
            rles += mask_to_rle_pytorch(self._upsample(logits[i:i + self.chunk], hw) > self.mask_threshold)
        stats.upsampled += int(logits.shape[0])
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
