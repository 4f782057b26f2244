"""Quality measurements of the tiny trained models on held-out shapes-world scenes.

One definition shared by the tests (which assert thresholds on one seed) and by
``benchmarks/quality_seeds.py`` (which measures the same figures over several seeds, so the
thresholds can be set from measurement minus the spread between seeds, and the README can quote
them with their results file). All figures are fractions in [0, 1]. torch, sam2 and open_clip are
imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .shapes import CLASSES, Scene, make_scene, scene_seed

POINT_SCENES = 40
AMG_SCENES = 12
CLIP_SCENES = 30


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def sam_single_point_miou(sam: Any, seed: int, n_scenes: int = POINT_SCENES) -> float:
    """Mean IoU of one positive click per ground-truth instance (sampled uniformly inside its
    visible mask), keeping the best of SAM's 3 masks by predicted IoU; scenes
    ``scene_seed(seed, 0..n_scenes-1)``."""
    import torch

    from ..models.sam import make_image_predictor

    predictor = make_image_predictor(sam)
    rng = np.random.default_rng(seed)
    ious = []
    with torch.inference_mode():
        for i in range(n_scenes):
            sc = make_scene(scene_seed(seed, i))
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
    return float(np.mean(ious))


def amg_recall(sam: Any, segment_cfg: Any, seed: int, n_scenes: int = AMG_SCENES) -> float:
    """Fraction of ground-truth instances matched at IoU >= 0.5 by one of the best
    ``max_regions`` masks of sam2's own automatic mask generator with the config's thresholds."""
    import torch
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from ..models.sam import backbone_feature_sizes

    gen = SAM2AutomaticMaskGenerator(sam, **segment_cfg.amg_params())
    gen.predictor._bb_feat_sizes = backbone_feature_sizes(sam)
    found = total = 0
    with torch.inference_mode():
        for i in range(n_scenes):
            sc = make_scene(scene_seed(seed, i))
            anns = gen.generate(sc.image)
            anns.sort(key=lambda a: a["predicted_iou"] * a["stability_score"], reverse=True)
            preds = [a["segmentation"] for a in anns[: segment_cfg.max_regions]]
            for m in sc.masks:
                total += 1
                found += any(_iou(p, m) >= 0.5 for p in preds)
    return found / total


def clip_zero_shot_top1(bundle: Any, embed_cfg: Any, strategy: str, seed: int, n_scenes: int = CLIP_SCENES) -> float:
    """Zero-shot top-1 over the 30 "colour shape" classes on ground-truth region crops made with
    ``strategy`` (``box``, ``mask`` or ``blur``), with open_clip's own encoders."""
    import torch
    from PIL import Image

    from ..embed.crops import region_crop

    crops, labels = [], []
    for i in range(n_scenes):
        sc = make_scene(scene_seed(seed, i))
        for m, box, cap in zip(sc.masks, sc.boxes(), sc.captions):
            crop = region_crop(sc.image, m, box, strategy, bundle.image_size, context=embed_cfg.context,
                               blur_sigma=embed_cfg.blur_sigma)
            crops.append(bundle.preprocess(Image.fromarray(crop)))
            labels.append(CLASSES.index(cap))
    with torch.inference_mode():
        txt = bundle.model.encode_text(bundle.tokenizer(list(CLASSES)))
        img = bundle.model.encode_image(torch.stack(crops))
        txt = txt / txt.norm(dim=-1, keepdim=True)
        img = img / img.norm(dim=-1, keepdim=True)
        pred = (img @ txt.T).argmax(1).numpy()
    return float((pred == np.array(labels)).mean())


def caption_precision_at_5(engine: Any, scenes: Sequence[Scene], image_paths: Sequence[str],
                           filters: Any = None, distinct: bool = False) -> dict[str, float]:
    """Per caption of :data:`CLASSES`: the fraction of the top 5 text-search hits whose mask has
    IoU >= 0.5 with a ground-truth instance of that caption. ``image_paths[i]`` is where
    ``scenes[i]`` was indexed from; ``filters`` (a ``SearchFilters``) go to every search.
    ``distinct``: a hit that is an instance already returned for the caption (the same object
    found twice) is not counted again."""
    from ..masks import decode_rle, mask_iou

    by_path = dict(zip((str(p) for p in image_paths), scenes))
    out = {}
    for caption in CLASSES:
        good, seen = 0, set()
        for h in engine.search(caption, k=5, filters=filters):
            scene = by_path[h.image_path]
            mask = decode_rle(h.mask)
            hit = [i for i, (c, gt) in enumerate(zip(scene.captions, scene.masks))
                   if c == caption and mask_iou(mask, gt) >= 0.5]
            new = [i for i in hit if (h.image_path, i) not in seen] if distinct else hit
            good += bool(new)
            seen.update((h.image_path, i) for i in hit)
        out[caption] = good / 5.0
    return out


def held_out_corpus(root: Path, seed: int) -> tuple[list[Scene], Path, list[str]]:
    """Held-out scenes of ``seed`` exported as COCO under ``root``: (scenes, annotations path,
    image paths in scene order)."""
    from .heldout import held_out_scenes, scene_paths
    from .shapes import export_coco

    scenes = held_out_scenes(seed=seed)
    ann = export_coco(scenes, root)
    return scenes, ann, scene_paths(root, len(scenes))
