"""Scale tests: a small shapes-world corpus (plus bad files) indexed with ``--config tiny``."""

from __future__ import annotations

from pathlib import Path

import pytest

N_SCENES = 6
#: the tiny preset with a coarser point grid: the same code paths at a quarter of the SAM prompts,
#: so both runners fit the time budget of this directory on 2 shared cores
SCALE_YAML = "extends: tiny\nsegment:\n  points_per_side: 8\n"


def write_corpus(folder: Path, n: int = N_SCENES, seed: int = 4242) -> dict[str, Path]:
    """``n`` shapes scenes as PNG plus two bad files: one that is not an image, one truncated."""
    from PIL import Image

    from regionsearch.testing.shapes import make_scenes

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, scene in enumerate(make_scenes(n, seed=seed)):
        p = folder / f"scene_{i:02d}.png"
        Image.fromarray(scene.image).save(p)
        out[p.name] = p
    (folder / "not_an_image.png").write_bytes(b"this is text, not a PNG\n" * 4)
    (folder / "truncated.png").write_bytes(out["scene_00.png"].read_bytes()[:300])
    return out


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scale_corpus")
    write_corpus(root / "images")
    return root / "images"


@pytest.fixture(scope="session")
def scale_config_path(tmp_path_factory) -> Path:
    """A YAML config (``extends: tiny``) usable with ``--config`` and :func:`load_config`."""
    p = tmp_path_factory.mktemp("scale_config") / "tiny_scale.yaml"
    p.write_text(SCALE_YAML)
    return p


@pytest.fixture(scope="session")
def scale_config(scale_config_path):
    from regionsearch.config import load_config

    return load_config(str(scale_config_path))
