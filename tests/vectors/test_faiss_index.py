"""FaissIndex against brute-force numpy on seeded clustered data."""

from __future__ import annotations

import os

import numpy as np
import pytest

from regionsearch.errors import StoreError
from regionsearch.vectors import FaissIndex, VectorIndex, choose_factory
from regionsearch.vectors.faiss_index import tombstones_path

DIM = 32


def clustered(n, dim=DIM, n_clusters=20, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim))
    x = centers[rng.integers(0, n_clusters, n)] + 0.3 * rng.normal(size=(n, dim))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute(x, ids, q, k):
    s = q @ x.T
    top = np.argsort(-s, axis=1)[:, :k]
    return np.take_along_axis(s, top, 1), ids[top]


def test_protocol_and_auto_choice():
    assert isinstance(FaissIndex.create(None, DIM), VectorIndex)
    assert choose_factory(0, 512) == "Flat" and choose_factory(199_999, 512) == "Flat"
    assert choose_factory(200_000, 512) == "HNSW32,Flat"
    assert choose_factory(5_000_000, 512) == "IVF8192_HNSW32,PQ64,Refine(SQ8)"
    assert choose_factory(20_000_000, 768) == "IVF16384_HNSW32,PQ96,Refine(SQ8)"
    hnsw_ivf = FaissIndex.create(None, DIM, "IVF16_HNSW32,PQ8,Refine(SQ8)")
    hnsw_ivf.add(np.arange(2000, dtype=np.int64), clustered(2000, n_clusters=300))
    assert hnsw_ivf.index_type == "IVF16_HNSW32,PQ8,Refine(SQ8)" and len(hnsw_ivf) == 2000
    assert FaissIndex.create(None, DIM, "auto", expected_n=300_000).index_type == "HNSW32,Flat"
    with pytest.raises(StoreError, match="factory"):
        FaissIndex.create(None, DIM, "NotAFactory")


def test_flat_is_exact(tmp_path):
    x, ids = clustered(2000), np.arange(2000, dtype=np.int64) * 3 + 7
    idx = FaissIndex.create(tmp_path / "v.faiss", DIM, "Flat")
    idx.add(ids, x)
    q = clustered(50, seed=1)
    s, i = idx.search(q, 10)
    bs, bi = brute(x, ids, q, 10)
    assert (i == bi).all() and np.allclose(s, bs, atol=1e-5)
    assert s.dtype == np.float32 and i.dtype == np.int64 and len(idx) == 2000
    idx.remove(ids[:100])
    assert len(idx) == 1900 and not np.isin(idx.search(q, 10)[1], ids[:100]).any()
    # fewer vectors than k: padded with -1 / -inf
    small = FaissIndex.create(None, DIM, "Flat")
    small.add(ids[:3], x[:3])
    s, i = small.search(q[:2], 5)
    assert (i[:, 3:] == -1).all() and np.isneginf(s[:, 3:]).all()


def test_hnsw_recall_and_tombstones(tmp_path):
    n = 3000
    x, ids = clustered(n), np.arange(n, dtype=np.int64) + 1
    idx = FaissIndex.create(tmp_path / "v.faiss", DIM, "HNSW32,Flat")
    idx.add(ids, x)
    q = clustered(100, seed=2)
    _, bi = brute(x, ids, q, 10)
    _, i = idx.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i, bi)])
    assert recall >= 0.95
    # remove the true top results of every query: they must never come back, k still filled
    gone = np.unique(bi[:, :5])
    idx.remove(gone)
    assert idx.tombstone_count == gone.size and len(idx) == n - gone.size
    s, i = idx.search(q, 10)
    assert not np.isin(i, gone).any() and (i >= 0).all()
    assert not np.isin(idx.ids(), gone).any()
    idx.save()
    assert tombstones_path(tmp_path / "v.faiss").exists()
    for ro in (False, True):
        again = FaissIndex.load(tmp_path / "v.faiss", factory="HNSW32,Flat", readonly=ro)
        assert again.tombstone_count == gone.size
        assert not np.isin(again.search(q, 10)[1], gone).any()


def test_hnsw_rebuilds_when_tombstones_pile_up():
    n = 1000
    x, ids = clustered(n), np.arange(n, dtype=np.int64)
    idx = FaissIndex.create(None, DIM, "HNSW32,Flat")
    idx.add(ids, x)
    idx.remove(ids[:150])
    assert idx.tombstone_count == 150
    idx.remove(ids[150:300])  # > 20 % -> rebuilt without them
    assert idx.tombstone_count == 0 and idx.ntotal == 700 and len(idx) == 700
    assert not np.isin(idx.search(x[:20], 10)[1], ids[:300]).any()
    assert sorted(idx.ids().tolist()) == ids[300:].tolist()


def test_auto_upgrades(monkeypatch):
    from regionsearch.vectors import faiss_index

    monkeypatch.setattr(faiss_index, "FLAT_MAX", 500)
    x, ids = clustered(800), np.arange(800, dtype=np.int64)
    idx = FaissIndex.create(None, DIM, "auto")
    idx.add(ids[:400], x[:400])
    assert idx.index_type == "Flat"
    idx.add(ids[400:], x[400:])
    assert idx.index_type == "HNSW32,Flat" and len(idx) == 800
    assert idx.search(x[:5], 1)[1][:, 0].tolist() == ids[:5].tolist()


