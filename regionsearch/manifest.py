"""What produced a data dir: the manifest (``manifest.json``), its compatibility rules, its
history of pipeline changes, its format/schema-version check, and the one default data-dir
location.

The file holds the :class:`Manifest` fields plus bookkeeping written by
``datadir.write_manifest_file``: ``format``, ``created_at``, ``generation`` (incremented by every
save), ``saved_at``, ``history`` (earlier segmenter/crop/pipeline keys), ``store`` (identity of
the metadata database), ``vectors`` (backend URL when not FAISS) and ``index`` (type and counts).
This module sits below the store and the vector backends: it imports neither.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import IndexMismatchError, StoreError

log = logging.getLogger(__name__)

#: where a data dir lives unless ``--data-dir`` / ``REGIONSEARCH_DATA_DIR`` says otherwise
DEFAULT_DATA_DIR = "./regionsearch-data"
MANIFEST_NAME = "manifest.json"
#: the ``format`` field of every manifest this project writes
FORMAT = "regionsearch-data-dir"
#: version of the data-dir layout and SQL schema recorded in the manifest (the Alembic revision is
#: authoritative for SQL); a data dir with a higher version is refused with a clear error
SCHEMA_VERSION = 1


def default_data_dir() -> str:
    """``$REGIONSEARCH_DATA_DIR`` or :data:`DEFAULT_DATA_DIR`."""
    return os.environ.get("REGIONSEARCH_DATA_DIR") or DEFAULT_DATA_DIR


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


def now() -> str:
    """UTC time, ISO 8601 to the second (the manifest's timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest_file(path: Path) -> dict[str, Any] | None:
    """The manifest file's JSON, or None when there is none. Raises :class:`StoreError` for a file
    that is not a regionsearch manifest or was written by a newer schema version."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path} is not valid JSON ({exc}); restore it or use a new --data-dir") from exc
    if not isinstance(data, dict) or data.get("format", FORMAT) != FORMAT:
        raise StoreError(f"{path} is not a regionsearch manifest")
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise StoreError(f"{path.parent} was written by a newer regionsearch (data-dir schema version {version}; "
                         f"this one reads up to {SCHEMA_VERSION}); upgrade regionsearch to open it")
    return data


def resolve_manifest(root: Path, existing: dict[str, Any] | None, wanted: Manifest | None,
                     index_factory: str) -> tuple[Manifest, dict[str, Any]]:
    """The manifest a data dir opens with and its file data: a new one from ``wanted`` (no
    ``existing`` file), else the stored one checked against ``wanted`` (a different embedder raises
    :class:`IndexMismatchError`; a segmenter/crop/pipeline-key change is recorded in ``history``)."""
    if existing is None:
        if wanted is None:
            raise StoreError(f"{root} is not a regionsearch data dir (no {MANIFEST_NAME}); index some images "
                             "into it first or pass the right --data-dir")
        factory = index_factory if index_factory != "auto" else wanted.index_factory
        current = dataclasses.replace(wanted, index_factory=factory, schema_version=SCHEMA_VERSION)
        return current, {"created_at": now(), "generation": 0, "history": []}
    stored = current = Manifest.from_json(existing)
    if wanted is not None:
        stored.check_compatible(wanted, f"the data dir {root}")
        if (wanted.segmenter, wanted.crop, wanted.pipeline_key) != (stored.segmenter, stored.crop,
                                                                    stored.pipeline_key):
            existing.setdefault("history", []).append(
                {"segmenter": stored.segmenter, "crop": stored.crop, "pipeline_key": stored.pipeline_key,
                 "replaced_at": now()})
            current = dataclasses.replace(stored, segmenter=wanted.segmenter, crop=wanted.crop,
                                          pipeline_key=wanted.pipeline_key)
    if index_factory != "auto" and index_factory != stored.index_factory:
        log.warning("data dir %s uses index factory %r; run reindex to change it to %r", root,
                    stored.index_factory, index_factory)
    return current, existing
