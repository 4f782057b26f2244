"""The shapes world: determinism, exact masks, COCO export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from regionsearch.testing.shapes import (
    CLASSES, COLOURS, PALETTE, SHAPES, COLOUR_JITTER, Scene, export_coco, make_scene, make_scenes,
)


def test_classes():
    assert len(SHAPES) == 5 and len(COLOURS) == 6
    assert len(CLASSES) == 30 and len(set(CLASSES)) == 30
    assert "red circle" in CLASSES


def test_deterministic_by_seed():
    a, b = make_scene(7), make_scene(7)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.masks, b.masks)
    assert a.captions == b.captions and a.rgb == b.rgb
    c = make_scene(8)
    assert not np.array_equal(a.image, c.image)
    s1, s2 = make_scenes(3, seed=5), make_scenes(3, seed=5)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(s1, s2))
    rng = np.random.default_rng(3)
    assert np.array_equal(make_scene(rng).image, make_scene(np.random.default_rng(3)).image)


@pytest.mark.parametrize("seed", range(12))
def test_masks_exact(seed):
    sc = make_scene(seed, size=128 if seed % 2 else 256)
    n, h, w = sc.masks.shape
    assert sc.image.shape == (h, w, 3) and sc.image.dtype == np.uint8
    assert sc.masks.dtype == bool and 1 <= n <= 8
    assert len(sc.colours) == len(sc.shapes) == len(sc.captions) == len(sc.rgb) == n
    # visible masks are disjoint
    assert sc.masks.sum(0).max() <= 1
    for m, rgb, colour, shape, cap in zip(sc.masks, sc.rgb, sc.colours, sc.shapes, sc.captions):
        assert cap == f"{colour} {shape}" and cap in CLASSES
        assert m.sum() >= 0.01 * h * w  # small leftovers are removed from the scene
        assert (sc.image[m] == np.array(rgb, np.uint8)).all()
        assert np.abs(np.array(rgb) - np.array(PALETTE[colour])).max() <= COLOUR_JITTER
    # the background never has a target colour exactly: no pixel outside all masks equals an
    # instance colour (backgrounds are muted)
    outside = ~sc.masks.any(0)
    for rgb in sc.rgb:
        assert not (sc.image[outside] == np.array(rgb, np.uint8)).all(1).any()


def test_sizes_and_counts_vary():
    scenes = make_scenes(40, seed=1)
    counts = [len(s.masks) for s in scenes]
    assert min(counts) >= 1 and max(counts) >= 5
    areas = np.concatenate([s.masks.sum((1, 2)) for s in scenes])
    assert areas.max() > 4 * areas.min()
    assert len({s.background for s in scenes}) >= 3


def test_coco_roundtrip(tmp_path):
    from PIL import Image
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    scenes = make_scenes(4, seed=2)
    path = export_coco(scenes, tmp_path)
    coco = COCO(str(path))
    assert len(coco.getCatIds()) == 30
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == set(CLASSES)
    for img_id, sc in zip(sorted(coco.getImgIds()), scenes):
        info = coco.loadImgs(img_id)[0]
        img = np.asarray(Image.open(tmp_path / info["file_name"]).convert("RGB"))
        assert np.array_equal(img, sc.image)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        assert len(anns) == len(sc.masks)
        for ann, m, cap in zip(anns, sc.masks, sc.captions):
            assert coco.loadCats(ann["category_id"])[0]["name"] == cap
            assert np.array_equal(coco.annToMask(ann).astype(bool), m)
            assert ann["area"] == int(m.sum())
            assert np.allclose(mask_utils.toBbox(ann["segmentation"]), ann["bbox"])
    json.loads(path.read_text())  # plain JSON
    assert isinstance(scenes[0], Scene) and scenes[0].boxes().shape == (len(scenes[0].masks), 4)


def test_corpus_command_writes_images_and_ground_truth(tmp_path):
    """``python -m regionsearch.testing.shapes OUT`` (the README's command for trying eval)."""
    import subprocess
    import sys

    from pycocotools.coco import COCO

    from regionsearch.masks import decode_rle
    from regionsearch.testing.shapes import scene_seed

    out = tmp_path / "shapes"
    proc = subprocess.run([sys.executable, "-m", "regionsearch.testing.shapes", str(out), "--count", "3",
                           "--seed", "5"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert str(out / "annotations.json") in proc.stdout and "regionsearch --config tiny eval" in proc.stdout
    coco = COCO(str(out / "annotations.json"))
    scenes = [make_scene(scene_seed(5, i)) for i in range(3)]
    assert len(coco.getImgIds()) == 3 and len(coco.getCatIds()) == 30
    assert len(coco.getAnnIds()) == sum(len(s.masks) for s in scenes)
    for img_id, scene in zip(sorted(coco.getImgIds()), scenes):
        assert (out / coco.imgs[img_id]["file_name"]).is_file()
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        assert all(np.array_equal(decode_rle(a["segmentation"]), m) for a, m in zip(anns, scene.masks))
        assert [coco.cats[a["category_id"]]["name"] for a in anns] == scene.captions
    bad = subprocess.run([sys.executable, "-m", "regionsearch.testing.shapes", str(tmp_path / "x"), "--count", "0"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--count must be 1 to 100000" in bad.stderr


def test_corpus_command_default_is_the_held_out_corpus(tmp_path, capsys):
    from regionsearch.testing.heldout import held_out_scenes
    from regionsearch.testing.shapes import main

    assert main([str(tmp_path / "c")]) == 0
    doc = json.loads((tmp_path / "c" / "annotations.json").read_text())
    scenes = held_out_scenes()
    assert len(doc["images"]) == len(scenes) >= 40
    assert [a["caption"] for a in doc["annotations"]] == [c for s in scenes for c in s.captions]
