"""Training of the tiny SAM 2.1 on the shapes world (see :mod:`regionsearch.testing.train`).

SAM-style interactive training with the official sam2 modules, exactly the way
``SAM2ImagePredictor`` runs them at inference (``forward_image`` ->
``_prepare_backbone_features`` -> ``no_mem_embed`` on the lowest-resolution level ->
``sam_prompt_encoder`` -> ``sam_mask_decoder`` with high-resolution features):

* prompts from ground-truth instances: one positive click (multimask output, the loss is the
  minimum over the 3 candidates), a jittered box, or several positive/negative clicks (single
  mask output);
* focal (x20) + dice loss on masks at full resolution, MSE of the IoU head against the true IoU
  of every candidate (so AMG's ``pred_iou_thresh`` means something);
* a training-only auxiliary loss that pulls some heads of the decoder's token-to-image
  cross-attention (mask tokens and the first prompt token) onto the prompted object's
  ground-truth location. From scratch the decoder otherwise sits for a long time on a saddle
  where its output ignores where the click is. The model is unchanged by it; the checkpoint is a
  plain SAM 2.1 state dict;
* curriculum: few large shapes first, then more, smaller, overlapping ones;
* AdamW, linear warmup then cosine decay over the wall-clock budget.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .shapes import make_scene, scene_seed
from .tiny import SAM_CHECKPOINT, SAM_CONFIG, WEIGHTS_DIR

log = logging.getLogger("regionsearch.train.sam")

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
EVAL_SEED = 777  # held-out scenes for the learning curve (the test uses other seeds)


def image_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """HWC uint8 RGB list -> normalised (B, 3, H, W) float, as SAM2Transforms does."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - MEAN) / STD


def image_features(model: Any, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(image_embed, high_res_feats) exactly as ``SAM2ImagePredictor.set_image`` computes them."""
    backbone_out = model.forward_image(x)
    _, vision_feats, _, feat_sizes = model._prepare_backbone_features(backbone_out)
    if model.directly_add_no_mem_embed:
        vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
    b = x.shape[0]
    feats = [f.permute(1, 2, 0).reshape(b, -1, *s) for f, s in zip(vision_feats, feat_sizes)]
    return feats[-1], feats[:-1]


def decode(model: Any, embed: torch.Tensor, high: list[torch.Tensor], idx: torch.Tensor,
           coords: torch.Tensor, labels: torch.Tensor, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks (N, C, 64, 64) logits and IoU predictions (N, C) for N prompts on images ``idx``."""
    sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    masks, iou, _, _ = model.sam_mask_decoder(
        image_embeddings=embed[idx], image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
        multimask_output=multimask, repeat_image=False, high_res_features=[h[idx] for h in high],
    )
    return masks, iou


class AttnCapture:
    """Forward hooks that recompute the token-to-image attention weights of the decoder."""

    def __init__(self, decoder: Any, tokens: list[int], heads: int) -> None:
        t = decoder.transformer
        self.tokens = tokens
        self.heads = heads
        self.modules = [layer.cross_attn_token_to_image for layer in t.layers] + [t.final_attn_token_to_image]
        self.maps: list[torch.Tensor] = []
        self.enabled = True
        self.handles = [m.register_forward_hook(self._hook, with_kwargs=True) for m in self.modules]

    def _hook(self, module: Any, args: tuple, kwargs: dict, out: Any) -> None:
        if not self.enabled:
            return
        q = module.q_proj(kwargs["q"][:, self.tokens])
        k = module.k_proj(kwargs["k"])
        q = module._separate_heads(q, module.num_heads)[:, : self.heads]
        k = module._separate_heads(k, module.num_heads)[:, : self.heads]
        logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (N, heads, tokens, HW)
        self.maps.append(torch.log_softmax(logits, dim=-1))

    def pop(self) -> list[torch.Tensor]:
        maps, self.maps = self.maps, []
        return maps


def instance_labels(scenes: list, size: tuple[int, int], min_cover: float = 0.6) -> torch.Tensor:
    """(B, h, w) long: the instance (1..N) covering >= ``min_cover`` of each cell, 0 background,
    -1 mixed (ignored)."""
    out = []
    for sc in scenes:
        onehot = np.concatenate([~sc.masks.any(0, keepdims=True), sc.masks], 0).astype(np.float32)
        cover = F.adaptive_avg_pool2d(torch.from_numpy(onehot)[None], size)[0]  # (N+1, h, w)
        val, arg = cover.max(0)
        out.append(torch.where(val >= min_cover, arg, torch.full_like(arg, -1)))
    return torch.stack(out)


def grouping_loss(feat: torch.Tensor, labels: torch.Tensor, proj: torch.nn.Module) -> torch.Tensor:
    """Training-only auxiliary loss: cells of the same instance get similar (projected) features,
    cells of different instances / background dissimilar. Gives the from-scratch encoder
    instance-aware features early, which the click-to-mask decoder needs."""
    emb = F.normalize(proj(feat), dim=1).flatten(2)  # (B, D, HW)
    lab = labels.flatten(1)  # (B, HW)
    sim = emb.transpose(1, 2) @ emb  # (B, HW, HW)
    valid = (lab[:, :, None] >= 0) & (lab[:, None, :] >= 0)
    same = (lab[:, :, None] == lab[:, None, :]) & valid
    diff = valid & ~same
    logits = 10.0 * sim - 5.0
    pos = F.softplus(-logits)[same].mean() if same.any() else logits.sum() * 0
    neg = F.softplus(logits)[diff].mean() if diff.any() else logits.sum() * 0
    return pos + neg


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Per-candidate sigmoid focal loss, mean over pixels: (N, C, H, W) -> (N, C)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.flatten(2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits).flatten(2)
    t = target.flatten(2)
    return 1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)


