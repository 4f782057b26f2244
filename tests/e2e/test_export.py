"""Exports end to end with the tiny models (no mocks): a small indexed shapes corpus written as
COCO, Parquet and CSV through the CLI, read back with pycocotools, pyarrow and csv, and compared
with the store."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from regionsearch.cli import main
from regionsearch.masks import decode_rle
from regionsearch.testing.shapes import make_scenes


def _cli(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--config", "tiny", *args])
    out = capsys.readouterr()
    return info.value.code or 0, out.out, out.err


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    from regionsearch.config import load_config
    from regionsearch.engine import Engine

    root = tmp_path_factory.mktemp("export_corpus")
    for i, scene in enumerate(make_scenes(5, seed=17)):
        Image.fromarray(scene.image).save(root / f"img_{i}.png")
    data = tmp_path_factory.mktemp("export_data")
    with Engine(load_config("tiny"), data) as engine:
        report = engine.index([str(root)], progress=False)
    assert report.indexed == 5 and report.failed == 0
    return root, data


def _stored(data):
    from regionsearch.datadir import DataDir

    with DataDir.open(data, readonly=True) as dd:
        regions = {r.region_id: r for im in dd.iter_images() for r in dd.regions_of_image(im.id)}
        vectors = {rid: dd.region_embedding(rid) for rid in regions}
        return regions, vectors, dd.info()["regions"]


def test_coco_export_loads_in_pycocotools_with_every_region_and_equal_masks(indexed, tmp_path, capsys):
    from pycocotools.coco import COCO

    root, data = indexed
    out = tmp_path / "regions.json"
    code, stdout, err = _cli(["export", str(out), "--format", "coco", "--data-dir", str(data)], capsys)
    assert code == 0, err
    regions, _, count = _stored(data)
    assert f"wrote {count} regions of 5 images" in stdout
    coco = COCO(str(out))
    assert len(coco.getAnnIds()) == count == len(regions)
    for r in regions.values():  # segment.drop_fragments: each stored mask is one connected piece
        if r.kind == "mask":
            assert cv2.connectedComponents(decode_rle(r.rle).astype(np.uint8), connectivity=8)[0] == 2
    assert len(coco.getImgIds()) == 5 and [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["region"]
    for ann in coco.loadAnns(coco.getAnnIds()):
        stored = regions[ann["region_id"]]
        img = coco.loadImgs(ann["image_id"])[0]
        assert img["file_name"] == stored.image_path and (img["width"], img["height"]) == (
            stored.image_width, stored.image_height)
        assert np.array_equal(coco.annToMask(ann).astype(bool), decode_rle(stored.rle))
        assert ann["bbox"] == list(stored.bbox) and ann["area"] == stored.area


def test_parquet_export_has_every_region_and_its_stored_embedding(indexed, tmp_path, capsys):
    import pyarrow.parquet as pq

    _, data = indexed
    out = tmp_path / "regions.parquet"
    code, _, err = _cli(["export", str(out), "--format", "parquet", "--data-dir", str(data)], capsys)
    assert code == 0, err
    regions, vectors, count = _stored(data)
    table = pq.read_table(out)
    assert table.num_rows == count
    emb = np.asarray(table.column("embedding").to_pylist(), np.float32)
    ids = table.column("region_id").to_pylist()
    expect = np.stack([vectors[i] for i in ids])
    np.testing.assert_allclose(emb, expect, atol=1e-3)
    assert table.column("image_path").to_pylist() == [regions[i].image_path for i in ids]
    assert table.column("rle_counts").to_pylist() == [regions[i].rle["counts"] for i in ids]


def test_csv_query_export_with_labels_and_prefix(indexed, tmp_path, capsys):
    root, data = indexed
    out = tmp_path / "hits.csv"
    code, _, err = _cli(["export", str(out), "--format", "csv", "--query", "red circle", "-k", "7",
                         "--labels", "red circle,blue square", "--labels", "green triangle",
                         "--path-prefix", str(root / "img_1"), "--data-dir", str(data)], capsys)
    assert code == 0, err
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert 0 < len(rows) <= 7
    assert all(r["image_path"].startswith(str(root / "img_1")) for r in rows)
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert {r["label"] for r in rows} <= {"red circle", "blue square", "green triangle"}
    code, stdout, err = _cli(["search", "red circle", "-k", "7", "--json", "--path-prefix", str(root / "img_1"),
                              "--data-dir", str(data)], capsys)
    assert [int(r["region_id"]) for r in rows] == [h["region_id"] for h in json.loads(stdout)["hits"]]


def test_export_refuses_bad_input_in_one_line(indexed, tmp_path, capsys):
    _, data = indexed
    code, _, err = _cli(["export", str(tmp_path / "x.txt"), "--format", "xml", "--data-dir", str(data)], capsys)
    assert code == 2 and err.startswith("error: unknown --format 'xml'") and "coco" in err
    code, _, err = _cli(["export", str(tmp_path / "no" / "x.json"), "--data-dir", str(data)], capsys)
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.partial"))
