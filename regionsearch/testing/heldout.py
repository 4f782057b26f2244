"""Held-out shapes-world scenes for end-to-end tests and benchmarks (never used in training)."""

from __future__ import annotations

from pathlib import Path

from .shapes import Scene, covering_scenes

HELD_OUT_SEED = 90210
MIN_SCENES = 40
MIN_PER_CLASS = 5


def held_out_scenes(min_scenes: int = MIN_SCENES, min_per_class: int = MIN_PER_CLASS, limit: int = 120,
                    seed: int = HELD_OUT_SEED) -> list[Scene]:
    """The first scenes of the held-out ``seed``, as many as needed (>= ``min_scenes``) for every
    colour x shape class to have at least ``min_per_class`` instances. Seeds other than
    :data:`HELD_OUT_SEED` (e.g. ``HELD_OUT_SEED + 1``) give independent held-out sets for
    measuring the spread between seeds."""
    return covering_scenes(seed, min_scenes, min_per_class, limit)


def scene_paths(root: Path, n: int) -> list[str]:
    """Paths of the images written by ``export_coco(scenes, root)`` (default prefix)."""
    return [str(root / "images" / f"scene_{i:06d}.png") for i in range(1, n + 1)]
