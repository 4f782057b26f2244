"""One regionsearch data directory: metadata store + vector index + manifest, kept consistent.

Layout of ``--data-dir`` (default ``./regionsearch-data``)::

    manifest.json            embedder, dim, metric, index factory, segmenter/crop, pipeline key,
                             schema version, save generation, store identity, history
    metadata.sqlite          the SQL store (unless a database URL is given; WAL files beside it)
    vectors.faiss            the FAISS index (ids = SQL region ids)
    vectors.tombstones.npy   ids removed from an HNSW index, filtered at query time
    .writer.lock             held (flock) by the one process that may write
    shards/                  Parquet shards of a Ray indexing run, not merged yet (indexer/shards.py)

With ``vectors_url`` (``--vectors milvus:///path.db`` or ``http://host:19530``) the vectors live
in Milvus instead of ``vectors.faiss``; the URL is recorded in the manifest.

SQL is the source of truth; it stores every region's embedding (float16). Opening a data dir for
writing compares the index with SQL (cheaply: count, max and sum of ids) and repairs it from the
stored embeddings, so a process killed at any moment resumes with no region without a vector, no
vector without a region and no duplicates. The index and manifest are saved atomically every
``save_every`` regions / ``save_interval_s`` seconds and on close.

Readers (an API process) open with ``readonly=True`` (memory-mapped index where possible, no
lock) and call :meth:`DataDir.reload_if_changed` to pick up a newer saved index.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import IndexMismatchError, StoreError
from .imageio import path_from_db
from .store.files import atomic_write_json, cleanup_temp_files
from .store.metadata import MetadataStore, RegionRow, mask_url
from .store.schema import SCHEMA_VERSION
from .types import ImageRecord, Region

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "./regionsearch-data"
MANIFEST_NAME = "manifest.json"
DB_NAME = "metadata.sqlite"
INDEX_NAME = "vectors.faiss"
LOCK_NAME = ".writer.lock"
#: save the index after this many new regions (or a 5 % growth of the index, whichever is larger)
SAVE_EVERY = 4096
#: ... or when this many seconds passed since the last save with something unsaved
SAVE_INTERVAL_S = 60.0

LookupResult = Literal["done", "moved", "changed", "new"]


@dataclass(frozen=True)
class Manifest:
    """What produced the vectors of a data dir. ``embedder``/``pretrained``/``dim``/``metric`` must
    match to reuse it; ``segmenter``/``crop``/``pipeline_key`` may change (images get re-indexed,
    older values are kept in the manifest's ``history``)."""

    embedder: str
    pretrained: str | None
    dim: int
    metric: str = "ip"
    index_factory: str = "auto"
    segmenter: dict = field(default_factory=dict)
    crop: dict = field(default_factory=dict)
    pipeline_key: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> "Manifest":
        if isinstance(data, str):
            data = json.loads(data)
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {"embedder", "pretrained", "dim"} - set(data)
        if missing:
            raise StoreError(f"the manifest lacks {', '.join(sorted(missing))}; it is not a regionsearch manifest")
        return cls(**{k: v for k, v in data.items() if k in names})

    def check_compatible(self, other: "Manifest", where: str = "this data dir") -> None:
        """Raise :class:`IndexMismatchError` when ``other`` (this run) cannot use vectors made under ``self``."""
        mine = (self.embedder, self.pretrained, int(self.dim), self.metric)
        theirs = (other.embedder, other.pretrained, int(other.dim), other.metric)
        if mine != theirs:
            raise IndexMismatchError(
                f"{where} was built with embedder {self.embedder!r} (pretrained {self.pretrained!r}, dim "
                f"{self.dim}, metric {self.metric}) but this run uses {other.embedder!r} (pretrained "
                f"{other.pretrained!r}, dim {other.dim}, metric {other.metric}); vectors of different "
                "embedders cannot be mixed, so use a new --data-dir (or delete this one and index again) "
                "— `regionsearch reindex` only rebuilds the index from the embeddings already stored")


@dataclass
class ImageResult:
    """Everything the pipeline produced for one image; ``embeddings`` is float32 ``(len(regions), dim)``,
    L2-normalised, row ``i`` belongs to ``regions[i]``."""

    path: str
    sha256: str
    width: int
    height: int
    pipeline_key: str
    regions: list[Region]
    embeddings: np.ndarray
    file_size: int | None = None
    file_mtime: float | None = None


@dataclass
class DoctorReport:
    """Consistency of SQL and the vector index (ids are region ids unless named otherwise)."""

    sql_regions: int
    sql_embeddings: int
    index_vectors: int
    tombstones: int
    index_type: str
    missing_vectors: list[int] = field(default_factory=list)      # embedding in SQL, not in the index
    orphan_vectors: list[int] = field(default_factory=list)       # in the index, no embedding in SQL
    duplicate_ids: list[int] = field(default_factory=list)        # more than once in the index
    regions_without_embeddings: list[int] = field(default_factory=list)
    images_without_regions: list[int] = field(default_factory=list)  # image ids (a warning only)
    repaired: bool = False
    actions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when SQL and the index agree exactly (images without regions are only a warning)."""
        return not (self.missing_vectors or self.orphan_vectors or self.duplicate_ids
                    or self.regions_without_embeddings)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"ok": self.ok}


class DataDir:
    """A data directory opened for reading or writing (use :meth:`open`)."""

    def __init__(self, path: Path, manifest: Manifest, store: MetadataStore, index: Any, file_data: dict[str, Any],
                 *, readonly: bool, lock_fd: int | None, save_every: int, save_interval_s: float):
        self.path = path
        self.manifest = manifest
        self.store = store
        self.index = index
        self.readonly = readonly
        self._file = file_data
        self._lock_fd = lock_fd
        self._lock = threading.RLock()
        self._save_every = save_every
        self._save_interval_s = save_interval_s
        self._pending = 0
        self._last_save = time.monotonic()
        self._sig = self._signature()
        self._closed = False

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, manifest: Manifest | None = None,
             db_url: str | None = None, index_factory: str = "auto", readonly: bool = False, *,
             save_every: int = SAVE_EVERY, save_interval_s: float = SAVE_INTERVAL_S,
             vectors_url: str | None = None) -> "DataDir":
        """Open (``manifest=None``: must exist) or create the data dir at ``path``.

        With a ``manifest`` the dir is created if needed, else checked: a different embedder,
        pretrained tag, dim or metric raises :class:`IndexMismatchError`; segmenter/crop/pipeline
        key changes are recorded. ``index_factory`` applies to a new dir (``reindex`` changes it
        later). ``vectors_url`` keeps the vectors in Milvus instead of FAISS (``milvus:///path.db``
        for Milvus Lite, ``http://host:19530`` for a server); it is recorded in the manifest, so
        later opens need not repeat it. Opening for writing migrates the database, takes the
        writer lock and syncs the index with SQL (see the module doc).
        """
        from .vectors.faiss_index import FaissIndex

        root = Path(path or DEFAULT_DATA_DIR).expanduser()
        mpath = root / MANIFEST_NAME
        existing = _read_manifest_file(mpath)
        if existing is None and (manifest is None or readonly):
            raise StoreError(f"{root} is not a regionsearch data dir (no {MANIFEST_NAME}); index some images "
                             "into it first or pass the right --data-dir")
        lock_fd = None
        if not readonly:
            root.mkdir(parents=True, exist_ok=True)
            lock_fd = _take_writer_lock(root)
            cleanup_temp_files(root)
        try:
            now = _now()
            if existing is None:
                factory = index_factory if index_factory != "auto" else manifest.index_factory
                current = dataclasses.replace(manifest, index_factory=factory, schema_version=SCHEMA_VERSION)
                file_data: dict[str, Any] = {"created_at": now, "generation": 0, "history": []}
            else:
                stored = Manifest.from_json(existing)
                file_data = existing
                current = stored
                if manifest is not None:
                    stored.check_compatible(manifest, f"the data dir {root}")
                    if (manifest.segmenter, manifest.crop, manifest.pipeline_key) != (
                            stored.segmenter, stored.crop, stored.pipeline_key):
                        file_data.setdefault("history", []).append(
                            {"segmenter": stored.segmenter, "crop": stored.crop,
                             "pipeline_key": stored.pipeline_key, "replaced_at": now})
                        current = dataclasses.replace(stored, segmenter=manifest.segmenter, crop=manifest.crop,
                                                      pipeline_key=manifest.pipeline_key)
                if index_factory != "auto" and index_factory != stored.index_factory:
                    log.warning("data dir %s uses index factory %r; run reindex to change it to %r", root,
                                stored.index_factory, index_factory)
            url = db_url or cls._recorded_db_url(root, file_data)
            store = MetadataStore(url, readonly=readonly)
            try:
                store_id = store.store_id(create=not readonly)
                known = file_data.get("store", {}).get("id")
                if known is not None and store_id != known:
                    raise StoreError(f"the metadata database {mask_url(url)} is not the one the data dir {root} "
                                     "was built with; pass the right --db (or use a new --data-dir)")
                file_data["store"] = {"id": store_id, "backend": store.backend,
                                      "db_url": mask_url(url) if db_url else None}
                ipath = root / INDEX_NAME
                recorded = (file_data.get("vectors") or {}).get("url")
                if existing is not None and vectors_url and vectors_url != recorded:
                    raise StoreError(f"the data dir {root} keeps its vectors in {recorded or 'FAISS (' + INDEX_NAME + ')'}"
                                     f", not {vectors_url}; use a new --data-dir for another vector store")
                if vectors_url or recorded:
                    from .vectors.milvus_index import MilvusIndex

                    index = MilvusIndex.open(vectors_url or recorded, current.dim, root, readonly=readonly,
                                             attrs=lambda ids, _s=store: _region_attrs(_s, ids))
                    file_data["vectors"] = {"backend": "milvus", "url": vectors_url or recorded}
                elif ipath.exists():
                    index = FaissIndex.load(ipath, factory=current.index_factory, readonly=readonly)
                    if index.dim != current.dim:
                        raise IndexMismatchError(f"the vector index {ipath} has dimension {index.dim} but the manifest "
                                                 f"says {current.dim}; run `regionsearch reindex`")
                else:
                    index = FaissIndex.create(None if readonly else ipath, current.dim, current.index_factory)
            except BaseException:
                store.close()
                raise
        except BaseException:
            _release_writer_lock(lock_fd)
            raise
        dd = cls(root, current, store, index, file_data, readonly=readonly, lock_fd=lock_fd,
                 save_every=save_every, save_interval_s=save_interval_s)
        if not readonly:
            try:
                dd._sync()
                dd.save(force=True)
            except BaseException:
                dd.close()
                raise
        return dd

    @staticmethod
    def _recorded_db_url(root: Path, file_data: dict[str, Any]) -> str:
        store = file_data.get("store") or {}
        if store.get("backend") not in (None, "sqlite"):
            raise StoreError(f"the data dir {root} keeps its metadata in {store.get('db_url')}; pass that database "
                             "URL (--db / REGIONSEARCH_DB)")
        return f"sqlite:///{(root / DB_NAME).resolve()}"

    def _sync(self) -> tuple[int, int]:
        """Make the index hold exactly the SQL regions that have embeddings; returns (added, removed)."""
        n, mx, sm = self.store.embedding_stats()
        live = self.index.ids()
        if live.size == n and int(live.max(initial=0)) == mx and int(live.sum(dtype=np.int64)) == sm:
            return 0, 0
        sql_ids = self.store.embedding_ids()
        missing = np.setdiff1d(sql_ids, live)
        orphans = np.setdiff1d(live, sql_ids)
        uniq, counts = np.unique(live, return_counts=True)
        dups = uniq[counts > 1]
        with self._lock:
            self.index.remove(np.union1d(orphans, dups))
            to_add = np.union1d(missing, np.intersect1d(dups, sql_ids))
            for ids, vecs in self.store.iter_embeddings(self.manifest.dim, to_add):
                self.index.add(ids, vecs)
        log.warning("data dir %s: index synced with SQL (%d vectors restored, %d orphans removed, %d duplicates)",
                    self.path, missing.size, orphans.size, dups.size)
        return int(missing.size), int(orphans.size)

    # ------------------------------------------------------------------ indexing
    def lookup(self, path: str, sha256: str, pipeline_key: str) -> LookupResult:
        """What the pipeline must do with the file at ``path`` (content ``sha256``):

        * ``"done"``: this path, or another path whose file still exists (a copy), is already
          indexed with the same content and pipeline key: skip;
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
                if self.readonly:
                    return "moved"
                self.store.update_path(other.id, path)
                return "moved"
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
            self._maybe_save()
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
        ids (m, k))``, ``-1`` = none. Oversample ``k`` when filters follow (:meth:`fetch_regions`).
        ``filters`` (``path_prefix``, ``min_area`` in pixels, ``kinds``) are pushed into vector
        stores that can apply them (Milvus) and ignored by the others; callers still filter exactly."""
        with self._lock:
            index = self.index
        push = {name: v for name, v in filters.items() if v is not None}
        if push and getattr(index, "supports_filters", False):
            return index.search(q, k, **push)
        return index.search(q, k)

    def fetch_regions(self, ids: Sequence[int], *, path_prefix: str | None = None, min_area: int | None = None,
                      min_score: float | None = None, kind: str | None = None) -> list[RegionRow]:
        """One SQL query for these region ids (order kept; unknown/filtered ids dropped)."""
        return self.store.fetch_regions(ids, path_prefix=path_prefix, min_area=min_area, min_score=min_score,
                                        kind=kind)

    def get_region(self, region_id: int) -> RegionRow:
        return self.store.get_region(region_id)

    def get_image(self, image_id: int) -> ImageRecord:
        return self.store.get_image(image_id)

    def image_by_path(self, path: str) -> ImageRecord | None:
        return self.store.image_by_path(path)

    def iter_images(self, path_prefix: str | None = None, status: str | None = None) -> Iterator[ImageRecord]:
        return self.store.iter_images(path_prefix, status)

    def regions_of_image(self, image_id: int) -> list[RegionRow]:
        return self.store.regions_of_image(image_id)

    def region_embedding(self, region_id: int) -> np.ndarray:
        """The stored embedding of a region (float32 ``(dim,)``, L2-normalised; float16 precision)."""
        return self.store.embedding(region_id, self.manifest.dim)

    def region_embeddings(self, region_ids: Sequence[int]) -> np.ndarray:
        """Stored embeddings of ``region_ids``, ``(n, dim)`` float32 in that order (zeros for a
        region without one)."""
        out = np.zeros((len(region_ids), self.manifest.dim), np.float32)
        pos = {int(r): i for i, r in enumerate(region_ids)}
        for ids, vecs in self.store.iter_embeddings(self.manifest.dim, np.asarray(list(pos), np.int64)):
            for rid, vec in zip(ids, vecs):
                out[pos[int(rid)]] = vec
        return out

    def failures(self) -> list[ImageRecord]:
        return self.store.failures()

    # ------------------------------------------------------------------ maintenance
    def doctor(self, repair: bool = False) -> DoctorReport:
        """Compare SQL and the index; with ``repair``, fix the index from the stored embeddings and
        delete images whose regions lack embeddings (so the next ``index`` run redoes them)."""
        if repair:
            self._writable()
        with self._lock:
            counts = self.store.counts()
            live = self.index.ids()
            sql_ids = self.store.embedding_ids()
            uniq, cnt = np.unique(live, return_counts=True)
            no_emb = self.store.regions_without_embeddings()
            report = DoctorReport(
                sql_regions=counts["regions"], sql_embeddings=counts["embeddings"], index_vectors=int(live.size),
                tombstones=self.index.tombstone_count, index_type=self.index.index_type,
                missing_vectors=np.setdiff1d(sql_ids, uniq).tolist(),
                orphan_vectors=np.setdiff1d(uniq, sql_ids).tolist(),
                duplicate_ids=uniq[cnt > 1].tolist(),
                regions_without_embeddings=sorted(r for r, _ in no_emb),
                images_without_regions=self.store.indexed_images_without_regions())
            if not repair or report.ok:
                return report
            if no_emb:
                image_ids = sorted({i for _, i in no_emb})
                self.index.remove(self.store.delete_images(image_ids))
                report.actions.append(f"deleted {len(image_ids)} image(s) whose regions lacked embeddings "
                                      "(they will be indexed again)")
            drop = np.union1d(report.orphan_vectors, report.duplicate_ids).astype(np.int64)
            if drop.size:
                self.index.remove(drop)
                report.actions.append(f"removed {len(report.orphan_vectors)} orphan vector(s) and all copies of "
                                      f"{len(report.duplicate_ids)} duplicated id(s)")
            readd = np.union1d(report.missing_vectors, np.intersect1d(report.duplicate_ids, sql_ids)).astype(np.int64)
            added = 0
            for ids, vecs in self.store.iter_embeddings(self.manifest.dim, readd):
                self.index.add(ids, vecs)
                added += ids.size
            if added:
                report.actions.append(f"restored {added} vector(s) from stored embeddings")
            self.save(force=True)
            report.repaired = True
            return report

    def reindex(self, index_factory: str | None = None) -> int:
        """Rebuild the vector index from the stored embeddings (no model runs); ``index_factory``
        changes the index type (``auto``, ``Flat``, ``HNSW32,Flat``, ``IVF1024,PQ64``...). Returns
        the number of vectors."""
        from .vectors.faiss_index import FaissIndex, train_min

        self._writable()
        factory = index_factory or self.manifest.index_factory
        dim = self.manifest.dim
        with self._lock:
            if not isinstance(self.index, FaissIndex):  # Milvus: refill the same collection
                self.index.clear()
                for ids, vecs in self.store.iter_embeddings(dim):
                    self.index.add(ids, vecs)
                self.save(force=True)
                return len(self.index)
            n, _, _ = self.store.embedding_stats()
            new = FaissIndex.create(self.path / INDEX_NAME, dim, factory, expected_n=n)
            need = train_min(FaissIndex._target_for(factory, n, dim))
            if need and n >= need:
                all_ids = self.store.embedding_ids()
                rng = np.random.default_rng(0)
                n_train = min(n, max(need, 100_000))
                pick = np.sort(rng.choice(all_ids, n_train, replace=False)) if n_train < n else all_ids
                sample = np.concatenate([v for _, v in self.store.iter_embeddings(dim, pick)])
                new.train(sample)
            for ids, vecs in self.store.iter_embeddings(dim):
                new.add(ids, vecs)
            self.index = new
            self.manifest = dataclasses.replace(self.manifest, index_factory=factory)
            self.save(force=True)
            return len(new)

    def info(self) -> dict[str, Any]:
        counts = self.store.counts()
        disk = 0
        for p in self.path.iterdir() if self.path.is_dir() else []:
            if p.is_file():
                disk += p.stat().st_size
        return {
            "data_dir": str(self.path),
            "manifest": self.manifest.to_json(),
            "images_indexed": counts["images_indexed"],
            "images_failed": counts["images_failed"],
            "regions": counts["regions"],
            "vectors": len(self.index),
            "tombstones": self.index.tombstone_count,
            "index_type": self.index.index_type,
            "index_factory": self.manifest.index_factory,
            "disk_bytes": disk,
            "db_url": self.store.masked_url,
            "db_backend": self.store.backend,
            "generation": int(self._file.get("generation", 0)),
            "saved_at": self._file.get("saved_at"),
            "readonly": self.readonly,
        }

    # ------------------------------------------------------------------ persistence
    def _maybe_save(self) -> None:
        if not self._pending:
            return
        if (self._pending >= max(self._save_every, len(self.index) // 20)
                or time.monotonic() - self._last_save >= self._save_interval_s):
            self.save()

    def save(self, force: bool = False) -> None:
        """Atomically write the index (if changed) and then the manifest."""
        self._writable()
        with self._lock:
            changed = self.index.save(force=force)
            if changed or force or self._pending:
                self._file.update(self.manifest.to_json())
                self._file["generation"] = int(self._file.get("generation", 0)) + 1
                self._file["saved_at"] = _now()
                self._file["index"] = {"type": self.index.index_type, "vectors": len(self.index),
                                       "tombstones": self.index.tombstone_count,
                                       "file": getattr(self.index, "location", INDEX_NAME)}
                self._file["format"] = "regionsearch-data-dir"
                atomic_write_json(self.path / MANIFEST_NAME, self._file)
            self._pending = 0
            self._last_save = time.monotonic()
            self._sig = self._signature()

    def _signature(self) -> tuple:
        from .vectors.faiss_index import file_signature

        return file_signature(self.path / INDEX_NAME)

    def reload_if_changed(self) -> bool:
        """Reopen the index if another process saved a newer one (never a half-written file: saves
        are atomic renames). Returns True when reloaded."""
        from .vectors.faiss_index import FaissIndex

        sig = self._signature()
        if sig == self._sig or sig[0] is None:
            return False
        index = FaissIndex.load(self.path / INDEX_NAME, factory=self.manifest.index_factory, readonly=self.readonly)
        data = _read_manifest_file(self.path / MANIFEST_NAME)
        with self._lock:
            self.index = index
            self._sig = sig
            if data is not None:
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
            if hasattr(self.index, "close"):
                self.index.close()
            self.store.close()
            _release_writer_lock(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "DataDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _region_attrs(store: MetadataStore, ids: np.ndarray) -> dict[str, list[Any]]:
    """``path``/``area``/``kind`` of region ids, for vector stores that filter on them (Milvus)."""
    rows = {r.region_id: r for r in store.fetch_regions(ids)}
    got = [rows.get(int(i)) for i in ids]
    return {"path": [r.image_path if r else "" for r in got], "area": [r.area if r else 0 for r in got],
            "kind": [r.kind if r else "mask" for r in got]}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read_manifest_file(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path} is not valid JSON ({exc}); restore it or use a new --data-dir") from exc
    if not isinstance(data, dict):
        raise StoreError(f"{path} is not a regionsearch manifest")
    return data


def _take_writer_lock(root: Path) -> int | None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"another process is writing to the data dir {root}; wait for it to finish "
                         "(readers can open it with readonly=True)") from None
    return fd


def _release_writer_lock(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
