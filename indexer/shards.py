"""Shards of the Ray indexing job: Parquet files in ``<data dir>/shards/``, one row per image.

Columns: ``path`` (as stored in SQL, see :func:`regionsearch.imageio.path_to_db`), ``sha256``,
``status`` (``indexed`` | ``failed``), ``error``, ``width``/``height`` (pixels), ``pipeline_key``
and ``regions``: a list of structs (``kind``, box ``x y w h`` in pixels, ``area`` in pixels, the
COCO RLE as ``rle_counts``/``rle_h``/``rle_w``, ``predicted_iou``, ``stability_score`` and
``embedding``: the L2-normalised CLIP vector as little-endian float16 bytes, the precision the
SQL store keeps). The schema metadata carries the pipeline key and the vector dimension.

A shard is written atomically (temp file + rename), merged into the data dir (SQL in batches
through :meth:`DataDir.commit`, which also adds the vectors) and then deleted. A shard left on
disk by an interrupted run is *finished work*: the next run takes the images it holds from it
(same path, content hash and pipeline key) instead of running the models again.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from regionsearch.errors import MissingDependencyError, StoreError
from regionsearch.masks import counts_str, rle_json
from regionsearch.store.files import atomic_write
from regionsearch.store.metadata import decode_vectors, encode_vectors
from regionsearch.types import ImageResult, Region

log = logging.getLogger(__name__)

SHARD_DIR = "shards"
SHARD_FORMAT = "regionsearch-shard-1"


def _pa() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("pyarrow", "Parquet shards of the Ray runner", "ray") from exc
    return pa


def shard_schema(pipeline_key: str = "", dim: int = 0) -> Any:
    pa = _pa()
    region = pa.struct([
        ("kind", pa.string()), ("x", pa.float64()), ("y", pa.float64()), ("w", pa.float64()),
        ("h", pa.float64()), ("area", pa.int64()), ("rle_counts", pa.string()), ("rle_h", pa.int32()),
        ("rle_w", pa.int32()), ("predicted_iou", pa.float64()), ("stability_score", pa.float64()),
        ("embedding", pa.binary()),
    ])
    return pa.schema([
        ("path", pa.string()), ("sha256", pa.string()), ("status", pa.string()), ("error", pa.string()),
        ("width", pa.int32()), ("height", pa.int32()), ("pipeline_key", pa.string()),
        ("regions", pa.list_(region)),
    ], metadata={"format": SHARD_FORMAT, "pipeline_key": pipeline_key, "dim": str(dim)})


def regions_to_json(regions: Sequence[Region]) -> str:
    """Regions as a JSON list (exact: floats round-trip through ``repr``)."""
    out = []
    for r in regions:
        out.append({"bbox": [float(v) for v in r.bbox], "area": int(r.area), "rle": rle_json(r.rle),
                    "predicted_iou": None if r.predicted_iou is None else float(r.predicted_iou),
                    "stability_score": None if r.stability_score is None else float(r.stability_score),
                    "kind": r.kind})
    return json.dumps(out)


def regions_from_json(text: str) -> list[Region]:
    return [Region(bbox=tuple(d["bbox"]), area=d["area"], rle=d["rle"], predicted_iou=d["predicted_iou"],
                   stability_score=d["stability_score"], kind=d["kind"]) for d in json.loads(text)]


def image_row(path: str, sha256: str | None, pipeline_key: str, *, width: int | None = None,
              height: int | None = None, regions: Sequence[Region] = (), embeddings: np.ndarray | None = None,
              error: str | None = None) -> dict[str, Any]:
    """One shard row: an indexed image (``regions`` + float32 ``(n, dim)`` ``embeddings``) or,
    with ``error``, a failed one."""
    regs = []
    if error is None and len(regions):
        emb = np.asarray(embeddings, np.float32).reshape(len(regions), -1)
        for r, blob in zip(regions, encode_vectors(emb)):
            x, y, w, h = (float(v) for v in r.bbox)
            regs.append({"kind": r.kind, "x": x, "y": y, "w": w, "h": h, "area": int(r.area),
                         "rle_counts": counts_str(r.rle["counts"]),
                         "rle_h": int(r.rle["size"][0]), "rle_w": int(r.rle["size"][1]),
                         "predicted_iou": None if r.predicted_iou is None else float(r.predicted_iou),
                         "stability_score": None if r.stability_score is None else float(r.stability_score),
                         "embedding": blob})
    return {"path": path, "sha256": sha256, "status": "failed" if error is not None else "indexed", "error": error,
            "width": width, "height": height, "pipeline_key": pipeline_key, "regions": regs}


def write_shard(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]], pipeline_key: str, dim: int) -> Path:
    """Write ``rows`` (see :func:`image_row`) as one Parquet file, atomically."""
    pa = _pa()
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(list(rows), schema=shard_schema(pipeline_key, dim))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: pq.write_table(table, str(tmp)))
    return path


def shard_info(path: str | os.PathLike[str]) -> dict[str, str]:
    """The schema metadata of a shard (``format``, ``pipeline_key``, ``dim``)."""
    _pa()
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(str(path)).metadata or {}
    except (OSError, ValueError) as exc:
        raise StoreError(f"the shard {path} cannot be read ({exc}); delete it") from exc
    return {k.decode(): v.decode() for k, v in meta.items()}


def read_shard(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a shard, as written."""
    _pa()
    import pyarrow.parquet as pq

    try:
        return pq.read_table(str(path)).to_pylist()
    except (OSError, ValueError) as exc:
        raise StoreError(f"the shard {path} cannot be read ({exc}); delete it") from exc


