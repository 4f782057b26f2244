"""SQLAlchemy 2.0 Core schema of the metadata store.

SQL is the source of truth of a data directory: every region's float16 embedding is stored here,
so the vector index can be rebuilt (``reindex``) or repaired after a crash without running SAM or
CLIP again. Region ids are the vector ids of the index and are never reused (SQLite
``AUTOINCREMENT``, PostgreSQL sequences).

The Alembic migrations in :mod:`regionsearch.migrations` create exactly these tables; a change
here needs a new migration.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from ..manifest import SCHEMA_VERSION  # noqa: F401  (the one definition, recorded in the manifest)

#: ids are 64-bit on PostgreSQL and the rowid alias on SQLite (``INTEGER PRIMARY KEY``).
IdType = BigInteger().with_variant(Integer, "sqlite")

metadata = MetaData()

images = Table(
    "images",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False, unique=True),
    Column("sha256", String(64), nullable=True, index=True),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("indexed_at", DateTime(timezone=True), nullable=False),
    Column("pipeline_key", String(64), nullable=True),
    Column("file_size", BigInteger, nullable=True),
    Column("file_mtime", Float, nullable=True),
    CheckConstraint("status IN ('indexed', 'failed')", name="ck_images_status"),
    sqlite_autoincrement=True,
)

regions = Table(
    "regions",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("image_id", IdType, ForeignKey("images.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(8), nullable=False),
    Column("x", Float, nullable=False),
    Column("y", Float, nullable=False),
    Column("w", Float, nullable=False),
    Column("h", Float, nullable=False),
    Column("area", BigInteger, nullable=False),
    Column("rle_counts", Text, nullable=False),
    Column("rle_h", Integer, nullable=False),
    Column("rle_w", Integer, nullable=False),
    Column("predicted_iou", Float, nullable=True),
    Column("stability_score", Float, nullable=True),
    CheckConstraint("kind IN ('whole', 'mask')", name="ck_regions_kind"),
    sqlite_autoincrement=True,
)

embeddings = Table(
    "embeddings",
    metadata,
    Column("region_id", IdType, ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True,
           autoincrement=False),
    #: little-endian float16 bytes, ``dim * 2`` of them
    Column("vector", LargeBinary, nullable=False),
)

#: key/value facts about the store itself (its identity, so a data dir can tell its own database
#: from another one).
store_meta = Table(
    "store_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

#: what each pipeline key of ``images.pipeline_key`` means: ``settings`` is JSON
#: (``{"segmenter": ..., "crop": ...}`` as in the manifest), written when a writer first uses the key
pipelines = Table(
    "pipelines",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("settings", Text, nullable=False),
    Column("first_used", DateTime(timezone=True), nullable=False),
)

#: further paths of an indexed image: byte-identical copies found at other paths (the image row's
#: ``path`` is the first one); searchable by path prefix and removable like the first
image_paths = Table(
    "image_paths",
    metadata,
    Column("path", Text, primary_key=True),
    Column("image_id", IdType, ForeignKey("images.id", ondelete="CASCADE"), nullable=False, index=True),
)

# ---------------------------------------------------------------------------------------- videos
# A video is a row of ``images`` (path, sha256, upright width/height, status, error, pipeline key:
# so lookup by content, failures, copies, path filters and ``remove`` treat it like an image) plus
# a ``videos`` row with what only a video has.
#
# Vector ids: every track is ALSO a row of ``regions`` (image_id = the video's images row; box,
# area and mask = the track's best frame; kind stored as 'mask', read back as 'track' through the
# ``tracks`` row that points at it) with its vector in ``embeddings``. So tracks and image regions
# share one id sequence and one vector index, ``region_id`` in hits is that id for both, and
# everything built on regions + embeddings (the index sync after a crash, ``doctor``, ``reindex``,
# deletes) covers tracks unchanged. The stored kind stays 'mask' because widening the SQLite CHECK
# constraint would mean rebuilding the regions table (and cascading its embeddings) in a migration.

videos = Table(
    "videos",
    metadata,
    Column("image_id", IdType, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True,
           autoincrement=False),
    Column("fps", Float, nullable=False),               # average frame rate
    Column("duration_s", Float, nullable=True),         # seconds (None when the container does not say)
    Column("n_frames", Integer, nullable=True),         # decoded frames
    Column("sample_fps", Float, nullable=False),        # frames per second the tracks were built from
    Column("rotation", Integer, nullable=False),        # display rotation applied (degrees)
    Column("codec", String(32), nullable=False),
)

#: one row per track, keyed by its ``regions`` row (whose id is the track's vector id)
tracks = Table(
    "tracks",
    metadata,
    Column("region_id", IdType, ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True,
           autoincrement=False),
    Column("video_id", IdType, ForeignKey("images.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("frame_start", Integer, nullable=False),
    Column("frame_end", Integer, nullable=False),
    Column("t_start", Float, nullable=False),
    Column("t_end", Float, nullable=False),
    Column("best_frame", Integer, nullable=False),
    Column("best_t", Float, nullable=False),
    Column("n_frames", Integer, nullable=False),
)

#: a track's mask at each sampled frame it was seen on: ``frame`` counts the video's own decoded
#: frames from 0, ``t`` is that frame's presentation time (seconds), box XYWH pixels, COCO RLE
track_frames = Table(
    "track_frames",
    metadata,
    Column("region_id", IdType, ForeignKey("tracks.region_id", ondelete="CASCADE"), primary_key=True,
           autoincrement=False),
    Column("frame", Integer, primary_key=True, autoincrement=False),
    Column("t", Float, nullable=False),
    Column("x", Float, nullable=False),
    Column("y", Float, nullable=False),
    Column("w", Float, nullable=False),
    Column("h", Float, nullable=False),
    Column("area", BigInteger, nullable=False),
    Column("rle_counts", Text, nullable=False),
    Column("rle_h", Integer, nullable=False),
    Column("rle_w", Integer, nullable=False),
    Column("score", Float, nullable=True),
)
