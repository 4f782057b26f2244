"""Video tracks on held-out moving-shapes clips with the tiny models: quality and speed.

For each preset (``slow``: 3 objects at 2-6 px/frame; ``fast``: 3-4 objects at 8-20 px/frame
crossing near the centre, entering and leaving), clips of the held-out seed are written as H.264
mp4 + YouTube-VIS-style ground truth (regionsearch.testing.clips), decoded lazily with PyAV at
``--sample-fps`` (the clips are written at that rate, so every frame is sampled), turned into
tracks (keyframe automatic masks every ``--keyframe-every`` sampled frames + the ``chain``
propagator + Hungarian re-matching) and embedded (mean of ``--n-crops`` mask crops). Figures:

* per-object track mIoU, identity switches per clip (mean and max), share of objects with track
  mIoU >= 0.5, fragments per object (regionsearch.evaluation.video);
* track text search P@1 / P@3 over the classes present in the preset's clips: brute-force cosine
  between the CLIP text embedding of the class name ("red circle") and every track's vector,
  a hit when the track's spatio-temporal IoU with an object of that class is >= 0.5;
* single-click interactive propagation mIoU (slow clips): one click at the most interior pixel of
  each object's ground-truth mask on its first sampled frame, propagated to the end of the clip;
  the mean over objects of the per-frame IoU (0 where the object is present but lost);
* sampled frames per second and seconds of video per second for track building + embedding
  (decode included), and the baseline of the same run: the image pipeline (AMG + CLIP on every
  region) on the same frames, as a ratio.

Held-out seeds: 31_415 (slow) and 27_182 (fast); development used 1-20. Results go to
``benchmarks/results/video_tracks.json``.

    python benchmarks/video_tracks.py [--clips 8] [--frames 16] [--keyframe-every 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

HELD_OUT = {"slow": 31_415, "fast": 27_182}


def video_config(base, args: argparse.Namespace):
    """The config's video section with the command line's overrides."""
    over = {k: getattr(args, k) for k in ("sample_fps", "keyframe_every", "n_crops", "propagator")
            if getattr(args, k) is not None}
    return dataclasses.replace(base, **over)


def run_preset(preset: str, args: argparse.Namespace, pipeline, workdir: Path) -> dict:
    from regionsearch.evaluation.video import (
        PredTrack,
        evaluate_tracking,
        load_ytvis,
        precision_at_k_capped,
        retrieval_hits,
    )
    from regionsearch.masks import decode_rle, mask_iou
    from regionsearch.testing.clips import clip_spec, export_ytvis
    from regionsearch.video.decode import sample_frames
    from regionsearch.video.tracks import create_propagator, interior_point, propagate_prompt, track_video

    seed = args.seed if args.seed is not None else HELD_OUT[preset]
    specs = [clip_spec(seed * 1_000_003 + i, preset, n_frames=args.frames, fps=args.sample_fps, size=args.size)
             for i in range(args.clips)]
    out = workdir / preset
    gt_path = export_ytvis(specs, out)
    gt = load_ytvis(gt_path)
    emb = pipeline.embedder
    vcfg = video_config(pipeline.config.video, args)
    preds, vectors, frames_of, n_frames, video_s = [], [], {}, 0, 0.0
    t_build = 0.0
    stages = {"segment_s": 0.0, "propagate_s": 0.0, "crop_s": 0.0, "embed_s": 0.0}
    for vid, video in gt.videos.items():
        t0 = time.perf_counter()
        result = track_video(str(out / video["file_name"]), pipeline, vcfg)
        t_build += time.perf_counter() - t0
        for k in stages:
            stages[k] += getattr(result.stats, k)
        n_frames += len(result.sampled)
        video_s += video["length"] / video["fps"]
        frames_of[vid] = [i for i, _ in result.sampled]
        for t in result.tracks:
            if t.embedding is None:
                continue
            preds.append(PredTrack(t.id, vid, t.masks_by_index()))
            vectors.append(t.embedding)
    res = evaluate_tracking(gt, preds, frames_of)
    figures = {f"{preset}_{k}": v for k, v in res.summary().items()}
    figures[f"{preset}_tracks"] = len(preds)

    # text search over the tracks of all clips of the preset
    mat = np.stack(vectors) if vectors else np.zeros((0, emb.dim), np.float32)
    present = sorted({o.category_id for o in gt.objects})
    p1, p3 = [], []
    for cid in present:
        q = emb.embed_texts([gt.categories[cid]])[0]
        order = np.argsort(-(mat @ q), kind="stable")
        hits, n_rel = retrieval_hits([preds[i] for i in order], gt, cid, frames_of)
        p1.append(precision_at_k_capped(hits, n_rel, 1))
        p3.append(precision_at_k_capped(hits, n_rel, 3))
    figures[f"{preset}_search_classes"] = len(present)
    figures[f"{preset}_search_p1"] = float(np.mean(p1)) if p1 else float("nan")
    figures[f"{preset}_search_p3"] = float(np.mean(p3)) if p3 else float("nan")

    # sampled frames per second (track building + embedding, decode included)
    figures[f"{preset}_sampled_frames"] = n_frames
    figures[f"{preset}_frames_per_s"] = n_frames / t_build if t_build else float("nan")
    figures[f"{preset}_video_s_per_s"] = video_s / t_build if t_build else float("nan")
    figures.update({f"{preset}_{k}": v for k, v in stages.items()})

    # baseline of the same run: the image pipeline (AMG + CLIP per region) on the same frames
    if not args.no_baseline:
        t0 = time.perf_counter()
        for vid, video in gt.videos.items():
            for f in sample_frames(out / video["file_name"], args.sample_fps):
                pipeline.process(f.image)
        t_images = time.perf_counter() - t0
        figures[f"{preset}_image_pipeline_frames_per_s"] = n_frames / t_images if t_images else float("nan")
        figures[f"{preset}_tracks_vs_image_pipeline_speed"] = t_images / t_build if t_build else float("nan")

    # single-click interactive propagation
    if preset in args.interactive:
        per_object = []
        for vid, video in gt.videos.items():
            path = out / video["file_name"]
            sampled = frames_of[vid]
            for obj in gt.objects_of(vid):
                starts = [f for f in sampled if f in obj.masks]
                if not starts:
                    continue
                start = starts[0]
                first = decode_rle(obj.masks[start])
                click = interior_point(first)
                prop = create_propagator(vcfg.propagator, pipeline.sam_model)
                frames = (f for f in sample_frames(path, args.sample_fps) if f.index >= start)
                got = {fr.index: p.mask for fr, p in propagate_prompt(frames, prop, points=[click], labels=[1])}
                ious = [mask_iou(got[f], decode_rle(obj.masks[f])) if f in got else 0.0
                        for f in sampled if f >= start and f in obj.masks]
                per_object.append(float(np.mean(ious)))
        figures[f"{preset}_click_miou"] = float(np.mean(per_object)) if per_object else float("nan")
        figures[f"{preset}_click_objects"] = len(per_object)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8, help="clips per preset")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--sample-fps", type=float, default=2.0, help="clips are written and sampled at this rate")
    parser.add_argument("--keyframe-every", type=int, default=None, help="sampled frames between keyframes (config: video.keyframe_every)")
    parser.add_argument("--n-crops", type=int, default=None, help="crops averaged into each track's vector (config: video.n_crops)")
    parser.add_argument("--propagator", default=None, help="config: video.propagator")
    parser.add_argument("--presets", default="slow,fast")
    parser.add_argument("--interactive", default="slow", help="presets on which to measure click propagation")
    parser.add_argument("--seed", type=int, default=None, help="override the held-out seed (development only)")
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--name", default="video_tracks", help="results file stem (benchmarks/results/NAME.json)")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--no-baseline", action="store_true", help="skip the image-pipeline baseline (speed ratio)")
    args = parser.parse_args(argv)
    args.interactive = [p for p in args.interactive.split(",") if p]

    import torch

    from regionsearch.config import load_config
    from regionsearch.pipeline import Pipeline

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    pipeline = Pipeline(load_config(args.config))
    pipeline.process(np.zeros((args.size, args.size, 3), np.uint8))  # load the models outside the timings
    pipeline.sam_model
    vcfg = video_config(pipeline.config.video, args)
    figures: dict = {"config": args.config, "propagator": vcfg.propagator, "clips_per_preset": args.clips,
                     "frames_per_clip": args.frames, "size_px": args.size, "sample_fps": vcfg.sample_fps,
                     "keyframe_every": vcfg.keyframe_every, "n_crops": vcfg.n_crops,
                     "seeds": {p: (args.seed if args.seed is not None else HELD_OUT[p]) for p in args.presets.split(",")}}
    with tempfile.TemporaryDirectory(prefix="video_tracks_") as tmp:
        for preset in args.presets.split(","):
            t0 = time.perf_counter()
            figs = run_preset(preset, args, pipeline, Path(tmp))
            figures.update(figs)
            print(f"[{preset}] {time.perf_counter() - t0:.0f} s", flush=True)
            for k, v in figs.items():
                print(f"  {k}: {v:.3f}" if isinstance(v, float) else f"  {k}: {v}", flush=True)
    if not args.no_save:
        from _results import save_results

        print("saved", save_results(args.name, figures, argv=sys.argv if argv is None else ["benchmarks/video_tracks.py", *argv]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
