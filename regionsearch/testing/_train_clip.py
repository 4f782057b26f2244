"""Training of the tiny open_clip CLIP on region crops of the shapes world.

Images: crops of ground-truth instances made by the product's own crop function
(:func:`regionsearch.embed.crops.region_crop`) with all three strategies (box + context, mask
with mean-colour background, blurred background), from slightly perturbed masks/boxes (the
product crops SAM's masks, not perfect ones), with flips and 90-degree turns. Texts: caption
variants ("red circle", "a red circle", "a photo of a red circle.", "circle, red", ...).

Loss: for a batch of crops, every one of the 30 classes gets one random caption variant; the
image-to-text softmax over those 30 captions is trained with cross-entropy (CLIP's contrastive
loss with the duplicates of a 30-class world merged), plus the text-to-image direction over the
batch with all crops of the class as positives.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .shapes import CLASSES, make_scene, scene_seed
from .tiny import CLIP_DIR, CLIP_WEIGHTS, WEIGHTS_DIR

log = logging.getLogger("regionsearch.train.clip")

TEMPLATES: tuple[str, ...] = (
    "{c} {s}", "a {c} {s}", "the {c} {s}", "a photo of a {c} {s}.", "{s}, {c}", "a {c} {s} shape",
    "a picture of a {c} {s}", "{c} {s} on a background", "an image of the {c} {s}", "a {s} that is {c}",
    "{c} {s}s", "a drawing of a {c} {s}",
)
STRATEGIES = ("box", "mask", "blur")
EVAL_SEED = 555


def class_texts(template: str) -> list[str]:
    out = []
    for name in CLASSES:
        c, s = name.split()
        out.append(template.format(c=c, s=s))
    return out


def _perturb(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """A slightly wrong mask (SAM's masks are not exact): random erosion or dilation."""
    import cv2

    r = int(rng.integers(-2, 3))
    if r == 0:
        return mask
    k = np.ones((2 * abs(r) + 1, 2 * abs(r) + 1), np.uint8)
    m = mask.astype(np.uint8)
    m = cv2.dilate(m, k) if r > 0 else cv2.erode(m, k)
    return m.astype(bool) if m.any() else mask


def make_crops(n_scenes: int, seed: int, size: int, rng: np.random.Generator | None = None,
               strategies: tuple[str, ...] = STRATEGIES, exact: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Crops (N, size, size, 3) uint8, class labels (N,), strategy of each crop."""
    from ..embed.crops import region_crop

    rng = rng or np.random.default_rng(seed)
    crops, labels, kinds = [], [], []
    for i in range(n_scenes):
        sc = make_scene(scene_seed(seed, i))
        for m, cap, box in zip(sc.masks, sc.captions, sc.boxes()):
            todo = strategies if exact else (strategies[int(rng.integers(len(strategies)))],)
            for strat in todo:
                mm = m if exact else _perturb(rng, m)
                if exact:
                    bb = box
                else:
                    ys, xs = np.nonzero(mm)
                    bb = np.array([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1], float)
                    bb = bb + rng.normal(0, 0.04, 4) * max(bb[2], bb[3])
                    bb[2:] = np.maximum(bb[2:], 2)
                ctx = 0.15 if exact else float(rng.uniform(0.05, 0.3))
                crops.append(region_crop(sc.image, mm, bb, strat, size, context=ctx))
                labels.append(CLASSES.index(cap))
                kinds.append(strat)
    return np.stack(crops), np.array(labels), kinds


def to_tensor(crops: np.ndarray, mean: tuple, std: tuple) -> torch.Tensor:
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@torch.no_grad()
def zero_shot(model: Any, tokenizer: Any, crops: np.ndarray, labels: np.ndarray, mean: tuple, std: tuple,
              template: str = "{c} {s}") -> float:
    """Top-1 accuracy over the 30 classes with one caption per class."""
    was = model.training
    model.eval()
    txt = F.normalize(model.encode_text(tokenizer(class_texts(template))), dim=-1)
    preds = []
    for i in range(0, len(crops), 256):
        img = F.normalize(model.encode_image(to_tensor(crops[i:i + 256], mean, std)), dim=-1)
        preds.append((img @ txt.T).argmax(1))
    model.train(was)
    return float((torch.cat(preds).numpy() == labels).mean())


def _batch_loss(model: Any, rng: np.random.Generator, crops: np.ndarray, labels: np.ndarray, all_tokens: Any,
                batch: int, mean: tuple, std: tuple) -> Any:
    """Symmetric contrastive loss of one random batch of crops (random 90-degree rotation and flip)
    against the 30 class captions, each in a random template."""
    n_cls = len(CLASSES)
    idx = rng.integers(0, len(crops), batch)
    x = crops[idx]
    k = int(rng.integers(4))
    x = np.rot90(x, k, axes=(1, 2))
    if rng.random() < 0.5:
        x = x[:, :, ::-1]
    img = F.normalize(model.encode_image(to_tensor(np.ascontiguousarray(x), mean, std)), dim=-1)
    choice = torch.from_numpy(rng.integers(0, len(TEMPLATES), n_cls))
    tokens = all_tokens[choice, torch.arange(n_cls)]
    txt = F.normalize(model.encode_text(tokens), dim=-1)
    scale = model.logit_scale.exp().clamp(max=100)
    logits = scale * img @ txt.T  # (B, 30)
    y = torch.from_numpy(labels[idx])
    loss_i = F.cross_entropy(logits, y)
    present = torch.zeros(n_cls, dtype=torch.bool)
    present[y] = True
    pos = (y[None, :] == torch.arange(n_cls)[:, None]).float()  # (30, B)
    lt = logits.T.log_softmax(-1)
    loss_t = -((lt * pos).sum(-1) / pos.sum(-1).clamp(min=1))[present].mean()
    return 0.5 * (loss_i + loss_t)


def _save(model: Any, out_dir: Path) -> None:
    """The model's weights (float16 safetensors, atomically) and its open_clip config into ``out_dir``."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "open_clip_config.json").resolve() != (WEIGHTS_DIR / CLIP_DIR / "open_clip_config.json").resolve():
        shutil.copy(WEIGHTS_DIR / CLIP_DIR / "open_clip_config.json", out_dir / "open_clip_config.json")
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    tmp = out_dir / (CLIP_WEIGHTS + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, out_dir / CLIP_WEIGHTS)


def _load_file(path: str) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(path)


def _final_eval(model: Any, tokenizer: Any, ev_crops: np.ndarray, ev_labels: np.ndarray, ev_kinds: list,
                mean: tuple, std: tuple) -> dict[str, float]:
    """Zero-shot top-1 on the held-out crops, per crop strategy and over all of them."""
    model.eval()
    kinds = np.array(ev_kinds)
    final = {s: zero_shot(model, tokenizer, ev_crops[kinds == s], ev_labels[kinds == s], mean, std) for s in STRATEGIES}
    final["all"] = zero_shot(model, tokenizer, ev_crops, ev_labels, mean, std)
    log.info("clip final zero-shot top-1 %s", final)
    return final


def train_clip(out_dir: Path, minutes: float = 6.0, seed: int = 0, batch: int = 64, lr: float = 1.5e-3,
               n_scenes: int = 800, resume: Path | None = None) -> dict[str, Any]:
    """Train for ``minutes`` of wall-clock time; ``resume``: a safetensors file to continue from."""
    import open_clip

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg_all = json.loads((WEIGHTS_DIR / CLIP_DIR / "open_clip_config.json").read_text())
    cfg = cfg_all["model_cfg"]
    mean = tuple(cfg_all["preprocess_cfg"]["mean"])
    std = tuple(cfg_all["preprocess_cfg"]["std"])
    size = int(cfg["vision_cfg"]["image_size"])
    model = open_clip.CLIP(**cfg)
    if resume is not None:
        model.load_state_dict(_load_file(str(resume)), strict=True)
    model.train()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")  # the standard tokenizer, as local-dir: gets it
    tokenizer.context_length = cfg["text_cfg"]["context_length"]

    t_data = time.time()
    crops, labels, _ = make_crops(n_scenes, 20_000 + seed, size, rng)
    ev_crops, ev_labels, ev_kinds = make_crops(60, EVAL_SEED, size, exact=True)
    log.info("clip data: %d train crops, %d eval crops in %.0fs", len(crops), len(ev_crops), time.time() - t_data)
    all_tokens = torch.stack([tokenizer(class_texts(t)) for t in TEMPLATES])  # (T, 30, L)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98), eps=1e-6)
    budget = minutes * 60.0
    t0 = time.time()
    step, warmup = 0, 50
    curve: list[dict[str, Any]] = []
    last_eval = t0
    run_loss = None
    while time.time() - t0 < budget:
        progress = (time.time() - t0) / budget
        cur = lr * min(1.0, (step + 1) / warmup) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))
        for g in opt.param_groups:
            g["lr"] = cur
        loss = _batch_loss(model, rng, crops, labels, all_tokens, batch, mean, std)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        run_loss = float(loss.detach()) if run_loss is None else 0.95 * run_loss + 0.05 * float(loss.detach())
        if time.time() - last_eval > 60 or time.time() - t0 >= budget:
            last_eval = time.time()
            acc = zero_shot(model, tokenizer, ev_crops, ev_labels, mean, std)
            curve.append({"step": step, "wall_s": round(time.time() - t0, 1), "zero_shot_top1": round(acc, 4),
                          "train_loss": round(run_loss, 4)})
            log.info("clip step %d %s", step, json.dumps(curve[-1]))
    train_s = time.time() - t0
    final = _final_eval(model, tokenizer, ev_crops, ev_labels, ev_kinds, mean, std)
    _save(model, out_dir)
    return {"resumed_from": str(resume) if resume else None, "steps": step, "train_seconds": round(train_s, 1), "batch": batch, "lr": lr, "train_crops": int(len(crops)),
            "templates": list(TEMPLATES), "curve": curve, "final_zero_shot_top1": final,
            "eval": "60 held-out scenes (seed %d), exact GT crops, caption '{colour} {shape}'" % EVAL_SEED}
