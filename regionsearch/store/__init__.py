"""Metadata store: SQLAlchemy 2.0 schema (SQLite default, PostgreSQL by URL) and queries."""

from .metadata import BatchWrite, MetadataStore, RegionRow, decode_vectors, encode_vectors, mask_url
from .schema import SCHEMA_VERSION, embeddings, images, metadata, regions, store_meta

__all__ = ["BatchWrite", "MetadataStore", "RegionRow", "SCHEMA_VERSION", "decode_vectors", "embeddings",
           "encode_vectors", "images", "mask_url", "metadata", "regions", "store_meta"]
