"""Loading of a tiny hand-written COCO instances file: polygon, uncompressed RLE, compressed RLE,
crowd, box-only datasets and validation errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from regionsearch.errors import ConfigError, NotFoundError
from regionsearch.evaluation import (
    RankedRegion,
    dataset_has_masks,
    evaluate_category,
    load_coco,
    parse_coco,
    segmentation_ceiling,
)

H, W = 8, 10  # height, width


def _mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def _uncompressed(m: np.ndarray) -> dict:
    """COCO uncompressed RLE: run lengths in column-major order, starting with zeros."""
    flat = m.flatten(order="F")
    counts, prev, run = [], 0, 0
    for v in flat:
        if v != prev:
            counts.append(run)
            prev, run = v, 0
        run += 1
    counts.append(run)
    return {"size": [H, W], "counts": counts}


def tiny_coco() -> dict:
    crowd = mask_utils.encode(np.asfortranarray(_mask(4, 8, 0, 10)))
    return {
        "info": {"description": "hand-written"},
        "images": [
            {"id": 10, "file_name": "a.png", "width": W, "height": H},
            {"id": 20, "file_name": "sub/b.png", "width": W, "height": H},
        ],
        "categories": [{"id": 1, "name": "square", "supercategory": "shape"}, {"id": 3, "name": "bar"}],
        "annotations": [
            # polygon: the closed square with corners (0,0) and (4,4) -> rasterised 4x4 pixels
            {"id": 1, "image_id": 10, "category_id": 1, "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]],
             "area": 16, "bbox": [0, 0, 4, 4], "iscrowd": 0},
            # uncompressed RLE, no area, no bbox: both derived from the mask
            {"id": 2, "image_id": 10, "category_id": 3, "segmentation": _uncompressed(_mask(0, 2, 6, 10)),
             "iscrowd": 0},
            # compressed RLE crowd region
            {"id": 3, "image_id": 20, "category_id": 1,
             "segmentation": {"size": [H, W], "counts": crowd["counts"].decode("ascii")},
             "area": 40, "bbox": [0, 4, 10, 4], "iscrowd": 1},
            # two polygons merged into one instance
            {"id": 4, "image_id": 20, "category_id": 3,
             "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2], [6, 0, 8, 0, 8, 2, 6, 2]],
             "area": 8, "bbox": [0, 0, 8, 2], "iscrowd": 0},
        ],
    }


@pytest.fixture
def coco_file(tmp_path: Path) -> Path:
    p = tmp_path / "instances.json"
    p.write_text(json.dumps(tiny_coco()))
    return p


def test_round_trip_of_hand_written_file(coco_file: Path):
    ds = load_coco(coco_file)
    assert ds.has_masks and ds.source == str(coco_file)
    assert [(c.id, c.name, c.supercategory) for c in ds.categories] == [(1, "square", "shape"), (3, "bar", None)]
    assert ds.images[20].file_name == "sub/b.png" and (ds.images[20].width, ds.images[20].height) == (W, H)
    assert ds.image_by_file_name()["a.png"].id == 10
    square, bar = ds.instances[10]
    crowd, two = ds.instances[20]

    # every mask is compressed RLE with str counts at the image size
    for g in (square, bar, crowd, two):
        assert g.rle is not None and g.rle["size"] == [H, W] and isinstance(g.rle["counts"], str)

    np.testing.assert_array_equal(mask_utils.decode(square.rle), _mask(0, 4, 0, 4))
    assert (square.bbox, square.area, square.iscrowd, square.ignored) == ((0.0, 0.0, 4.0, 4.0), 16.0, False, False)

    np.testing.assert_array_equal(mask_utils.decode(bar.rle), _mask(0, 2, 6, 10))
    assert bar.bbox == (6.0, 0.0, 4.0, 2.0) and bar.area == 8.0  # derived from the mask

    np.testing.assert_array_equal(mask_utils.decode(crowd.rle), _mask(4, 8, 0, 10))
    assert crowd.iscrowd and crowd.ignored

    expected_two = _mask(0, 2, 0, 2) | _mask(0, 2, 6, 8)
    np.testing.assert_array_equal(mask_utils.decode(two.rle), expected_two)

    assert ds.n_gt(1) == 1 and ds.n_gt(3) == 2
    assert ds.gts_by_image(3) == {10: (bar,), 20: (two,)}
    assert ds.category_by_name("bar").id == 3 and ds.category(1).name == "square"


def test_loaded_dataset_feeds_the_metrics(coco_file: Path):
    ds = load_coco(coco_file)
    gts = ds.gts_by_image()
    square = ds.instances[10][0]
    ranked = [RankedRegion(20, 0.9, rle=ds.instances[20][0].rle),  # inside the crowd -> ignored
              RankedRegion(10, 0.8, rle=square.rle)]
    res = evaluate_category(ranked, gts, 1, name="square", ks=(1,))
    assert (res.n_gt, res.n_ignored, res.precision_at[1], res.ap) == (1, 1, 1.0, 1.0)
    ceiling = segmentation_ceiling({10: [square.rle]}, gts)
    assert (ceiling.covered, ceiling.total) == (1, 3)


def test_box_only_dataset(tmp_path: Path):
    data = tiny_coco()
    for a in data["annotations"]:
        a.pop("segmentation")
    data["annotations"][1]["bbox"] = [6, 0, 4, 2]
    assert not dataset_has_masks(data)
    ds = parse_coco(data)
    assert not ds.has_masks
    assert all(g.rle is None for gts in ds.instances.values() for g in gts)
    assert ds.instances[10][1].area == 8.0  # from the box
    res = evaluate_category([RankedRegion(10, 1.0, bbox=(0, 0, 4, 4))], ds.gts_by_image(), 1, ks=(1,),
                            use_masks=False)
    assert res.ap == 1.0


def test_empty_segmentation_in_masked_dataset_uses_the_box():
    data = tiny_coco()
    data["annotations"][0]["segmentation"] = []
    ds = parse_coco(data)
    assert ds.has_masks
    np.testing.assert_array_equal(mask_utils.decode(ds.instances[10][0].rle), _mask(0, 4, 0, 4))


def test_ignore_flag_is_read():
    data = tiny_coco()
    data["annotations"][0]["ignore"] = 1
    ds = parse_coco(data)
    assert ds.instances[10][0].ignored and ds.n_gt(1) == 0


def _broken(mutate) -> dict:
    data = tiny_coco()
    mutate(data)
    return data


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("annotations"), "lacks the key"),
    (lambda d: d.__setitem__("images", {}), "'images' is not a list"),
    (lambda d: d["annotations"][0].__setitem__("image_id", 99), "image id 99"),
    (lambda d: d["annotations"][0].__setitem__("category_id", 7), "category id 7"),
    (lambda d: d["annotations"][1].__setitem__("id", 1), "appears more than once"),
    (lambda d: d["images"].append(dict(d["images"][0])), "image id 10 appears more than once"),
    (lambda d: d["images"][0].pop("width"), "'width'"),
    (lambda d: d["images"][0].pop("file_name"), "file_name"),
    (lambda d: d.__setitem__("categories", []), "no categories"),
    (lambda d: d["annotations"][0].__setitem__("segmentation", [[0, 0, 4, 4]]), "polygon"),
    (lambda d: d["annotations"][2]["segmentation"].__setitem__("size", [4, 4]), "RLE of size"),
    (lambda d: d["annotations"][0].__setitem__("bbox", [1, 2, 3]), "bbox"),
    (lambda d: d["annotations"][0].__setitem__("segmentation", "oops"), "neither polygons nor RLE"),
    (lambda d: d["annotations"][1]["segmentation"]["counts"].append(3), "do not sum"),
    (lambda d: d["annotations"][2]["segmentation"].pop("counts"), "without counts"),
])
def test_invalid_files_raise_config_error(mutate, message):
    with pytest.raises(ConfigError, match=message):
        parse_coco(_broken(mutate), source="x.json")


def test_not_coco_and_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_coco(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_coco(bad)
    with pytest.raises(ConfigError, match="not a JSON object"):
        parse_coco([1, 2, 3])
    with pytest.raises(ConfigError, match="is not a file"):
        load_coco(tmp_path)


def test_unknown_category_lookup_lists_names(coco_file: Path):
    ds = load_coco(coco_file)
    with pytest.raises(NotFoundError, match="bar, square"):
        ds.category_by_name("circle")
