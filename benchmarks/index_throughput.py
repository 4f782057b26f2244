"""Indexing throughput: the naive pipeline vs the project's, on the same images, in one run.

(a) naive: sam2's ``SAM2AutomaticMaskGenerator`` with its defaults (points_per_side=32,
    points_per_batch=64, ...) and one CLIP forward per region (open_clip's own preprocessing of
    a box crop, batch of 1);
(b) project: ``regionsearch`` with its default preset (fast generator: low-resolution filtering,
    coarse-to-fine prompting; batched crops).

Part 1, time (``--part speed``): the real architectures, SAM 2.1 hiera-tiny (1024 px) + CLIP
ViT-B-32 with random weights (nothing can be downloaded here). Random weights make the usual
thresholds meaningless, so the stability threshold is calibrated on the first image so that
50-100 masks survive, and the same thresholds are used by both pipelines.

Part 2, quality (``--part agreement``): the tiny trained models, held-out shapes scenes, equal
thresholds (configs/tiny.yaml): the fraction of the naive generator's masks matched by a project
mask at IoU >= 0.8, and the reverse.

Prints images/s end to end, per-stage seconds, masks per image, peak RSS and the ratio b/a.

    python benchmarks/index_throughput.py [--part speed|agreement|both] [--images 3] [--size 512]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _results import save_results  # noqa: E402


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def sample_images(n: int, size: int) -> list[np.ndarray]:
    """scikit-image's bundled photos, resized so the longer side is ``size``."""
    import cv2
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")[:n]:
        img = getattr(data, name)()
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, 2)
        h, w = img.shape[:2]
        s = size / max(h, w)
        out.append(cv2.resize(img[:, :, :3], (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA))
    return out


def naive_index(images, sam, clip, preprocess, params) -> dict:
    import torch
    from PIL import Image
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from regionsearch.models.sam import backbone_feature_sizes

    gen = SAM2AutomaticMaskGenerator(sam, output_mode="coco_rle", **params)
    gen.predictor._bb_feat_sizes = backbone_feature_sizes(sam)
    seg_s = emb_s = 0.0
    masks = 0
    records_all = []
    for img in images:
        t0 = time.perf_counter()
        with torch.inference_mode():
            records = gen.generate(img)
        t1 = time.perf_counter()
        for rec in records:
            x, y, w, h = (int(round(v)) for v in rec["bbox"])
            crop = Image.fromarray(img[y:y + max(h, 1), x:x + max(w, 1)])
            with torch.inference_mode():
                clip.encode_image(preprocess(crop)[None])
        t2 = time.perf_counter()
        seg_s += t1 - t0
        emb_s += t2 - t1
        masks += len(records)
        records_all.append(records)
    return {"segment_s": seg_s, "embed_s": emb_s, "masks": masks, "records": records_all}


def project_index(images, sam, bundle, cfg) -> dict:
    from regionsearch.embed.clip import ClipEmbedder
    from regionsearch.pipeline import Pipeline, StageTimes
    from regionsearch.segment.fast_amg import FastAutomaticSegmenter

    pipe = Pipeline(cfg)
    pipe._segmenter = FastAutomaticSegmenter(sam, cfg.segment, cfg.embed.min_region_area,
                                             coarse_to_fine=cfg.segment.coarse_to_fine,
                                             coarse_step=cfg.segment.coarse_step)
    pipe._embedder = ClipEmbedder(bundle, cfg.embed.batch_size)
    times = StageTimes()
    masks = 0
    stats = []
    records = []
    for img in images:
        regions, _ = pipe.process(img, times)
        masks += sum(r.kind == "mask" for r in regions)
        records.append([{"segmentation": r.rle} for r in regions if r.kind == "mask"])
        stats.append(dict(pipe._segmenter.stats.__dict__))
    return {"segment_s": times.segment, "embed_s": times.embed, "masks": masks, "stats": stats, "records": records}


def _agreement(base: list[list[dict]], ours: list[list[dict]], thr: float = 0.8) -> tuple[float | None, float | None]:
    """(fraction of the baseline masks matched by a project mask at IoU >= ``thr``, and the
    reverse: fraction of the project's masks matched by a baseline mask), from per-image lists of
    sam2-style records. Masks on an image where the other side found none count as unmatched,
    both ways."""
    from regionsearch.masks import rle_iou

    fwd: list[bool] = []
    rev: list[bool] = []
    for rb, rf in zip(base, ours):
        if rb and rf:
            iou = rle_iou([r["segmentation"] for r in rb], [r["segmentation"] for r in rf])
            fwd += list(iou.max(1) >= thr)
            rev += list(iou.max(0) >= thr)
        else:
            fwd += [False] * len(rb)
            rev += [False] * len(rf)
    return (float(np.mean(fwd)) if fwd else None, float(np.mean(rev)) if rev else None)


def calibrate(sam, image, base_params, target: int = 50) -> dict:
    """Pick the stability threshold (random weights) that leaves about ``target`` masks on ``image``.

    One generator run on a 16x16 grid with the threshold at 0 gives every surviving mask's
    stability score; the highest threshold of a fixed ladder that keeps ``target`` of them is
    taken (the 32x32 grid of the real runs finds at least as many). One run instead of one per
    threshold: with hiera-tiny on this CPU a 32x32 run costs minutes.
    """
    from regionsearch.config import load_config
    from regionsearch.segment.fast_amg import FastAutomaticSegmenter

    cfg = load_config("default", {"segment": {**base_params, "points_per_side": 16, "stability_score_thresh": 0.0,
                                              "max_regions": 100_000}})
    stab = np.array([r["stability_score"] for r in FastAutomaticSegmenter(sam, cfg.segment, coarse_to_fine=False)
                     .generate(image)])
    ladder = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)
    thr = next((t for t in ladder if (stab >= t).sum() >= target), 0.0)
    return {"stability_score_thresh": thr, "masks_at_16x16": int((stab >= thr).sum()),
            "stability_quantiles": [round(float(q), 3) for q in np.quantile(stab, [0.1, 0.5, 0.9])] if stab.size else []}


