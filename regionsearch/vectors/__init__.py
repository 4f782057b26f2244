"""Vector indexes: the :class:`VectorIndex` protocol and the FAISS implementation (default).

``faiss`` is imported only when a FAISS index is created or loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import VectorIndex

if TYPE_CHECKING:
    from .faiss_index import FaissIndex

__all__ = ["VectorIndex", "FaissIndex", "choose_factory", "FLAT_MAX", "HNSW_MAX"]


def __getattr__(name: str) -> Any:
    if name in ("FaissIndex", "choose_factory", "FLAT_MAX", "HNSW_MAX"):
        from . import faiss_index

        return getattr(faiss_index, name)
    raise AttributeError(name)
