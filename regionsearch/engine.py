"""The engine: one data directory + one pipeline, shared by the CLI and the API.

It opens the data dir lazily with the pipeline's manifest and the config's index settings, runs
an indexing runner by name (registered in :mod:`regionsearch.runners`; the engine never imports
``indexer``) and answers queries through :func:`regionsearch.search.search`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import Config
from .datadir import DataDir
from .errors import IndexMismatchError
from .manifest import MANIFEST_NAME, default_data_dir, read_manifest_file
from .pipeline import Pipeline
from .runners import get_runner
from .search import Query, SearchFilters, search
from .types import SearchHit


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
        self._datadir: DataDir | None = None
        self._lock = threading.Lock()

    def open_datadir(self, readonly: bool | None = None) -> DataDir:
        """A new handle on this engine's data dir (the caller closes it); ``readonly`` defaults to
        the engine's. A writer gets the pipeline's manifest (created if needed)."""
        ro = self.readonly if readonly is None else readonly
        manifest = self.pipeline.manifest() if (self._create or readonly is False) else None
        idx = self.config.index
        return DataDir.open(self.data_dir, manifest=manifest, db_url=self.db_url, index_factory=idx.factory,
                            readonly=ro, save_every=idx.save_every, save_interval_s=idx.save_interval_s,
                            vectors_url=self.vectors_url)

    @property
    def datadir(self) -> DataDir:
        with self._lock:
            if self._datadir is None:
                self._datadir = self.open_datadir()
            return self._datadir

    @property
    def is_open(self) -> bool:
        """Whether :attr:`datadir` has been opened (without opening it)."""
        return self._datadir is not None

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
              runner: str = "local", ray_address: str | None = None, reindex_changed: bool = False) -> Any:
        """Index ``paths`` with the runner registered as ``runner``: ``local`` (this process) or
        ``ray`` (Ray Data, on the cluster at ``ray_address``, e.g. ``auto``; a local Ray instance
        when None).

        Images of the data dir indexed with other settings (crop, segmenter: another pipeline
        key) are re-indexed too with ``reindex_changed``; without it such a run is refused with
        :class:`~regionsearch.errors.IndexMismatchError` before anything is written, so one dir
        never silently mixes settings."""
        self.pipeline.preflight()
        stale = self.stale_images()
        if stale and not reindex_changed:
            raise IndexMismatchError(
                f"the data dir {self.data_dir} has {len(stale)} image(s) indexed with other settings "
                f"({self._settings_change()}); pass --reindex-changed to re-index them with this run's "
                "settings, or use a new --data-dir (nothing was changed)")
        extra = [p for p in stale if os.path.exists(p)]
        run = get_runner(runner)
        return run(list(paths) + extra, self.config, self.datadir, self.pipeline, progress=progress,
                   workers=workers, ray_address=ray_address)

    def stale_images(self) -> list[str]:
        """Files of indexed images whose pipeline key is not this config's (read-only check; an
        empty list for a new data dir)."""
        if not (self.data_dir / MANIFEST_NAME).is_file():
            return []
        from .imageio import path_from_db

        keys = {self.config.pipeline_key(), self.config.video_pipeline_key()}  # images' and videos'
        dd = self._datadir or self.open_datadir(readonly=True)
        try:
            return [path_from_db(rec.path) for rec in dd.iter_images(status="indexed") if rec.pipeline_key not in keys]
        finally:
            if dd is not self._datadir:
                dd.close()

    def _settings_change(self) -> str:
        """``name old -> new`` for the settings that differ from the manifest's (for messages)."""
        old = _flatten(read_manifest_file(self.data_dir / MANIFEST_NAME) or {}, ("segmenter", "crop"))
        new = _flatten(self.pipeline.settings(), ("segmenter", "crop"))
        diff = [f"{k.rsplit('.', 1)[-1]} {old.get(k)} -> {v}" for k, v in new.items() if old.get(k) != v
                and k != "crop.batch_size"]
        return ", ".join(diff) or "an older pipeline version"

    # -- queries ----------------------------------------------------------------------------
    def query(self, query: Query, k: int = 10, filters: SearchFilters | None = None) -> list[SearchHit]:
        """Ranked hits of ``query`` (text, image, region id or vector) in this data dir."""
        return search(self.datadir, query, k, filters, encoder=self.pipeline, config=self.config.search)

    def search(self, text: str, k: int = 10, filters: SearchFilters | None = None) -> list[SearchHit]:
        """Regions best matching ``text`` (cosine similarity of CLIP embeddings)."""
        return self.query(Query(text=text), k, filters)

    def search_image(self, image: np.ndarray, k: int = 10, filters: SearchFilters | None = None) -> list[SearchHit]:
        """Regions similar to a whole query image (or crop), ``HWC uint8 RGB``."""
        return self.query(Query(image=image), k, filters)

    def similar(self, region_id: int, k: int = 10, filters: SearchFilters | None = None) -> list[SearchHit]:
        """Regions similar to an indexed region (itself excluded)."""
        return self.query(Query(region_id=region_id), k, filters)


def _flatten(data: dict[str, Any], keys: Sequence[str], prefix: str = "") -> dict[str, Any]:
    """``{"a.b.c": value}`` of the nested dicts under ``keys`` of ``data``."""
    out: dict[str, Any] = {}
    for key in keys:
        value = data.get(key)
        if isinstance(value, dict):
            out.update(_flatten(value, list(value), f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
