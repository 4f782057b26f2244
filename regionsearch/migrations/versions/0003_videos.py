"""videos, tracks, track_frames: videos indexed as object tracks

A video is an ``images`` row (path, content hash, status) plus a ``videos`` row; each track is a
``regions`` row (its best frame; its id is the track's vector id) plus a ``tracks`` row, and its
mask at every sampled frame is a ``track_frames`` row. Existing tables are not touched, so an
upgrade is three CREATE TABLEs whatever the store's size.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "videos",
        sa.Column("image_id", Id, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True,
                  autoincrement=False),
        sa.Column("fps", sa.Float, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("n_frames", sa.Integer, nullable=True),
        sa.Column("sample_fps", sa.Float, nullable=False),
        sa.Column("rotation", sa.Integer, nullable=False),
        sa.Column("codec", sa.String(32), nullable=False),
    )
    op.create_table(
        "tracks",
        sa.Column("region_id", Id, sa.ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True,
                  autoincrement=False),
        sa.Column("video_id", Id, sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("frame_start", sa.Integer, nullable=False),
        sa.Column("frame_end", sa.Integer, nullable=False),
        sa.Column("t_start", sa.Float, nullable=False),
        sa.Column("t_end", sa.Float, nullable=False),
        sa.Column("best_frame", sa.Integer, nullable=False),
        sa.Column("best_t", sa.Float, nullable=False),
        sa.Column("n_frames", sa.Integer, nullable=False),
    )
    op.create_index("ix_tracks_video_id", "tracks", ["video_id"])
    op.create_table(
        "track_frames",
        sa.Column("region_id", Id, sa.ForeignKey("tracks.region_id", ondelete="CASCADE"), primary_key=True,
                  autoincrement=False),
        sa.Column("frame", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("t", sa.Float, nullable=False),
        sa.Column("x", sa.Float, nullable=False),
        sa.Column("y", sa.Float, nullable=False),
        sa.Column("w", sa.Float, nullable=False),
        sa.Column("h", sa.Float, nullable=False),
        sa.Column("area", sa.BigInteger, nullable=False),
        sa.Column("rle_counts", sa.Text, nullable=False),
        sa.Column("rle_h", sa.Integer, nullable=False),
        sa.Column("rle_w", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("track_frames")
    op.drop_index("ix_tracks_video_id", table_name="tracks")
    op.drop_table("tracks")
    op.drop_table("videos")
