"""The "shapes world": seeded synthetic scenes with exact instance masks and captions.

Each scene shows 1-8 solid-coloured shapes ({circle, square, triangle, star, hexagon} x
{red, green, blue, yellow, orange, purple}) of varied size and rotation, drawn in a random
occlusion order on a muted textured background (smooth noise, stripes, gradients, checks).
Shapes that touch or overlap never share a colour name (they would read as one blob).

Ground truth is exact: shapes are rasterised without anti-aliasing and filled with one RGB
colour per instance, so the *visible* mask of an instance (bool HxW, the part not covered by
shapes drawn later) is precisely the set of pixels painted with that instance's colour.

Small pieces: an instance whose visible part, after occlusion, is smaller than ``min_visible``
(fraction of the image, default 1%) or less than ``min_visible_fraction`` (default 30%) of its
own full area is removed from the scene entirely (not painted, not annotated), so every painted
shape is annotated and every annotation is reasonably visible.

Only numpy and Pillow are needed (pycocotools for :func:`export_coco`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "orange", "purple")
#: the 30 class names, "colour shape", colour-major order (the COCO category ids are index + 1)
CLASSES: tuple[str, ...] = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)

#: nominal RGB of each colour; instances jitter it by at most ``COLOUR_JITTER`` per channel
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 55),
    "blue": (35, 75, 215),
    "yellow": (235, 210, 35),
    "orange": (245, 130, 20),
    "purple": (135, 50, 175),
}
COLOUR_JITTER = 12
BACKGROUNDS: tuple[str, ...] = ("noise", "stripes", "gradient", "checks")


@dataclass
class Scene:
    """One synthetic scene.

    ``image``: HxWx3 uint8 RGB. ``masks``: (N, H, W) bool, visible part of each instance, in
    drawing order (later ones are on top). ``colours``/``shapes``: class labels per instance;
    ``captions``: "red circle"; ``rgb``: the exact fill colour of each instance;
    ``seed``: the seed the scene was made from (None when made from a caller's generator).
    """

    image: np.ndarray
    masks: np.ndarray
    colours: list[str]
    shapes: list[str]
    captions: list[str]
    rgb: list[tuple[int, int, int]]
    background: str
    seed: int | None = None
    meta: dict = field(default_factory=dict)

    @property
    def labels(self) -> list[int]:
        """Class index (into :data:`CLASSES`) of each instance."""
        return [CLASSES.index(c) for c in self.captions]

    def boxes(self) -> np.ndarray:
        """(N, 4) XYWH pixel boxes of the visible masks (float32)."""
        out = np.zeros((len(self.masks), 4), np.float32)
        for i, m in enumerate(self.masks):
            ys, xs = np.nonzero(m)
            out[i] = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        return out


def caption(colour: str, shape: str) -> str:
    return f"{colour} {shape}"


def scene_caption(scene: Scene) -> str:
    """A short description of the whole scene, e.g. "a red circle, two blue stars"."""
    counts: dict[str, int] = {}
    for c in scene.captions:
        counts[c] = counts.get(c, 0) + 1
    words = {1: "a", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
    parts = [f"{words[n]} {c}{'s' if n > 1 else ''}" for c, n in counts.items()]
    return ", ".join(parts)


# --------------------------------------------------------------------------- geometry

def _regular_polygon(n: int, radius: float, angle: float) -> np.ndarray:
    t = angle + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(t), radius * np.sin(t)], 1)


def _star(radius: float, angle: float, inner: float = 0.5) -> np.ndarray:
    t = angle + np.pi * np.arange(10) / 5
    r = np.where(np.arange(10) % 2 == 0, radius, radius * inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _poly_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _outline(shape: str, scale: float, angle: float) -> np.ndarray | None:
    """Polygon (K, 2) centred at 0 with area pi*scale^2; None for a circle."""
    if shape == "circle":
        return None
    if shape == "square":
        p = _regular_polygon(4, 1.0, angle)
    elif shape == "triangle":
        p = _regular_polygon(3, 1.0, angle)
    elif shape == "hexagon":
        p = _regular_polygon(6, 1.0, angle)
    elif shape == "star":
        p = _star(1.0, angle)
    else:  # pragma: no cover - guarded by SHAPES
        raise ValueError(shape)
    return p * (scale * math.sqrt(math.pi / _poly_area(p)))


def _rasterise(shape: str, cx: float, cy: float, scale: float, angle: float, width: int,
               height: int | None = None) -> np.ndarray:
    """Full (unoccluded) bool mask of one shape, (height, width) (square when ``height`` is None),
    no anti-aliasing."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (width, width if height is None else height), 0)
    draw = ImageDraw.Draw(canvas)
    poly = _outline(shape, scale, angle)
    if poly is None:
        draw.ellipse([cx - scale, cy - scale, cx + scale, cy + scale], fill=255)
    else:
        draw.polygon([(float(x + cx), float(y + cy)) for x, y in poly], fill=255)
    return np.asarray(canvas) > 127


def _dilate(mask: np.ndarray, r: int = 2) -> np.ndarray:
    out = mask.copy()
    for _ in range(r):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


# --------------------------------------------------------------------------- backgrounds

def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A low-saturation RGB colour (float 0-255) that cannot be mistaken for a target colour."""
    import colorsys

    h, s, v = rng.random(), rng.uniform(0.0, 0.22), rng.uniform(0.3, 0.85)
    return np.array(colorsys.hsv_to_rgb(h, s, v)) * 255.0


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    from PIL import Image

    small = rng.random((cells, cells)).astype(np.float32)
    img = Image.fromarray((small * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    return np.asarray(img, np.float32) / 255.0


def _background(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    a, b = _muted_colour(rng), _muted_colour(rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == "noise":
        t = _smooth_noise(rng, size, int(rng.integers(3, 12)))
    elif kind == "stripes":
        th = rng.uniform(0, np.pi)
        period = rng.uniform(0.04, 0.25)
        u = (xx * np.cos(th) + yy * np.sin(th)) / period
        t = (np.sin(2 * np.pi * u) > 0).astype(np.float32) if rng.random() < 0.5 else 0.5 + 0.5 * np.sin(2 * np.pi * u)
    elif kind == "gradient":
        th = rng.uniform(0, 2 * np.pi)
        u = xx * np.cos(th) + yy * np.sin(th)
        t = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
    elif kind == "checks":
        n = int(rng.integers(3, 10))
        t = ((np.floor(xx * n) + np.floor(yy * n)) % 2).astype(np.float32)
    else:  # pragma: no cover - guarded by BACKGROUNDS
        raise ValueError(kind)
    img = a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]
    img += rng.normal(0, rng.uniform(0, 6), (size, size, 1))  # grain, grey so saturation stays low
    return np.clip(img, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- scenes

def _as_rng(rng_or_seed: np.random.Generator | int | None) -> tuple[np.random.Generator, int | None]:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed, None
    seed = 0 if rng_or_seed is None else int(rng_or_seed)
    return np.random.default_rng(seed), seed


def make_scene(rng: np.random.Generator | int | None = None, size: int = 256, n_min: int = 1, n_max: int = 8,
               scale_range: tuple[float, float] = (0.065, 0.2), min_visible: float = 0.01,
               min_visible_fraction: float = 0.3, backgrounds: Sequence[str] = BACKGROUNDS) -> Scene:
    """One scene from a seed (or a numpy Generator).

    ``scale_range``: radius of the equal-area circle of each shape, as a fraction of ``size``.
    ``min_visible`` / ``min_visible_fraction``: see the module docstring (instances failing
    them are removed). The result has at least one instance whenever ``n_min >= 1``: the
    topmost shape is always fully visible.
    """
    rng, seed = _as_rng(rng)
    n = int(rng.integers(n_min, n_max + 1))
    kind = str(backgrounds[int(rng.integers(len(backgrounds)))])
    bg = _background(rng, size, kind)
    items = []
    for _ in range(n):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        scale = float(rng.uniform(*scale_range)) * size
        cx, cy = rng.uniform(0.05, 0.95, 2) * size
        angle = float(rng.uniform(0, 2 * np.pi))
        full = _rasterise(shape, cx, cy, scale, angle, size)
        if full.sum() == 0:
            continue
        # two touching shapes of the same colour would merge into one blob: pick another colour
        near = _dilate(full)
        taken = {it["colour"] for it in items if (it["full"] & near).any()}
        choices = [c for c in COLOURS if c not in taken] or list(COLOURS)
        colour = choices[int(rng.integers(len(choices)))]
        base = np.array(PALETTE[colour])
        rgb = tuple(int(v) for v in np.clip(base + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0, 255))
        items.append(dict(colour=colour, shape=shape, rgb=rgb, full=full))

    # visible masks, painter's order; removing an occluded instance only uncovers pixels of
    # the ones below it, so one removal pass leaves every survivor above both thresholds
    def visible(its: list[dict]) -> list[np.ndarray]:
        covered = np.zeros((size, size), bool)
        out = []
        for it in reversed(its):
            out.append(it["full"] & ~covered)
            covered |= it["full"]
        return out[::-1]

    vis = visible(items)
    keep = [it for it, v in zip(items, vis)
            if v.sum() >= min_visible * size * size and v.sum() >= min_visible_fraction * it["full"].sum()]
    vis = visible(keep)
    image = bg.copy()
    for it, v in zip(keep, vis):
        image[v] = it["rgb"]
    masks = np.stack(vis) if vis else np.zeros((0, size, size), bool)
    return Scene(
        image=image, masks=masks, colours=[it["colour"] for it in keep], shapes=[it["shape"] for it in keep],
        captions=[caption(it["colour"], it["shape"]) for it in keep], rgb=[it["rgb"] for it in keep],
        background=kind, seed=seed,
    )


def make_scenes(n: int, seed: int = 0, **kwargs) -> list[Scene]:
    """``n`` scenes; scene ``i`` is ``make_scene(seed * 1_000_003 + i)`` (so any subset is cheap)."""
    return [make_scene(scene_seed(seed, i), **kwargs) for i in range(n)]


def scene_seed(seed: int, index: int) -> int:
    return int(seed) * 1_000_003 + int(index)


def covering_scenes(seed: int, min_scenes: int = 40, min_per_class: int = 5, limit: int = 120) -> list[Scene]:
    """The first scenes of ``seed`` (scene ``i`` from ``scene_seed(seed, i)``), as many as needed,
    at least ``min_scenes`` and at most ``limit``, for every class of :data:`CLASSES` to have at
    least ``min_per_class`` instances."""
    from collections import Counter

    scenes: list[Scene] = []
    counts: Counter[str] = Counter()
    i = 0
    while i < limit and (len(scenes) < min_scenes or min(counts.get(c, 0) for c in CLASSES) < min_per_class):
        scene = make_scene(scene_seed(seed, i))
        scenes.append(scene)
        counts.update(scene.captions)
        i += 1
    return scenes


# --------------------------------------------------------------------------- COCO export

def export_coco(scenes: Sequence[Scene], out_dir: str | Path, prefix: str = "scene") -> Path:
    """Write scenes as PNG images + a COCO instances ``annotations.json``; return its path.

    Segmentations are COCO RLE (pycocotools, ``counts`` as str); one category per colour x shape
    class (id = index in :data:`CLASSES` + 1, ``supercategory`` = the shape, plus ``colour``).
    ``bbox`` is XYWH pixels of the visible mask; ``area`` its pixel count.
    """
    from PIL import Image
    from pycocotools import mask as mask_utils

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    categories = [
        {"id": i + 1, "name": name, "supercategory": name.split()[1], "colour": name.split()[0]}
        for i, name in enumerate(CLASSES)
    ]
    ann_id = 1
    for img_id, sc in enumerate(scenes, start=1):
        fname = f"images/{prefix}_{img_id:06d}.png"
        Image.fromarray(sc.image).save(out / fname)
        h, w = sc.image.shape[:2]
        images.append({"id": img_id, "file_name": fname, "height": h, "width": w,
                       "seed": sc.seed, "background": sc.background})
        for m, cap, box in zip(sc.masks, sc.captions, sc.boxes()):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            anns.append({
                "id": ann_id, "image_id": img_id, "category_id": CLASSES.index(cap) + 1,
                "segmentation": rle, "area": int(m.sum()), "bbox": [float(v) for v in box],
                "iscrowd": 0, "caption": cap,
            })
            ann_id += 1
    path = out / "annotations.json"
    path.write_text(json.dumps({
        "info": {"description": "regionsearch shapes world"},
        "images": images, "annotations": anns, "categories": categories,
    }))
    return path


#: the seed of the held-out scenes (``regionsearch.testing.heldout.HELD_OUT_SEED``): never used in training
DEFAULT_CORPUS_SEED = 90210


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m regionsearch.testing.shapes OUT [--count N] [--seed S] [--size PX]``: write a
    shapes-world corpus with exact ground truth (``OUT/images/*.png`` + ``OUT/annotations.json``,
    COCO instances with RLE masks) for trying ``regionsearch eval``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m regionsearch.testing.shapes",
        description="Write a synthetic shapes-world corpus (coloured shapes on textured backgrounds, exact "
                    "instance masks, 30 'colour shape' categories) as PNG images + a COCO instances file, "
                    "for trying `regionsearch eval`. Default: the held-out corpus the README's eval figures "
                    "are measured on (never used to train the tiny models).")
    parser.add_argument("out", help="output folder (created; images/ and annotations.json are written into it)")
    parser.add_argument("--count", "-n", type=int, default=None,
                        help="number of scenes (default: as many as give every category >= 5 instances, "
                             "at least 40)")
    parser.add_argument("--seed", type=int, default=DEFAULT_CORPUS_SEED,
                        help=f"corpus seed (default {DEFAULT_CORPUS_SEED}, the held-out one)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256, 64 to 4096)")
    args = parser.parse_args(argv)
    if args.count is not None and not 1 <= args.count <= 100_000:
        parser.error("--count must be 1 to 100000")
    if not 64 <= args.size <= 4096:
        parser.error("--size must be 64 to 4096")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"{out} exists and is not a folder")
    if args.count is None:
        scenes = covering_scenes(args.seed) if args.size == 256 else [
            make_scene(scene_seed(args.seed, i), size=args.size) for i in range(len(covering_scenes(args.seed)))]
    else:
        scenes = [make_scene(scene_seed(args.seed, i), size=args.size) for i in range(args.count)]
    path = export_coco(scenes, out)
    n = sum(len(s.masks) for s in scenes)
    print(f"wrote {len(scenes)} scenes ({n} instances, {len(CLASSES)} categories): {out / 'images'}, {path}")
    print(f"try: regionsearch --config tiny eval --coco {path} --images {out} --data-dir {out / 'data'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
