"""FAISS vector index: inner product on L2-normalised float32 vectors, ids = SQL region ids.

Index types (``factory``):

* ``"auto"`` (default) picks by size and upgrades itself as vectors are added:
  ``Flat`` (exact) below :data:`FLAT_MAX` (200k) vectors, ``HNSW32,Flat`` below :data:`HNSW_MAX`
  (5M), ``IVF{nlist}_HNSW32,PQ{m},Refine(SQ8)`` above (nlist = the power of two <= 4*sqrt(n), an
  HNSW over the centroids as coarse quantizer, m = dim/8; trained on a random sample): the PQ
  codes find :data:`REFINE_K_FACTOR` x k candidates, re-ranked on 8-bit scalar-quantised copies
  (1 byte per dimension). Measured by ``benchmarks/vector_scale.py`` on 10M clustered 512-d
  vectors, one thread: recall@10 0.173 with the PQ codes alone, 0.387 / 0.665 / 0.872 re-ranking
  4 / 16 / 64 x k candidates, all at about the same single-query latency (p50 10.6-11.0 ms: the
  IVF scan dominates, the re-ranking is cheap). An upgrade rebuilds the index from the vectors it
  holds (HNSW at 200k takes tens of seconds on a few cores); it never downgrades (``reindex``
  chooses afresh).
* any faiss factory string (``"Flat"``, ``"HNSW32,Flat"``, ``"IVF1024,PQ64"``). Types that need
  training stay ``Flat`` until they hold enough vectors to train on (39 * nlist), then convert.

Removal: ``Flat`` and ``IVF`` indexes remove for real. HNSW and the refined IVF cannot remove:
removed ids become *tombstones* (persisted beside the index as ``<name>.tombstones.npy``), filtered at query time with
over-fetching so ``search`` still returns ``k`` live ids; when tombstones exceed
:data:`TOMBSTONE_REBUILD_FRACTION` of the index it is rebuilt without them. ``search`` never
returns a tombstoned id.

Files are written atomically (temp file in the same directory, fsync, ``os.replace``); the
tombstones file is written before the index (as a superset) and after it, so any pair of files a
reader can see hides every removed id. Read-only opens memory-map the index where faiss allows.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, StoreError
from .base import as_ids, prepare_additions, prepare_queries
from ..store.files import atomic_write

log = logging.getLogger(__name__)

try:
    import faiss
except ImportError as _exc:  # pragma: no cover - faiss-cpu is a core dependency
    raise MissingDependencyError("faiss-cpu", "the FAISS vector index") from _exc

#: batched queries of at least this many rows use BLAS matrix products instead of per-query loops
#: (faiss' default is 20); set on faiss' process-wide knob when the first index is opened
BLAS_THRESHOLD = 4
FLAT_MAX = 200_000
HNSW_MAX = 5_000_000
TOMBSTONE_REBUILD_FRACTION = 0.2
HNSW_EF_SEARCH = 128
HNSW_EF_CONSTRUCTION = 80
REFINE_K_FACTOR = 64
_RANK = {"flat": 0, "hnsw": 1, "other": 1, "ivf": 2, "refine": 2}


def choose_factory(n: int, dim: int) -> str:
    """The ``auto`` factory string for ``n`` vectors of dimension ``dim``."""
    if n < FLAT_MAX:
        return "Flat"
    if n < HNSW_MAX:
        return "HNSW32,Flat"
    return ivf_factory(n, dim)


def ivf_shape(n: int, dim: int) -> tuple[int, int]:
    """``(nlist, m)`` of the IVF-PQ index for ``n`` vectors: nlist = the power of two <= 4 sqrt(n),
    m = the largest divisor of ``dim`` <= dim / 8 (sub-quantizers of 8+ dimensions)."""
    nlist = 2 ** int(math.floor(math.log2(max(4 * math.sqrt(max(n, 1)), 2))))
    m = max(1, dim // 8)
    while dim % m:
        m -= 1
    return nlist, m


def ivf_factory(n: int, dim: int) -> str:
    """The refined IVF-PQ factory string that ``auto`` uses above :data:`HNSW_MAX` (any ``n``)."""
    nlist, m = ivf_shape(n, dim)
    # the coarse quantizer is an HNSW over the centroids: assigning a vector costs O(log nlist)
    # distance computations instead of nlist (faiss' advice for nlist in the thousands)
    return f"IVF{nlist}_HNSW32,PQ{m},Refine(SQ8)"


def default_nprobe(nlist: int) -> int:
    """IVF lists scanned per query unless ``FaissIndex.nprobe`` says otherwise."""
    return min(nlist, max(16, nlist // 32))


def train_min(factory: str) -> int:
    """Vectors needed before an index of ``factory`` can be trained (0: no training)."""
    m = re.search(r"IVF(\d+)", factory)
    if m:
        need = 39 * int(m.group(1))
        pq = re.search(r"PQ(\d+)(?:x(\d+))?", factory)
        if pq:
            need = max(need, 4 * 2 ** int(pq.group(2) or 8))
        return need
    if re.search(r"(^|,)(PQ|SQ|LSH|PCA|OPQ|RQ|LSQ)", factory):
        return 10_000
    return 0


def _kind(index: "faiss.Index") -> str:
    if isinstance(index, (faiss.IndexIDMap2, faiss.IndexIDMap)):
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexFlat):
            return "flat"
        if isinstance(inner, faiss.IndexHNSW):
            return "hnsw"
        if isinstance(inner, faiss.IndexRefine):
            return "refine"
        return "other"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    raise StoreError(f"unsupported faiss index type {type(index).__name__}")


def _new_index(factory: str, dim: int) -> "faiss.Index":
    try:
        base = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise StoreError(f"invalid faiss index factory {factory!r} for dimension {dim}: "
                         f"{str(exc).splitlines()[0]}; examples: 'auto', 'Flat', 'HNSW32,Flat', "
                         "'IVF1024,PQ64'") from exc
    if isinstance(base, faiss.IndexIVF):
        if isinstance(base, faiss.IndexIVFPQ):
            # the factory turns on polysemous training, which only serves polysemous search (not
            # used here) and makes training take minutes instead of seconds
            base.do_polysemous_training = False
        return base
    if isinstance(base, faiss.IndexHNSW):
        base.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    if isinstance(base, faiss.IndexRefine):
        # IndexRefine has no add_with_ids / remove_ids: ids live in the IDMap2 around it and
        # removals become tombstones, as for HNSW
        ivf = faiss.try_extract_index_ivf(base.base_index)
        if ivf is not None and isinstance(faiss.downcast_index(ivf), faiss.IndexIVFPQ):
            faiss.downcast_index(ivf).do_polysemous_training = False
        base.k_factor = REFINE_K_FACTOR
    return faiss.IndexIDMap2(base)



def _describe(idx: "faiss.Index", kind: str) -> str:
    """The concrete type of ``idx`` as a factory-like string (``Flat``, ``HNSW32,Flat``, ``IVF...``)."""
    if kind == "flat":
        return "Flat"
    if kind == "hnsw":
        inner = faiss.downcast_index(idx.index)
        return f"HNSW{inner.hnsw.nb_neighbors(1)},Flat"
    if kind == "ivf":
        code = f"PQ{idx.pq.M}" if hasattr(idx, "pq") else (type(idx).__name__.replace("IndexIVF", "") or "Flat")
        return f"IVF{idx.nlist},{code}"
    if kind == "refine":
        ivf = faiss.downcast_index(faiss.extract_index_ivf(faiss.downcast_index(idx.index).base_index))
        code = f"PQ{ivf.pq.M}" if hasattr(ivf, "pq") else "Flat"
        quant = faiss.downcast_index(ivf.quantizer)
        hnsw = f"_HNSW{quant.hnsw.nb_neighbors(1)}" if isinstance(quant, faiss.IndexHNSW) else ""
        return f"IVF{ivf.nlist}{hnsw},{code},Refine(SQ8)"
    return type(faiss.downcast_index(idx.index)).__name__


def _stored_ids(idx: "faiss.Index", kind: str) -> np.ndarray:
    """Every id physically in ``idx`` (tombstoned ones included), int64."""
    if kind == "ivf":
        inv = idx.invlists
        parts = []
        for li in range(idx.nlist):
            sz = inv.list_size(li)
            if sz:
                ptr = inv.get_ids(li)
                parts.append(faiss.rev_swig_ptr(ptr, sz).copy())
                inv.release_ids(li, ptr)
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
    return faiss.vector_to_array(idx.id_map).astype(np.int64)


def _trained_index(factory: str, dim: int, vecs: np.ndarray) -> "faiss.Index":
    """A new index of ``factory``, trained on (a sample of) ``vecs`` when its type needs it; ``Flat``
    when there are too few vectors to train on."""
    index = _new_index(factory, dim)
    if index.is_trained:
        return index
    need = train_min(factory)
    if len(vecs) < need:
        return _new_index("Flat", dim)
    rng = np.random.default_rng(0)
    nl = re.search(r"IVF(\d+)", factory)
    n_train = min(len(vecs), max(need, 64 * (int(nl.group(1)) if nl else 256)))
    index.train(vecs[rng.choice(len(vecs), n_train, replace=False)] if n_train < len(vecs) else vecs)
    return index


_configured = False


def _configure_faiss() -> None:
    global _configured
    if not _configured:
        faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
        _configured = True


class FaissIndex:
    """A FAISS index stored at ``path`` (see the module doc). Thread-safe (one lock)."""

    metric = "ip"
    #: metadata filters are applied by the caller after the search
    supports_filters = False

    def __init__(self, index: "faiss.Index", path: str | os.PathLike[str] | None, *, factory: str = "auto",
                 tombstones: np.ndarray | None = None, readonly: bool = False):
        self._index = index
        self.path = None if path is None else Path(path)
        self.factory = factory
        _configure_faiss()
        self.dim = int(index.d)
        self.readonly = readonly
        self._kind = _kind(index)
        self._lock = threading.RLock()
        self._dirty = False
        tomb = np.unique(as_ids(tombstones)) if tombstones is not None else np.zeros(0, np.int64)
        if tomb.size:
            tomb = tomb[np.isin(tomb, self._raw_ids())]
        self._tomb = tomb
        self.ef_search = HNSW_EF_SEARCH
        self.nprobe: int | None = None
        self._sig = file_signature(self.path) if self.path is not None else None

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, path: str | os.PathLike[str] | None, dim: int, factory: str = "auto",
               expected_n: int = 0, readonly: bool = False) -> "FaissIndex":
        """An empty index (nothing written until :meth:`save`). ``expected_n`` lets ``auto`` start at
        the right tier (used by reindex); a type that needs training starts as ``Flat`` until
        :meth:`train` is called or enough vectors were added. A ``readonly`` index at a ``path`` that
        does not exist yet picks up the file once a writer saves it (:meth:`reload_if_changed`)."""
        if dim <= 0:
            raise StoreError(f"vector dimension must be positive, got {dim}")
        target = cls._target_for(factory, expected_n, dim)
        return cls(_new_index(target if train_min(target) == 0 else "Flat", dim), path, factory=factory,
                   readonly=readonly)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, factory: str = "auto", readonly: bool = False,
             mmap: bool | None = None) -> "FaissIndex":
        """Load the index at ``path``; ``mmap`` (default: ``readonly``) memory-maps it where faiss allows."""
        path = Path(path)
        tomb_path = tombstones_path(path)
        before = _read_tombstones(tomb_path)
        index = None
        if readonly if mmap is None else mmap:
            try:
                index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            except RuntimeError:
                index = None
        if index is None:
            try:
                index = faiss.read_index(str(path))
            except RuntimeError as exc:
                raise StoreError(f"the vector index {path} cannot be read ({str(exc).splitlines()[0]}); run "
                                 "`regionsearch reindex` to rebuild it from the stored embeddings") from exc
        after = _read_tombstones(tomb_path)
        return cls(index, path, factory=factory, tombstones=np.union1d(before, after), readonly=readonly)

    @staticmethod
    def _target_for(factory: str, n: int, dim: int) -> str:
        if factory == "auto":
            return choose_factory(n, dim)
        return factory

    # ------------------------------------------------------------------ properties
    @property
    def index_type(self) -> str:
        """The concrete type now built, as a factory-like string (``Flat``, ``HNSW32,Flat``, ``IVF...``)."""
        return _describe(self._index, self._kind)

    @property
    def location(self) -> str:
        return self.path.name if self.path is not None else "(memory)"

    @property
    def tombstone_count(self) -> int:
        return int(self._tomb.size)

    @property
    def ntotal(self) -> int:
        """Vectors stored, tombstoned ones included."""
        return int(self._index.ntotal)

    def __len__(self) -> int:
        return int(self._index.ntotal) - int(self._tomb.size)

    @property
    def dirty(self) -> bool:
        return self._dirty

    # ------------------------------------------------------------------ ids
    def _raw_ids(self) -> np.ndarray:
        return _stored_ids(self._index, self._kind)

    def ids(self) -> np.ndarray:
        """Live ids (int64); with duplicates if the index holds any (see ``doctor``)."""
        with self._lock:
            raw = self._raw_ids()
            return raw[~np.isin(raw, self._tomb)] if self._tomb.size else raw

    # ------------------------------------------------------------------ mutation
    def _writable(self) -> None:
        if self.readonly:
            raise StoreError("this vector index was opened read-only")

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add float32 ``(n, dim)`` L2-normalised ``vectors`` under int64 ``ids``."""
        self._writable()
        ids, vectors = prepare_additions(ids, vectors, self.dim)
        if ids.size == 0:
            return
        with self._lock:
            if self._tomb.size and np.isin(ids, self._tomb).any():
                # an id is coming back (only repair does that): drop its old tombstoned copy first
                self._rebuild(self._same_type(), drop=self._tomb)
            n_after = len(self) + ids.size
            target = self._target_for(self.factory, n_after, self.dim)
            ready = train_min(target) <= n_after
            target_kind = _kind(_new_index(target, self.dim)) if ready else self._kind
            if ready and (_RANK[target_kind] > _RANK[self._kind]
                          or (self.factory != "auto" and target_kind != self._kind)):
                log.info("vector index: converting %s -> %s at %d vectors", self.index_type, target, n_after)
                self._rebuild(target, extra=(ids, vectors))
            else:
                self._index.add_with_ids(vectors, ids)
            self._dirty = True

    def reset(self, factory: str | None = None, expected_n: int = 0) -> int:
        """Empty the index as ``factory`` (None: keep it) sized for ``expected_n`` vectors (``auto``
        starts at the right tier); returns the sample size :meth:`train` needs (0: none)."""
        self._writable()
        with self._lock:
            self.factory = factory or self.factory
            target = self._target_for(self.factory, expected_n, self.dim)
            need = train_min(target)
            self._set_index(_new_index("Flat" if need else target, self.dim))
            return need if expected_n >= need else 0

    def train(self, sample: np.ndarray) -> None:
        """Make an empty index the trained final type of its factory, trained on ``sample``."""
        self._writable()
        with self._lock:
            if self.ntotal:
                raise StoreError("train() is only for an empty index")
            target = self._target_for(self.factory, max(len(sample), 1), self.dim)
            if train_min(target) == 0:
                return
            index = _new_index(target, self.dim)
            index.train(np.ascontiguousarray(sample, dtype=np.float32))
            self._set_index(index)

    def remove(self, ids: np.ndarray) -> None:
        """Remove ``ids`` (unknown ids are ignored)."""
        self._writable()
        ids = np.unique(as_ids(ids))
        if ids.size == 0:
            return
        with self._lock:
            if self._kind in ("flat", "ivf"):
                if self._index.remove_ids(ids):
                    self._dirty = True
                return
            present = ids[np.isin(ids, self._raw_ids())]
            present = present[~np.isin(present, self._tomb)]
            if present.size == 0:
                return
            self._tomb = np.union1d(self._tomb, present)
            self._dirty = True
            if self._tomb.size > TOMBSTONE_REBUILD_FRACTION * max(self.ntotal, 1):
                log.info("vector index: %d tombstones of %d, rebuilding", self._tomb.size, self.ntotal)
                self._rebuild(self._same_type(), drop=self._tomb)

    def _same_type(self) -> str:
        return self.index_type if self._kind in ("flat", "hnsw", "ivf", "refine") else self.factory

    def _all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        if self._kind == "ivf":
            raise StoreError("an IVF index cannot be rebuilt from itself; run `regionsearch reindex`")
        # for the refined IVF the vectors come back from its 8-bit copies (close, not exact;
        # `regionsearch reindex` rebuilds from the float16 embeddings in SQL)
        inner = faiss.downcast_index(self._index.index)
        n = inner.ntotal
        try:
            vecs = inner.reconstruct_n(0, n) if n else np.zeros((0, self.dim), np.float32)
        except RuntimeError as exc:
            raise StoreError(f"the {self.index_type} index cannot return its vectors; run "
                             "`regionsearch reindex`") from exc
        return self._raw_ids(), np.asarray(vecs, np.float32)

    def _rebuild(self, factory: str, drop: np.ndarray | None = None,
                 extra: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        ids, vecs = self._all_vectors()
        if drop is not None and drop.size:
            keep = ~np.isin(ids, drop)
            ids, vecs = ids[keep], vecs[keep]
        if extra is not None:
            ids, vecs = np.concatenate([ids, extra[0]]), np.concatenate([vecs, extra[1]])
        index = _trained_index(factory, self.dim, vecs)
        if ids.size:
            index.add_with_ids(vecs, ids)
        self._set_index(index)

    def _set_index(self, index: "faiss.Index") -> None:
        self._index = index
        self._kind = _kind(index)
        self._tomb = np.zeros(0, np.int64)
        self._dirty = True

    # ------------------------------------------------------------------ search
    def search(self, q: np.ndarray, k: int, **filters: object) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` per query row of float32 ``q`` (``(m, dim)`` or ``(dim,)``): ``(scores float32 (m, k),
        ids int64 (m, k))`` best first; missing results have id ``-1`` and score ``-inf``. ``filters``
        are ignored (:attr:`supports_filters` is False)."""
        q, k, out_s, out_i = prepare_queries(q, self.dim, k)
        m = q.shape[0]
        with self._lock:
            n = self.ntotal
            if n == 0 or m == 0:
                return out_s, out_i
            t = self._tomb.size
            full = min(n, k + t)
            kk = min(full, k + min(t, 2 * k + 16))
            while True:
                self._set_search_params(kk)
                scores, ids = self._index.search(q, kk)
                if t:
                    bad = np.isin(ids, self._tomb) | (ids < 0)
                    order = np.argsort(bad, axis=1, kind="stable")
                    ids = np.take_along_axis(ids, order, 1)
                    scores = np.take_along_axis(scores, order, 1)
                    bad = np.take_along_axis(bad, order, 1)
                    ids[bad] = -1
                    valid = (~bad).sum(1)
                    if kk >= full or (valid >= min(k, n - t)).all():
                        break
                    kk = min(full, kk * 4)
                else:
                    break
        w = min(k, ids.shape[1])
        out_i[:, :w] = ids[:, :w]
        out_s[:, :w] = scores[:, :w]
        out_s[out_i < 0] = -np.inf
        return out_s, out_i

    def _set_search_params(self, kk: int) -> None:
        if self._kind == "hnsw":
            faiss.downcast_index(self._index.index).hnsw.efSearch = max(self.ef_search, kk)
        elif self._kind == "ivf":
            self._index.nprobe = self.nprobe or default_nprobe(self._index.nlist)
        elif self._kind == "refine":
            refine = faiss.downcast_index(self._index.index)
            ivf = faiss.extract_index_ivf(refine.base_index)
            ivf.nprobe = self.nprobe or default_nprobe(ivf.nlist)
            refine.k_factor = REFINE_K_FACTOR

    # ------------------------------------------------------------------ persistence
    def save(self, force: bool = False) -> bool:
        """Write the index and its tombstones atomically; returns False when nothing changed."""
        self._writable()
        if self.path is None:
            raise StoreError("this vector index has no file path")
        with self._lock:
            if not (self._dirty or force or not self.path.exists()):
                return False
            tomb_path = tombstones_path(self.path)
            on_disk = _read_tombstones(tomb_path)
            superset = np.union1d(on_disk, self._tomb)
            if superset.size != on_disk.size:
                _write_tombstones(tomb_path, superset)
            index = self._index
            atomic_write(self.path, lambda tmp: faiss.write_index(index, str(tmp)))
            if superset.size != self._tomb.size or not tomb_path.exists():
                _write_tombstones(tomb_path, self._tomb)
            self._dirty = False
            self._sig = file_signature(self.path)
            return True

    def reload_if_changed(self) -> bool:
        """Reload from disk if another process saved a newer index (saves are atomic renames, so
        never a half-written file). Returns True when reloaded."""
        if self.path is None:
            return False
        sig = file_signature(self.path)
        if sig == self._sig or sig[0] is None:
            return False
        fresh = self.load(self.path, factory=self.factory, readonly=self.readonly)
        with self._lock:
            self._index, self._kind, self._tomb, self._sig = fresh._index, fresh._kind, fresh._tomb, sig
            self._dirty = False
        return True

    def close(self) -> None:
        """Nothing to release (the index lives in memory or is memory-mapped)."""


def tombstones_path(index_path: str | os.PathLike[str]) -> Path:
    p = Path(index_path)
    return p.with_name(p.stem + ".tombstones.npy")


def file_signature(index_path: str | os.PathLike[str]) -> tuple:
    """Identity of the index files on disk (changes whenever a writer replaces one)."""
    sig = []
    for p in (Path(index_path), tombstones_path(index_path)):
        try:
            st = p.stat()
            sig.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            sig.append(None)
    return tuple(sig)


def _read_tombstones(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            return np.unique(np.load(f, allow_pickle=False).astype(np.int64))
    except FileNotFoundError:
        return np.zeros(0, np.int64)
    except (ValueError, OSError) as exc:
        raise StoreError(f"the tombstones file {path} is unreadable ({exc}); run `regionsearch reindex`") from exc


def _write_tombstones(path: Path, tomb: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(tomb, np.int64), allow_pickle=False)

    atomic_write(path, write)