def test_ivf_pq_trains_when_enough_vectors():
    x, ids = clustered(1200), np.arange(1200, dtype=np.int64)
    idx = FaissIndex.create(None, DIM, "IVF8,PQ4x4")
    idx.add(ids[:200], x[:200])
    assert idx.index_type == "Flat"  # not enough to train yet: stays exact
    idx.add(ids[200:], x[200:])
    assert idx.index_type == "IVF8,PQ4" and len(idx) == 1200
    idx.remove(ids[:10])
    assert len(idx) == 1190 and not np.isin(idx.search(x[:10], 10)[1], ids[:10]).any()
    assert sorted(idx.ids().tolist()) == ids[10:].tolist()


def test_refined_ivf_pq_the_auto_choice_above_hnsw(tmp_path, monkeypatch):
    """Above HNSW_MAX ``auto`` becomes IVF-PQ re-ranked on 8-bit copies: arbitrary (SQL) ids,
    removals as tombstones, recall well above plain PQ codes, save/load keeps all of it."""
    from regionsearch.vectors import faiss_index

    monkeypatch.setattr(faiss_index, "FLAT_MAX", 300)
    monkeypatch.setattr(faiss_index, "HNSW_MAX", 600)
    monkeypatch.setattr(faiss_index, "choose_factory",
                        lambda n, d: "Flat" if n < 300 else ("HNSW32,Flat" if n < 600 else "IVF8,PQ8,Refine(SQ8)"))
    x = clustered(3000, n_clusters=300)
    ids = np.arange(3000, dtype=np.int64) * 7 + 1000  # not 0..n-1: ids are SQL region ids
    idx = FaissIndex.create(tmp_path / "v.faiss", DIM, "auto")
    idx.add(ids[:500], x[:500])
    assert idx.index_type == "HNSW32,Flat"
    idx.add(ids[500:], x[500:])
    assert idx.index_type == "IVF8,PQ8,Refine(SQ8)" and len(idx) == 3000
    q = x[:200]
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    found = idx.search(q, 10)[1]
    recall = np.mean([len(set(f) & set(ids[e])) / 10 for f, e in zip(found, exact)])
    plain = FaissIndex.create(None, DIM, "IVF8,PQ8")
    plain.add(ids, x)
    recall_pq = np.mean([len(set(f) & set(ids[e])) / 10 for f, e in zip(plain.search(q, 10)[1], exact)])
    assert recall >= 0.95 and recall > recall_pq + 0.05, (recall, recall_pq)  # measured 0.985 vs 0.869
    idx.remove(ids[:10])
    assert idx.tombstone_count == 10 and len(idx) == 2990
    assert not np.isin(idx.search(x[:10], 10)[1], ids[:10]).any()
    idx.save()
    back = FaissIndex.load(tmp_path / "v.faiss", readonly=True)
    assert back.index_type == "IVF8,PQ8,Refine(SQ8)" and len(back) == 2990
    assert np.array_equal(back.search(q, 10)[1], idx.search(q, 10)[1])
    idx.remove(ids[10:700])  # past the tombstone fraction: rebuilt without them, same type
    assert idx.tombstone_count == 0 and idx.index_type == "IVF8,PQ8,Refine(SQ8)"
    assert sorted(idx.ids().tolist()) == ids[700:].tolist()


def test_atomic_save_ignores_leftover_temp(tmp_path):
    path = tmp_path / "v.faiss"
    x, ids = clustered(100), np.arange(100, dtype=np.int64)
    idx = FaissIndex.create(path, DIM, "Flat")
    idx.add(ids, x)
    idx.save()
    # a crash mid-save leaves a half-written temp file behind: never read
    (tmp_path / ".v.faiss.tmp-123-deadbeef").write_bytes(b"\x00garbage")
    idx.add(ids + 1000, x)
    real_replace = os.replace

    def crash(*a, **k):
        raise OSError("simulated crash before rename")

    os.replace = crash
    try:
        with pytest.raises(OSError):
            idx.save()
    finally:
        os.replace = real_replace
    again = FaissIndex.load(path, factory="Flat")
    assert len(again) == 100  # the old complete file
    assert [p.name for p in tmp_path.iterdir() if "tmp-" in p.name] == [".v.faiss.tmp-123-deadbeef"]


def test_corrupt_file_gives_clear_error(tmp_path):
    (tmp_path / "v.faiss").write_bytes(b"garbage")
    with pytest.raises(StoreError, match="reindex"):
        FaissIndex.load(tmp_path / "v.faiss")


def test_bad_shapes():
    idx = FaissIndex.create(None, DIM)
    with pytest.raises(StoreError):
        idx.add(np.arange(2), np.zeros((2, DIM + 1), np.float32))
    with pytest.raises(StoreError):
        idx.search(np.zeros((1, DIM + 1), np.float32), 3)
    assert idx.search(np.zeros(DIM, np.float32), 3)[1].tolist() == [[-1, -1, -1]]
