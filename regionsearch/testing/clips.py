"""Moving-shapes clips: seeded synthetic videos of the shapes world with exact per-frame masks.

A clip is a static textured background (the shapes world's, :mod:`regionsearch.testing.shapes`)
with a few solid-coloured shapes moving over it, each with its own fixed depth (drawing order),
speed, spin and a slow size pulse. Per frame, the *visible* mask of an object is the part of its
shape not covered by objects drawn later and inside the frame: exact, because shapes are
rasterised without anti-aliasing. Every object of a clip has its own colour (so crossing objects
never merge into one blob) and therefore its own class.

Presets (``PRESETS``; speeds in pixels per frame at the given ``size``):

* ``slow``: 3 objects, 2-6 px/frame, bouncing off the borders, never leaving;
* ``fast``: 3-4 objects, 8-20 px/frame on straight lines that cross near the centre of the
  frame at different times, so objects occlude each other, enter and leave the frame.

An object counts as *present* in a frame when at least ``min_visible`` of the frame (default
0.3%) of it is visible; the ground truth of other frames is ``None``, as YouTube-VIS does.

:func:`clip_spec` draws a clip's trajectories from a seed; :func:`render_frame` renders any one
frame of a spec (lazily, so long clips need no memory); :func:`make_clip` renders all frames;
:func:`write_mp4` encodes a spec with PyAV (H.264, yuv420p; pixels change slightly, masks do
not); :func:`export_ytvis` writes clips as mp4 files plus a YouTube-VIS-style ``annotations.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import ConfigError, UnknownNameError
from .shapes import (
    BACKGROUNDS,
    CLASSES,
    COLOUR_JITTER,
    COLOURS,
    PALETTE,
    SHAPES,
    _background,
    _rasterise,
    caption,
)


@dataclass(frozen=True)
class ClipPreset:
    """How objects move. ``speed``: px per frame (at 256 px; scaled with the frame size);
    ``scale``: radius of the equal-area circle as a fraction of the frame's smaller side."""

    n_objects: tuple[int, int]
    speed: tuple[float, float]
    crossing: bool
    scale: tuple[float, float] = (0.08, 0.13)
    spin: float = 0.06  # max rad per frame
    pulse: float = 0.12  # max relative size change


PRESETS: dict[str, ClipPreset] = {
    "slow": ClipPreset(n_objects=(3, 3), speed=(2.0, 6.0), crossing=False),
    "fast": ClipPreset(n_objects=(3, 4), speed=(8.0, 20.0), crossing=True),
}


@dataclass(frozen=True)
class MovingObject:
    """One object's class, colour and motion. Positions are pixels; ``t`` counts frames."""

    colour: str
    shape: str
    rgb: tuple[int, int, int]
    start: tuple[float, float]
    velocity: tuple[float, float]
    scale: float
    angle: float
    spin: float
    pulse: float
    pulse_period: float
    bounce: bool

    @property
    def caption(self) -> str:
        return caption(self.colour, self.shape)

    def state(self, t: int, width: int, height: int) -> tuple[float, float, float, float]:
        """``(cx, cy, scale, angle)`` at frame ``t``."""
        x = self.start[0] + self.velocity[0] * t
        y = self.start[1] + self.velocity[1] * t
        s = self.scale * (1.0 + self.pulse * math.sin(2 * math.pi * t / self.pulse_period))
        if self.bounce:  # reflect inside [s, W - s] x [s, H - s]
            x = _reflect(x, s, width - s)
            y = _reflect(y, s, height - s)
        return x, y, s, self.angle + self.spin * t