def mask_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = pred.flatten(2)
    t = target.flatten(2)
    inter = (p * t).sum(-1)
    union = p.sum(-1) + t.sum(-1) - inter
    return inter / union.clamp(min=1)


def curriculum(progress: float) -> dict[str, Any]:
    """Scene parameters at a point of training (0 = start, 1 = end)."""
    if progress < 0.12:
        return dict(n_min=1, n_max=3, scale_range=(0.1, 0.2))
    if progress < 0.3:
        return dict(n_min=1, n_max=5, scale_range=(0.08, 0.2))
    return dict(n_min=1, n_max=8, scale_range=(0.065, 0.2))


def sample_prompts(rng: np.random.Generator, scenes: list, per_image: int, kind: str) -> dict[str, Any]:
    """Prompts for ``per_image`` instances of every scene (with replacement).

    ``kind``: ``point`` (1 positive click), ``box`` (jittered XYXY box as the two corner
    points, labels 2/3), ``points`` (3 clicks: 1-3 positive, the rest negative).
    """
    idx, coords, labels, gts = [], [], [], []
    for i, sc in enumerate(scenes):
        n = len(sc.masks)
        for j in rng.integers(0, n, per_image):
            m = sc.masks[j]
            ys, xs = np.nonzero(m)
            if kind == "point":
                k = rng.integers(len(xs))
                c = [[xs[k] + 0.5, ys[k] + 0.5]]
                lab = [1]
            elif kind == "box":
                x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
                w, h = x1 - x0, y1 - y0
                noise = rng.normal(0, 0.07, 4) * np.array([w, h, w, h])
                noise = np.clip(noise, -20, 20)
                b = np.array([x0, y0, x1, y1], float) + noise
                b = np.clip(b, 0, m.shape[1])
                c = [[b[0], b[1]], [b[2], b[3]]]
                lab = [2, 3]
            else:
                npos = int(rng.integers(1, 4))
                ks = rng.integers(len(xs), size=npos)
                c = [[xs[k] + 0.5, ys[k] + 0.5] for k in ks]
                lab = [1] * npos
                bys, bxs = np.nonzero(~m)
                for _ in range(3 - npos):
                    k = rng.integers(len(bxs))
                    c.append([bxs[k] + 0.5, bys[k] + 0.5])
                    lab.append(0)
            idx.append(i)
            coords.append(c)
            labels.append(lab)
            gts.append(m)
    return dict(
        idx=torch.tensor(idx), coords=torch.tensor(np.array(coords), dtype=torch.float32),
        labels=torch.tensor(labels, dtype=torch.int32),
        gt=torch.from_numpy(np.stack(gts)).float().unsqueeze(1),
    )


