"""Relational ranking on hand-made regions (a narrow unit test: a small in-memory stand-in for
the data dir's read accessors, real geometry): the best satisfying object is chosen, a region
is never its own object, and "X in Y" falls back to the whole image when Y matches it best."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from regionsearch.masks import encode_rle
from regionsearch.scene.query import parse_relational
from regionsearch.scene.relational import _relation_hits


@dataclass
class Row:
    region_id: int
    image_id: int
    kind: str
    rle: dict
    bbox: tuple
    image_width: int = 100
    image_height: int = 100


def box_row(rid: int, x0: int, y0: int, x1: int, y1: int, kind: str = "mask") -> Row:
    m = np.zeros((100, 100), bool)
    m[y0:y1, x0:x1] = True
    return Row(rid, 1, kind, encode_rle(m), (x0, y0, x1 - x0, y1 - y0))


class Store:
    """Stands in for a DataDir (``regions_of_image``, ``store.embeddings``, ``manifest.dim``)."""

    def __init__(self, rows: list[Row], vecs: dict[int, np.ndarray]):
        self.rows, self.vecs = rows, vecs
        self.store, self.manifest = self, type("M", (), {"dim": 2})()

    def regions_of_image(self, image_id: int) -> list[Row]:
        return [r for r in self.rows if r.image_id == image_id]

    def embeddings(self, ids, dim):
        return np.stack([self.vecs[i] for i in ids]).astype(np.float32).reshape(-1, dim)


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, np.float32)
    return v / np.linalg.norm(v)


def test_best_satisfying_object_and_never_itself():
    subj = box_row(1, 0, 40, 10, 50)       # far left
    weak = box_row(2, 50, 40, 60, 50)      # right of subj, weak object match
    strong = box_row(3, 80, 40, 90, 50)    # right of subj, strong object match
    left = box_row(4, 0, 0, 5, 5)          # strongest object match but not to the right
    whole = box_row(5, 0, 0, 100, 100, "whole")
    qo = unit(0, 1)
    vecs = {1: unit(1, 0.2), 2: unit(1, 0.5), 3: unit(0.2, 1), 4: unit(0, 1), 5: unit(1, 0)}
    store = Store([subj, weak, strong, left, whole], vecs)
    q = parse_relational("a thing left of a widget")
    hits = _relation_hits(store, q, [(subj, 0.9), (left, 0.3)], qo)
    by_id = {row.region_id: (score, rel) for score, row, rel in hits}
    score, rel = by_id[1]
    assert rel["object"]["region_id"] == 3 and not rel.get("scene")
    assert abs(score - (0.9 + float(vecs[3] @ qo)) / 2) < 1e-6
    assert by_id[4][1]["object"]["region_id"] in (2, 3)  # region 4 is left of both; never itself


def test_x_in_y_uses_the_scene_when_y_matches_the_whole_image_best():
    car = box_row(1, 10, 10, 30, 30)
    other = box_row(2, 50, 50, 60, 60)
    whole = box_row(3, 0, 0, 100, 100, "whole")
    qo = unit(0, 1)  # "the parking lot"
    store = Store([car, other, whole], {1: unit(1, 0), 2: unit(1, 0.3), 3: unit(0.1, 1)})
    q = parse_relational("the red car in the parking lot")
    (score, row, rel), = _relation_hits(store, q, [(car, 0.8)], qo)
    assert row.region_id == 1 and rel["scene"] is True and rel["object"]["region_id"] == 3
    assert abs(score - (0.8 + rel["object"]["score"]) / 2) < 1e-6
    # when a region matches Y better than the whole image, it must really contain X
    store.vecs[2] = unit(0, 1)
    assert _relation_hits(store, q, [(car, 0.8)], qo) == []
