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