@torch.no_grad()
def evaluate_points(model: Any, n_scenes: int = 24, seed: int = EVAL_SEED, batch: int = 8) -> dict[str, float]:
    """Single-positive-click mIoU (best of multimask by predicted IoU) on held-out scenes,
    plus the oracle (best candidate by true IoU) and the mean absolute IoU-head error."""
    was_training = model.training
    model.eval()
    capture = getattr(model, "_attn_capture", None)
    if capture is not None:
        capture.enabled = False
    rng = np.random.default_rng(seed)
    ious, oracle, err = [], [], []
    for start in range(0, n_scenes, batch):
        scenes = [make_scene(scene_seed(seed, i)) for i in range(start, min(start + batch, n_scenes))]
        embed, high = image_features(model, image_tensor([s.image for s in scenes]))
        idx, coords, labels, gts = [], [], [], []
        for i, sc in enumerate(scenes):
            for m in sc.masks:
                ys, xs = np.nonzero(m)
                k = rng.integers(len(xs))
                idx.append(i)
                coords.append([[xs[k] + 0.5, ys[k] + 0.5]])
                labels.append([1])
                gts.append(m)
        masks, iou_pred = decode(model, embed, high, torch.tensor(idx), torch.tensor(coords, dtype=torch.float32),
                                 torch.tensor(labels, dtype=torch.int32), multimask=True)
        masks = F.interpolate(masks, size=gts[0].shape, mode="bilinear", align_corners=False) > 0
        gt = torch.from_numpy(np.stack(gts)).float().unsqueeze(1)
        true = mask_iou(masks.float(), gt)
        best = iou_pred.argmax(1)
        ious += true.gather(1, best[:, None])[:, 0].tolist()
        oracle += true.max(1).values.tolist()
        err += (iou_pred - true).abs().mean(1).tolist()
    model.train(was_training)
    if capture is not None:
        capture.enabled = True
    return {"miou": float(np.mean(ious)), "oracle_miou": float(np.mean(oracle)),
            "iou_head_mae": float(np.mean(err)), "n": len(ious)}


def save_checkpoint(model: Any, path: Path) -> None:
    """sam2 release format ``{"model": state_dict}``, tensors stored as fp16 (the loader casts)."""
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"model": state}, tmp)
    os.replace(tmp, path)


