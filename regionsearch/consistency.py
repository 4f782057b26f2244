"""SQL <-> vector index agreement: one diff and one repair (and a full rebuild), used by the start-up sync of a
writable data dir and by ``regionsearch doctor``.

SQL is the source of truth (it stores every region's embedding), so a repair only ever changes
the index, except that ``doctor --repair`` also deletes images whose regions lack embeddings
(the next ``index`` run redoes them). Ids are region ids unless named otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .store.metadata import MetadataStore
from .vectors.base import VectorIndex


@dataclass
class DoctorReport:
    """Consistency of SQL and the vector index (ids are region ids unless named otherwise)."""

    sql_regions: int
    sql_embeddings: int
    index_vectors: int
    tombstones: int
    index_type: str
    missing_vectors: list[int] = field(default_factory=list)      # embedding in SQL, not in the index
    orphan_vectors: list[int] = field(default_factory=list)       # in the index, no embedding in SQL
    duplicate_ids: list[int] = field(default_factory=list)        # more than once in the index
    regions_without_embeddings: list[int] = field(default_factory=list)
    images_without_regions: list[int] = field(default_factory=list)  # image ids (a warning only)
    #: video tracks (region ids) without a stored frame: searchable but with nothing to show (a warning;
    #: ``remove`` and re-index the video to fix it)
    tracks_without_frames: list[int] = field(default_factory=list)
    repaired: bool = False
    actions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when SQL and the index agree exactly (images without regions are only a warning)."""
        return not (self.missing_vectors or self.orphan_vectors or self.duplicate_ids
                    or self.regions_without_embeddings)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"ok": self.ok}


def looks_in_sync(store: MetadataStore, index: VectorIndex) -> bool:
    """Cheap check (count, max and sum of ids): True when the index very likely holds exactly the
    regions that have embeddings; False means run :func:`diff`."""
    n, mx, sm = store.embedding_stats()
    live = index.ids()
    return live.size == n and int(live.max(initial=0)) == mx and int(live.sum(dtype=np.int64)) == sm


def diff(store: MetadataStore, index: VectorIndex) -> DoctorReport:
    """Compare SQL and the index, id by id."""
    counts = store.counts()
    live = index.ids()
    sql_ids = store.embedding_ids()
    uniq, cnt = np.unique(live, return_counts=True)
    return DoctorReport(
        sql_regions=counts["regions"], sql_embeddings=counts["embeddings"], index_vectors=int(live.size),
        tombstones=index.tombstone_count, index_type=index.index_type,
        missing_vectors=np.setdiff1d(sql_ids, uniq).tolist(),
        orphan_vectors=np.setdiff1d(uniq, sql_ids).tolist(),
        duplicate_ids=uniq[cnt > 1].tolist(),
        regions_without_embeddings=sorted(r for r, _ in store.regions_without_embeddings()),
        images_without_regions=store.indexed_images_without_regions(),
        tracks_without_frames=store.tracks_without_frames())


def repair(store: MetadataStore, index: VectorIndex, report: DoctorReport, dim: int, *,
           delete_incomplete: bool) -> DoctorReport:
    """Make the index hold exactly the SQL regions that have embeddings (orphans and every copy of
    a duplicated id removed, missing ones restored from SQL); with ``delete_incomplete`` also
    delete the images whose regions lack embeddings. Appends to ``report.actions``."""
    if delete_incomplete and report.regions_without_embeddings:
        image_ids = sorted({i for _, i in store.regions_without_embeddings()})
        index.remove(store.delete_images(image_ids))
        report.actions.append(f"deleted {len(image_ids)} image(s) whose regions lacked embeddings "
                              "(they will be indexed again)")
    drop = np.union1d(report.orphan_vectors, report.duplicate_ids).astype(np.int64)
    if drop.size:
        index.remove(drop)
        report.actions.append(f"removed {len(report.orphan_vectors)} orphan vector(s) and all copies of "
                              f"{len(report.duplicate_ids)} duplicated id(s)")
    still = np.setdiff1d(report.duplicate_ids, report.orphan_vectors)
    readd = np.union1d(report.missing_vectors, still).astype(np.int64)
    added = 0
    for ids, vecs in store.iter_embeddings(dim, readd):
        index.add(ids, vecs)
        added += ids.size
    if added:
        report.actions.append(f"restored {added} vector(s) from stored embeddings")
    report.repaired = True
    return report


def rebuild(store: MetadataStore, index: VectorIndex, factory: str, dim: int) -> None:
    """Empty ``index`` as ``factory``, train it on a sample of the stored embeddings when its type
    needs training, and add every stored embedding (``regionsearch reindex``)."""
    n, _, _ = store.embedding_stats()
    need = index.reset(factory, expected_n=n)
    if need and n >= need:
        all_ids = store.embedding_ids()
        n_train = min(n, max(need, 100_000))
        rng = np.random.default_rng(0)
        pick = np.sort(rng.choice(all_ids, n_train, replace=False)) if n_train < n else all_ids
        index.train(np.concatenate([v for _, v in store.iter_embeddings(dim, pick)]))
    for ids, vecs in store.iter_embeddings(dim):
        index.add(ids, vecs)
