"""Reports: plain and rich tables, the JSON file, PNG plots and the missing-matplotlib hint."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from regionsearch.errors import MissingDependencyError
from regionsearch.evaluation import (
    GtInstance,
    RankedRegion,
    evaluate_category,
    format_table,
    plot_category_bars,
    plot_pr_curves,
    print_table,
    segmentation_ceiling,
    summarize,
    write_json,
    write_plots,
)
from regionsearch.testing.ci import require


def _rle(x: int, y: int, w: int, h: int) -> dict:
    m = np.zeros((16, 16), dtype=np.uint8)
    m[y:y + h, x:x + w] = 1
    r = mask_utils.encode(np.asfortranarray(m))
    return {"size": list(r["size"]), "counts": r["counts"].decode("ascii")}


@pytest.fixture
def summary():
    gts = {1: [GtInstance(1, 1, 1, (0, 0, 4, 4), 16, rle=_rle(0, 0, 4, 4)),
               GtInstance(2, 1, 2, (8, 8, 4, 4), 16, rle=_rle(8, 8, 4, 4))],
           2: [GtInstance(3, 2, 1, (4, 4, 4, 4), 16, rle=_rle(4, 4, 4, 4))]}
    ks = (1, 10)
    res = [
        evaluate_category([RankedRegion(1, 0.9, _rle(0, 0, 4, 4)), RankedRegion(2, 0.5, _rle(0, 0, 2, 2)),
                           RankedRegion(2, 0.4, _rle(4, 4, 4, 4))], gts, 1, name="square", ks=ks),
        evaluate_category([RankedRegion(1, 0.3, _rle(0, 0, 4, 4))], gts, 2, name="circle", ks=ks),
        evaluate_category([], gts, 3, name="ghost", ks=ks),
    ]
    ceiling = segmentation_ceiling({1: [_rle(0, 0, 4, 4)]}, gts)
    return summarize(res, ceiling=ceiling)


def test_plain_table(summary):
    text = format_table(summary)
    lines = text.splitlines()
    assert lines[0].split() == ["category", "n_gt", "returned", "P@1", "P@10", "R@1", "R@10", "AP", "ceiling"]
    square = next(line for line in lines if line.startswith("square"))
    # hits at ranks 1 and 3 of 2 instances: P@1 1, P@10 .2, R@1 .5, R@10 1, AP (51 + 50 * 2/3) / 101
    assert square.split()[1:] == ["2", "3", "1.000", "0.200", "0.500", "1.000", "0.835", "0.500"]
    ghost = next(line for line in lines if line.startswith("ghost"))
    assert ghost.split()[5:] == ["-", "-", "-", "-"]
    mean = next(line for line in lines if line.startswith("mean"))
    assert mean.split()[:3] == ["mean", "(2)", "3"]
    assert "AP = coco-101-point-interpolated" in text


def test_print_table_plain_and_rich(summary):
    buf = io.StringIO()
    print_table(summary, file=buf, use_rich=False)
    assert buf.getvalue() == format_table(summary) + "\n"
    require("rich")
    buf = io.StringIO()
    print_table(summary, file=buf)
    out = buf.getvalue()
    assert "square" in out and "0.835" in out and "mean (2)" in out


def test_write_json(summary, tmp_path: Path):
    p = write_json(summary, tmp_path / "out" / "eval.json", extra={"templates": ["a photo of a {}."]})
    doc = json.loads(p.read_text())
    assert doc["templates"] == ["a photo of a {}."]
    assert doc["ks"] == [1, 10] and doc["n_categories_evaluated"] == 2
    assert doc["mean"]["precision_at"]["1"] == 0.5  # square 1, circle 0 (wrong image), ghost excluded
    assert doc["ceiling"]["covered"] == 1 and doc["ceiling"]["total"] == 3
    assert [c["name"] for c in doc["per_category"]] == ["square", "circle", "ghost"]
    assert doc["per_category"][2]["ap"] is None
    assert list(tmp_path.joinpath("out").iterdir()) == [p]  # no temporary file left behind


def test_png_plots(summary, tmp_path: Path):
    require("matplotlib", "pip install -e '.[eval]'")
    paths = write_plots(summary, tmp_path)
    assert [p.name for p in paths] == ["pr_curves.png", "per_category.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_category_bars(summary, tmp_path / "r1.png", k=1).exists()


def test_missing_matplotlib_gives_install_hint(summary, tmp_path: Path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib...` fail
    with pytest.raises(MissingDependencyError, match=r"regionsearch\[eval\]"):
        plot_pr_curves(summary, tmp_path / "pr.png")
