"""Held-out shapes-world scenes for end-to-end tests and benchmarks (never used in training)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .shapes import CLASSES, Scene, make_scene, scene_seed

HELD_OUT_SEED = 90210
MIN_SCENES = 40
MIN_PER_CLASS = 5


def held_out_scenes(min_scenes: int = MIN_SCENES, min_per_class: int = MIN_PER_CLASS, limit: int = 120,
                    seed: int = HELD_OUT_SEED) -> list[Scene]:
    """The first scenes of the held-out ``seed``, as many as needed (>= ``min_scenes``) for every
    colour x shape class to have at least ``min_per_class`` instances. Seeds other than
    :data:`HELD_OUT_SEED` (e.g. ``HELD_OUT_SEED + 1``) give independent held-out sets for
    measuring the spread between seeds."""
    scenes: list[Scene] = []
    counts: Counter[str] = Counter()
    i = 0
    while i < limit and (len(scenes) < min_scenes or min(counts.get(c, 0) for c in CLASSES) < min_per_class):
        scene = make_scene(scene_seed(seed, i))
        scenes.append(scene)
        counts.update(scene.captions)
        i += 1
    return scenes


def scene_paths(root: Path, n: int) -> list[str]:
    """Paths of the images written by ``export_coco(scenes, root)`` (default prefix)."""
    return [str(root / "images" / f"scene_{i:06d}.png") for i in range(1, n + 1)]
