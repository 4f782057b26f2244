"""Milvus vector index behind the :class:`~regionsearch.vectors.base.VectorIndex` protocol.

URLs (``--vectors``):

* ``milvus:///abs/path/vectors.db`` or ``milvus://vectors.db`` (relative to the data dir):
  Milvus Lite, an embedded engine in one local file (``pip install pymilvus milvus-lite``);
* ``http://host:19530`` / ``https://host:19530``: a Milvus server or cluster.

Query parameters: ``collection`` (default ``regions``), ``index`` (Milvus index type; default
``FLAT`` on Lite, ``AUTOINDEX`` on a server), ``token`` (server auth, ``user:password``).

Each entity is ``(id INT64 primary key = SQL region id, vector FLOAT_VECTOR(dim), path VARCHAR,
area INT64, kind VARCHAR)``; the scalar fields let :meth:`MilvusIndex.search` push metadata
filters (image path prefix, minimum area in pixels, region kinds) into Milvus, so a filtered
query still gets ``k`` candidates. Writes are upserts, so re-adding an id never duplicates it.
The metric is inner product on L2-normalised float32 vectors (cosine), like the FAISS index.

Milvus Lite is single-process: while an indexer holds the ``.db`` file, another process cannot
open it (use a Milvus server when an API must read while indexing).
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import MissingDependencyError, StoreError
from .base import as_ids, prepare_additions, prepare_queries

log = logging.getLogger(__name__)

DEFAULT_COLLECTION = "regions"
#: Milvus caps top-k and query page sizes at 16384
MAX_TOPK = 16384
_PAGE = 16384
_INSERT_CHUNK = 5000
_MAX_PATH = 8192
#: characters that would need escaping inside the filter's string literal (LIKE wildcards ``%``/``_``
#: in a prefix only widen the match, which is safe: the SQL side filters exactly afterwards)
_LIKE_UNSAFE = set('"\\')

AttrsFn = Callable[[np.ndarray], dict[str, np.ndarray]]


def parse_url(url: str, base_dir: str | Path | None = None) -> dict[str, Any]:
    """Split a ``--vectors`` URL into ``uri`` (what ``MilvusClient`` takes), ``lite``, ``collection``,
    ``index_type``, ``token``."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    scheme = parts.scheme.lower()
    if scheme == "milvus":
        raw = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not raw or raw.endswith("/"):
            raise StoreError(f"the Milvus Lite URL {url!r} names no file; use milvus:///abs/path/vectors.db")
        p = Path(raw)
        if not p.is_absolute():
            p = Path(base_dir or ".") / p
        uri, lite = str(p.resolve()), True
    elif scheme in ("http", "https", "tcp", "grpc"):
        uri, lite = urllib.parse.urlunsplit((scheme, parts.netloc, parts.path, "", "")), False
    else:
        raise StoreError(f"unknown vector store URL {url!r}; use milvus:///path/file.db (Milvus Lite) or "
                         "http://host:19530 (Milvus server)")
    return {"uri": uri, "lite": lite, "collection": query.get("collection", DEFAULT_COLLECTION),
            "index_type": query.get("index", "FLAT" if lite else "AUTOINDEX").upper(),
            "token": query.get("token")}



