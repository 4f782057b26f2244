"""The committed tiny SAM 2.1 + CLIP reach their targets on held-out shapes-world scenes.

Everything goes through the product's loaders (``load_config("tiny")`` -> ``load_sam2`` /
``load_clip``) and sam2's own predictor and automatic mask generator. The scenes use seeds that
training never saw (training: 10_000+, 20_000+; its held-out curves: 555, 777).
"""

from __future__ import annotations

import numpy as np
import pytest

from regionsearch.testing.shapes import CLASSES, make_scene, scene_seed
from regionsearch.testing.tiny import trained_available

TEST_SEED = 4242
POINT_MIOU_TARGET = 0.80
AMG_RECALL_TARGET = 0.80
CLIP_TOP1_TARGET = 0.90

@pytest.fixture(scope="module")
def cfg():
    from regionsearch.config import load_config

    assert trained_available(), "the trained tiny weights must be committed in regionsearch/testing/weights"
    return load_config("tiny")


@pytest.fixture(scope="module")
def sam(cfg):
    import torch

    from regionsearch.models.sam import load_sam2

    torch.manual_seed(0)
    return load_sam2(cfg.models.sam, "cpu")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def test_checkpoint_sizes():
    from regionsearch.testing.tiny import CLIP_DIR, CLIP_WEIGHTS, SAM_CHECKPOINT, WEIGHTS_DIR

    total = (WEIGHTS_DIR / SAM_CHECKPOINT).stat().st_size + (WEIGHTS_DIR / CLIP_DIR / CLIP_WEIGHTS).stat().st_size
    assert total <= 15 * 1024 * 1024


def test_sam_single_point_miou(sam):
    """One positive click sampled inside the visible mask; best of the 3 masks by predicted IoU."""
    import torch

    from regionsearch.models.sam import make_image_predictor

    predictor = make_image_predictor(sam)
    rng = np.random.default_rng(TEST_SEED)
    ious = []
    with torch.inference_mode():
        for i in range(40):
            sc = make_scene(scene_seed(TEST_SEED, i))
            predictor.set_image(sc.image)
            pts = []
            for m in sc.masks:
                ys, xs = np.nonzero(m)
                k = rng.integers(len(xs))
                pts.append([[xs[k], ys[k]]])
            masks, scores, _ = predictor.predict(
                point_coords=np.array(pts, np.float32), point_labels=np.ones((len(pts), 1), np.int32),
                multimask_output=True,
            )
            masks = masks.reshape(len(pts), 3, *sc.image.shape[:2])
            scores = scores.reshape(len(pts), 3)
            for m, cand, sc_ in zip(sc.masks, masks, scores):
                ious.append(_iou(cand[int(np.argmax(sc_))] > 0, m))
    miou = float(np.mean(ious))
    print(f"tiny SAM single-point mIoU over {len(ious)} instances: {miou:.3f}")
    assert miou >= POINT_MIOU_TARGET, f"single-point mIoU {miou:.3f} < {POINT_MIOU_TARGET}"


def test_sam_automatic_mask_generation_recall(sam, cfg):
    """sam2's AMG with the tiny preset's thresholds finds the ground-truth instances."""
    import torch
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from regionsearch.models.sam import backbone_feature_sizes

    gen = SAM2AutomaticMaskGenerator(sam, **cfg.segment.amg_params())
    gen.predictor._bb_feat_sizes = backbone_feature_sizes(sam)
    found = total = 0
    with torch.inference_mode():
        for i in range(12):
            sc = make_scene(scene_seed(TEST_SEED + 1, i))
            anns = gen.generate(sc.image)
            anns.sort(key=lambda a: a["predicted_iou"] * a["stability_score"], reverse=True)
            preds = [a["segmentation"] for a in anns[: cfg.segment.max_regions]]
            for m in sc.masks:
                total += 1
                found += any(_iou(p, m) >= 0.5 for p in preds)
    recall = found / total
    print(f"tiny SAM AMG recall@0.5 over {total} instances: {recall:.3f}")
    assert recall >= AMG_RECALL_TARGET, f"AMG recall {recall:.3f} < {AMG_RECALL_TARGET}"


@pytest.mark.parametrize("strategy", ["box", "mask", "blur"])
def test_clip_zero_shot(cfg, strategy):
    """Zero-shot top-1 over the 30 "colour shape" classes on ground-truth region crops."""
    import torch
    from PIL import Image

    from regionsearch.embed.crops import region_crop
    from regionsearch.models.clip import load_clip

    bundle = load_clip(cfg.models.clip, "cpu")
    crops, labels = [], []
    for i in range(30):
        sc = make_scene(scene_seed(TEST_SEED + 2, i))
        for m, box, cap in zip(sc.masks, sc.boxes(), sc.captions):
            crop = region_crop(sc.image, m, box, strategy, bundle.image_size, context=cfg.embed.context,
                               blur_sigma=cfg.embed.blur_sigma)
            crops.append(bundle.preprocess(Image.fromarray(crop)))
            labels.append(CLASSES.index(cap))
    with torch.inference_mode():
        txt = bundle.model.encode_text(bundle.tokenizer(list(CLASSES)))
        img = bundle.model.encode_image(torch.stack(crops))
        txt = txt / txt.norm(dim=-1, keepdim=True)
        img = img / img.norm(dim=-1, keepdim=True)
        pred = (img @ txt.T).argmax(1).numpy()
    top1 = float((pred == np.array(labels)).mean())
    print(f"tiny CLIP zero-shot top-1 ({strategy} crops, {len(labels)} regions): {top1:.3f}")
    assert top1 >= CLIP_TOP1_TARGET, f"zero-shot top-1 {top1:.3f} < {CLIP_TOP1_TARGET}"
