"""What one frame of a video costs the web player: ``FrameSeeker`` (demux once, then seek to the
keyframe before the frame and decode on) against decoding from the start (``read_frame``), for
random frames and for stepping forward at the sampled rate, on moving-shapes clips encoded with
H.264 at two keyframe intervals. Prints the figures and saves them
(``benchmarks/results/video_frames.json``).

    python benchmarks/video_frames.py [--frames 480] [--size 640] [--fps 24]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from _results import save_results


def _encode(path: Path, n: int, size: int, fps: float, keyint: int) -> Path:
    import av

    from regionsearch.testing.clips import clip_spec, iter_frames

    spec = clip_spec(4242, "fast", n_frames=n, fps=fps, size=size)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast", "g": str(keyint), "keyint_min": str(keyint)}
        for img, _ in iter_frames(spec):
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _measure(path: Path, n: int, step: int, rng: np.random.Generator) -> dict[str, float]:
    from regionsearch.video.decode import FrameSeeker, read_frame

    t0 = time.perf_counter()
    seeker = FrameSeeker(path)
    open_ms = 1000 * (time.perf_counter() - t0)
    picks = rng.integers(0, n, 12).tolist()
    t0 = time.perf_counter()
    for i in picks:
        seeker.read(i)
    random_ms = 1000 * (time.perf_counter() - t0) / len(picks)
    seeker.close()
    t0 = time.perf_counter()
    stepped = list(range(0, n, step))
    for i in stepped:
        seeker.read(i)
    step_ms = 1000 * (time.perf_counter() - t0) / len(stepped)
    t0 = time.perf_counter()
    for i in picks[:4]:
        read_frame(path, i)
    linear_ms = 1000 * (time.perf_counter() - t0) / 4
    return {"open_ms": round(open_ms, 1), "random_frame_ms": round(random_ms, 1),
            "stepping_frame_ms": round(step_ms, 1), "decode_from_start_ms": round(linear_ms, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=480)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--fps", type=float, default=24.0)
    ap.add_argument("--sample-fps", type=float, default=2.0, help="the player's stepping rate")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    figures: dict[str, object] = {"frames": args.frames, "size": args.size, "fps": args.fps}
    with tempfile.TemporaryDirectory() as tmp:
        for keyint in (args.frames, 48):
            path = _encode(Path(tmp) / f"k{keyint}.mp4", args.frames, args.size, args.fps, keyint)
            row = _measure(path, args.frames, max(1, round(args.fps / args.sample_fps)), rng)
            figures[f"keyint_{keyint}"] = row
            print(f"keyframe every {keyint:4d} frames: {row}")
    print(save_results("video_frames", figures))


if __name__ == "__main__":
    main()
