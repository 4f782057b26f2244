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
    #: the config preset the dir was created with (``tiny``, ...): commands without ``--config``
    #: start from it (query-time settings such as the scene vocabulary), then apply the recorded
    #: models and pipeline; None for a YAML-file config or an older manifest (the default preset)
    preset: str | None = None

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

    def settings(self) -> dict[str, Any]:
        """The settings that change what an image's regions and vectors are, besides the
        embedder: ``{"segmenter": ..., "crop": ...}`` (what :attr:`pipeline_key` hashes)."""
        return {"segmenter": self.segmenter, "crop": self.crop}

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
            raise StoreError(no_data_dir_message(root))
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


def no_data_dir_message(root: Path | str) -> str:
    """The one line every read command gives for a path that holds no data dir."""
    return f"no regionsearch data dir at {root}; create one with `regionsearch index`"


def check_data_dir_path(root: Path | str, *, must_exist: bool) -> dict[str, Any] | None:
    """Cheap checks of a ``--data-dir`` before any model loads; returns its manifest JSON (None for
    a new dir). A path that is a file is refused; with ``must_exist`` (every command that only
    reads) so is a path without a manifest, which is never created. Raises :class:`StoreError`."""
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise StoreError(f"the data dir {root} is a file, not a directory; pass a directory with --data-dir")
    data = read_manifest_file(root / MANIFEST_NAME) if root.is_dir() else None
    if data is None and must_exist:
        raise StoreError(no_data_dir_message(root))
    return data


def recorded_pipeline(data: dict[str, Any]) -> dict[str, Any]:
    """The config overrides (a nested dict for :func:`~regionsearch.config.load_config`) that
    rebuild the pipeline a manifest's JSON records: the embedder, SAM source, mask-generator
    parameters and crop settings. Fields an older manifest lacks are left to the preset."""
    over: dict[str, Any] = {"models": {"clip": {"model": data["embedder"], "pretrained": data.get("pretrained")}}}
    seg = data.get("segmenter") or {}
    if isinstance(seg.get("sam"), dict):
        over["models"]["sam"] = {k: v for k, v in seg["sam"].items() if k != "cache_dir"}
    segment: dict[str, Any] = dict(seg.get("amg") or {})
    for name in ("max_regions", "generator", "coarse_to_fine", "coarse_step", "whole_image_region"):
        if name in seg:
            segment[name] = seg[name]
    if seg:  # a manifest from before drop_fragments recorded masks with their fragments
        segment["drop_fragments"] = bool(seg.get("drop_fragments", False))
    if segment:
        over["segment"] = segment
    if data.get("crop"):
        over["embed"] = dict(data["crop"])
    return over


def load_config_for(data: dict[str, Any] | None, name: str | None = None,
                    overrides: dict[str, Any] | None = None) -> Any:
    """The :class:`~regionsearch.config.Config` a command uses on a data dir whose manifest JSON is
    ``data`` (None: a new dir, the preset as is).

    Without a preset ``name`` (and no ``REGIONSEARCH_CONFIG``) the models and pipeline settings
    come from the manifest, so a dir indexed with ``--config tiny`` needs no ``--config`` again;
    ``overrides`` (command-line flags, device) apply on top. An explicit preset or override whose
    embedder is not the one the dir's vectors were made with raises :class:`IndexMismatchError`
    before any model loads."""
    from .config import _merge, list_presets, load_config

    name = name or os.environ.get("REGIONSEARCH_CONFIG") or None
    if data is None:
        return load_config(name, overrides)
    if name is None:
        preset = data.get("preset")
        base = preset if preset in list_presets() else "default"
        cfg = load_config(base, _merge(recorded_pipeline(data), overrides or {}))
    else:
        cfg = load_config(name, overrides)
    clip = cfg.models.clip
    if (clip.model, clip.pretrained) != (data["embedder"], data.get("pretrained")):
        raise IndexMismatchError(
            f"this data dir holds vectors of CLIP {_model_label(data['embedder'], data.get('pretrained'))} "
            f"but this run asks for {_model_label(clip.model, clip.pretrained)}, which cannot search or extend "
            "them; drop --config/--clip-model to use the data dir's own models, or use a new --data-dir")
    return cfg


def _model_label(model: str, pretrained: str | None) -> str:
    return f"{model} ({pretrained})" if pretrained else model
