"""Per-image facts of the metadata store beyond the image row: the further paths holding an
image's content (``image_paths``) and what each pipeline key means (``pipelines``). A mixin of
:class:`~regionsearch.store.metadata.MetadataStore` (it uses its ``engine``, ``revision`` and
``get_image``)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from ..types import ImageRecord, RegionRecord
from .schema import image_paths, images, pipelines, regions


_CHUNK = 10_000


def _chunks(seq: Sequence[Any], n: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


@dataclasses.dataclass(frozen=True)
class ImageSummary:
    """One indexed image in a listing: its record, its number of mask regions (the whole-image
    region not counted) and when it was indexed (UTC)."""

    record: ImageRecord
    regions: int
    indexed_at: datetime | None


@dataclasses.dataclass(frozen=True)
class ImagePage:
    """A page of :meth:`ImageFactsMixin.list_images`: newest first; ``next_before`` is the
    cursor of the next page (None on the last one); ``total`` counts every match."""

    images: list[ImageSummary]
    next_before: int | None
    total: int


def _image_record(row: Any) -> ImageRecord:
    return ImageRecord(id=int(row.id), path=row.path, sha256=row.sha256 or "", width=row.width,
                       height=row.height, status=row.status, error=row.error,
                       pipeline_key=row.pipeline_key)


class ImageFactsMixin:
    engine: Any
    revision: str | None

    def image_by_path(self, path: str) -> ImageRecord | None:
        """The image stored at ``path``: its first path, or a further path of the same content
        (the record then carries the first path)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(images).where(images.c.path == path)).first()
            if row is None and self._has_paths_table:
                row = conn.execute(select(images).join(image_paths, image_paths.c.image_id == images.c.id)
                                   .where(image_paths.c.path == path)).first()
        return None if row is None else _image_record(row)

    def delete_paths(self, paths: Sequence[str]) -> tuple[int, np.ndarray]:
        """Forget ``paths``: a further path of an image is dropped; an image's first path passes
        the content to its next path when it has one, else the image goes with its regions.
        Returns (paths forgotten, region ids deleted)."""
        self._writable()
        paths = list(dict.fromkeys(paths))
        with self.engine.begin() as conn:
            n = 0
            if self._has_paths_table:
                for chunk in _chunks(paths):
                    n += conn.execute(delete(image_paths).where(image_paths.c.path.in_(chunk))).rowcount
            ids = self._image_ids_by_path(conn, paths)
            gone = []
            for image_id in ids:
                nxt = None
                if self._has_paths_table:
                    nxt = conn.execute(select(image_paths.c.path).where(image_paths.c.image_id == image_id)
                                       .order_by(image_paths.c.path).limit(1)).scalar()
                if nxt is None:
                    gone.append(image_id)
                    continue
                conn.execute(delete(image_paths).where(image_paths.c.path == nxt))
                conn.execute(update(images).where(images.c.id == image_id).values(path=nxt))
            removed = self._delete_images(conn, gone)
        return n + len(ids), removed

    @property
    def _has_paths_table(self) -> bool:
        return self.revision != "0001"

    def add_path(self, image_id: int, path: str) -> None:
        """Record ``path`` as one more place holding the content of image ``image_id``."""
        self._writable()
        with self.engine.begin() as conn:
            if conn.execute(select(image_paths.c.path).where(image_paths.c.path == path)).first() is None:
                conn.execute(insert(image_paths).values(path=path, image_id=int(image_id)))

    def paths_of_image(self, image_id: int) -> list[str]:
        """Every path of an image: the first, then the further ones (sorted)."""
        rec = self.get_image(image_id)
        if not self._has_paths_table:
            return [rec.path]
        with self.engine.connect() as conn:
            more = conn.execute(select(image_paths.c.path).where(image_paths.c.image_id == int(image_id))
                                .order_by(image_paths.c.path)).scalars().all()
        return [rec.path, *more]

    def match_paths(self, pattern: str) -> list[str]:
        """Stored paths (any status) that ``pattern`` names: the path itself, every path under it
        when it is a folder (recursive), or, when it holds ``*``/``?``/``[``, every path it matches
        as a glob (``fnmatch``; ``*`` also crosses ``/``). ``pattern`` is in database form
        (absolute, see :func:`~regionsearch.imageio.path_to_db`)."""
        import fnmatch
        import re

        literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
        if literal != pattern:
            prefix, matches = literal, lambda p: fnmatch.fnmatchcase(p, pattern)
        else:
            prefix = pattern.rstrip("/") + "/"
            matches = lambda p: p == pattern or p.startswith(prefix)  # noqa: E731
            if self.image_by_path(pattern) is not None:
                return [pattern]  # the path itself (first or further)
        found = [rec.path for rec in self.iter_images(path_prefix=prefix) if matches(rec.path)]
        if self._has_paths_table:
            with self.engine.connect() as conn:
                more = conn.execute(select(image_paths.c.path).where(*_prefix_filter(prefix, image_paths.c.path))
                                    .order_by(image_paths.c.path)).scalars().all()
            found += [p for p in more if matches(p)]
        return found

    def list_images(self, limit: int, *, before: int | None = None, path_prefix: str | None = None) -> ImagePage:
        """Indexed images, newest first (by id: a re-indexed image gets a new one), at most ``limit``
        with an id below ``before`` (keyset paging: pass the previous page's ``next_before``).
        ``path_prefix``: the image's first or any further path starts with it (case-sensitive)."""
        where = [images.c.status == "indexed"]
        if path_prefix:
            where.append(_any_path_filter(path_prefix) if self._has_paths_table else and_(*_prefix_filter(path_prefix)))
        page_where = where + ([images.c.id < int(before)] if before is not None else [])
        with self.engine.connect() as conn:
            total = int(conn.execute(select(func.count()).select_from(images).where(*where)).scalar_one())
            rows = conn.execute(select(images).where(*page_where).order_by(images.c.id.desc())
                                .limit(int(limit) + 1)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            ids = [int(r.id) for r in rows]
            counts = dict(conn.execute(select(regions.c.image_id, func.count()).where(
                regions.c.image_id.in_(ids), regions.c.kind == "mask").group_by(regions.c.image_id)).all()) if ids else {}
        found = [ImageSummary(_image_record(r), int(counts.get(int(r.id), 0)), _utc(r.indexed_at)) for r in rows]
        return ImagePage(found, ids[-1] if more else None, total)

    def record_pipeline(self, key: str, settings: dict[str, Any]) -> None:
        """Remember what ``key`` means (JSON ``settings``), once; later calls keep the first."""
        import json

        self._writable()
        with self.engine.begin() as conn:
            if conn.execute(select(pipelines.c.key).where(pipelines.c.key == key)).first() is None:
                conn.execute(insert(pipelines).values(key=key, settings=json.dumps(settings, sort_keys=True),
                                                      first_used=datetime.now(timezone.utc)))

    def pipeline_settings(self) -> dict[str, dict[str, Any]]:
        """``{pipeline key: settings}`` recorded by :meth:`record_pipeline` (empty on an older schema)."""
        import json

        if self.revision == "0001":
            return {}
        with self.engine.connect() as conn:
            return {k: json.loads(v) for k, v in conn.execute(select(pipelines.c.key, pipelines.c.settings)).all()}

    def pipeline_counts(self) -> dict[str | None, int]:
        """Indexed images per pipeline key (the per-image record of the settings that made its vectors)."""
        q = (select(images.c.pipeline_key, func.count()).where(images.c.status == "indexed")
             .group_by(images.c.pipeline_key))
        with self.engine.connect() as conn:
            return {key: int(n) for key, n in conn.execute(q).all()}

    @staticmethod
    def _show_matching_paths(conn: Connection, rows: dict[int, RegionRecord], prefix: str) -> dict[int, RegionRecord]:
        """Rows found through a further path show that path (the one under ``prefix``)."""
        other = {r.image_id for r in rows.values() if not r.image_path.startswith(prefix)}
        if not other:
            return rows
        q = (select(image_paths.c.image_id, func.min(image_paths.c.path))
             .where(image_paths.c.image_id.in_(list(other)), *_prefix_filter(prefix, image_paths.c.path))
             .group_by(image_paths.c.image_id))
        alias = {int(i): p for i, p in conn.execute(q).all()}
        return {rid: (dataclasses.replace(r, image_path=alias[r.image_id]) if r.image_id in alias else r)
                for rid, r in rows.items()}



def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were written in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _prefix_filter(prefix: str, column: Any = images.c.path) -> list[Any]:
    # LIKE (escaped) lets the database use the path index; substr makes the test case-sensitive on
    # SQLite too, whose LIKE ignores ASCII case.
    return [column.startswith(prefix, autoescape=True), func.substr(column, 1, len(prefix)) == prefix]


def _any_path_filter(prefix: str) -> Any:
    """An image whose first path or any further path starts with ``prefix``."""
    return or_(and_(*_prefix_filter(prefix)),
               exists(select(image_paths.c.path).where(image_paths.c.image_id == images.c.id,
                                                       *_prefix_filter(prefix, image_paths.c.path))))