def _optimizer(model: Any, lr: float, freeze_encoder: bool, iou_lr_mult: float) -> tuple[list, Any, Any]:
    """``(trained parameters, auxiliary heads of the grouping loss, AdamW)``."""
    # ``freeze_encoder``: a decoder phase (image features without gradient; 3x cheaper steps, so
    # many more prompts per second for the mask decoder and its IoU head)
    trainable = [model.sam_prompt_encoder, model.sam_mask_decoder]
    if freeze_encoder:
        for prm in list(model.image_encoder.parameters()) + [model.no_mem_embed]:
            prm.requires_grad_(False)
        params = [p for m in trainable for p in m.parameters()]
    else:
        params = [p for m in [model.image_encoder] + trainable for p in m.parameters()] + [model.no_mem_embed]
    # training-only projection heads of the grouping loss (not part of the model / checkpoint)
    aux_heads = torch.nn.ModuleList([torch.nn.Conv2d(model.hidden_dim, 32, 1),
                                     torch.nn.Conv2d(model.sam_mask_decoder.conv_s1.out_channels, 16, 1)])
    params = params + list(aux_heads.parameters())
    head = {id(p) for p in model.sam_mask_decoder.iou_prediction_head.parameters()}
    decay = [p for p in params if p.ndim >= 2 and id(p) not in head]
    no_decay = [p for p in params if p.ndim < 2 and id(p) not in head]
    groups = [{"params": decay, "weight_decay": 0.05, "lr_mult": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0},
              {"params": [p for p in params if id(p) in head], "weight_decay": 0.0, "lr_mult": iou_lr_mult}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    return params, aux_heads, opt


def _sample_batch(rng: np.random.Generator, seed: int, scene_counter: int, batch_images: int,
                  prompts_per_image: int, progress: float) -> tuple[list, str, dict[str, Any], int]:
    """``batch_images`` scenes with objects (curriculum at ``progress``), a prompt kind and its prompts."""
    params_scene = curriculum(progress)
    scenes = []
    while len(scenes) < batch_images:
        sc = make_scene(scene_seed(10_000 + seed, scene_counter), **params_scene)
        scene_counter += 1
        if len(sc.masks):
            scenes.append(sc)
    r = rng.random()
    kind = "point" if r < 0.6 else ("box" if r < 0.8 else "points")
    pr = sample_prompts(rng, scenes, prompts_per_image, kind)
    return scenes, kind, pr, scene_counter


def _losses(model: Any, capture: Any, aux_heads: Any, scenes: list, kind: str, pr: dict[str, Any],
            freeze_encoder: bool, iou_l1: bool, attn_weight: float, progress: float) -> tuple[Any, ...]:
    """``(mask, IoU, attention, grouping losses, attention weight)`` of one batch."""
    with torch.set_grad_enabled(not freeze_encoder):
        embed, high = image_features(model, image_tensor([s.image for s in scenes]))
    capture.pop()
    masks, iou_pred = decode(model, embed, high, pr["idx"], pr["coords"], pr["labels"], multimask=kind == "point")
    maps = capture.pop()
    gt = pr["gt"]
    # losses at half resolution (128 px): 4x cheaper on CPU, boundaries still sub-token
    gt_half = (F.avg_pool2d(gt, 2) > 0.5).float()
    up = F.interpolate(masks, size=gt_half.shape[-2:], mode="bilinear", align_corners=False)
    tgt = gt_half.expand_as(up)
    per = 20.0 * focal_loss(up, tgt) + dice_loss(up, tgt)  # (N, C)
    with torch.no_grad():
        true_iou = mask_iou((up > 0).float(), tgt)
    if kind == "point":
        mask_loss = per.min(1).values.mean()
    else:
        mask_loss = per.mean()
    iou_loss = F.l1_loss(iou_pred, true_iou) if iou_l1 else F.mse_loss(iou_pred, true_iou)
    # auxiliary attention loss: CE between attention over image tokens and the normalised GT
    h, w = embed.shape[-2:]
    small = F.adaptive_avg_pool2d(gt, (h, w)).flatten(1)
    small = small / small.sum(1, keepdim=True).clamp(min=1e-6)
    attn_loss = torch.zeros(())
    for lp in maps:  # (N, heads, tokens, HW)
        attn_loss = attn_loss - (lp * small[:, None, None, :]).sum(-1).mean()
    attn_loss = attn_loss / len(maps)
    attn_w = attn_weight if progress < 0.3 else attn_weight * (1 - 0.8 * (progress - 0.3) / 0.7)
    if freeze_encoder:
        group_loss = torch.zeros(())
    else:
        group_loss = grouping_loss(embed, instance_labels(scenes, tuple(embed.shape[-2:])), aux_heads[0])
        group_loss = group_loss + 0.5 * grouping_loss(high[1], instance_labels(scenes, tuple(high[1].shape[-2:])),
                                                      aux_heads[1])
    return mask_loss, iou_loss, attn_loss, group_loss, attn_w


def _set_lr(opt: Any, lr: float, step: int, warmup: int, progress: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to 2 % at ``progress`` 1; returns the lr."""
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    cur_lr = lr * min(1.0, (step + 1) / warmup) * (0.02 + 0.98 * cosine)
    for g in opt.param_groups:
        g["lr"] = cur_lr * g["lr_mult"]
    return cur_lr


def _smooth(running: dict[str, float], **losses: Any) -> None:
    """Exponential moving averages (0.98) of the loss tensors, for the log."""
    for key, val in losses.items():
        v = float(val.detach())
        running[key] = 0.98 * running.get(key, v) + 0.02 * v


def _attention_capture(model: Any) -> AttnCapture:
    """Capture the decoder's attention of the mask tokens and the first prompt token, 4 of the 8
    heads (the others stay free), for the auxiliary attention loss."""
    s0 = 1 if model.sam_mask_decoder.pred_obj_scores else 0
    n_mask = model.sam_mask_decoder.num_mask_tokens
    capture = AttnCapture(model.sam_mask_decoder, list(range(s0 + 1, s0 + 2 + n_mask)), heads=4)
    object.__setattr__(model, "_attn_capture", capture)
    return capture


def train_sam(out: Path, minutes: float, seed: int = 0, batch_images: int = 6, prompts_per_image: int = 8,
              lr: float = 1.5e-3, eval_every_s: float = 180.0, resume: Path | None = None,
              start_progress: float = 0.0, attn_weight: float = 0.5, group_w: float = 0.0,
              iou_weight: float = 1.0, freeze_encoder: bool = False, iou_lr_mult: float = 1.0,
              iou_l1: bool = False) -> dict[str, Any]:
    """Train for ``minutes`` of wall-clock time; ``resume`` continues from a checkpoint (a second
    phase: short warmup, the curriculum and cosine schedule start at ``start_progress``)."""
    from ..models.sam import build_sam2_model

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    model = build_sam2_model(WEIGHTS_DIR / SAM_CONFIG, resume, "cpu", postprocessing=False)
    model.train()
    params, aux_heads, opt = _optimizer(model, lr, freeze_encoder, iou_lr_mult)
    capture = _attention_capture(model)

    budget = minutes * 60.0
    warmup = 100 if resume is None else 20
    t0 = time.time()
    step = 0
    curve: list[dict[str, Any]] = []
    best = -1.0
    last_eval = t0
    running: dict[str, float] = {}
    scene_counter = 0
    while True:
        elapsed = time.time() - t0
        if elapsed >= budget:
            break
        progress = start_progress + (1.0 - start_progress) * min(elapsed / budget, 1.0)
        cur_lr = _set_lr(opt, lr, step, warmup, progress)
        scenes, kind, pr, scene_counter = _sample_batch(rng, seed, scene_counter, batch_images, prompts_per_image,
                                                        progress)
        mask_loss, iou_loss, attn_loss, group_loss, attn_w = _losses(
            model, capture, aux_heads, scenes, kind, pr, freeze_encoder, iou_l1, attn_weight, progress)
        loss = mask_loss + iou_weight * iou_loss + attn_w * attn_loss + group_w * group_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        _smooth(running, loss=loss, mask=mask_loss, iou=iou_loss, attn=attn_loss, group=group_loss)
        if step % 25 == 0:
            log.info("step %d t=%.0fs lr=%.2e %s", step, elapsed, cur_lr,
                     " ".join(f"{k}={v:.4f}" for k, v in running.items()))
        if time.time() - last_eval >= eval_every_s:
            last_eval = time.time()
            best = _eval_and_save(model, out, step, t0, curve, best, running)
    best = _eval_and_save(model, out, step, t0, curve, best, running)
    for hd in capture.handles:
        hd.remove()
    return {"resumed_from": str(resume) if resume else None, "start_progress": start_progress,
            "attn_weight": attn_weight, "group_weight": group_w, "iou_weight": iou_weight,
            "freeze_encoder": freeze_encoder, "iou_lr_mult": iou_lr_mult, "iou_loss": "l1" if iou_l1 else "mse",
            "steps": step, "train_seconds": round(time.time() - t0, 1), "curve": curve, "best_miou": best,
            "batch_images": batch_images, "prompts_per_image": prompts_per_image, "lr": lr}


def _eval_and_save(model: Any, out: Path, step: int, t0: float, curve: list, best: float,
                   running: dict[str, float]) -> float:
    ev = evaluate_points(model)
    ev.update(step=step, wall_s=round(time.time() - t0, 1), train_loss=round(running.get("loss", float("nan")), 4))
    curve.append(ev)
    log.info("eval %s", json.dumps(ev))
    save_checkpoint(model, out / "tiny_sam2_last.pt")
    if ev["miou"] > best:
        best = ev["miou"]
        save_checkpoint(model, out / SAM_CHECKPOINT)
        log.info("saved best (miou %.4f) to %s", best, out / SAM_CHECKPOINT)
    (out / "train_sam_curve.json").write_text(json.dumps(curve, indent=1))
    return best
