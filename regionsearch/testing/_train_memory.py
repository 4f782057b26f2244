"""Training of the tiny SAM 2.1's memory path on moving-shapes clips (:mod:`.clips`).

What is trained (``TRAINABLE``): memory attention, memory encoder (its mask downsampler
included), the memory temporal encodings, the object-pointer projections (``obj_ptr_proj``,
``obj_ptr_tpos_proj``, ``no_obj_ptr``), ``no_obj_embed_spatial``, the mask-input downscaling of
the memory path (``mask_downsample``: the conv that turns a conditioning mask into the mask
prompt from which a keyframe's object pointer is computed) and the object-score head
(``sam_mask_decoder.pred_obj_score_head``: an MLP *reading* the object-score token's output;
the token itself takes part in the decoder's attention and stays frozen). Everything else — the
image encoder, ``no_mem_embed``, the prompt encoder and the mask decoder — is frozen, and the
saved checkpoint keeps those tensors byte for byte, so every image-mode output is bit-identical
(``tests/video/test_tiny_memory.py``).

The loop follows sam2's own training model and loss (``training/model/sam2.py`` ``SAM2Train``
``forward_tracking`` and ``training/loss_fns.py`` ``MultiStepMultiMasksAndIous``, re-written
here: the installed ``training`` package needs ``tensordict``, which is not installed):

* a window of ``frames`` consecutive frames of a clip (``slow`` or ``fast`` preset, seeded);
  every object visible in its first frame is one batch entry (sam2 trains per object too);
* frame 0 is the initial conditioning frame with the ground-truth mask as mask input (how the
  ``memory`` propagator seeds objects: ``use_mask_input_as_output_without_sam``), and with
  probability ``p_second_cond`` frame 4 is a second conditioning frame (a keyframe re-seed);
* every other frame runs ``SAM2Base._track_step`` (memory attention over the earlier frames'
  memories and object pointers, then the frozen SAM heads, multimask output) and
  ``_encode_memory_in_output`` on its own prediction, gradients through time;
* loss per frame as ``MultiStepMultiMasksAndIous`` with sam2.1's training weights: focal x20 +
  dice x1 on the best of the 3 candidates, L1 of the IoU head on all candidates
  (``supervise_all_iou``), all three only where the object is visible, plus the object-score
  loss x1 (plain BCE: ``focal_gamma_obj_score=0``, ``focal_alpha_obj_score=-1``), summed over frames;
* AdamW, linear warmup then cosine decay over the wall-clock budget, gradient clipping.

Held-out learning curve: every ``eval_every_s`` the model (eval mode) tracks each object of
``EVAL_CLIPS`` slow and fast 16-frame clips (seeds ``EVAL_SEED``; the benchmark's seeds are
others) from its frame-0 mask through :class:`regionsearch.video.memory.MemoryPropagator` — the
same code the ``memory`` propagator runs — and records the mean per-object mIoU over the frames
where it is visible. The best checkpoint goes to ``OUT/tiny_sam2.pt`` (full fp16 state dict), the
resumable state (trainable tensors, optimiser, step, curve, data counter) to ``OUT/memory_last.pt``.

    nice python -m regionsearch.testing._train_memory --minutes 50 --out /tmp/rs_mem [--resume]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .tiny import SAM_CHECKPOINT, SAM_CONFIG, WEIGHTS_DIR

log = logging.getLogger("regionsearch.train.memory")

TRAINABLE = ("memory_attention.", "memory_encoder.", "maskmem_tpos_enc", "obj_ptr_proj.", "obj_ptr_tpos_proj.",
             "no_obj_ptr", "no_obj_embed_spatial", "mask_downsample.", "sam_mask_decoder.pred_obj_score_head.")
TRAIN_SEED = 600_000  # clip seeds TRAIN_SEED + k (benchmarks use 31415/27182-derived seeds, tests small ones)
EVAL_SEED = 900_000
EVAL_CLIPS = 3  # per preset
WEIGHTS = {"loss_mask": 20.0, "loss_dice": 1.0, "loss_iou": 1.0, "loss_class": 1.0}
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def is_trainable(key: str) -> bool:
    return key.startswith(TRAINABLE)


def load_model(checkpoint: Path) -> Any:
    from ..models.sam import build_sam2_model

    model = build_sam2_model(WEIGHTS_DIR / SAM_CONFIG, checkpoint, "cpu")
    for name, p in model.named_parameters():
        p.requires_grad = is_trainable(name)
    return model


def frame_features(model: Any, frames: np.ndarray) -> tuple[list, list, list]:
    """Frozen image features of (T, H, W, 3) uint8 frames as sam2's ``_prepare_backbone_features``
    returns them: per level (HW, T, C) features and position encodings, and the level sizes."""
    import torch
    import torch.nn.functional as F

    size = int(model.image_size)
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - torch.tensor(_MEAN).view(1, 3, 1, 1)) / torch.tensor(_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        _, feats, pos, sizes = model._prepare_backbone_features(model.forward_image(x))
    return feats, pos, sizes


def focal(logits: Any, target: Any, alpha: float = 0.25, gamma: float = 2.0) -> Any:
    """Per-candidate sigmoid focal loss, mean over pixels (``loss_on_multimask=True``)."""
    import torch.nn.functional as F

    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.flatten(2).mean(-1)


def dice(logits: Any, target: Any) -> Any:
    p = logits.sigmoid().flatten(2)
    t = target.flatten(2)
    return 1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)


def frame_loss(multimasks: Any, ious: Any, score_logits: Any, target: Any) -> dict[str, Any]:
    """``MultiStepMultiMasksAndIous._update_losses`` for one frame (losses divided by the number
    of objects). ``multimasks``: (B, M, H, W) logits; ``target``: (B, H, W) float."""
    import torch
    import torch.nn.functional as F

    n = max(multimasks.shape[0], 1)
    tgt = target[:, None].expand_as(multimasks)
    l_mask, l_dice = focal(multimasks, tgt), dice(multimasks, tgt)
    area_i = ((multimasks > 0) & (tgt > 0)).flatten(2).sum(-1).float()
    area_u = ((multimasks > 0) | (tgt > 0)).flatten(2).sum(-1).float()
    l_iou = F.l1_loss(ious, area_i / area_u.clamp(min=1.0), reduction="none").mean(-1)
    best = torch.argmin(l_mask * WEIGHTS["loss_mask"] + l_dice * WEIGHTS["loss_dice"], dim=-1)
    rows = torch.arange(len(best))
    obj = target.flatten(1).any(-1).float()
    l_class = F.binary_cross_entropy_with_logits(score_logits[:, 0], obj, reduction="sum") / n
    return {"loss_mask": (l_mask[rows, best] * obj).sum() / n, "loss_dice": (l_dice[rows, best] * obj).sum() / n,
            "loss_iou": (l_iou * obj).sum() / n, "loss_class": l_class}


def sample_window(rng: np.random.Generator, counter: int, frames: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(T, H, W, 3) frames and (T, B, H, W) masks of the objects visible in the first frame."""
    from .clips import make_clip

    preset = "slow" if rng.random() < 0.5 else "fast"
    clip = make_clip(TRAIN_SEED + counter, preset, n_frames=16)
    start = int(rng.integers(0, 16 - frames + 1))
    keep = np.nonzero(clip.present[start])[0]
    if len(keep) == 0:
        return None
    masks = clip.masks[start:start + frames][:, keep]
    masks = masks & clip.present[start:start + frames][:, keep][:, :, None, None]
    return clip.frames[start:start + frames], masks


