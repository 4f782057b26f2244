"""The vector index protocol. Ids are SQL region ids (int64); vectors are float32 ``(n, d)``
L2-normalised; scores are inner products (cosine similarity), higher is better."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VectorIndex(Protocol):
    dim: int

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` (float32 ``(n, dim)``, L2-normalised) under ``ids`` (int64 ``(n,)``)."""

    def remove(self, ids: np.ndarray) -> None:
        """Remove ``ids``; they are never returned by :meth:`search` afterwards."""

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` of each query row: ``(scores float32 (m, k), ids int64 (m, k))``, ``-1`` = none."""

    def ids(self) -> np.ndarray:
        """The live ids (int64), in no particular order."""

    def __len__(self) -> int:
        """Number of live vectors."""

    def save(self) -> None:
        """Persist atomically (a crash leaves either the old or the new file, never half of one)."""


def prepare_queries(q: np.ndarray, dim: int, k: int) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Validate a search call shared by every backend: returns ``(q as float32 (m, dim), k,
    empty scores (m, k) filled with -inf, empty ids (m, k) filled with -1)``."""
    from ..errors import StoreError

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
    from ..errors import StoreError

    ids = as_ids(ids)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim or vectors.shape[0] != ids.size:
        raise StoreError(f"add() needs ids (n,) and vectors (n, {dim}); got {ids.shape} and {vectors.shape}")
    return ids, vectors
