"""The vector-backend contract. Ids are SQL region ids (int64); vectors are float32 ``(n, d)``
L2-normalised; scores are inner products (cosine similarity), higher is better.

:class:`VectorIndex` declares everything :class:`~regionsearch.datadir.DataDir` uses, so a
backend written only against it (FAISS, Milvus, the brute-force numpy index of the test suite)
can be plugged into a data dir through :func:`regionsearch.vectors.registry.register_backend`.
The data dir never asks which backend it holds: differences are capability flags
(``supports_filters``) and behaviour behind the same methods (``reset``/``train``,
``reload_if_changed``, tombstones).
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import StoreError


@runtime_checkable
class VectorIndex(Protocol):
    #: vector dimension
    dim: int
    #: always ``"ip"`` (inner product on L2-normalised vectors)
    metric: str
    #: True when :meth:`search` applies its keyword filters itself (so a filtered query still
    #: gets ``k`` candidates); False: they are accepted and ignored (the caller filters exactly)
    supports_filters: bool

    @property
    def index_type(self) -> str:
        """The concrete index now built, e.g. ``Flat``, ``HNSW32,Flat``, ``milvus:FLAT``."""

    @property
    def location(self) -> str:
        """Where the vectors live (a file name inside the data dir, or a URL)."""

    @property
    def tombstone_count(self) -> int:
        """Removed ids still physically stored (hidden from :meth:`search`/:meth:`ids`); 0 if none."""

    @property
    def dirty(self) -> bool:
        """True when there are changes :meth:`save` has not persisted yet."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` (float32 ``(n, dim)``, L2-normalised) under ``ids`` (int64 ``(n,)``)."""

    def remove(self, ids: np.ndarray) -> None:
        """Remove ``ids`` (unknown ids are ignored); they are never returned by :meth:`search` afterwards."""

    def search(self, q: np.ndarray, k: int, *, path_prefix: str | None = None, min_area: int | None = None,
               kinds: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` of each query row of ``q`` (float32 ``(m, dim)`` or ``(dim,)``): ``(scores float32
        (m, k), ids int64 (m, k))`` best first, ``-1``/``-inf`` = none. The filters (image path
        prefix, minimum area in pixels, region kinds) are a superset hint honoured only when
        :attr:`supports_filters`."""

    def ids(self) -> np.ndarray:
        """The live ids (int64), in no particular order (duplicates included if the index holds any)."""

    def __len__(self) -> int:
        """Number of live vectors."""

    def reset(self, factory: str | None = None, expected_n: int = 0) -> int:
        """Drop every vector and start an empty index of ``factory`` (None: the current one) sized
        for ``expected_n`` vectors; returns how many sample vectors :meth:`train` needs (0: none)."""

    def train(self, sample: np.ndarray) -> None:
        """Train an empty index on ``sample`` (float32 ``(n, dim)``); a no-op for untrained types."""

    def save(self, force: bool = False) -> bool:
        """Persist atomically (a crash leaves the old or the new state, never half of one); returns
        False when nothing changed and ``force`` is not set."""

    def reload_if_changed(self) -> bool:
        """Pick up what another process saved since this one loaded (True when reloaded)."""

    def close(self) -> None:
        """Release files/connections; the index is unusable afterwards."""


def prepare_queries(q: np.ndarray, dim: int, k: int) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Validate a search call shared by every backend: returns ``(q as float32 (m, dim), k,
    empty scores (m, k) filled with -inf, empty ids (m, k) filled with -1)``."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        raise StoreError(f"queries must have shape (m, {dim}), got {q.shape}")
    k = int(k)
    if k <= 0:
        raise StoreError(f"k must be positive, got {k}")
    m = q.shape[0]
    return q, k, np.full((m, k), -np.inf, np.float32), np.full((m, k), -1, np.int64)


def as_ids(ids: np.ndarray) -> np.ndarray:
    """Region ids as a contiguous int64 vector."""
    return np.ascontiguousarray(np.asarray(ids).ravel(), dtype=np.int64)


def prepare_additions(ids: np.ndarray, vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate an ``add`` call shared by every backend: ``(int64 ids (n,), float32 vectors (n, dim))``."""
    ids = as_ids(ids)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim or vectors.shape[0] != ids.size:
        raise StoreError(f"add() needs ids (n,) and vectors (n, {dim}); got {ids.shape} and {vectors.shape}")
    return ids, vectors
