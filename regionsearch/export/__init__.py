"""Take regions away: the whole store, or a query's hits, as COCO, Parquet or CSV (streaming).

:func:`export_regions` reads the store ``chunk`` regions at a time (keyset paging, see
:func:`regionsearch.store.metadata.iter_region_chunks`) and hands each chunk to a writer, so
memory stays at one chunk whatever the store's size (``benchmarks/export_memory.py`` measures
RSS at 1M regions). Formats (``FORMATS``):

- ``coco``: one instances JSON file (``annotations`` streamed, then ``images`` with
  ``file_name`` = the stored path, ``width``/``height``, then ``categories``). Each annotation:
  ``segmentation`` COCO RLE ``{"size": [h, w], "counts": str}``, ``bbox`` XYWH pixels, ``area``
  pixels, ``score`` (the query's cosine similarity, else SAM's predicted IoU, 1.0 for a
  whole-image region), ``iscrowd`` 0 and regionsearch's ``region_id``/``kind``/
  ``predicted_iou``/``stability_score``. Categories: the zero-shot label (closest label text
  embedding) over ``labels``, or one ``region`` category.
- ``parquet``: one row per region (:data:`COLUMNS`) plus ``embedding``, the stored CLIP vector
  (float32, L2-normalised, float16 precision). Needs pyarrow (``pip install "regionsearch[parquet]"``).
- ``csv``: the same columns without the embedding; ``bbox`` as ``x``/``y``/``w``/``h``, the mask
  as ``rle_h``/``rle_w``/``rle_counts``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidRequestError
from ..store.metadata import iter_region_chunks
from ..types import RegionRecord
from .writers import WRITERS, Chunk

FORMATS = tuple(WRITERS)


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_regions` wrote: ``regions`` annotations/rows of ``images`` images."""

    path: str
    format: str
    regions: int
    images: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "regions": self.regions, "images": self.images}


def export_regions(datadir: Any, out: str | os.PathLike[str], fmt: str, *, hits: Sequence[Any] | None = None,
                   path_prefix: str | None = None, labels: Sequence[str] = (),
                   label_vectors: np.ndarray | None = None, chunk: int = 5_000) -> ExportReport:
    """Write the regions of ``datadir`` (a :class:`~regionsearch.datadir.DataDir`: ``store``,
    ``manifest.dim``, ``iter_images``) to ``out`` in format ``fmt``.

    ``hits``: search hits (:class:`~regionsearch.types.SearchHit`) to export instead of the whole
    store, in rank order with their scores. ``path_prefix``: only images whose stored path starts
    with it. ``labels`` with ``label_vectors`` (float32 ``(len(labels), dim)``, L2-normalised text
    embeddings): each region's category is its closest label.
    """
    if fmt not in WRITERS:
        raise InvalidRequestError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    labels = [str(v) for v in labels]
    if labels and (label_vectors is None or len(label_vectors) != len(labels)):
        raise InvalidRequestError("labels need one text embedding each (label_vectors)")
    path = Path(out)
    if path.is_dir():
        raise InvalidRequestError(f"{path} is a directory; give a file name, e.g. {path / ('regions.' + fmt)}")
    if not path.parent.is_dir():
        raise InvalidRequestError(f"the folder {path.parent} does not exist")
    dim = int(datadir.manifest.dim)
    chunks = _hit_chunks(datadir, hits, dim, chunk) if hits is not None else (
        Chunk(records, vectors, None) for records, vectors in
        iter_region_chunks(datadir.store, dim, path_prefix=path_prefix, chunk=chunk))
    lab = np.asarray(label_vectors, np.float32) if labels else None
    tmp = path.with_name(f".{path.name}.partial")
    writer = WRITERS[fmt](tmp, labels)
    n, image_ids = 0, set()
    try:
        for c in chunks:
            if lab is not None:
                c = Chunk(c.records, c.vectors, c.scores, _closest(c.vectors, lab))
            writer.write(c)
            n += len(c.records)
            image_ids.update(r.image_id for r in c.records)
        writer.finish(im for im in datadir.iter_images(path_prefix) if im.id in image_ids)
    except BaseException:
        writer.abort()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return ExportReport(str(path), fmt, n, len(image_ids))


def _closest(vectors: np.ndarray, label_vectors: np.ndarray) -> np.ndarray:
    """Index of each row's closest label (by inner product); -1 for a row without a vector."""
    best = np.argmax(np.nan_to_num(vectors) @ label_vectors.T, axis=1)
    return np.where(np.isnan(vectors).any(axis=1), -1, best)


def _hit_chunks(datadir: Any, hits: Sequence[Any], dim: int, chunk: int) -> Iterator[Chunk]:
    for start in range(0, len(hits), chunk):
        part = list(hits[start:start + chunk])
        vectors = np.full((len(part), dim), np.nan, np.float32)
        pos = {h.region_id: i for i, h in enumerate(part)}
        for ids, vecs in datadir.store.iter_embeddings(dim, np.asarray(list(pos), np.int64)):
            vectors[[pos[int(i)] for i in ids]] = vecs
        records = [RegionRecord(**{f: getattr(h, f) for f in RegionRecord.__dataclass_fields__}) for h in part]
        yield Chunk(records, vectors, [float(h.score) for h in part])


__all__ = ["FORMATS", "ExportReport", "export_regions"]
