"""Where identity switches come from: every switch of the tracker on moving-shapes clips, explained.

Builds tracks exactly as ``benchmarks/video_tracks.py`` does (H.264 mp4 -> PyAV decode -> AMG
keyframes + propagation + re-matching, tiny models) but without embeddings, and prints for each
identity switch (CLEAR-MOT, regionsearch.evaluation.video) the clip, frame, object, the track
it left and the one it joined, whether the frame was a keyframe, whether the old track was still
alive on that frame (a *swap*: it follows something else now) or had ended (a *fragment*: the
object was lost and found again under a new id), and how much of the object was visible. Then the
summary figures of each seed set (track mIoU, share >= 0.5, switches per clip mean / max).

Automatic masks are cached per decoded frame (``--cache``), so a re-run after a change of the
track builder's rules costs only propagation.

    python benchmarks/video_switches.py --preset fast --seeds 27182,1,2 [--clips 8] [--propagator chain]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class CachedSegmenter:
    """The automatic segmenter's regions, remembered by the frame's bytes (and a pickle file)."""

    def __init__(self, inner, path: Path | None):
        self.inner, self.path = inner, path
        self.cache: dict[str, list] = {}
        if path is not None and path.is_file():
            self.cache = pickle.loads(path.read_bytes())

    def segment(self, image: np.ndarray):
        key = hashlib.sha1(image.tobytes()).hexdigest()
        if key not in self.cache:
            self.cache[key] = self.inner.segment(image)
        return self.cache[key]

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(pickle.dumps(self.cache))


def run_seed(seed: int, args: argparse.Namespace, pipeline, segmenter, workdir: Path) -> dict:
    from regionsearch.evaluation.video import PredTrack, evaluate_tracking, load_ytvis
    from regionsearch.masks import rle_area, rle_iou
    from regionsearch.testing.clips import clip_spec, export_ytvis
    from regionsearch.video.decode import sample_frames
    from regionsearch.video.tracks import TrackBuilder, create_propagator

    cfg = pipeline.config.video
    specs = [clip_spec(seed * 1_000_003 + i, args.preset, n_frames=args.frames, fps=cfg.sample_fps, size=args.size)
             for i in range(args.clips)]
    out = workdir / f"{args.preset}_{seed}"
    gt = load_ytvis(export_ytvis(specs, out))
    preds, frames_of, keyframes = [], {}, {}
    for vid, video in gt.videos.items():
        builder = TrackBuilder(segmenter, create_propagator(args.propagator or cfg.propagator, pipeline.sam_model),
                               keyframe_every=cfg.keyframe_every, match_iou=cfg.match_iou)
        sampled = []
        if args.debug:
            print(f"  clip {vid}: {[o.caption for o in specs[vid - 1].objects]}", flush=True)
        for f in sample_frames(out / video["file_name"], cfg.sample_fps):
            sampled.append(f.index)
            builder.feed(f)
        tracks = builder.finish()
        frames_of[vid] = sampled
        keyframes[vid] = {fr.index for t in tracks for fr in t.frames if fr.keyframe}
        preds.extend(PredTrack(t.id, vid, t.masks_by_index()) for t in tracks)
    res = evaluate_tracking(gt, preds, frames_of)
    if not args.quiet:
        explain(gt, preds, frames_of, keyframes, seed)
    s = res.summary()
    print(f"seed {seed}: objects {s['objects']} mIoU {s['track_miou']:.3f} share>=0.5 {s['share_miou_ge_0.5']:.3f} "
          f"switches/clip {s['switches_per_clip']:.3f} max {s['max_switches']} fragments/object "
          f"{s['fragments_per_object']:.3f} per clip {[res.switches_per_video[v] for v in sorted(res.switches_per_video)]}",
          flush=True)
    return s


def explain(gt, preds, frames_of, keyframes, seed: int) -> None:
    """Replays the metric's per-frame matching and prints each switch with its context."""
    from scipy.optimize import linear_sum_assignment

    from regionsearch.masks import rle_area, rle_iou

    for vid, evaluated in frames_of.items():
        objs = gt.objects_of(vid)
        vp = [p for p in preds if p.video_id == vid]
        last: dict[int, int] = {}
        for f in evaluated:
            present = [o for o in objs if f in o.masks]
            cands = [p for p in vp if f in p.masks]
            if not present or not cands:
                continue
            m = rle_iou([o.masks[f] for o in present], [p.masks[f] for p in cands])
            rows, cols = linear_sum_assignment(-m)
            for r, c in zip(rows, cols):
                if m[r, c] < 0.5:
                    continue
                o, tid = present[r], cands[c].id
                prev = last.get(o.id)
                if prev is not None and prev != tid:
                    old = next(p for p in vp if p.id == prev)
                    alive = f in old.masks
                    where = ""
                    if alive:
                        ious = rle_iou([old.masks[f]], [x.masks[f] for x in present])[0]
                        k = int(np.argmax(ious))
                        where = f" old track now on object {present[k].id} (IoU {ious[k]:.2f})"
                    born = min(cands[c].masks) == f
                    print(f"  seed {seed} clip {vid} frame {f:2d} {'KEY' if f in keyframes[vid] else 'prop'} "
                          f"object {o.id} ({gt.categories[o.category_id]}, {rle_area(o.masks[f])} px) "
                          f"track {prev} -> {tid}{' (new)' if born else ''}: "
                          f"{'SWAP' if alive else 'fragment (old ended at ' + str(max(old.masks)) + ')'}{where}",
                          flush=True)
                last[o.id] = tid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--seeds", default="27182", help="comma-separated seed sets (clip i of seed s: s * 1000003 + i)")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--propagator", default=None, help="config: video.propagator")
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "regionsearch_amg_cache.pkl"),
                        help="pickle of automatic masks per frame ('' = none)")
    parser.add_argument("--quiet", action="store_true", help="only the summary lines")
    parser.add_argument("--debug", action="store_true", help="the track builder's debug log (losses, re-identification)")
    args = parser.parse_args(argv)
    if args.debug:
        import logging

        logging.basicConfig(format="    %(message)s")
        logging.getLogger("regionsearch.video.tracks").setLevel(logging.DEBUG)

    import torch

    from regionsearch.config import load_config
    from regionsearch.pipeline import Pipeline

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    pipeline = Pipeline(load_config(args.config))
    segmenter = CachedSegmenter(pipeline.segmenter, Path(args.cache) if args.cache else None)
    sums = []
    with tempfile.TemporaryDirectory(prefix="video_switches_") as tmp:
        for seed in [int(s) for s in args.seeds.split(",") if s]:
            sums.append(run_seed(seed, args, pipeline, segmenter, Path(tmp)))
            segmenter.save()
    print(f"all: mIoU {np.mean([s['track_miou'] for s in sums]):.3f} max switches {max(s['max_switches'] for s in sums)} "
          f"mean switches/clip {np.mean([s['switches_per_clip'] for s in sums]):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
