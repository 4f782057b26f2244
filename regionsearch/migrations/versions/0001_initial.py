"""initial schema: images, regions, embeddings, store_meta

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("path", sa.Text, nullable=False, unique=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("width", sa.Integer, nullable=True),
        sa.Column("height", sa.Integer, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pipeline_key", sa.String(64), nullable=True),
        sa.Column("file_size", sa.BigInteger, nullable=True),
        sa.Column("file_mtime", sa.Float, nullable=True),
        sa.CheckConstraint("status IN ('indexed', 'failed')", name="ck_images_status"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_images_sha256", "images", ["sha256"])
    op.create_table(
        "regions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("image_id", Id, sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("x", sa.Float, nullable=False),
        sa.Column("y", sa.Float, nullable=False),
        sa.Column("w", sa.Float, nullable=False),
        sa.Column("h", sa.Float, nullable=False),
        sa.Column("area", sa.BigInteger, nullable=False),
        sa.Column("rle_counts", sa.Text, nullable=False),
        sa.Column("rle_h", sa.Integer, nullable=False),
        sa.Column("rle_w", sa.Integer, nullable=False),
        sa.Column("predicted_iou", sa.Float, nullable=True),
        sa.Column("stability_score", sa.Float, nullable=True),
        sa.CheckConstraint("kind IN ('whole', 'mask')", name="ck_regions_kind"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_regions_image_id", "regions", ["image_id"])
    op.create_table(
        "embeddings",
        sa.Column("region_id", Id, sa.ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True,
                  autoincrement=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "store_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("store_meta")
    op.drop_table("embeddings")
    op.drop_index("ix_regions_image_id", table_name="regions")
    op.drop_table("regions")
    op.drop_index("ix_images_sha256", table_name="images")
    op.drop_table("images")
