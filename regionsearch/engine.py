"""The engine: one data directory + one pipeline, shared by the CLI and the API."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import Config, load_config
from .errors import InvalidRequestError, NotFoundError
from .pipeline import Pipeline
from .search import SearchFilters, search_vector
from .types import SearchHit

DEFAULT_DATA_DIR = "./regionsearch-data"
MAX_TEXT_CHARS = 1000


def default_data_dir() -> str:
    return os.environ.get("REGIONSEARCH_DATA_DIR") or DEFAULT_DATA_DIR


class Engine:
    """Opens a data directory for a pipeline and answers queries.

    The vector index manifest must match the pipeline's embedder (else
    :class:`~regionsearch.errors.IndexMismatchError`).
    """

    def __init__(self, config: Config, data_dir: str | os.PathLike[str] | None = None,
                 db_url: str | None = None, readonly: bool = False, create: bool = True,
                 vectors_url: str | None = None):
        self.config = config
        self.data_dir = Path(data_dir or default_data_dir())
        self.db_url = db_url or os.environ.get("REGIONSEARCH_DB") or None
        self.pipeline = Pipeline(config)
        self.readonly = readonly
        self.vectors_url = vectors_url or os.environ.get("REGIONSEARCH_VECTORS") or None
        self._create = create
        self._datadir: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_names(cls, config: str | None = None, data_dir: str | None = None,
                   db_url: str | None = None, **kw: Any) -> "Engine":
        return cls(load_config(config), data_dir, db_url, **kw)

    @property
    def datadir(self) -> Any:
        with self._lock:
            if self._datadir is None:
                from .datadir import DataDir

                manifest = self.pipeline.manifest() if self._create else None
                self._datadir = DataDir.open(self.data_dir, manifest=manifest, db_url=self.db_url,
                                             index_factory=self.config.index.factory, readonly=self.readonly,
                                             vectors_url=self.vectors_url)
            return self._datadir

    def close(self) -> None:
        with self._lock:
            if self._datadir is not None:
                self._datadir.close()
                self._datadir = None

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- indexing ---------------------------------------------------------------------------
    def index(self, paths: Sequence[str], progress: bool = True, workers: int | None = None,
              runner: str = "local", ray_address: str | None = None) -> Any:
        """Index ``paths``; ``runner`` is ``local`` (this process) or ``ray`` (Ray Data, on the cluster
        at ``ray_address``, e.g. ``auto``; a local Ray instance when None)."""
        if runner == "ray":
            from indexer.ray_runner import run_ray

            return run_ray(paths, self.config, self.datadir, self.pipeline, progress=progress, address=ray_address)
        if runner != "local":
            from .errors import UnknownNameError

            raise UnknownNameError("runner", runner, ["local", "ray"])
        from indexer.local import run_local

        return run_local(paths, self.config, self.datadir, self.pipeline, progress=progress, workers=workers)

    # -- queries ----------------------------------------------------------------------------
    @staticmethod
    def check_text(text: str) -> str:
        """The stripped query text; empty or longer than ``MAX_TEXT_CHARS`` is an error."""
        text = (text or "").strip()
        if not text:
            raise InvalidRequestError("the query text is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidRequestError(f"the query text is longer than {MAX_TEXT_CHARS} characters")
        return text

    def text_vector(self, text: str) -> np.ndarray:
        return self.pipeline.embedder.embed_texts([self.check_text(text)])[0]

    def search(self, text: str, k: int = 10, filters: SearchFilters | None = None) -> list[SearchHit]:
        """Regions best matching ``text`` (cosine similarity of CLIP embeddings); a relational
        text ("X left of Y") goes to :func:`regionsearch.scene.relational.relational_search`."""
        from .scene.query import parse_relational

        rel = parse_relational(self.check_text(text))
        if rel is not None:
            from .scene.relational import relational_search

            return relational_search(self.datadir, self.text_vector, rel, k, filters, self.config.search.oversample)
        q = self.text_vector(text)
        return search_vector(self.datadir, q, k, filters, self.config.search.oversample,
                             whole_margin=self.config.search.whole_margin)

    def search_image(self, image: np.ndarray, k: int = 10, filters: SearchFilters | None = None) -> list[SearchHit]:
        """Regions similar to a whole query image (or crop), ``HWC uint8 RGB``."""
        from .embed.crops import square_resize, _fill_colour

        emb = self.pipeline.embedder
        crop = square_resize(image, emb.image_size, _fill_colour(emb.bundle.mean))
        q = emb.embed_images([crop])[0]
        return search_vector(self.datadir, q, k, filters, self.config.search.oversample,
                             whole_margin=self.config.search.whole_margin)

    def similar(self, region_id: int, k: int = 10, filters: SearchFilters | None = None) -> list[SearchHit]:
        """Regions similar to an indexed region (itself excluded)."""
        vec = self.datadir.region_embedding(region_id)
        if vec is None:
            raise NotFoundError(f"region {region_id} does not exist")
        return search_vector(self.datadir, vec, k, filters, self.config.search.oversample, exclude=[region_id],
                             whole_margin=self.config.search.whole_margin)