def _reflect(v: float, lo: float, hi: float) -> float:
    span = hi - lo
    if span <= 0:
        return (lo + hi) / 2
    u = (v - lo) % (2 * span)
    return lo + (u if u <= span else 2 * span - u)


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render a clip: objects in drawing order (later = on top)."""

    width: int
    height: int
    n_frames: int
    fps: float
    preset: str
    seed: int
    background: str
    objects: tuple[MovingObject, ...]
    grain_seed: int
    grain: float
    min_visible: float
    bg_seed: int = 0

    @property
    def captions(self) -> list[str]:
        return [o.caption for o in self.objects]


@dataclass
class Clip:
    """A rendered clip. ``frames``: (T, H, W, 3) uint8 RGB; ``masks``: (T, N, H, W) bool visible
    masks; ``present``: (T, N) bool (visible area >= ``spec.min_visible`` of the frame)."""

    spec: ClipSpec
    frames: np.ndarray
    masks: np.ndarray
    present: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def captions(self) -> list[str]:
        return self.spec.captions

    @property
    def timestamps(self) -> np.ndarray:
        """Seconds of each frame (``index / fps``)."""
        return np.arange(self.spec.n_frames) / self.spec.fps


def clip_spec(seed: int, preset: str = "slow", n_frames: int = 16, size: int | tuple[int, int] = 256,
              fps: float = 2.0, grain: float = 2.0, min_visible: float = 0.003,
              backgrounds: Sequence[str] = BACKGROUNDS) -> ClipSpec:
    """Draw a clip's objects and motion from ``seed``. ``size``: side or ``(width, height)`` in
    pixels (even, for H.264); ``fps``: frames per second written to the video;
    ``grain``: std of the per-frame sensor noise (0-255 units)."""
    if preset not in PRESETS:
        raise UnknownNameError("clip preset", preset, list(PRESETS))
    width, height = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise ConfigError(f"clip size must be even and >= 32 pixels, got {width}x{height}")
    if n_frames < 1 or fps <= 0:
        raise ConfigError(f"a clip needs n_frames >= 1 and fps > 0, got {n_frames} and {fps}")
    p = PRESETS[preset]
    rng = np.random.default_rng([int(seed), 0xC11F])
    side = min(width, height)
    k = side / 256.0
    n = int(rng.integers(p.n_objects[0], p.n_objects[1] + 1))
    colours = [COLOURS[i] for i in rng.permutation(len(COLOURS))[:n]]
    objects = []
    for i, colour in enumerate(colours):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        rgb = tuple(int(v) for v in np.clip(np.array(PALETTE[colour]) + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0, 255))
        scale = float(rng.uniform(*p.scale)) * side
        speed = float(rng.uniform(*p.speed)) * k
        theta = float(rng.uniform(0, 2 * math.pi))
        vel = (speed * math.cos(theta), speed * math.sin(theta))
        if p.crossing:
            # pass near the centre at frame tc: objects meet there at different times
            tc = float(rng.uniform(0.25, 0.75)) * max(n_frames - 1, 1)
            cx = width / 2 + float(rng.uniform(-0.12, 0.12)) * side
            cy = height / 2 + float(rng.uniform(-0.12, 0.12)) * side
            start = (cx - vel[0] * tc, cy - vel[1] * tc)
        else:
            start = (float(rng.uniform(scale, width - scale)), float(rng.uniform(scale, height - scale)))
        objects.append(MovingObject(
            colour=colour, shape=shape, rgb=rgb, start=start, velocity=vel, scale=scale,  # type: ignore[arg-type]
            angle=float(rng.uniform(0, 2 * math.pi)), spin=float(rng.uniform(-p.spin, p.spin)),
            pulse=float(rng.uniform(0, p.pulse)), pulse_period=float(rng.uniform(8, 24)), bounce=not p.crossing,
        ))
    background = str(backgrounds[int(rng.integers(len(backgrounds)))])
    return ClipSpec(width=width, height=height, n_frames=int(n_frames), fps=float(fps), preset=preset, seed=int(seed),
                    background=background, objects=tuple(objects), grain_seed=int(rng.integers(2**31)),
                    grain=float(grain), min_visible=float(min_visible), bg_seed=int(rng.integers(2**31)))


def background_image(spec: ClipSpec) -> np.ndarray:
    """The clip's static background, (H, W, 3) uint8."""
    side = max(spec.width, spec.height)
    bg = _background(np.random.default_rng(spec.bg_seed), side, spec.background)
    return np.ascontiguousarray(bg[:spec.height, :spec.width])