def row_to_result(row: dict[str, Any], dim: int) -> Any:
    """An ``indexed`` shard row -> :class:`regionsearch.types.ImageResult` (float32 embeddings)."""
    regs = row["regions"] or []
    regions = [Region(bbox=(r["x"], r["y"], r["w"], r["h"]), area=int(r["area"]),
                      rle={"size": [int(r["rle_h"]), int(r["rle_w"])], "counts": r["rle_counts"]},
                      predicted_iou=r["predicted_iou"], stability_score=r["stability_score"], kind=r["kind"])
               for r in regs]
    if regs:
        if any(len(r["embedding"]) != 2 * dim for r in regs):
            raise StoreError(f"a shard row of {row['path']} has embeddings of another dimension; the data dir "
                             f"needs {dim}")
        emb = decode_vectors([r["embedding"] for r in regs], dim, normalise=False)
    else:
        emb = np.zeros((0, dim), np.float32)
    return ImageResult(path=row["path"], sha256=row["sha256"], width=int(row["width"]), height=int(row["height"]),
                       pipeline_key=row["pipeline_key"], regions=regions, embeddings=emb)


def shard_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / SHARD_DIR


def pending_shards(data_dir: str | os.PathLike[str]) -> list[Path]:
    """Shards left by earlier runs (finished, not merged), oldest name first."""
    d = shard_dir(data_dir)
    return sorted(p for p in d.glob("shard-*.parquet") if p.is_file()) if d.is_dir() else []


def load_pending(data_dir: str | os.PathLike[str], pipeline_key: str,
                 dim: int) -> tuple[dict[tuple[str, str | None], dict[str, Any]], list[Path]]:
    """Rows of the pending shards made with ``pipeline_key``, by ``(path, sha256)``; and every
    pending shard file (those of another pipeline key are stale and listed for deletion too)."""
    rows: dict[tuple[str, str | None], dict[str, Any]] = {}
    files = pending_shards(data_dir)
    for p in files:
        try:
            info = shard_info(p)
            if info.get("format") != SHARD_FORMAT or info.get("pipeline_key") != pipeline_key \
                    or int(info.get("dim", 0)) != dim:
                log.warning("shard %s was made by another pipeline; it will be deleted", p)
                continue
            for r in read_shard(p):
                rows[(r["path"], r["sha256"])] = r
        except StoreError as exc:
            log.warning("%s", exc)
    return rows, files


def batches(rows: Iterable[Any], n: int) -> Iterator[list[Any]]:
    buf: list[Any] = []
    for r in rows:
        buf.append(r)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf
