"""One regionsearch data directory: the coordinator that keeps the metadata store, the vector
backend and the manifest consistent.

Layout of ``--data-dir`` (default :data:`~regionsearch.manifest.DEFAULT_DATA_DIR`)::

    manifest.json            embedder, dim, metric, index factory, segmenter/crop, pipeline key,
                             schema version, save generation, store identity, history
    metadata.sqlite          the SQL store (unless a database URL is given; WAL files beside it)
    vectors.faiss            the FAISS index (ids = SQL region ids)
    vectors.tombstones.npy   ids removed from an HNSW index, filtered at query time
    .writer.lock             held (flock) by the one process that may write
    shards/                  Parquet shards of a Ray indexing run, not merged yet (indexer/shards.py)

With ``vectors_url`` (``--vectors milvus:///path.db`` or ``http://host:19530``) the vectors live
in another backend instead of ``vectors.faiss``; the URL is recorded in the manifest.

The cut: :mod:`regionsearch.manifest` reads, checks and writes the manifest (and owns the default
location); :mod:`regionsearch.store.lock` is the writer lock; :mod:`regionsearch.vectors.registry`
opens a vector backend from a URL (FAISS when none); :mod:`regionsearch.consistency` is the one
SQL <-> index diff/repair. :class:`DataDir` keeps only what needs all of them: open, lookup,
commit, remove, search vectors, reindex, save/reload, close. Read-only views of the metadata are
on :attr:`DataDir.store`.

SQL is the source of truth; it stores every region's embedding (float16). Opening a data dir for
writing compares the index with SQL (cheaply: count, max and sum of ids) and repairs it from the
stored embeddings, so a process killed at any moment resumes with no region without a vector, no
vector without a region and no duplicates. The index and manifest are saved atomically every
``save_every`` regions (``index.save_every`` of the config; or 5 % growth of the index, whichever
is larger) / ``save_interval_s`` seconds, and on close.

Readers (an API process) open with ``readonly=True`` (memory-mapped index where possible, no
lock) and call :meth:`DataDir.reload_if_changed` to pick up a newer saved index.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import consistency
from .config import IndexConfig
from .consistency import DoctorReport
from .errors import StoreError
from .imageio import path_from_db
from .manifest import (DEFAULT_DATA_DIR, FORMAT, MANIFEST_NAME, Manifest, now, read_manifest_file,
                       resolve_manifest)
from .store.files import atomic_write_json, cleanup_temp_files
from .store.lock import WriterLock
from .store.metadata import MetadataStore, RegionRecord, mask_url
from .types import ImageRecord, ImageResult
from .vectors.base import VectorIndex
from .vectors.registry import INDEX_NAME, backend_name, open_vectors

__all__ = ["DataDir", "DoctorReport", "ImageResult", "Manifest", "DEFAULT_DATA_DIR", "MANIFEST_NAME", "DB_NAME",
           "INDEX_NAME"]

log = logging.getLogger(__name__)

DB_NAME = "metadata.sqlite"
_DEFAULTS = IndexConfig()

LookupResult = Literal["done", "moved", "changed", "new"]


class DataDir:
    """A data directory opened for reading or writing (use :meth:`open`)."""

    def __init__(self, path: Path, manifest: Manifest, store: MetadataStore, index: VectorIndex,
                 file_data: dict[str, Any], *, readonly: bool, lock: WriterLock | None, save_every: int,
                 save_interval_s: float):
        self.path = path
        self.manifest = manifest
        self.store = store
        self.index = index
        self.readonly = readonly
        self._file = file_data
        self._writer_lock = lock
        self._lock = threading.RLock()
        self._save_every = save_every
        self._save_interval_s = save_interval_s
        self._pending = 0
        self._last_save = time.monotonic()
        self._closed = False

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, manifest: Manifest | None = None,
             db_url: str | None = None, index_factory: str = "auto", readonly: bool = False, *,
             save_every: int = _DEFAULTS.save_every, save_interval_s: float = _DEFAULTS.save_interval_s,
             vectors_url: str | None = None) -> "DataDir":
        """Open (``manifest=None``: must exist) or create the data dir at ``path``.

        With a ``manifest`` the dir is created if needed, else checked (see
        :func:`~regionsearch.manifest.resolve_manifest`). ``index_factory`` applies to a new dir
        (``reindex`` changes it later). ``vectors_url`` keeps the vectors in another backend
        (``milvus:///path.db``, ``http://host:19530``, any scheme registered with
        :func:`~regionsearch.vectors.registry.register_backend`), recorded in the manifest. Opening
        for writing migrates the database, takes the writer lock and syncs the index with SQL.
        """
        root = Path(path or DEFAULT_DATA_DIR).expanduser()
        existing = read_manifest_file(root / MANIFEST_NAME)
        if existing is None and readonly:
            manifest = None  # a reader never creates a data dir
        current, file_data = resolve_manifest(root, existing, manifest, index_factory)
        lock = None
        if not readonly:
            root.mkdir(parents=True, exist_ok=True)
            lock = WriterLock(root).acquire()
            cleanup_temp_files(root)
        try:
            store, index = _open_parts(root, current, file_data, db_url, vectors_url, readonly,
                                           fresh=existing is None)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        dd = cls(root, current, store, index, file_data, readonly=readonly, lock=lock,
                 save_every=save_every, save_interval_s=save_interval_s)
        if not readonly:
            try:
                dd._sync()
                store.record_pipeline(current.pipeline_key, current.settings())
                dd.save(force=True)
            except BaseException:
                dd.close()
                raise
        return dd

    def _sync(self) -> None:
        """Make the index hold exactly the SQL regions that have embeddings."""
        with self._lock:
            if consistency.looks_in_sync(self.store, self.index):
                return
            report = consistency.diff(self.store, self.index)
            consistency.repair(self.store, self.index, report, self.manifest.dim, delete_incomplete=False)
        log.warning("data dir %s: index synced with SQL (%d vectors restored, %d orphans removed, %d duplicates)",
                    self.path, len(report.missing_vectors), len(report.orphan_vectors), len(report.duplicate_ids))

    # ------------------------------------------------------------------ indexing
    def lookup(self, path: str, sha256: str, pipeline_key: str) -> LookupResult:
        """What the pipeline must do with the file at ``path`` (content ``sha256``):

        * ``"done"``: this path, or another path whose file still exists (a copy: recorded as one
          more path of that image *by this call*), holds this content indexed with this key: skip;
        * ``"moved"``: the same content is indexed under a path that no longer exists: the row was
          re-pointed to ``path`` *by this call* (no model work, nothing to commit);
        * ``"changed"``: ``path`` is known with another content/pipeline key, or it failed before:
          index it again, :meth:`commit` replaces the old rows;
        * ``"new"``: never seen: index it.
        """
        rec = self.store.image_by_path(path)
        if rec is not None:
            if rec.status == "indexed" and rec.sha256 == sha256 and rec.pipeline_key == pipeline_key:
                return "done"
            return "changed"
        same = self.store.indexed_by_content(sha256, pipeline_key)
        for other in same:
            if not os.path.exists(path_from_db(other.path)):
                if not self.readonly:
                    self.store.update_path(other.id, path)
                return "moved"
        if same and not self.readonly:
            self.store.add_path(same[0].id, path)
        return "done" if same else "new"

    def commit(self, results: Sequence[ImageResult],
               failures: Sequence[tuple[str, str | None, str]] = ()) -> list[int]:
        """Store a batch in ONE SQL transaction (older rows of the same paths are replaced, their
        vectors removed), then add the vectors under the new region ids; saves periodically.
        ``failures`` are ``(path, sha256 or None, reason)``. Returns the new image ids of
        ``results``, in order."""
        self._writable()
        with self._lock:
            bw = self.store.write_batch(list(results), list(failures), dim=self.manifest.dim)
            self.index.remove(bw.removed_region_ids)
            if bw.region_ids.size:
                vecs = np.concatenate([np.asarray(r.embeddings, np.float32) for r in results if len(r.regions)])
                norms = np.linalg.norm(vecs, axis=1, keepdims=True)
                np.divide(vecs, norms, out=vecs, where=norms > 0)
                self.index.add(bw.region_ids, vecs)
            self._pending += int(bw.region_ids.size + bw.removed_region_ids.size) + len(failures)
            if self._pending >= max(self._save_every, len(self.index) // 20) or (
                    time.monotonic() - self._last_save >= self._save_interval_s):
                self.save()
        return bw.image_ids

    def record_failure(self, path: str, sha256: str | None, reason: str) -> None:
        """Record that ``path`` could not be indexed (replaces older rows of the path)."""
        self.commit([], [(path, sha256, reason)])

    def remove_paths(self, paths: Sequence[str]) -> int:
        """Delete the images at ``paths`` with their regions and vectors; returns how many images."""
        self._writable()
        with self._lock:
            n, region_ids = self.store.delete_paths(list(paths))
            self.index.remove(region_ids)
            if n:
                self.save()
        return n

    # ------------------------------------------------------------------ queries
    def search_vectors(self, q: np.ndarray, k: int, **filters: Any) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` region ids per query row (float32 ``(m, dim)``, L2-normalised): ``(scores (m, k),
        ids (m, k))``, ``-1`` = none. Oversample ``k`` when filters follow (``store.fetch_regions``).
        ``filters`` (``path_prefix``, ``min_area`` in pixels, ``kinds``) are a hint for backends that
        apply them (``supports_filters``); callers still filter exactly."""
        with self._lock:
            index = self.index
        return index.search(q, k, **{name: v for name, v in filters.items() if v is not None})

    def fetch_regions(self, ids: Sequence[int], **filters: Any) -> list[Any]:
        """One SQL query for these region ids (order kept; unknown/filtered ids dropped); see
        :meth:`MetadataStore.fetch_regions` for ``filters``."""
        return self.store.fetch_regions(ids, **filters)

    def image_by_path(self, path: str) -> ImageRecord | None:
        return self.store.image_by_path(path)

    def iter_images(self, path_prefix: str | None = None, status: str | None = None) -> Iterator[ImageRecord]:
        return self.store.iter_images(path_prefix, status)

    def regions_of_image(self, image_id: int) -> list[RegionRecord]:
        return self.store.regions_of_image(image_id)

    def failures(self) -> list[ImageRecord]:
        return self.store.failures()

    def region_embedding(self, region_id: int) -> np.ndarray:
        """The stored embedding of a region (float32 ``(dim,)``, L2-normalised; float16 precision)."""
        return self.store.embedding(region_id, self.manifest.dim)

    # ------------------------------------------------------------------ maintenance
    def doctor(self, repair: bool = False) -> DoctorReport:
        """Compare SQL and the index; with ``repair``, fix the index from the stored embeddings and
        delete images whose regions lack embeddings (so the next ``index`` run redoes them)."""
        if repair:
            self._writable()
        with self._lock:
            report = consistency.diff(self.store, self.index)
            if repair and not report.ok:
                consistency.repair(self.store, self.index, report, self.manifest.dim, delete_incomplete=True)
                self.save(force=True)
            return report

    def reindex(self, index_factory: str | None = None) -> int:
        """Rebuild the vector index from the stored embeddings (no model runs); ``index_factory``
        changes the index type (``auto``, ``Flat``, ``HNSW32,Flat``, ``IVF1024,PQ64``...). Returns
        the number of vectors."""
        self._writable()
        factory = index_factory or self.manifest.index_factory
        with self._lock:
            consistency.rebuild(self.store, self.index, factory, self.manifest.dim)
            self.manifest = dataclasses.replace(self.manifest, index_factory=factory)
            self.save(force=True)
            return len(self.index)

    def info(self) -> dict[str, Any]:
        """Counts, manifest, index, disk size, store, the settings per image and whether a writer runs."""
        return _info(self)

    # ------------------------------------------------------------------ persistence
    def save(self, force: bool = False) -> None:
        """Atomically write the index (if changed) and then the manifest."""
        self._writable()
        with self._lock:
            changed = self.index.save(force=force)
            if changed or force or self._pending:
                write_manifest_file(self.path, self._file, self.manifest, self.index)
            self._pending = 0
            self._last_save = time.monotonic()

    def reload_if_changed(self) -> bool:
        """Pick up an index another process saved since (see the backend's ``reload_if_changed``)
        and the manifest saved with it. Returns True when reloaded."""
        if not self.index.reload_if_changed():
            return False
        data = read_manifest_file(self.path / MANIFEST_NAME)
        if data is not None:
            with self._lock:
                self._file = data
                self.manifest = Manifest.from_json(data)
        return True

    def _writable(self) -> None:
        if self.readonly:
            raise StoreError(f"the data dir {self.path} was opened read-only")
        if self._closed:
            raise StoreError(f"the data dir {self.path} is closed")

    def close(self) -> None:
        if self._closed:
            return
        try:
            if not self.readonly and (self._pending or self.index.dirty):
                self.save()
        finally:
            self._closed = True
            self.index.close()
            self.store.close()
            if self._writer_lock is not None:
                self._writer_lock.release()

    def __enter__(self) -> "DataDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_parts(root: Path, current: Manifest, file_data: dict[str, Any], db_url: str | None,
                vectors_url: str | None, readonly: bool, fresh: bool) -> tuple[MetadataStore, VectorIndex]:
    """The metadata store (checked to be the one this dir was built with) and the vector backend."""
    store_rec = file_data.get("store") or {}
    if not db_url and store_rec.get("backend") not in (None, "sqlite"):
        raise StoreError(f"the data dir {root} keeps its metadata in {store_rec.get('db_url')}; pass that "
                         "database URL (--db / REGIONSEARCH_DB)")
    url = db_url or f"sqlite:///{(root / DB_NAME).resolve()}"
    store = MetadataStore(url, readonly=readonly)
    try:
        store_id = store.store_id(create=not readonly)
        if store_rec.get("id") is not None and store_id != store_rec["id"]:
            raise StoreError(f"the metadata database {mask_url(url)} is not the one the data dir {root} "
                             "was built with; pass the right --db (or use a new --data-dir)")
        file_data["store"] = {"id": store_id, "backend": store.backend, "db_url": mask_url(url) if db_url else None}
        recorded = (file_data.get("vectors") or {}).get("url")
        if not fresh and vectors_url and vectors_url != recorded:
            raise StoreError(f"the data dir {root} keeps its vectors in {recorded or 'FAISS (' + INDEX_NAME + ')'}"
                             f", not {vectors_url}; use a new --data-dir for another vector store")
        url_v = vectors_url or recorded
        index = open_vectors(url_v, root, current.dim, factory=current.index_factory, readonly=readonly,
                             attrs=lambda ids: _region_attrs(store, ids))
        if url_v:
            file_data["vectors"] = {"backend": backend_name(url_v), "url": url_v}
        return store, index
    except BaseException:
        store.close()
        raise


def _info(dd: DataDir) -> dict[str, Any]:
    counts = dd.store.counts()
    disk = sum(p.stat().st_size for p in dd.path.iterdir() if p.is_file()) if dd.path.is_dir() else 0
    return {
        "data_dir": str(dd.path), "manifest": dd.manifest.to_json(),
        "images_indexed": counts["images_indexed"], "images_failed": counts["images_failed"],
        "regions": counts["regions"], "videos_indexed": counts.get("videos_indexed", 0),
        "tracks": counts.get("tracks", 0), "vectors": len(dd.index), "tombstones": dd.index.tombstone_count,
        "index_type": dd.index.index_type, "index_factory": dd.manifest.index_factory,
        "disk_bytes": disk, "db_url": dd.store.masked_url, "db_backend": dd.store.backend,
        "generation": int(dd._file.get("generation", 0)), "saved_at": dd._file.get("saved_at"),
        "readonly": dd.readonly, "pipelines": pipelines_in_use(dd.store, dd.manifest, dd._file),
        "writer_running": dd.readonly and WriterLock.held_by_other(dd.path),
    }


def pipelines_in_use(store: MetadataStore, manifest: Manifest, file_data: dict[str, Any]) -> list[dict[str, Any]]:
    """Per distinct pipeline key of the indexed images (a per-image fact): ``images`` (count),
    ``current`` (the manifest's), and the ``settings`` that key stands for (the store's record,
    else the manifest's current or historic entry; None when unknown)."""
    known = {h.get("pipeline_key"): {"segmenter": h.get("segmenter"), "crop": h.get("crop")}
             for h in file_data.get("history", [])}
    known[manifest.pipeline_key] = manifest.settings()
    known.update(store.pipeline_settings())
    return [{"pipeline_key": key, "images": n, "current": key == manifest.pipeline_key, "settings": known.get(key)}
            for key, n in sorted(store.pipeline_counts().items(), key=lambda kv: -kv[1])]


def mark_current(info: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Also mark as current the pipelines of ``keys`` in :meth:`DataDir.info`'s ``pipelines`` (the
    manifest knows only the images' key; videos are indexed under the images' key + the video
    settings, :meth:`~regionsearch.config.Config.video_pipeline_key`)."""
    for p in info.get("pipelines", []):
        p["current"] = bool(p["current"] or p["pipeline_key"] in keys)
    return info


def _region_attrs(store: MetadataStore, ids: np.ndarray) -> dict[str, list[Any]]:
    """``path``/``area``/``kind`` of region ids, for vector backends that filter on them (Milvus)."""
    rows = {r.region_id: r for r in store.fetch_regions(ids)}
    got = [rows.get(int(i)) for i in ids]
    return {"path": [r.image_path if r else "" for r in got], "area": [r.area if r else 0 for r in got],
            "kind": [r.kind if r else "mask" for r in got]}


def write_manifest_file(root: Path, file_data: dict[str, Any], manifest: Manifest, index: Any) -> None:
    """Bump the generation and atomically write ``manifest.json`` (``file_data`` is updated in place;
    ``index`` is the data dir's :class:`~regionsearch.vectors.base.VectorIndex`)."""
    file_data.update(manifest.to_json())
    file_data["generation"] = int(file_data.get("generation", 0)) + 1
    file_data["saved_at"] = now()
    file_data["index"] = {"type": index.index_type, "vectors": len(index), "tombstones": index.tombstone_count,
                          "file": index.location}
    file_data["format"] = FORMAT
    atomic_write_json(root / MANIFEST_NAME, file_data)
