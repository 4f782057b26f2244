"""Video track-building throughput on this CPU: sampled frames per second and seconds of video
per second, in CPU time of one thread (``torch.set_num_threads(1)``, ``time.process_time``), so
the load of other jobs on the shared machine does not distort the figures (the 1-minute load
average at the start and end is recorded).

* ``tiny``: the tiny preset end to end (``track_video``: PyAV decode, AMG keyframes every
  ``--keyframe-every`` sampled frames, propagation, crops, CLIP), for both propagators, on
  ``--clips`` slow moving-shapes clips of 16 frames (256 px, written and sampled at 2 fps).
* ``hiera-tiny + ViT-B-32`` (random weights, the real architectures: 1024 px SAM 2.1 input):
  end-to-end AMG on hiera-tiny costs minutes per keyframe here, so the per-frame cost is
  composed from parts measured in this run on 512 px frames of the same clips — the image
  encoder per frame, per-object propagation (``memory``: memory attention + SAM heads + memory
  encoder; ``chain``: a prompt-decoder pass with 3 candidates), CLIP ViT-B-32 per crop
  (``--n-crops`` per track) — plus the AMG keyframe cost measured by
  ``benchmarks/index_throughput.py --part speed`` (``results/index_throughput-speed-project.json``,
  project default variant, CPU seconds per image: 1024 prompts), divided over
  ``--keyframe-every`` frames. Objects per frame: 3 (the clips').

    python benchmarks/video_throughput.py [--clips 2] [--keyframe-every 4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def tiny_end_to_end(args: argparse.Namespace, workdir: Path) -> dict:
    import dataclasses

    from regionsearch.config import load_config
    from regionsearch.pipeline import Pipeline
    from regionsearch.testing.clips import clip_spec, write_mp4
    from regionsearch.video.tracks import track_video

    pipeline = Pipeline(load_config("tiny"))
    pipeline.process(np.zeros((64, 64, 3), np.uint8))  # load the models outside the timings
    paths = [write_mp4(clip_spec(70_000 + i, "slow", n_frames=16), workdir / f"c{i}.mp4") for i in range(args.clips)]
    out = {}
    for name in ("chain", "memory"):
        vcfg = dataclasses.replace(pipeline.config.video, propagator=name, keyframe_every=args.keyframe_every)
        c0, frames, stages = time.process_time(), 0, {"segment_s": 0.0, "propagate_s": 0.0, "crop_s": 0.0, "embed_s": 0.0}
        for p in paths:
            res = track_video(str(p), pipeline, vcfg)
            frames += len(res.sampled)
            for k in stages:
                stages[k] += getattr(res.stats, k)
        cpu = time.process_time() - c0
        out[f"tiny_{name}_frames_per_cpu_s"] = frames / cpu
        out[f"tiny_{name}_video_s_per_cpu_s"] = frames / 2.0 / cpu
        out[f"tiny_{name}_cpu_s_per_frame"] = cpu / frames
        out[f"tiny_{name}_wall_stage_s"] = stages
    return out


def _cpu(fn, repeat: int = 1) -> float:
    c0 = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - c0) / repeat


def real_size_parts(args: argparse.Namespace) -> dict:
    import torch

    from index_throughput import _speed_models
    from regionsearch.embed.clip import ClipEmbedder
    from regionsearch.segment.prompt import PromptSegmenter
    from regionsearch.testing.clips import make_clip
    from regionsearch.video.memory import MemoryPropagator
    from regionsearch.video.tracks import interior_point

    sam, _clip, _pre, bundle, _ = _speed_models(1)
    clip = make_clip(70_000, "slow", n_frames=4, size=512)
    n_obj = len(clip.captions)
    with torch.inference_mode():
        x = torch.zeros(1, 3, sam.image_size, sam.image_size)
        enc = _cpu(lambda: sam.forward_image(x), 2)
        prop = MemoryPropagator(sam)
        prop.begin(clip.frames[0])
        for j, m in enumerate(clip.masks[0]):
            prop.add(j, m)
        steps = [_cpu(lambda t=t: prop.step(clip.frames[t])) for t in (1, 2, 3)]
        mem_obj = (float(np.mean(steps)) - enc) / n_obj
        seg = PromptSegmenter(sam)
        handle = seg.set_image(clip.frames[1])
        clicks = [interior_point(m) for m in clip.masks[1]]
        chain_obj = _cpu(lambda: [seg.predict(handle, points=[c], labels=[1], multimask=True) for c in clicks], 2) / n_obj
    emb = ClipEmbedder(bundle, 32)
    crops = [np.full((224, 224, 3), (40 + 20 * i) % 256, np.uint8) for i in range(args.n_crops * n_obj)]
    emb.embed_images(crops[:2])
    crop_s = _cpu(lambda: emb.embed_images(crops)) / len(crops)
    amg_file = REPO / "benchmarks" / "results" / "index_throughput-speed-project.json"
    amg = json.loads(amg_file.read_text())["figures"]["speed"]["variants"]["default"]["cpu_s"]
    out = {"real_encoder_cpu_s_per_frame": enc, "real_memory_cpu_s_per_object_frame": mem_obj,
           "real_chain_cpu_s_per_object_frame": chain_obj, "real_clip_cpu_s_per_crop": crop_s,
           "real_amg_cpu_s_per_keyframe (index_throughput-speed-project.json)": amg, "real_objects_per_frame": n_obj}
    frames_per_track = 16
    for name, per_obj in (("memory", mem_obj), ("chain", chain_obj)):
        per_frame = enc + n_obj * per_obj + amg / args.keyframe_every + n_obj * args.n_crops * crop_s / frames_per_track
        no_amg = enc + n_obj * per_obj + n_obj * args.n_crops * crop_s / frames_per_track
        out[f"real_{name}_frames_per_cpu_s"] = 1.0 / per_frame
        out[f"real_{name}_video_s_per_cpu_s"] = 1.0 / per_frame / 2.0
        out[f"real_{name}_frames_per_cpu_s_propagation_only"] = 1.0 / no_amg
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--keyframe-every", type=int, default=4)
    parser.add_argument("--n-crops", type=int, default=4)
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--name", default="video_throughput")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    figures: dict = {"threads": 1, "clock": "process CPU time", "sample_fps": 2.0, "keyframe_every": args.keyframe_every,
                     "clips": args.clips, "load_avg_1min_start": os.getloadavg()[0], "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="video_tp_") as tmp:
        figures.update(tiny_end_to_end(args, Path(tmp)))
    if not args.skip_real:
        figures.update(real_size_parts(args))
    figures["load_avg_1min_end"] = os.getloadavg()[0]
    for k, v in figures.items():
        print(f"  {k}: {v}", flush=True)
    if not args.no_save:
        from _results import save_results

        print("saved", save_results(args.name, figures, argv=sys.argv if argv is None else ["benchmarks/video_throughput.py", *argv]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