def sample_batch(rng: np.random.Generator, prog: dict[str, Any], frames: int, clips: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``clips`` windows: frames (K, T, H, W, 3), masks (T, B, H, W) of all their objects and
    the window (K) each object belongs to (one batched step amortises the per-call overhead)."""
    imgs, masks, owner = [], [], []
    while len(imgs) < clips:
        sample = sample_window(rng, prog["counter"], frames)
        prog["counter"] += 1
        if sample is None:
            continue
        owner += [len(imgs)] * sample[1].shape[1]
        imgs.append(sample[0])
        masks.append(sample[1])
    return np.stack(imgs), np.concatenate(masks, axis=1), np.array(owner)


def clip_step(model: Any, frames: np.ndarray, masks: np.ndarray, owner: np.ndarray, cond: set[int]) -> tuple[Any, dict[str, float]]:
    """Track every object of the windows from its conditioning frames; return the summed loss.
    ``frames``: (K, T, H, W, 3); ``masks``: (T, B, H, W); ``owner``: (B,) window of each object."""
    import torch

    k, n_t = frames.shape[:2]
    feats, pos, sizes = frame_features(model, frames.reshape(k * n_t, *frames.shape[2:]))
    idx = torch.from_numpy(owner).long() * n_t
    target = torch.from_numpy(masks).float()
    out_dict: dict[str, dict] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    total = {key: torch.zeros(()) for key in WEIGHTS}
    for t in range(n_t):
        f = [x.index_select(1, idx + t) for x in feats]
        p = [x.index_select(1, idx + t) for x in pos]
        mask_in = target[t][:, None] if t in cond else None
        cur, sam_out, _, _ = model._track_step(t, t == 0, f, p, sizes, None, mask_in, out_dict, n_t, False, None)
        _, high_multi, ious, low, high, obj_ptr, score = sam_out
        cur.update(pred_masks=low, pred_masks_high_res=high, obj_ptr=obj_ptr)
        model._encode_memory_in_output(f, sizes, None, True, high, score, cur)
        out_dict["cond_frame_outputs" if t in cond else "non_cond_frame_outputs"][t] = cur
        if t not in cond:
            for key, v in frame_loss(high_multi, ious, score, target[t]).items():
                total[key] = total[key] + v
    loss = sum(WEIGHTS[key] * v for key, v in total.items())
    return loss, {key: float(v.detach()) for key, v in total.items()}


def evaluate(model: Any, n_clips: int = EVAL_CLIPS, seed: int = EVAL_SEED, n_frames: int = 12) -> dict[str, float]:
    """Held-out mean per-object mIoU, tracking from the frame-0 ground-truth mask with the
    ``memory`` propagator (eval mode; frames where the object is visible)."""
    import torch

    from ..video.memory import MemoryPropagator
    from .clips import make_clip

    was = model.training
    model.eval()
    res: dict[str, float] = {}
    try:
        for preset, off in (("slow", 0), ("fast", 5000)):
            per_obj = []
            for i in range(n_clips):
                clip = make_clip(seed + off + i, preset, n_frames=n_frames)
                prop = MemoryPropagator(model)
                prop.begin(clip.frames[0])
                ids = [int(j) for j in np.nonzero(clip.present[0])[0]]
                for j in ids:
                    prop.add(j, clip.masks[0, j])
                ious = {j: [] for j in ids}
                with torch.inference_mode():
                    for t in range(1, n_frames):
                        props = prop.step(clip.frames[t])
                        for j in ids:
                            if clip.present[t, j]:
                                m, g = props[j].mask, clip.masks[t, j]
                                ious[j].append((m & g).sum() / max((m | g).sum(), 1))
                per_obj += [float(np.mean(v)) for v in ious.values() if v]
            res[f"{preset}_miou"] = float(np.mean(per_obj)) if per_obj else 0.0
            res[f"{preset}_objects"] = len(per_obj)
    finally:
        model.train(was)
    res["miou"] = (res["slow_miou"] + res["fast_miou"]) / 2
    return res


def save_weights(model: Any, base: Path, path: Path) -> None:
    """``base``'s state dict with the trainable tensors replaced (fp16, as committed): every
    frozen tensor is copied from ``base`` unchanged."""
    import torch

    state = torch.load(str(base), map_location="cpu", weights_only=True)
    state = dict(state.get("model", state))
    for key, value in model.state_dict().items():
        if is_trainable(key):
            state[key] = value.detach().to(torch.float16) if value.is_floating_point() else value.detach().clone()
    tmp = path.with_suffix(".tmp")
    torch.save({"model": state}, tmp)
    os.replace(tmp, path)


def _lr(step: int, lr: float, warmup: int, progress: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def _resume(out: Path, model: Any, opt: Any) -> dict[str, Any]:
    import torch

    state = torch.load(str(out / "memory_last.pt"), map_location="cpu", weights_only=False)
    model.load_state_dict(state["trainable"], strict=False)
    opt.load_state_dict(state["optimizer"])
    return state["progress"]


def train_memory(out: Path, minutes: float, base: Path = WEIGHTS_DIR / SAM_CHECKPOINT, seed: int = 0,
                 frames: int = 8, lr: float = 1e-3, warmup: int = 40, eval_every_s: float = 300.0,
                 p_second_cond: float = 0.5, clips: int = 4, resume: bool = False,
                 initial_eval: bool = True) -> dict[str, Any]:
    """Train for ``minutes`` of wall-clock time (a resumed run gets ``minutes`` in total)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = load_model(base)
    model.eval()
    model.memory_attention.train()  # dropout as in sam2's training; frozen parts stay in eval mode
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    prog: dict[str, Any] = {"step": 0, "counter": 0, "elapsed_s": 0.0, "curve": [], "best": -1.0}
    if resume and (out / "memory_last.pt").is_file():
        prog = _resume(out, model, opt)
        log.info("resumed at step %d (%.0f s)", prog["step"], prog["elapsed_s"])
    elif initial_eval:
        prog["curve"].append({"step": 0, "wall_s": 0.0, **evaluate(model)})
        log.info("untrained: %s", prog["curve"][-1])
    rng = np.random.default_rng([seed, prog["counter"]])
    t0, e0, last_eval = time.monotonic(), prog["elapsed_s"], time.monotonic()
    budget, running = minutes * 60.0, {}
    while True:
        elapsed = e0 + time.monotonic() - t0
        if elapsed >= budget:
            break
        sample = sample_batch(rng, prog, frames, clips)
        cond = {0} | ({4} if rng.random() < p_second_cond and frames > 5 else set())
        for g in opt.param_groups:
            g["lr"] = _lr(prog["step"], lr, warmup, elapsed / budget)
        loss, parts = clip_step(model, *sample, cond)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        prog["step"] += 1
        for k, v in {"loss": float(loss.detach()), **parts}.items():
            running[k] = 0.95 * running.get(k, v) + 0.05 * v
        if time.monotonic() - last_eval >= eval_every_s or e0 + time.monotonic() - t0 >= budget:
            prog["elapsed_s"] = e0 + time.monotonic() - t0
            _checkpoint(model, opt, prog, running, out, base)
            last_eval = time.monotonic()
    return prog


def _checkpoint(model: Any, opt: Any, prog: dict[str, Any], running: dict[str, float], out: Path, base: Path) -> None:
    import torch

    point = {"step": prog["step"], "wall_s": round(prog["elapsed_s"], 1), **evaluate(model),
             "train_loss": round(running.get("loss", float("nan")), 4)}
    prog["curve"].append(point)
    log.info("%s", point)
    if point["miou"] > prog["best"]:
        prog["best"] = point["miou"]
        save_weights(model, base, out / SAM_CHECKPOINT)
    trainable = {k: v for k, v in model.state_dict().items() if is_trainable(k)}
    tmp = out / "memory_last.tmp"
    torch.save({"trainable": trainable, "optimizer": opt.state_dict(), "progress": prog}, tmp)
    os.replace(tmp, out / "memory_last.pt")
    (out / "memory_curve.json").write_text(json.dumps(prog["curve"], indent=1))


def finalize(out: Path, command: str, machine: str) -> dict[str, Any]:
    """Record the run in ``weights/MANIFEST.json`` (section ``memory``: learning curve, what was
    trained, data seeds) and, when the best held-out score beats the untrained memory path,
    install ``OUT/tiny_sam2.pt`` as the committed tiny checkpoint (sha256 and size updated)."""
    import hashlib

    state = __import__("torch").load(str(out / "memory_last.pt"), map_location="cpu", weights_only=False)
    prog = state["progress"]
    curve = prog["curve"]
    untrained = next((c["miou"] for c in curve if c["step"] == 0), None)
    best = max((c for c in curve if c["step"] > 0), key=lambda c: c["miou"], default=None)
    installed = best is not None and (untrained is None or best["miou"] > untrained)
    manifest_path = WEIGHTS_DIR / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    if installed:
        data = (out / SAM_CHECKPOINT).read_bytes()
        (WEIGHTS_DIR / SAM_CHECKPOINT).write_bytes(data)
        manifest["files"][SAM_CHECKPOINT].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    manifest["memory"] = {
        "command": command, "machine": machine, "script": "regionsearch/testing/_train_memory.py",
        "trained": list(TRAINABLE), "frozen": "everything else (image encoder, no_mem_embed, prompt encoder, mask "
        "decoder incl. its object-score token): bit-identical, tests/video/test_tiny_memory.py",
        "data": f"regionsearch.testing.clips, slow and fast presets, 16-frame clips, seeds {TRAIN_SEED}+ (training), "
                f"held-out curve: {EVAL_CLIPS} slow + {EVAL_CLIPS} fast 12-frame clips from seed {EVAL_SEED} (fast: +5000)",
        "curve_metric": "mean per-object mIoU tracking from the frame-0 ground-truth mask (memory propagator)",
        "steps": prog["step"], "train_seconds": round(prog["elapsed_s"], 1), "curve": curve,
        "untrained_miou": untrained, "best": best, "installed": installed,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest["memory"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=50.0, help="wall-clock budget (total, over resumes)")
    ap.add_argument("--out", type=Path, required=True, help="folder for checkpoints and the learning curve")
    ap.add_argument("--base", type=Path, default=WEIGHTS_DIR / SAM_CHECKPOINT, help="checkpoint to start from")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/memory_last.pt")
    ap.add_argument("--eval-every-s", type=float, default=300.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--frames", type=int, default=8, help="frames per training window")
    ap.add_argument("--clips", type=int, default=4, help="clip windows per step (batched)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--finalize", metavar="COMMAND", help="record the finished run in weights/MANIFEST.json (the "
                    "training COMMAND as text) and install the best checkpoint if it beats the untrained one")
    ap.add_argument("--machine", default="shared 2-core CPU VM, heavy contention (load 10-16), one torch thread, nice 10")
    ap.add_argument("--no-initial-eval", action="store_true", help="skip the held-out score of the untrained model")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.finalize:
        rec = finalize(args.out, args.finalize, args.machine)
        print(json.dumps({k: rec[k] for k in ("steps", "untrained_miou", "best", "installed")}, indent=1))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[logging.StreamHandler(), logging.FileHandler(args.out / "train.log")])
    prog = train_memory(args.out, args.minutes, base=args.base, frames=args.frames, lr=args.lr,
                        eval_every_s=args.eval_every_s, clips=args.clips, resume=args.resume,
                        initial_eval=not args.no_initial_eval)
    log.info("done: %d steps, best held-out mIoU %.3f", prog["step"], prog["best"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
