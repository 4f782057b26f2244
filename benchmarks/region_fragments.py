"""Stray mask fragments on the held-out shapes scenes: do they inflate boxes, and should they go?

Runs the tiny preset's segmenter (``--config tiny``, the same code as indexing) on the held-out
shapes-world scenes and, for every automatic mask that matches a ground-truth instance (mask IoU
>= 0.5), compares the stored box (the whole mask's) and the box of the mask's largest 8-connected
component against the instance's exact box (box IoU), and the whole mask and its largest
component against the instance's mask (mask IoU). Prints the figures and saves them with
``_results.save_results`` as ``benchmarks/results/region_fragments.json``.

    python benchmarks/region_fragments.py --scenes 40
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import save_results  # noqa: E402


def main() -> None:
    import cv2
    import numpy as np

    from regionsearch.config import load_config
    from regionsearch.masks import box_iou_xywh, decode_rle, mask_iou, mask_to_bbox
    from regionsearch.pipeline import Pipeline
    from regionsearch.testing.heldout import held_out_scenes

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=40)
    args = ap.parse_args()
    seg = Pipeline(load_config("tiny")).segmenter
    rows = []
    for scene in held_out_scenes()[:args.scenes]:
        gt_boxes = np.asarray([mask_to_bbox(m) for m in scene.masks])
        for r in seg.segment(scene.image):
            if r.kind != "mask":
                continue
            m = decode_rle(r.rle)
            ious = [mask_iou(m, g) for g in scene.masks]
            j = int(np.argmax(ious))
            n, lab, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
            main = lab == (1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))) if n > 1 else m
            b_all, b_main = np.asarray([r.bbox]), np.asarray([mask_to_bbox(main)])
            rows.append({"matched": ious[j] >= 0.5, "parts": n - 1,
                         "box_iou": float(box_iou_xywh(b_all, gt_boxes[j:j + 1])[0, 0]),
                         "box_iou_main": float(box_iou_xywh(b_main, gt_boxes[j:j + 1])[0, 0]),
                         "mask_iou": ious[j], "mask_iou_main": mask_iou(main, scene.masks[j]),
                         "height_ratio": r.bbox[3] / max(1.0, gt_boxes[j, 3])})
    matched = [r for r in rows if r["matched"]]
    frag = [r for r in matched if r["parts"] > 1]
    mean = lambda key, rs: round(float(np.mean([r[key] for r in rs])), 4) if rs else None  # noqa: E731
    figures = {"scenes": args.scenes, "masks": len(rows), "matched": len(matched),
               "matched_with_fragments": len(frag),
               "box_iou_stored": mean("box_iou", matched), "box_iou_main_component": mean("box_iou_main", matched),
               "mask_iou_stored": mean("mask_iou", matched),
               "mask_iou_main_component": mean("mask_iou_main", matched),
               "fragmented_box_iou_stored": mean("box_iou", frag),
               "fragmented_box_iou_main_component": mean("box_iou_main", frag),
               "fragmented_mask_iou_stored": mean("mask_iou", frag),
               "fragmented_mask_iou_main_component": mean("mask_iou_main", frag),
               "boxes_over_1_25x_gt_height": sum(r["height_ratio"] > 1.25 for r in matched)}
    for k, v in figures.items():
        print(f"{k}: {v}")
    print("saved", save_results("region_fragments", figures))


if __name__ == "__main__":
    main()
