"""Session fixtures: a held-out shapes-world corpus (exported as COCO) indexed once with the
tiny trained models, shared by the search, CLI and evaluation tests."""

from __future__ import annotations

import pytest

from regionsearch.testing.heldout import held_out_scenes


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