def render_frame(spec: ClipSpec, t: int, background: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``t``: ``(image (H, W, 3) uint8 RGB, visible masks (N, H, W) bool)``."""
    bg = background_image(spec) if background is None else background
    w, h = spec.width, spec.height
    full = [_rasterise(o.shape, *o.state(t, w, h), w, h) for o in spec.objects]
    covered = np.zeros((h, w), bool)
    vis = [np.zeros((h, w), bool)] * len(full)
    for i in range(len(full) - 1, -1, -1):
        vis[i] = full[i] & ~covered
        covered |= full[i]
    image = bg.astype(np.int16)
    if spec.grain > 0:
        noise = np.random.default_rng([spec.grain_seed, t]).normal(0, spec.grain, (h, w, 1))
        image = image + np.round(noise).astype(np.int16)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for o, v in zip(spec.objects, vis):
        image[v] = o.rgb
    masks = np.stack(vis) if vis else np.zeros((0, h, w), bool)
    return image, masks


def iter_frames(spec: ClipSpec) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every frame of ``spec`` in order, one at a time (see :func:`render_frame`)."""
    bg = background_image(spec)
    for t in range(spec.n_frames):
        yield render_frame(spec, t, bg)


def present(spec: ClipSpec, masks: np.ndarray) -> np.ndarray:
    """(N,) bool: which visible masks are large enough to be annotated."""
    return masks.reshape(len(masks), -1).sum(1) >= spec.min_visible * spec.width * spec.height


def make_clip(seed: int, preset: str = "slow", **kwargs) -> Clip:
    """Render a whole clip (see :func:`clip_spec` for the arguments)."""
    spec = clip_spec(seed, preset, **kwargs)
    frames, masks = zip(*iter_frames(spec))
    m = np.stack(masks)
    return Clip(spec=spec, frames=np.stack(frames), masks=m, present=np.stack([present(spec, x) for x in m]))


def make_clips(n: int, seed: int, preset: str = "slow", **kwargs) -> list[Clip]:
    """``n`` clips; clip ``i`` uses seed ``seed * 1_000_003 + i``."""
    return [make_clip(seed * 1_000_003 + i, preset, **kwargs) for i in range(n)]


def write_mp4(spec: ClipSpec, path: str | Path, crf: int = 18, frames: Iterator[np.ndarray] | None = None) -> Path:
    """Encode ``spec`` (or the given frames) as H.264 mp4 at ``spec.fps``; frame ``i`` has
    timestamp ``i / fps`` seconds. Frames are rendered one at a time."""
    import av
    from fractions import Fraction

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(spec.fps).limit_denominator(1000)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        src = frames if frames is not None else (img for img, _ in iter_frames(spec))
        for img in src:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def encode_video(path: str | Path, frames: Sequence[np.ndarray], *, codec: str = "libx264", rate: Any = 8,
                 gop: int | None = None, pts: Sequence[int] | None = None, time_base: Any = None,
                 rotation: int | None = None) -> Path:
    """Encode HWC uint8 RGB ``frames`` with PyAV, for tests of odd videos: ``codec`` (``libx264``,
    ``mpeg4``, ...), ``gop`` frames between keyframes, ``pts`` in ``time_base`` units (a variable
    frame rate; ``time_base`` defaults to 1/1000 s then), a display ``rotation`` in degrees."""
    import av
    from fractions import Fraction

    path = Path(path)
    if pts is not None and time_base is None:
        time_base = Fraction(1, 1000)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        h, w = frames[0].shape[:2]
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if gop:
            stream.gop_size = gop
        if time_base is not None:
            stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def ytvis_categories() -> list[dict]:
    """YouTube-VIS/COCO categories of the shapes world (id = index in ``CLASSES`` + 1)."""
    return [{"id": i + 1, "name": name, "supercategory": name.split()[1]} for i, name in enumerate(CLASSES)]


def export_ytvis(specs: Sequence[ClipSpec], out_dir: str | Path, prefix: str = "clip", crf: int = 18) -> Path:
    """Write each clip as ``{prefix}_{id:06d}.mp4`` and a YouTube-VIS-style ``annotations.json``.

    ``videos[i]``: ``id``, ``file_name`` (the mp4, relative to ``out_dir``), ``width``,
    ``height``, ``length`` (frames), ``fps``, ``preset``, ``seed``. ``annotations[j]``: one per
    object, ``segmentations``/``areas``/``bboxes`` per frame (COCO RLE with str counts, pixel
    count, XYWH pixels; ``None`` where the object is not present), ``category_id``, ``caption``.
    Returns the JSON's path.
    """
    from ..masks import encode_rle, mask_to_bbox

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    videos, anns = [], []
    for vid, spec in enumerate(specs, start=1):
        name = f"{prefix}_{vid:06d}.mp4"
        per_obj: list[dict] = [{"segmentations": [], "areas": [], "bboxes": []} for _ in spec.objects]

        def frames_and_record() -> Iterator[np.ndarray]:
            for img, masks in iter_frames(spec):
                keep = present(spec, masks)
                for j, m in enumerate(masks):
                    rec = per_obj[j]
                    rec["segmentations"].append(encode_rle(m) if keep[j] else None)
                    rec["areas"].append(int(m.sum()) if keep[j] else None)
                    rec["bboxes"].append(list(mask_to_bbox(m)) if keep[j] else None)
                yield img

        write_mp4(spec, out / name, crf=crf, frames=frames_and_record())
        videos.append({"id": vid, "file_name": name, "width": spec.width, "height": spec.height,
                       "length": spec.n_frames, "fps": spec.fps, "preset": spec.preset, "seed": spec.seed})
        for o, rec in zip(spec.objects, per_obj):
            if not any(s is not None for s in rec["segmentations"]):
                continue
            anns.append({"id": len(anns) + 1, "video_id": vid, "category_id": CLASSES.index(o.caption) + 1,
                         "iscrowd": 0, "caption": o.caption, **rec})
    path = out / "annotations.json"
    path.write_text(json.dumps({"info": {"description": "regionsearch moving-shapes clips"},
                                "videos": videos, "annotations": anns, "categories": ytvis_categories()}))
    return path


#: seeds of the held-out clips the README's video figures are measured on (benchmarks/video_tracks.py);
#: clip ``i`` of a preset uses ``seed * 1_000_003 + i``
HELD_OUT_SEEDS = {"slow": 31_415, "fast": 27_182}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m regionsearch.testing.clips OUT [--count N] [--preset P] [--seed S] [--frames F]
    [--size PX] [--fps R]``: write moving-shapes clips (mp4) + a YouTube-VIS-style
    ``OUT/annotations.json`` for trying ``regionsearch eval`` on videos."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m regionsearch.testing.clips",
        description="Write synthetic moving-shapes clips (H.264 mp4, coloured shapes moving over a textured "
                    "background, exact per-frame masks) + YouTube-VIS-style ground truth (annotations.json: "
                    "videos, per-object segmentations per frame, 30 'colour shape' categories), for trying "
                    "`regionsearch eval` on videos. Default: the first held-out 'slow' clips the README's "
                    "video figures are measured on.")
    parser.add_argument("out", help="output folder (created; the mp4 files and annotations.json go into it)")
    parser.add_argument("--count", "-n", type=int, default=4, help="number of clips (default 4)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="slow",
                        help="slow: 3 objects bouncing at 2-6 px/frame; fast: 3-4 objects crossing at "
                             "8-20 px/frame, occluding each other, entering and leaving (default slow)")
    parser.add_argument("--seed", type=int, default=None,
                        help="clip seed (default: the preset's held-out seed, "
                             + ", ".join(f"{k} {v}" for k, v in sorted(HELD_OUT_SEEDS.items())) + ")")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels, even (default 256, 32 to 4096)")
    parser.add_argument("--fps", type=float, default=2.0,
                        help="frame rate written to the videos (default 2, the indexer's default video.sample_fps, "
                             "so every frame is looked at)")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 10_000:
        parser.error("--count must be 1 to 10000")
    if not 1 <= args.frames <= 100_000:
        parser.error("--frames must be 1 to 100000")
    if not 32 <= args.size <= 4096 or args.size % 2:
        parser.error("--size must be an even number from 32 to 4096")
    if not 0 < args.fps <= 240:
        parser.error("--fps must be > 0 and <= 240")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"{out} exists and is not a folder")
    seed = HELD_OUT_SEEDS[args.preset] if args.seed is None else args.seed
    specs = [clip_spec(seed * 1_000_003 + i, args.preset, n_frames=args.frames, fps=args.fps, size=args.size)
             for i in range(args.count)]
    path = export_ytvis(specs, out)
    n = sum(len(s.objects) for s in specs)
    print(f"wrote {len(specs)} clips ({n} objects, {args.frames} frames each at {args.fps:g} fps): {out}, {path}")
    print(f"try: regionsearch --config tiny eval --ytvis {path} --data-dir {out / 'data'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
