"""Scale tests: a small shapes-world corpus (plus bad files) indexed with ``--config tiny``."""

from __future__ import annotations

from pathlib import Path

import pytest

N_SCENES = 6


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
