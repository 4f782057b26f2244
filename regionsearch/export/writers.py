"""Streaming writers of region chunks: COCO instances JSON, Parquet, CSV (see :mod:`regionsearch.export`)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidRequestError
from ..types import ImageRecord, RegionRecord

#: the per-region columns of the Parquet and CSV exports (Parquet adds ``embedding``)
COLUMNS = ("region_id", "image_id", "image_path", "image_width", "image_height", "kind", "x", "y", "w", "h",
           "area", "rle_h", "rle_w", "rle_counts", "predicted_iou", "stability_score", "score", "label")


@dataclass(frozen=True)
class Chunk:
    """Regions to write: their records, stored embeddings (float32 ``(n, dim)``, NaN rows where
    none is stored), query scores (None: not a query export) and label indices (-1: none)."""

    records: list[RegionRecord]
    vectors: np.ndarray
    scores: list[float] | None = None
    label_idx: np.ndarray | None = None


def _score(chunk: Chunk, i: int) -> float:
    """The query's score, else SAM's predicted IoU, else 1.0 (a whole-image region)."""
    if chunk.scores is not None:
        return chunk.scores[i]
    p = chunk.records[i].predicted_iou
    return 1.0 if p is None else float(p)


def _rows(chunk: Chunk, labels: Sequence[str]) -> Iterable[dict[str, Any]]:
    for i, r in enumerate(chunk.records):
        x, y, w, h = (float(v) for v in r.bbox)
        li = -1 if chunk.label_idx is None else int(chunk.label_idx[i])
        yield {"region_id": r.region_id, "image_id": r.image_id, "image_path": r.image_path,
               "image_width": r.image_width, "image_height": r.image_height, "kind": r.kind,
               "x": x, "y": y, "w": w, "h": h, "area": int(r.area), "rle_h": int(r.rle["size"][0]),
               "rle_w": int(r.rle["size"][1]), "rle_counts": r.rle["counts"], "predicted_iou": r.predicted_iou,
               "stability_score": r.stability_score, "score": _score(chunk, i),
               "label": labels[li] if li >= 0 else None}


class CocoWriter:
    """COCO instances JSON, streamed: annotations as they come, then images and categories."""

    def __init__(self, path: Path, labels: Sequence[str]):
        self.labels = list(labels)
        self.f = open(path, "w", encoding="utf-8")
        self.f.write('{"info": {"description": "regionsearch export"}, "licenses": [], "annotations": [')
        self.first = True

    def write(self, chunk: Chunk) -> None:
        parts = []
        for i, r in enumerate(chunk.records):
            li = 0 if chunk.label_idx is None else max(0, int(chunk.label_idx[i]))
            ann = {"id": r.region_id, "image_id": r.image_id, "category_id": li + 1, "iscrowd": 0,
                   "segmentation": {"size": [int(v) for v in r.rle["size"]], "counts": r.rle["counts"]},
                   "bbox": [float(v) for v in r.bbox], "area": int(r.area), "score": _score(chunk, i),
                   "region_id": r.region_id, "kind": r.kind, "predicted_iou": r.predicted_iou,
                   "stability_score": r.stability_score}
            parts.append(json.dumps(ann))
        if parts:
            self.f.write(("" if self.first else ",") + "\n" + ",\n".join(parts))
            self.first = False

    def finish(self, images: Iterable[ImageRecord]) -> None:
        self.f.write('\n], "images": [')
        for n, im in enumerate(images):
            entry = {"id": im.id, "file_name": im.path, "width": im.width, "height": im.height}
            self.f.write(("," if n else "") + "\n" + json.dumps(entry))
        cats = [{"id": i + 1, "name": name, "supercategory": "region"}
                for i, name in enumerate(self.labels or ["region"])]
        self.f.write('\n], "categories": ' + json.dumps(cats) + "}\n")
        self.f.close()

    def abort(self) -> None:
        self.f.close()


class CsvWriter:
    """One CSV row per region (:data:`COLUMNS`), header first."""

    def __init__(self, path: Path, labels: Sequence[str]):
        self.labels = list(labels)
        self.f = open(path, "w", encoding="utf-8", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=COLUMNS)
        self.w.writeheader()

    def write(self, chunk: Chunk) -> None:
        self.w.writerows(_rows(chunk, self.labels))

    def finish(self, images: Iterable[ImageRecord]) -> None:
        self.f.close()

    def abort(self) -> None:
        self.f.close()


class ParquetWriter:
    """One Parquet row group per chunk: :data:`COLUMNS` + ``embedding`` (fixed-size list of float32)."""

    def __init__(self, path: Path, labels: Sequence[str]):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise InvalidRequestError('Parquet export needs pyarrow: pip install "regionsearch[parquet]"') from None
        self.pa, self.pq, self.path, self.labels = pa, pq, path, list(labels)
        self.writer: Any = None

    def write(self, chunk: Chunk) -> None:
        pa = self.pa
        rows = list(_rows(chunk, self.labels))
        cols = {c: [r[c] for r in rows] for c in COLUMNS}
        table = pa.table({**cols, "embedding": pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(chunk.vectors, np.float32).reshape(-1)), chunk.vectors.shape[1])})
        if self.writer is None:
            self.writer = self.pq.ParquetWriter(self.path, self._schema(chunk.vectors.shape[1]))
        self.writer.write_table(table.cast(self.writer.schema))

    def _schema(self, dim: int) -> Any:
        pa = self.pa
        types = {"region_id": pa.int64(), "image_id": pa.int64(), "image_path": pa.string(),
                 "image_width": pa.int32(), "image_height": pa.int32(), "kind": pa.string(),
                 "area": pa.int64(), "rle_h": pa.int32(), "rle_w": pa.int32(), "rle_counts": pa.string(),
                 "label": pa.string()}
        return pa.schema([(c, types.get(c, pa.float64())) for c in COLUMNS] +
                         [("embedding", pa.list_(pa.float32(), dim))])

    def finish(self, images: Iterable[ImageRecord]) -> None:
        if self.writer is None:  # nothing to export: still a readable, empty file
            self.writer = self.pq.ParquetWriter(self.path, self._schema(0))
        self.writer.close()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()


WRITERS: dict[str, Any] = {"coco": CocoWriter, "parquet": ParquetWriter, "csv": CsvWriter}
