"""Session fixtures: a held-out shapes-world corpus (exported as COCO) indexed once with the
tiny trained models, shared by the search, CLI and evaluation tests."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from regionsearch.testing.shapes import CLASSES, make_scene, scene_seed

HELD_OUT_SEED = 90210  # never used by the training script
MIN_SCENES = 40
MIN_PER_CLASS = 5


def held_out_scenes(min_scenes: int = MIN_SCENES, min_per_class: int = MIN_PER_CLASS, limit: int = 120):
    """The first scenes of the held-out seed, as many as needed (>= ``min_scenes``) for every
    colour x shape class to have at least ``min_per_class`` instances."""
    scenes, counts = [], Counter()
    i = 0
    while i < limit and (len(scenes) < min_scenes or min(counts.get(c, 0) for c in CLASSES) < min_per_class):
        scene = make_scene(scene_seed(HELD_OUT_SEED, i))
        scenes.append(scene)
        counts.update(scene.captions)
        i += 1
    return scenes


@pytest.fixture(scope="session")
def shapes_coco(tmp_path_factory):
    from regionsearch.testing.shapes import export_coco

    scenes = held_out_scenes()
    root = tmp_path_factory.mktemp("shapes_coco")
    ann = export_coco(scenes, root)
    return scenes, ann, root


@pytest.fixture(scope="session")
def shapes_engine(shapes_coco, tmp_path_factory):
    """An Engine over the held-out corpus indexed with ``--config tiny``."""
    from regionsearch.config import load_config
    from regionsearch.engine import Engine

    scenes, ann, root = shapes_coco
    engine = Engine(load_config("tiny"), tmp_path_factory.mktemp("shapes_data"))
    report = engine.index([str(root / "images")], progress=False)
    assert report.failed == 0 and report.indexed == len(scenes)
    yield engine
    engine.close()


def scene_paths(root: Path, n: int) -> list[str]:
    return [str(root / "images" / f"scene_{i:06d}.png") for i in range(1, n + 1)]
