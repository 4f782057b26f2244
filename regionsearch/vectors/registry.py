"""Opening a vector backend from a data dir's ``vectors_url`` (None: FAISS in the data dir).

One place to add a backend: :func:`register_backend` maps URL schemes to an opener. Built in:

* no URL: FAISS, the file :data:`INDEX_NAME` inside the data dir (created empty when missing);
* ``milvus://...`` (Milvus Lite file), ``http(s)://``, ``tcp://``, ``grpc://`` (Milvus server).

An opener is called as ``opener(url, root, dim, factory=..., readonly=..., attrs=...)`` and
returns a :class:`~regionsearch.vectors.base.VectorIndex`; ``attrs(ids)`` gives
``path``/``area``/``kind`` lists of region ids for backends that filter on them. The data dir
records the URL in its manifest, so reopening it needs the same scheme registered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..errors import IndexMismatchError, StoreError
from .base import VectorIndex

#: the FAISS index file inside a data dir
INDEX_NAME = "vectors.faiss"

Opener = Callable[..., VectorIndex]
_OPENERS: dict[str, tuple[str, Opener]] = {}


def register_backend(scheme: str, opener: Opener, name: str | None = None) -> None:
    """Make ``scheme://...`` URLs open with ``opener`` (replaces an earlier registration); ``name``
    (default: the scheme) is the backend name recorded in the manifest."""
    _OPENERS[scheme.lower()] = (name or scheme.lower(), opener)


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def backend_name(url: str | None) -> str:
    """The backend a vectors URL names (``faiss`` for None)."""
    if not url:
        return "faiss"
    return _OPENERS.get(_scheme(url), (_scheme(url), None))[0]


def backend_schemes() -> list[str]:
    return sorted(_OPENERS)


def open_vectors(url: str | None, root: Path, dim: int, *, factory: str = "auto", readonly: bool = False,
                 attrs: Callable[[Any], dict[str, list[Any]]] | None = None) -> VectorIndex:
    """The vector backend of the data dir at ``root`` (see the module doc)."""
    if not url:
        return _open_faiss(root, dim, factory=factory, readonly=readonly)
    name, opener = _OPENERS.get(_scheme(url), ("", None))
    if opener is None:
        raise StoreError(f"unknown vector store URL {url!r}; valid schemes: {', '.join(backend_schemes())} "
                         "(e.g. milvus:///path/file.db for Milvus Lite, http://host:19530 for a Milvus server)")
    return opener(url, root, dim, factory=factory, readonly=readonly, attrs=attrs)


def _open_faiss(root: Path, dim: int, *, factory: str, readonly: bool) -> VectorIndex:
    from .faiss_index import FaissIndex

    path = root / INDEX_NAME
    if not path.exists():
        return FaissIndex.create(path, dim, factory, readonly=readonly)
    index = FaissIndex.load(path, factory=factory, readonly=readonly)
    if index.dim != dim:
        raise IndexMismatchError(f"the vector index {path} has dimension {index.dim} but the manifest says {dim}; "
                                 "run `regionsearch reindex`")
    return index


def _open_milvus(url: str, root: Path, dim: int, *, factory: str, readonly: bool,
                 attrs: Callable[[Any], dict[str, list[Any]]] | None) -> VectorIndex:
    from .milvus_index import MilvusIndex

    return MilvusIndex.open(url, dim, root, readonly=readonly, attrs=attrs)


for _s in ("milvus", "http", "https", "tcp", "grpc"):
    register_backend(_s, _open_milvus, "milvus")