class MilvusIndex:
    """A Milvus collection as a vector index (see the module doc). Thread-safe (one lock)."""

    metric = "ip"
    #: :meth:`search` takes ``path_prefix`` / ``min_area`` / ``kinds`` (see the ``VectorIndex`` protocol)
    supports_filters = True

    def __init__(self, client: Any, collection: str, dim: int, url: str, *, lite: bool, index_type: str,
                 readonly: bool = False, attrs: AttrsFn | None = None):
        self._client = client
        self.collection = collection
        self.dim = int(dim)
        self.url = url
        self.lite = lite
        self._index_type = index_type
        self.readonly = readonly
        #: gives ``path``/``area``/``kind`` of region ids when :meth:`add` is called without them
        self.attrs = attrs
        self._lock = threading.RLock()
        self._dirty = False
        #: search breadth for HNSW (``ef``) and IVF (``nprobe``) collections
        self.ef_search = 128
        self.nprobe = 32

    # ------------------------------------------------------------------ construction
    @classmethod
    def open(cls, url: str, dim: int, base_dir: str | Path | None = None, *, readonly: bool = False,
             attrs: AttrsFn | None = None) -> "MilvusIndex":
        """Connect to (and, unless ``readonly``, create) the collection of ``url``."""
        try:
            from pymilvus import MilvusClient
        except ImportError as exc:
            raise MissingDependencyError("pymilvus", "the Milvus vector index", "milvus") from exc
        if dim <= 0:
            raise StoreError(f"vector dimension must be positive, got {dim}")
        cfg = parse_url(url, base_dir)
        if cfg["lite"]:
            try:
                import milvus_lite  # noqa: F401
            except ImportError as exc:
                raise MissingDependencyError("milvus-lite", "Milvus Lite (milvus:// URLs)", "milvus") from exc
            Path(cfg["uri"]).parent.mkdir(parents=True, exist_ok=True)
        kw = {"token": cfg["token"]} if cfg["token"] else {}
        try:
            client = MilvusClient(cfg["uri"], **kw)
        except Exception as exc:  # pymilvus raises its own exception types for every connection problem
            raise StoreError(f"cannot open the Milvus vector store {url!r}: {exc}") from exc
        index = cls(client, cfg["collection"], dim, url, lite=cfg["lite"], index_type=cfg["index_type"],
                    readonly=readonly, attrs=attrs)
        index._ensure_collection()
        return index

    def _ensure_collection(self) -> None:
        c = self._client
        if c.has_collection(self.collection):
            desc = c.describe_collection(self.collection)
            for f in desc.get("fields", []):
                if f.get("name") == "vector":
                    have = int((f.get("params") or {}).get("dim", self.dim))
                    if have != self.dim:
                        raise StoreError(f"the Milvus collection {self.collection!r} holds {have}-d vectors, this "
                                         f"data dir needs {self.dim}; use another collection or run reindex")
            c.load_collection(self.collection)
            return
        if self.readonly:
            raise StoreError(f"the Milvus collection {self.collection!r} does not exist at {self.url}")
        self._create_collection()

    def _create_collection(self) -> None:
        from pymilvus import DataType

        c = self._client
        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("path", DataType.VARCHAR, max_length=_MAX_PATH)
        schema.add_field("area", DataType.INT64)
        schema.add_field("kind", DataType.VARCHAR, max_length=16)
        params = c.prepare_index_params()
        extra: dict[str, Any] = {}
        if self._index_type == "HNSW":
            extra = {"M": 32, "efConstruction": 80}
        elif self._index_type.startswith("IVF"):
            extra = {"nlist": 1024} | ({"m": max(1, self.dim // 8), "nbits": 8} if self._index_type == "IVF_PQ" else {})
        params.add_index(field_name="vector", index_type=self._index_type, metric_type="IP", params=extra)
        c.create_collection(self.collection, schema=schema, index_params=params, consistency_level="Strong")

    # ------------------------------------------------------------------ properties
    @property
    def index_type(self) -> str:
        return f"milvus:{self._index_type}"

    @property
    def location(self) -> str:
        return self.url

    @property
    def tombstone_count(self) -> int:
        return 0

    @property
    def dirty(self) -> bool:
        return self._dirty

    def __len__(self) -> int:
        with self._lock:
            res = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"]) if res else 0

    @property
    def ntotal(self) -> int:
        return len(self)

    def ids(self) -> np.ndarray:
        """Live ids (int64), in no particular order."""
        out: list[np.ndarray] = []
        with self._lock:
            it = self._client.query_iterator(self.collection, batch_size=_PAGE, filter="id >= 0",
                                             output_fields=["id"])
            try:
                while True:
                    page = it.next()
                    if not page:
                        break
                    out.append(np.fromiter((r["id"] for r in page), np.int64, len(page)))
            finally:
                it.close()
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    # ------------------------------------------------------------------ mutation
    def _writable(self) -> None:
        if self.readonly:
            raise StoreError("this vector index was opened read-only")

    def add(self, ids: np.ndarray, vectors: np.ndarray, attrs: dict[str, Any] | None = None) -> None:
        """Upsert float32 ``(n, dim)`` L2-normalised ``vectors`` under int64 ``ids``. ``attrs`` (optional,
        else asked from :attr:`attrs`): ``path`` (str), ``area`` (pixels), ``kind`` per id."""
        self._writable()
        ids, vectors = prepare_additions(ids, vectors, self.dim)
        if ids.size == 0:
            return
        if attrs is None and self.attrs is not None:
            attrs = self.attrs(ids)
        attrs = attrs or {}
        paths = attrs.get("path", [""] * ids.size)
        areas = attrs.get("area", np.zeros(ids.size, np.int64))
        kinds = attrs.get("kind", ["mask"] * ids.size)
        with self._lock:
            for s in range(0, ids.size, _INSERT_CHUNK):
                rows = [{"id": int(ids[i]), "vector": vectors[i], "path": str(paths[i])[:_MAX_PATH],
                         "area": int(areas[i]), "kind": str(kinds[i])}
                        for i in range(s, min(ids.size, s + _INSERT_CHUNK))]
                self._client.upsert(self.collection, rows)
            self._dirty = True

    def train(self, sample: np.ndarray) -> None:
        """Milvus builds its index server-side; nothing to train."""

    def remove(self, ids: np.ndarray) -> None:
        """Remove ``ids`` (unknown ids are ignored)."""
        self._writable()
        ids = np.unique(as_ids(ids))
        if ids.size == 0:
            return
        with self._lock:
            for s in range(0, ids.size, _INSERT_CHUNK):
                self._client.delete(self.collection, ids=[int(i) for i in ids[s:s + _INSERT_CHUNK]])
            self._dirty = True

    def reset(self, factory: str | None = None, expected_n: int = 0) -> int:
        """Drop every vector (the collection is recreated empty; used by ``reindex``). Milvus chooses
        and trains its index server-side, so ``factory`` is ignored and no sample is needed."""
        self._writable()
        with self._lock:
            self._client.drop_collection(self.collection)
            self._create_collection()
            self._dirty = True
        return 0

    # ------------------------------------------------------------------ search
    @staticmethod
    def filter_expr(path_prefix: str | None = None, min_area: int | None = None,
                    kinds: tuple[str, ...] | list[str] | None = None) -> str:
        """The Milvus boolean expression for these filters, a superset of the exact filter (a ``%``
        or ``_`` in the prefix acts as a wildcard; a prefix with quotes or backslashes is left out);
        the caller filters exactly afterwards."""
        parts = []
        if path_prefix and not (_LIKE_UNSAFE & set(path_prefix)) and len(path_prefix) < _MAX_PATH:
            parts.append(f'path like "{path_prefix}%"')
        if min_area is not None:
            parts.append(f"area >= {int(min_area)}")
        if kinds:
            safe = [k for k in kinds if k.isalnum()]
            if len(safe) == len(kinds):
                parts.append("kind in [" + ", ".join(f'"{k}"' for k in safe) + "]")
        return " and ".join(parts)

    def search(self, q: np.ndarray, k: int, *, path_prefix: str | None = None, min_area: int | None = None,
               kinds: tuple[str, ...] | list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` per query row of float32 ``q`` (``(m, dim)`` or ``(dim,)``): ``(scores float32 (m, k),
        ids int64 (m, k))`` best first; missing results have id ``-1`` and score ``-inf``. The
        keyword filters are applied inside Milvus (``min_area`` in pixels)."""
        q, k, out_s, out_i = prepare_queries(q, self.dim, k)
        m = q.shape[0]
        if m == 0:
            return out_s, out_i
        expr = self.filter_expr(path_prefix, min_area, kinds)
        limit = min(k, MAX_TOPK)
        params: dict[str, Any] = {}
        if self._index_type == "HNSW":
            params["ef"] = max(self.ef_search, limit)
        elif self._index_type.startswith("IVF"):
            params["nprobe"] = self.nprobe
        with self._lock:
            res = self._client.search(self.collection, data=list(q), limit=limit, filter=expr, output_fields=[],
                                      search_params={"metric_type": "IP", "params": params})
        for row, hits in enumerate(res):
            for j, h in enumerate(hits):
                out_i[row, j] = int(h["id"])
                out_s[row, j] = float(h["distance"])
        return out_s, out_i

    # ------------------------------------------------------------------ persistence
    def save(self, force: bool = False) -> bool:
        """Flush pending writes to durable storage; returns False when nothing changed."""
        self._writable()
        with self._lock:
            if not (self._dirty or force):
                return False
            self._client.flush(self.collection)
            self._dirty = False
            return True

    def reload_if_changed(self) -> bool:
        """Always False: searches read the collection's current state, so there is nothing to reload."""
        return False

    def close(self) -> None:
        with self._lock:
            try:
                self._client.close()
            except Exception:  # closing a dead connection must not mask the real error
                log.debug("closing the Milvus client failed", exc_info=True)
