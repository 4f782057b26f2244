"""Resident memory of the ``memory`` propagator over a long video: flat, not growing with length.

A synthetic 720p moving-shapes video (``--minutes`` long, ``--source-fps`` frames per second,
few objects: the ``slow`` preset's 3, bouncing) is rendered and H.264-encoded one frame at a
time, then decoded lazily with PyAV (:func:`regionsearch.video.decode.sample_frames`) at
``--sample-fps`` and run through :class:`regionsearch.video.memory.MemoryPropagator` on the
tiny SAM 2.1: objects are seeded from the ground-truth masks of the first sampled frame and
re-conditioned on them every ``--keyframe-every`` sampled frames (ground truth stands in for the
keyframe automatic masks so the run measures the propagator, not AMG; the propagator keeps per
object the last ``max(num_maskmem, max_obj_ptrs_in_encoder)`` = 16 outputs and 2 conditioning
ones, what attention reads: 7 memories, 16 object pointers).

Figures: the process's RSS (``/proc/self/statm``) after 1 minute and after 10 minutes of video,
its maximum after the first minute, the propagator's retained outputs at the same points, the
number of sampled frames, CPU seconds per sampled frame (process time, ``torch`` on one thread)
and the tracking mIoU against the ground truth (for the record: a run that lost every object
would be cheap too). sam2's own ``SAM2VideoPredictor`` would hold every frame (0.75 MB per frame
at the tiny model's 256 px, 12 MB at 1024 px) and every frame's outputs.

    python benchmarks/video_memory.py [--minutes 10] [--source-fps 5] [--sample-fps 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

SEED = 4_711


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_video(path: Path, args: argparse.Namespace):
    from regionsearch.testing.clips import clip_spec, write_mp4

    w, h = (int(v) for v in args.size.split("x"))
    spec = clip_spec(SEED, "slow", n_frames=int(args.minutes * 60 * args.source_fps), fps=args.source_fps, size=(w, h),
                     grain=0.0)
    t0 = time.perf_counter()
    write_mp4(spec, path, crf=28)
    return spec, time.perf_counter() - t0


def run(path: Path, spec, args: argparse.Namespace) -> dict:
    import torch

    from regionsearch.config import load_config
    from regionsearch.masks import mask_iou
    from regionsearch.pipeline import Pipeline
    from regionsearch.testing.clips import background_image, render_frame
    from regionsearch.video.decode import sample_frames
    from regionsearch.video.memory import MemoryPropagator

    prop = MemoryPropagator(Pipeline(load_config(args.config)).sam_model)
    bg = background_image(spec)
    marks = {60.0: "1min", args.minutes * 60.0 - 1.0 / args.sample_fps: "end"}
    fig: dict = {}
    ious, n, after_first, cpu = [], 0, [], 0.0
    for frame in sample_frames(path, args.sample_fps):
        _, gt = render_frame(spec, frame.index, bg)
        c0 = time.process_time()
        with torch.inference_mode():
            props = prop.step(frame.image) if n else (prop.begin(frame.image) or {})
            if n % args.keyframe_every == 0:
                for j, m in enumerate(gt):
                    if m.any():
                        prop.add(j, m)
        cpu += time.process_time() - c0
        if n % args.keyframe_every:
            ious += [mask_iou(props[j].mask, gt[j]) for j in props if gt[j].any()]
        n += 1
        rss = rss_bytes()
        if frame.t >= 60.0:
            after_first.append(rss)
        for t_mark, name in marks.items():
            if name not in fig and frame.t >= t_mark - 1e-6:
                fig[name] = {"t": frame.t, "rss_mib": rss / 2**20, "retained_outputs": prop.memory_entries(),
                             "sampled_frames": n}
                print(name, fig[name], flush=True)
    return {"rss_1min_mib": fig["1min"]["rss_mib"], "rss_10min_mib": fig["end"]["rss_mib"],
            "rss_max_after_1min_mib": max(after_first) / 2**20, "rss_growth_1_to_10min_mib": fig["end"]["rss_mib"] - fig["1min"]["rss_mib"],
            "retained_outputs_1min": fig["1min"]["retained_outputs"], "retained_outputs_10min": fig["end"]["retained_outputs"],
            "t_end_s": fig["end"]["t"], "sampled_frames": n, "cpu_s_per_sampled_frame": cpu / max(n, 1),
            "propagated_miou": float(np.mean(ious)) if ious else float("nan"), "objects": len(spec.objects)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the synthetic video")
    parser.add_argument("--size", default="1280x720", help="WxH pixels")
    parser.add_argument("--source-fps", type=float, default=5.0, help="frame rate of the synthetic video")
    parser.add_argument("--sample-fps", type=float, default=2.0)
    parser.add_argument("--keyframe-every", type=int, default=8, help="sampled frames between re-conditionings")
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--name", default="video_memory")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    if args.minutes * 60 < 61:
        parser.error("--minutes must be over 1 (RSS is read after 1 minute of video)")

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="video_memory_") as tmp:
        path = Path(tmp) / "long.mp4"
        spec, write_s = make_video(path, args)
        figures = {"config": args.config, "propagator": "memory", "size": args.size, "minutes": args.minutes,
                   "source_fps": args.source_fps, "sample_fps": args.sample_fps, "keyframe_every": args.keyframe_every,
                   "video_bytes": path.stat().st_size, "video_write_s": write_s}
        figures.update(run(path, spec, args))
    for k, v in figures.items():
        print(f"  {k}: {v}", flush=True)
    if not args.no_save:
        from _results import save_results

        print("saved", save_results(args.name, figures, argv=sys.argv if argv is None else ["benchmarks/video_memory.py", *argv]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
