"""Train the project's tiny SAM 2.1 and CLIP on the shapes world.

    python -m regionsearch.testing.train {sam,clip,all} [--minutes N] [--out DIR] [--seed S]

``--minutes`` is the wall-clock budget of the SAM training (CLIP gets ``--clip-minutes``).
Outputs go to ``--out`` (default: ``regionsearch/testing/weights``): ``tiny_sam2.pt`` (best
held-out checkpoint, saved whenever the held-out score improves), ``tiny_sam2_last.pt``,
``tiny_clip/open_clip_model.safetensors``, learning curves, a log file, and the ``sam`` /
``clip`` sections of ``MANIFEST.json``. Meant to run in the background on a CPU:
``nice -n 5 python -m regionsearch.testing.train all --minutes 55``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

from .tiny import CLIP_DIR, SAM_CONFIG, WEIGHTS_DIR

# On a shared, oversubscribed CPU, OpenMP's default spin-waiting burns most of the CPU time at
# barriers (measured: 4.5x the CPU per step with 2 threads); sleep instead. Must be set before
# torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _update_manifest(out: Path, section: str, payload: dict) -> None:
    path = out / "MANIFEST.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[section] = payload
    path.write_text(json.dumps(data, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m regionsearch.testing.train", description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["sam", "clip", "all"])
    ap.add_argument("--minutes", type=float, default=55.0, help="SAM wall-clock budget")
    ap.add_argument("--clip-minutes", type=float, default=6.0, help="CLIP wall-clock budget")
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clip-resume", type=Path, default=None, help="continue CLIP training from these weights")
    ap.add_argument("--clip-scenes", type=int, default=800, help="CLIP training scenes (crops are made once)")
    ap.add_argument("--clip-lr", type=float, default=1.5e-3, help="CLIP peak learning rate")
    ap.add_argument("--resume", type=Path, default=None, help="continue SAM training from this checkpoint")
    ap.add_argument("--start-progress", type=float, default=0.0,
                    help="with --resume: where the curriculum and lr schedule start (0-1)")
    ap.add_argument("--lr", type=float, default=1.5e-3, help="SAM peak learning rate")
    ap.add_argument("--attn-weight", type=float, default=0.5, help="SAM auxiliary attention loss weight")
    ap.add_argument("--group-weight", type=float, default=0.0, help="SAM auxiliary grouping loss weight")
    ap.add_argument("--iou-weight", type=float, default=1.0,
                    help="SAM IoU-head loss weight (the head ranks AMG candidates and picks the multimask output)")
    ap.add_argument("--prompts-per-image", type=int, default=8, help="SAM prompts decoded per training image")
    ap.add_argument("--freeze-encoder", action="store_true",
                    help="SAM decoder phase: image encoder frozen (3x cheaper steps)")
    ap.add_argument("--iou-lr-mult", type=float, default=1.0, help="SAM IoU-head learning-rate multiplier")
    ap.add_argument("--iou-l1", action="store_true", help="SAM IoU-head loss: L1 instead of MSE (as sam2's training)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
        handlers=[logging.StreamHandler(sys.stderr), logging.FileHandler(args.out / f"train_{args.what}.log")],
    )
    command = "python -m regionsearch.testing.train " + " ".join(argv if argv is not None else sys.argv[1:])
    env = {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
           "machine": platform.machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if args.what in ("clip", "all"):
        from ._train_clip import train_clip

        res = train_clip(args.out / CLIP_DIR, minutes=args.clip_minutes, seed=args.seed, lr=args.clip_lr,
                         resume=args.clip_resume, n_scenes=args.clip_scenes)
        cfg = json.loads((WEIGHTS_DIR / CLIP_DIR / "open_clip_config.json").read_text())
        _update_manifest(args.out, "clip", {"command": command, "seed": args.seed, "config": cfg, "env": env, **res})
    if args.what in ("sam", "all"):
        from ._train_sam import train_sam

        res = train_sam(args.out, minutes=args.minutes, seed=args.seed, lr=args.lr, resume=args.resume,
                        start_progress=args.start_progress, attn_weight=args.attn_weight,
                        group_w=args.group_weight, iou_weight=args.iou_weight,
                        prompts_per_image=args.prompts_per_image, freeze_encoder=args.freeze_encoder,
                        iou_lr_mult=args.iou_lr_mult, iou_l1=args.iou_l1)
        _update_manifest(args.out, "sam", {"command": command, "seed": args.seed, "config": SAM_CONFIG,
                                           "env": env, **res})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
