"""The metadata store: images, regions and their stored embeddings in SQL (SQLite or PostgreSQL).

SQLite (the default) runs in WAL mode with foreign keys on and a busy timeout, so an API process
can read while an indexing process writes. PostgreSQL is used by URL
(``postgresql+psycopg://user:pass@host/db``); bulk region inserts there go through ``COPY``.
Opening a store migrates it to the newest schema (Alembic, packaged in
:mod:`regionsearch.migrations`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import and_, create_engine, delete, event, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from ..errors import NotFoundError, StoreError
from ..masks import counts_str
from ..types import ImageRecord, ImageResult, RegionRecord
from .facts import _CHUNK, ImageFactsMixin, _any_path_filter, _chunks, _image_record, _prefix_filter
from .schema import embeddings, image_paths, images, regions, store_meta
from .videos import VideoStoreMixin, region_row

log = logging.getLogger(__name__)

#: SQLite allows 32766 bound variables per statement; stay well below it.
_BUSY_TIMEOUT_S = 30.0


#: the region record type (kept under its old name for callers of the store)
RegionRow = RegionRecord


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for logs and ``info``)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def encode_vectors(vectors: np.ndarray) -> list[bytes]:
    """float32 ``(n, d)`` -> list of little-endian float16 bytes."""
    v16 = np.ascontiguousarray(vectors, dtype="<f2")
    return [row.tobytes() for row in v16]


def decode_vectors(blobs: Sequence[bytes], dim: int, *, normalise: bool = True) -> np.ndarray:
    """float16 bytes -> float32 ``(n, d)``, re-normalised to unit length (float16 rounding) unless
    ``normalise`` is False (the exact float16 values, e.g. to store them again unchanged)."""
    if not blobs:
        return np.zeros((0, dim), np.float32)
    out = np.frombuffer(b"".join(blobs), dtype="<f2").astype(np.float32).reshape(len(blobs), -1)
    if out.shape[1] != dim:
        raise StoreError(f"stored embeddings have dimension {out.shape[1]}, expected {dim}; the store "
                         "belongs to another embedder")
    if not normalise:
        return out
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def _region_row(r: Any) -> RegionRow:
    return region_row(r)


def _region_values(image_id: int, region: Any) -> dict[str, Any]:
    counts = counts_str(region.rle["counts"])
    if not isinstance(counts, str):
        raise StoreError("region masks must be COCO RLE with string counts (see regionsearch.masks)")
    h, w = (int(v) for v in region.rle["size"])
    x, y, bw, bh = (float(v) for v in region.bbox)
    return dict(image_id=image_id, kind=region.kind, x=x, y=y, w=bw, h=bh, area=int(region.area),
                rle_counts=counts, rle_h=h, rle_w=w,
                predicted_iou=None if region.predicted_iou is None else float(region.predicted_iou),
                stability_score=None if region.stability_score is None else float(region.stability_score))


@dataclass(frozen=True)
class BatchWrite:
    """What one :meth:`MetadataStore.write_batch` transaction did (ids for the vector index)."""

    image_ids: list[int]           # ids of the indexed images, in input order
    failure_ids: list[int]         # ids of the failure rows, in input order
    region_ids: np.ndarray         # int64, new regions, concatenated in input order
    removed_region_ids: np.ndarray  # int64, regions of replaced images


class MetadataStore(ImageFactsMixin, VideoStoreMixin):
    """SQL side of a data directory. Thread-safe (one engine, short transactions)."""

    def __init__(self, url: str, *, readonly: bool = False, migrate: bool = True):
        self.url = url
        self.readonly = readonly
        #: the schema revision a reader found (None: migrated to the newest by this writer)
        self.revision: str | None = None
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StoreError(f"invalid database URL {url!r}: use sqlite:///path or "
                             "postgresql+psycopg://user:password@host/db") from exc
        self.backend = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.backend == "sqlite":
            kwargs["connect_args"] = {"timeout": _BUSY_TIMEOUT_S}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except (ArgumentError, ModuleNotFoundError) as exc:
            raise StoreError(f"cannot use database URL {mask_url(url)}: {exc}") from exc
        if self.backend == "sqlite":
            event.listen(self.engine, "connect", _sqlite_on_connect)
        try:
            if migrate and not readonly:
                from ..migrations import upgrade_to_head

                upgrade_to_head(self.engine)
            else:
                self._check_schema()
        except OperationalError as exc:
            self.engine.dispose()
            raise StoreError(f"cannot open the metadata database {mask_url(url)}: {exc.orig}") from exc

    # ------------------------------------------------------------------ lifecycle
    def _check_schema(self) -> None:
        from ..migrations import current_revision, head_revision

        from ..migrations import known_revisions

        with self.engine.connect() as conn:
            rev = current_revision(conn)
        self.revision = rev
        if rev == head_revision():
            return
        if rev not in known_revisions():
            raise StoreError(f"the metadata database {mask_url(self.url)} has schema revision {rev}, which this "
                             f"regionsearch does not know (it reads up to {head_revision()}); upgrade regionsearch")
        # an older schema is read as it is (reading never writes); the next writer migrates it

    def close(self) -> None:
        self.engine.dispose()

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    def store_id(self, create: bool = True) -> str | None:
        """A random id given to this database on first use (tells a data dir its own database)."""
        with self.engine.connect() as conn:
            value = conn.execute(select(store_meta.c.value).where(store_meta.c.key == "store_id")).scalar()
        if value is None and create and not self.readonly:
            value = uuid.uuid4().hex
            with self.engine.begin() as conn:
                conn.execute(insert(store_meta).values(key="store_id", value=value))
        return value

    # ------------------------------------------------------------------ images
    def indexed_by_content(self, sha256: str, pipeline_key: str) -> list[ImageRecord]:
        q = select(images).where(images.c.sha256 == sha256, images.c.pipeline_key == pipeline_key,
                                 images.c.status == "indexed").order_by(images.c.id)
        with self.engine.connect() as conn:
            return [_image_record(r) for r in conn.execute(q)]

    def update_path(self, image_id: int, new_path: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(images).where(images.c.id == image_id).values(path=new_path))

    def get_image(self, image_id: int) -> ImageRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(images).where(images.c.id == int(image_id))).first()
        if row is None:
            raise NotFoundError(f"no image with id {image_id} in this data dir")
        return _image_record(row)

    def iter_images(self, path_prefix: str | None = None, status: str | None = None) -> Iterator[ImageRecord]:
        q = select(images).order_by(images.c.id)
        if path_prefix:
            q = q.where(*_prefix_filter(path_prefix))
        if status:
            q = q.where(images.c.status == status)
        with self.engine.connect() as conn:
            for row in conn.execute(q):
                yield _image_record(row)

    def failures(self) -> list[ImageRecord]:
        return list(self.iter_images(status="failed"))

    def counts(self) -> dict[str, int]:
        """Rows by kind: ``images_indexed`` (images only), ``images_failed`` (files of any kind),
        ``regions`` (every region row: image regions and tracks), ``embeddings``, ``videos_indexed``,
        ``tracks``, ``track_frames``."""
        vid = self.video_counts()
        with self.engine.connect() as conn:
            by_status = dict(conn.execute(select(images.c.status, func.count()).group_by(images.c.status)).all())
            n_regions = conn.execute(select(func.count()).select_from(regions)).scalar_one()
            n_emb = conn.execute(select(func.count()).select_from(embeddings)).scalar_one()
        return {"images_indexed": int(by_status.get("indexed", 0)) - vid["videos_indexed"],
                "images_failed": int(by_status.get("failed", 0)), "regions": int(n_regions),
                "embeddings": int(n_emb)} | vid

    # ------------------------------------------------------------------ writes
    def write_batch(self, results: Sequence[ImageResult], failures: Sequence[tuple[str, str | None, str]] = (),
                    dim: int | None = None) -> BatchWrite:
        """One transaction: delete older rows of the same paths (their regions and embeddings), insert
        the images of ``results`` (status ``indexed``) with their regions and float16 embeddings, and
        one ``failed`` row per failure ``(path, sha256 or None, reason)``."""
        self._writable()
        paths = [r.path for r in results] + [f[0] for f in failures]
        if len(set(paths)) != len(paths):
            dup = sorted({p for p in paths if paths.count(p) > 1})
            raise StoreError(f"the same path appears twice in one batch: {dup[0]!r}")
        for r in results:
            emb = np.asarray(r.embeddings)
            if emb.ndim != 2 or emb.shape[0] != len(r.regions) or (
                    dim is not None and len(r.regions) and emb.shape[1] != dim):
                raise StoreError(f"{r.path}: embeddings must be a ({len(r.regions)}, {dim}) float32 array, got "
                                 f"shape {emb.shape}")
            if not np.isfinite(emb).all():
                raise StoreError(f"{r.path}: embeddings contain NaN or infinite values")
        now = datetime.now(timezone.utc)
        try:
            with self.engine.begin() as conn:
                removed = self._delete_images(conn, self._image_ids_by_path(conn, paths))
                if self._has_paths_table:
                    for chunk in _chunks(paths):
                        conn.execute(delete(image_paths).where(image_paths.c.path.in_(chunk)))
                image_ids: list[int] = []
                if results:
                    rows = [dict(path=r.path, sha256=r.sha256, width=int(r.width), height=int(r.height),
                                 status="indexed", error=None, indexed_at=now, pipeline_key=r.pipeline_key,
                                 file_size=getattr(r, "file_size", None), file_mtime=getattr(r, "file_mtime", None))
                            for r in results]
                    image_ids = self._insert_returning_ids(conn, images, rows)
                failure_ids: list[int] = []
                if failures:
                    rows = [dict(path=p, sha256=sha, width=None, height=None, status="failed", error=str(reason),
                                 indexed_at=now, pipeline_key=None, file_size=None, file_mtime=None)
                            for p, sha, reason in failures]
                    failure_ids = self._insert_returning_ids(conn, images, rows)
                region_rows = [_region_values(iid, reg) for iid, r in zip(image_ids, results) for reg in r.regions]
                region_ids = self._insert_regions(conn, region_rows)
                if region_rows:
                    vecs = np.concatenate([np.asarray(r.embeddings, np.float32) for r in results if len(r.regions)])
                    self._insert_embeddings(conn, region_ids, encode_vectors(vecs))
                self._write_videos(conn, image_ids, results, region_ids)
        except SQLAlchemyError as exc:
            raise StoreError(f"writing a batch to {self.masked_url} failed: {exc}") from exc
        return BatchWrite(image_ids, failure_ids, np.asarray(region_ids, np.int64), removed)

    def delete_images(self, image_ids: Sequence[int]) -> np.ndarray:
        self._writable()
        with self.engine.begin() as conn:
            return self._delete_images(conn, [int(i) for i in image_ids])

    def _writable(self) -> None:
        if self.readonly:
            raise StoreError("this data dir was opened read-only; open it without readonly to change it")

    @staticmethod
    def _image_ids_by_path(conn: Connection, paths: list[str]) -> list[int]:
        out: list[int] = []
        for chunk in _chunks(paths):
            out += [int(i) for i in conn.execute(select(images.c.id).where(images.c.path.in_(chunk))).scalars()]
        return out

    def _delete_images(self, conn: Connection, image_ids: list[int]) -> np.ndarray:
        removed: list[int] = []
        for chunk in _chunks(image_ids):
            rids = [int(i) for i in conn.execute(select(regions.c.id).where(regions.c.image_id.in_(chunk))).scalars()]
            removed += rids
            # explicit deletes: correct even if a connection lacks ON DELETE CASCADE support
            self._delete_video_rows(conn, chunk, rids)
            for rchunk in _chunks(rids):
                conn.execute(delete(embeddings).where(embeddings.c.region_id.in_(rchunk)))
                conn.execute(delete(regions).where(regions.c.id.in_(rchunk)))
            conn.execute(delete(images).where(images.c.id.in_(chunk)))
        return np.asarray(removed, np.int64)

    @staticmethod
    def _insert_returning_ids(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> list[int]:
        res = conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
        return [int(r[0]) for r in res.all()]

    def _insert_regions(self, conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
        if not rows:
            return []
        if self.backend != "postgresql":
            return self._insert_returning_ids(conn, regions, rows)
        # PostgreSQL: allocate ids from the sequence, then COPY (much faster than INSERT for big batches)
        raw = conn.connection.driver_connection
        cols = ["id", *rows[0].keys()]
        with raw.cursor() as cur:
            cur.execute("SELECT nextval(pg_get_serial_sequence('regions', 'id')) FROM generate_series(1, %s)",
                        (len(rows),))
            ids = sorted(int(r[0]) for r in cur.fetchall())
            with cur.copy(f"COPY regions ({', '.join(cols)}) FROM STDIN") as copy:
                for rid, row in zip(ids, rows):
                    copy.write_row([rid, *row.values()])
        return ids

    def _insert_embeddings(self, conn: Connection, region_ids: list[int], blobs: list[bytes]) -> None:
        if self.backend != "postgresql":
            conn.execute(insert(embeddings), [dict(region_id=i, vector=b) for i, b in zip(region_ids, blobs)])
            return
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy("COPY embeddings (region_id, vector) FROM STDIN") as copy:
            for rid, blob in zip(region_ids, blobs):
                copy.write_row([rid, blob])

    # ------------------------------------------------------------------ regions
    def fetch_regions(self, ids: Iterable[int], *, path_prefix: str | None = None, min_area: int | None = None,
                      min_score: float | None = None, kind: str | None = None) -> list[RegionRow]:
        """Regions by id joined with their image, in the order of ``ids`` (missing or filtered-out
        ids are dropped). ``min_score`` applies to ``predicted_iou``; regions without one (the
        whole-image region) pass it. ``path_prefix`` is a case-sensitive string prefix."""
        id_list = [int(i) for i in ids if int(i) >= 0]
        if not id_list:
            return []
        filters = []
        if path_prefix:
            filters.append(_any_path_filter(path_prefix) if self._has_paths_table
                           else and_(*_prefix_filter(path_prefix)))
        if min_area is not None:
            filters.append(regions.c.area >= int(min_area))
        if min_score is not None:
            filters.append(or_(regions.c.predicted_iou.is_(None), regions.c.predicted_iou >= float(min_score)))
        if kind is not None:
            filters.append(regions.c.kind == kind)
        found: dict[int, RegionRow] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(id_list))):
                q = self._regions_select().where(regions.c.id.in_(chunk), *filters)
                for r in conn.execute(q):
                    found[int(r.id)] = _region_row(r)
            if path_prefix and self._has_paths_table:
                found = self._show_matching_paths(conn, found, path_prefix)
        return [found[i] for i in dict.fromkeys(id_list) if i in found]

    def get_region(self, region_id: int) -> RegionRow:
        rows = self.fetch_regions([region_id])
        if not rows:
            raise NotFoundError(f"no region with id {region_id} in this data dir")
        return rows[0]

    def regions_of_image(self, image_id: int) -> list[RegionRow]:
        q = self._regions_select().where(regions.c.image_id == int(image_id)).order_by(regions.c.id)
        with self.engine.connect() as conn:
            return [_region_row(r) for r in conn.execute(q)]

    # ------------------------------------------------------------------ embeddings
    def embedding(self, region_id: int, dim: int) -> np.ndarray:
        with self.engine.connect() as conn:
            blob = conn.execute(select(embeddings.c.vector).where(embeddings.c.region_id == int(region_id))).scalar()
        if blob is None:
            raise NotFoundError(f"no stored embedding for region {region_id} in this data dir")
        return decode_vectors([bytes(blob)], dim)[0]

    def embedding_stats(self) -> tuple[int, int, int]:
        """(count, max id, sum of ids) of the stored embeddings: a cheap fingerprint of the id set."""
        q = select(func.count(), func.max(embeddings.c.region_id), func.sum(embeddings.c.region_id))
        with self.engine.connect() as conn:
            n, mx, sm = conn.execute(q).one()
        return int(n), int(mx or 0), int(sm or 0)

    def embedding_ids(self) -> np.ndarray:
        with self.engine.connect() as conn:
            ids = conn.execute(select(embeddings.c.region_id)).scalars().all()
        return np.asarray(ids, np.int64)

    def embeddings(self, region_ids: Sequence[int], dim: int) -> np.ndarray:
        """Stored embeddings of ``region_ids``, float32 ``(n, dim)`` in that order (zeros where none)."""
        out, pos = np.zeros((len(region_ids), dim), np.float32), {int(r): i for i, r in enumerate(region_ids)}
        for ids, vecs in self.iter_embeddings(dim, np.asarray(list(pos), np.int64)):
            out[[pos[int(i)] for i in ids]] = vecs
        return out

    def iter_embeddings(self, dim: int, ids: np.ndarray | None = None,
                        chunk: int = 20_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(ids int64, vectors float32 (n, dim))`` of stored embeddings (all, or those ids)."""
        with self.engine.connect() as conn:
            if ids is None:
                last = -1
                while True:
                    rows = conn.execute(select(embeddings.c.region_id, embeddings.c.vector)
                                        .where(embeddings.c.region_id > last)
                                        .order_by(embeddings.c.region_id).limit(chunk)).all()
                    if not rows:
                        return
                    last = int(rows[-1][0])
                    yield np.asarray([r[0] for r in rows], np.int64), decode_vectors([bytes(r[1]) for r in rows], dim)
            else:
                for part in _chunks([int(i) for i in ids], min(chunk, _CHUNK)):
                    rows = conn.execute(select(embeddings.c.region_id, embeddings.c.vector)
                                        .where(embeddings.c.region_id.in_(part))).all()
                    if rows:
                        yield (np.asarray([r[0] for r in rows], np.int64),
                               decode_vectors([bytes(r[1]) for r in rows], dim))


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA synchronous=NORMAL")
    finally:
        cur.close()


def iter_region_chunks(store: MetadataStore, dim: int, *, path_prefix: str | None = None,
                       chunk: int = 5_000) -> Iterator[tuple[list[RegionRow], np.ndarray]]:
    """Every region joined with its image, by region id, ``chunk`` at a time (keyset paging, so
    memory stays at one chunk whatever the store's size): ``(records, float32 (n, dim) stored
    embeddings, L2-normalised)``; a region without a stored embedding has a row of NaN."""
    last = -1
    filters = _prefix_filter(path_prefix) if path_prefix else []
    with store.engine.connect() as conn:
        while True:
            q = (store._regions_select(embeddings.c.vector)
                 .outerjoin(embeddings, embeddings.c.region_id == regions.c.id)
                 .where(regions.c.id > last, *filters).order_by(regions.c.id).limit(chunk))
            rows = conn.execute(q).all()
            if not rows:
                return
            last = int(rows[-1].id)
            vectors = np.full((len(rows), dim), np.nan, np.float32)
            have = [i for i, r in enumerate(rows) if r.vector is not None]
            if have:
                vectors[have] = decode_vectors([bytes(rows[i].vector) for i in have], dim)
            yield [_region_row(r) for r in rows], vectors