def part_speed(args) -> dict:
    import open_clip
    import sam2
    import torch

    from regionsearch.config import load_config
    from regionsearch.models.clip import ClipBundle
    from regionsearch.models.sam import build_sam2_model

    torch.manual_seed(0)
    images = sample_images(args.images, args.size)
    sam = build_sam2_model(Path(sam2.__file__).parent / "configs/sam2.1/sam2.1_hiera_t.yaml", None, "cpu")
    clip, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    clip.eval()
    bundle = ClipBundle(model=clip, tokenizer=open_clip.get_tokenizer("ViT-B-32"), preprocess=preprocess,
                        name="ViT-B-32", pretrained=None, dim=512, image_size=224,
                        mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD,
                        context_length=77, device="cpu")
    relaxed = {"pred_iou_thresh": 0.0, "stability_score_offset": 1.0, "box_nms_thresh": 0.7}
    calib = calibrate(sam, images[0], {"preset": "default", **relaxed})
    thresholds = {**relaxed, "stability_score_thresh": calib["stability_score_thresh"]}
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
    import inspect

    naive_params = {k: v.default for k, v in inspect.signature(SAM2AutomaticMaskGenerator.__init__).parameters.items()
                    if k in ("points_per_side", "points_per_batch", "crop_n_layers", "use_m2m", "multimask_output",
                             "min_mask_region_area", "crop_n_points_downscale_factor")}
    naive_params.update(thresholds)
    if args.points_per_side:  # smoke runs only: the figures use sam2's default (32) on both sides
        naive_params["points_per_side"] = thresholds["points_per_side"] = args.points_per_side
    cfg = load_config("default", {"device": "cpu", "segment": {**thresholds, "max_regions": 1000}})
    # the speed work step by step: the project's generator on one grid (its output equals
    # sam2's), then coarse-to-fine with 2x and 4x sparser coarse grids. Images are interleaved
    # (each image through every variant in turn) so that a change of machine load during the run
    # hits all variants alike.
    variants = {"one grid": {"coarse_to_fine": False}, "coarse-to-fine x2": {"coarse_step": 2},
                "coarse-to-fine x4": {"coarse_step": 4}}
    default_name = ("one grid" if not cfg.segment.coarse_to_fine
                    else f"coarse-to-fine x{cfg.segment.coarse_step}")
    wanted = [v for v in variants if v in args.steps or v == default_name]
    cfgs = {v: load_config("default", {"device": "cpu", "segment": {**thresholds, "max_regions": 1000,
                                                                   **variants[v]}}) for v in wanted}
    secs = {v: 0.0 for v in ["naive", *wanted]}
    runs: dict[str, list[dict]] = {v: [] for v in ["naive", *wanted]}
    for i, img in enumerate(images):
        t0 = time.perf_counter()
        runs["naive"].append(naive_index([img], sam, clip, preprocess, naive_params))
        secs["naive"] += time.perf_counter() - t0
        for v in wanted:
            t0 = time.perf_counter()
            runs[v].append(project_index([img], sam, bundle, cfgs[v]))
            secs[v] += time.perf_counter() - t0
        print(f"image {i + 1}/{len(images)}: " + ", ".join(f"{k} {t:.1f} s" for k, t in secs.items()), flush=True)

    def merged(v: str) -> dict:
        rs = runs[v]
        out = {"seconds": secs[v], "segment_s": sum(r["segment_s"] for r in rs), "embed_s": sum(r["embed_s"] for r in rs),
               "masks": sum(r["masks"] for r in rs), "records": [r["records"][0] for r in rs]}
        if v != "naive":
            out["stats"] = [r["stats"][0] for r in rs]
        return out

    a = merged("naive")
    n = len(images)
    steps = {}
    for v in wanted:
        m = merged(v)
        steps[v] = {"seconds": m["seconds"], "ratio_images_per_s": secs["naive"] / m["seconds"],
                    "segment_s": m["segment_s"], "embed_s": m["embed_s"], "masks_per_image": m["masks"] / n,
                    "prompts_per_image": float(np.mean([st["prompts"] for st in m["stats"]])),
                    # random weights: this only checks that the speed work keeps the same masks;
                    # the real check is part 2
                    "agreement_with_naive": _agreement(a["records"], m["records"])[0], "amg_stats": m["stats"]}
    b = steps[default_name]
    return {
        "steps": steps, "default": default_name,
        "images": n, "size": args.size, "torch_threads": torch.get_num_threads(), "calibration": calib,
        "naive": {"images_per_s": n / secs["naive"], "seconds": secs["naive"], "segment_s": a["segment_s"],
                  "embed_s": a["embed_s"], "masks_per_image": a["masks"] / n, "params": naive_params,
                  "prompts_per_image": naive_params["points_per_side"] ** 2},
        "project": {"images_per_s": n / b["seconds"], "seconds": b["seconds"], "segment_s": b["segment_s"],
                    "embed_s": b["embed_s"], "masks_per_image": b["masks_per_image"],
                    "params": cfg.segment.amg_params(), "coarse_to_fine": cfg.segment.coarse_to_fine,
                    "coarse_step": cfg.segment.coarse_step},
        "peak_rss_mb": _rss_mb(),
        "ratio_images_per_s": secs["naive"] / b["seconds"],
    }


