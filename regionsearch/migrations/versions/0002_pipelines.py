"""pipelines: the settings behind each pipeline key (per-image facts shown by `info`);
image_paths: further paths holding the same indexed content (content stored once, paths many)

Every indexed image already records its ``pipeline_key``; this table says what the key means
(segmenter and crop settings as JSON), so a data dir indexed under several settings can say which
images used which. Older stores gain an empty table; their keys are described by the manifest.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("first_used", sa.DateTime(timezone=True), nullable=False),
    )


    op.create_table(
        "image_paths",
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("image_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                  sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    )
    op.create_index("ix_image_paths_image_id", "image_paths", ["image_id"])


def downgrade() -> None:
    op.drop_index("ix_image_paths_image_id", table_name="image_paths")
    op.drop_table("image_paths")
    op.drop_table("pipelines")
