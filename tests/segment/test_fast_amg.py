"""The fast generator against sam2's SAM2AutomaticMaskGenerator on the same model."""

from __future__ import annotations

import numpy as np
import pytest

from regionsearch.config import load_config
from regionsearch.masks import rle_iou
from regionsearch.models.sam import backbone_feature_sizes, load_sam2
from regionsearch.segment.fast_amg import FastAutomaticSegmenter
from regionsearch.testing.shapes import make_scenes


def _sam2_generator(model, params):
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    gen = SAM2AutomaticMaskGenerator(model, output_mode="coco_rle", **params)
    gen.predictor._bb_feat_sizes = backbone_feature_sizes(model)
    return gen


def agreement(base: list[dict], ours: list[dict], thr: float = 0.8) -> tuple[float, float]:
    """(fraction of baseline masks matched by ours at IoU >= thr, and the reverse)."""
    if not base or not ours:
        return (float(not base), float(not ours))
    iou = rle_iou([r["segmentation"] for r in base], [r["segmentation"] for r in ours])
    return float((iou.max(1) >= thr).mean()), float((iou.max(0) >= thr).mean())


def test_exact_mode_reproduces_sam2_records():
    # one grid, float32 decoder: every decision is sam2's (only the order of work differs), so
    # the masks must agree exactly, with equal scores
    cfg = load_config("tiny", {"segment": {"points_per_side": 8, "pred_iou_thresh": 0.0,
                                           "stability_score_thresh": 0.0, "dtype": "float32"}})
    model = load_sam2(cfg.models.sam, "cpu")
    params = cfg.segment.amg_params()
    ours = FastAutomaticSegmenter(model, cfg.segment, coarse_to_fine=False)
    base = _sam2_generator(model, params)
    image = make_scenes(1, seed=77)[0].image
    # with zero thresholds sam2 also emits masks of area 0 (logits that vanish when upsampled);
    # they are not regions and the fast generator drops them
    rb = [r for r in base.generate(image) if r["area"] > 0]
    rf = ours.generate(image)
    assert all(r["area"] > 0 for r in rf)
    assert len(rb) >= 5, "the baseline produced too few masks; the test would be vacuous"
    fwd, rev = agreement(rb, rf, 0.99)
    assert fwd == 1.0 and rev == 1.0, (fwd, rev, len(rb), len(rf))
    by_point: dict[tuple, list[dict]] = {}
    for r in rb:
        by_point.setdefault(tuple(np.round(r["point_coords"][0], 3)), []).append(r)
    matched = 0
    for r in rf:
        same = [b for b in by_point.get(tuple(np.round(r["point_coords"][0], 3)), [])
                if b["segmentation"] == r["segmentation"]]
        if same:
            b = same[0]
            assert abs(b["predicted_iou"] - r["predicted_iou"]) < 1e-5
            assert abs(b["stability_score"] - r["stability_score"]) < 1e-5
            assert b["bbox"] == r["bbox"] and b["area"] == r["area"]
            matched += 1
    assert matched == len(rf) == len(rb)


@pytest.mark.parametrize("option", [{"crop_n_layers": 1}, {"use_m2m": True}], ids=["crop-layers", "m2m"])
def test_crop_layers_and_m2m_fall_back_to_sam2(option):
    """Options the one-grid decoder does not implement give exactly sam2's regions (the wrapper
    of SAM2AutomaticMaskGenerator), and the fast path does no work."""
    from regionsearch.segment.amg import AutomaticSegmenter

    cfg = load_config("tiny", {"segment": {"points_per_side": 4, "pred_iou_thresh": 0.0,
                                           "stability_score_thresh": 0.0, **option}})
    model = load_sam2(cfg.models.sam, "cpu")
    seg = FastAutomaticSegmenter(model, cfg.segment)
    image = make_scenes(1, seed=79)[0].image
    got = seg.segment(image)
    want = AutomaticSegmenter(model, cfg.segment).segment(image)
    assert len(want) >= 3, "sam2 produced too few regions; the test would be vacuous"
    assert [(r.rle, r.bbox, r.kind) for r in got] == [(r.rle, r.bbox, r.kind) for r in want]
    np.testing.assert_allclose([r.predicted_iou for r in got if r.kind == "mask"],
                               [r.predicted_iou for r in want if r.kind == "mask"], atol=1e-6)
    assert seg.stats.prompts == 0


def test_regions_are_capped_sorted_and_whole_image_added():
    cfg = load_config("tiny", {"segment": {"points_per_side": 8, "pred_iou_thresh": 0.0,
                                           "stability_score_thresh": 0.0, "max_regions": 5}})
    seg = FastAutomaticSegmenter(load_sam2(cfg.models.sam, "cpu"), cfg.segment)
    image = make_scenes(1, seed=78)[0].image
    regions = seg.segment(image)
    masks = [r for r in regions if r.kind == "mask"]
    assert 1 <= len(masks) <= 5 and regions[-1].kind == "whole"
    scores = [r.predicted_iou * r.stability_score for r in masks]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.slow