def part_agreement(args) -> dict:
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from regionsearch.config import load_config
    from regionsearch.models.sam import backbone_feature_sizes, load_sam2
    from regionsearch.segment.fast_amg import FastAutomaticSegmenter
    from regionsearch.testing.shapes import make_scenes

    out = {}
    for preset in ("tiny-default", "tiny-preset"):
        over = {"segment": {"points_per_side": 32, "points_per_batch": 64}} if preset == "tiny-default" else {}
        cfg = load_config("tiny", over)
        sam = load_sam2(cfg.models.sam, "cpu")
        base = SAM2AutomaticMaskGenerator(sam, output_mode="coco_rle", **cfg.segment.amg_params())
        base.predictor._bb_feat_sizes = backbone_feature_sizes(sam)
        ours = FastAutomaticSegmenter(sam, cfg.segment, coarse_to_fine=cfg.segment.coarse_to_fine,
                                      coarse_step=cfg.segment.coarse_step)
        rbs, rfs, tb, tf = [], [], 0.0, 0.0
        for scene in make_scenes(args.scenes, seed=5150):
            t = time.perf_counter(); rbs.append(base.generate(scene.image)); tb += time.perf_counter() - t
            t = time.perf_counter(); rfs.append(ours.generate(scene.image)); tf += time.perf_counter() - t
        fwd, rev = _agreement(rbs, rfs)
        out[preset] = {"points_per_side": cfg.segment.amg_params()["points_per_side"], "scenes": args.scenes,
                       "baseline_masks": sum(map(len, rbs)), "project_masks": sum(map(len, rfs)),
                       "agreement": fwd, "reverse_agreement": rev, "segment_speedup": tb / tf if tf else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["speed", "agreement", "both"], default="both")
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--size", type=int, default=512, help="longer side of the benchmark photos")
    ap.add_argument("--scenes", type=int, default=12, help="held-out shapes scenes for the agreement part")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--points-per-side", type=int, default=0,
                    help="smoke runs only: grid of both pipelines (default: sam2's default, 32)")
    ap.add_argument("--steps", default="one grid,coarse-to-fine x2,coarse-to-fine x4",
                    help="speed steps to measure besides the default preset (comma-separated; '' for none)")
    args = ap.parse_args()
    args.steps = [x.strip() for x in args.steps.split(",") if x.strip()]
    res = {}
    if args.part in ("speed", "both"):
        res["speed"] = s = part_speed(args)
        print(f"naive   : {s['naive']['images_per_s']:.4f} images/s  segment {s['naive']['segment_s']:.1f} s  "
              f"embed {s['naive']['embed_s']:.1f} s  masks/image {s['naive']['masks_per_image']:.1f}")
        print(f"project : {s['project']['images_per_s']:.4f} images/s  segment {s['project']['segment_s']:.1f} s  "
              f"embed {s['project']['embed_s']:.1f} s  masks/image {s['project']['masks_per_image']:.1f}")
        for name, st in s["steps"].items():
            print(f"  step {name:<18}: ratio {st['ratio_images_per_s']:.2f}  prompts/image {st['prompts_per_image']:.0f}  "
                  f"masks/image {st['masks_per_image']:.1f}  agreement with naive {st['agreement_with_naive']}")
        print(f"ratio project/naive (images/s): {s['ratio_images_per_s']:.2f}  peak RSS {s['peak_rss_mb']:.0f} MB")
    if args.part in ("agreement", "both"):
        res["agreement"] = a = part_agreement(args)
        for k, v in a.items():
            print(f"agreement [{k}]: {v}")
    text = json.dumps(res, indent=2, default=float)
    if args.json:
        args.json.write_text(text)
    print(text)
    print(f"results: {save_results(f'index_throughput-{args.part}', json.loads(text))}")


if __name__ == "__main__":
    main()