@pytest.mark.parametrize("coarse_to_fine, dtype", [(False, "float32"), (False, "bfloat16"), (True, "auto")],
                         ids=["one-grid-exact-float32", "one-grid-bfloat16", "coarse-to-fine-x4"])
def test_agreement_with_sam2_on_held_out_scenes_with_the_trained_model(coarse_to_fine, dtype):
    """Equal thresholds (tiny preset), 8 held-out scenes. One grid in exact float32 makes every
    decision sam2 makes, so both directions must match completely. The default precision
    (``segment.dtype: auto``: bfloat16 where the CPU multiplies it natively, float32 elsewhere) is
    tested as bfloat16 explicitly (emulated, and slower, on CPUs without it: same numbers). It
    moves logits near the thresholds; with the decoder's output heads kept in float32
    (``decoder.py``, point 8) it must reach issue #12's bar, >= 0.99 both ways (everything in
    bfloat16 measured 1.000 / 0.989 here). Coarse-to-fine prompting skips prompts on purpose and
    must keep >= 0.9 of sam2's masks and add none sam2 would not find (reverse >= 0.95)."""
    cfg = load_config("tiny", {"segment": {"coarse_to_fine": coarse_to_fine, "coarse_step": 4, "dtype": dtype}})
    model = load_sam2(cfg.models.sam, "cpu")
    ours = FastAutomaticSegmenter(model, cfg.segment, coarse_to_fine=coarse_to_fine, coarse_step=4)
    base = _sam2_generator(model, cfg.segment.amg_params())
    fwd, rev, n = [], [], 0
    for scene in make_scenes(8, seed=31337):
        rb = [r for r in base.generate(scene.image) if r["area"] > 0]
        rf = ours.generate(scene.image)
        n += len(rb)
        if rb and rf:
            iou = rle_iou([r["segmentation"] for r in rb], [r["segmentation"] for r in rf])
            fwd += list(iou.max(1) >= 0.8)
            rev += list(iou.max(0) >= 0.8)
        else:  # masks on an image where the other side found none are unmatched, both ways
            fwd += [False] * len(rb)
            rev += [False] * len(rf)
    print(f"agreement {np.mean(fwd):.3f} (reverse {np.mean(rev):.3f}) over {n} baseline masks")
    assert n >= 16
    if coarse_to_fine:
        assert np.mean(fwd) >= 0.9 and np.mean(rev) >= 0.95, (np.mean(fwd), np.mean(rev))
    elif dtype == "float32":
        assert np.mean(fwd) == 1.0 and np.mean(rev) == 1.0, (np.mean(fwd), np.mean(rev))
    else:
        assert np.mean(fwd) >= 0.99 and np.mean(rev) >= 0.99, (np.mean(fwd), np.mean(rev))


def test_bfloat16_image_encoder_keeps_sam2s_masks_on_the_tiny_model():
    # segment.encoder_dtype: the encoder under bf16 autocast, features handed on in float32; the
    # masks must still match sam2's float32 generator (IoU >= 0.8 both ways, like the benchmark)
    cfg = load_config("tiny", {"segment": {"points_per_side": 8, "pred_iou_thresh": 0.0,
                                           "stability_score_thresh": 0.0, "dtype": "float32",
                                           "encoder_dtype": "bfloat16"}})
    model = load_sam2(cfg.models.sam, "cpu")
    ours = FastAutomaticSegmenter(model, cfg.segment, coarse_to_fine=False)
    base = _sam2_generator(model, cfg.segment.amg_params())
    fwd = rev = 0.0
    for seed in (77, 78):
        image = make_scenes(1, seed=seed)[0].image
        rb = [r for r in base.generate(image) if r["area"] > 0]
        rf = ours.generate(image)
        assert len(rb) >= 5
        f, r = agreement(rb, rf, 0.8)
        fwd, rev = fwd + f / 2, rev + r / 2
    assert fwd >= 0.9 and rev >= 0.9, (fwd, rev)


def test_encode_image_hands_on_float32_features_close_to_the_float32_encoders():
    import torch

    from regionsearch.models.sam import make_image_predictor
    from regionsearch.segment.decoder import encode_image

    cfg = load_config("tiny")
    predictor = make_image_predictor(load_sam2(cfg.models.sam, "cpu"))
    image = make_scenes(1, seed=79)[0].image
    with torch.inference_mode():
        ref = {k: v for k, v in encode_image(predictor, image, torch.float32).items()}
        half = encode_image(predictor, image, torch.bfloat16)
    assert half["image_embed"].dtype == torch.float32
    assert all(f.dtype == torch.float32 for f in half["high_res_feats"])
    cos = torch.nn.functional.cosine_similarity(ref["image_embed"].flatten(), half["image_embed"].flatten(), dim=0)
    assert 0.99 < float(cos) < 1.0  # bf16 really ran (not identical) and stayed close
