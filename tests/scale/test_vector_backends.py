"""The same vector-index contract for FAISS and Milvus (Milvus Lite: the real engine, in a file).

Checked against brute force on seeded clustered data (faiss ``tests/test_contrib.py`` style)."""

from __future__ import annotations

import numpy as np
import pytest

from regionsearch.testing.ci import require

from regionsearch.errors import StoreError
from regionsearch.vectors import FaissIndex, VectorIndex

DIM = 32


def clustered(n, dim=DIM, n_clusters=12, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, n_clusters, n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute(x, ids, q, k):
    s = q @ x.T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), ids[order]


def _milvus(tmp_path, name="v.db", **kw):
    require("pymilvus", "pip install -r requirements/scale.txt")
    require("milvus_lite", "pip install -r requirements/scale.txt")
    from regionsearch.vectors.milvus_index import MilvusIndex

    return MilvusIndex.open(f"milvus://{tmp_path / name}", DIM, **kw)


@pytest.fixture(params=["faiss", "milvus"])
def backend(request, tmp_path):
    """A factory ``make(name) -> index`` (same name = same storage) and a ``reopen(index)``."""
    opened = []

    def make(name="a"):
        if request.param == "faiss":
            idx = FaissIndex.create(tmp_path / f"{name}.faiss", DIM, "Flat")
        else:
            idx = _milvus(tmp_path, f"{name}.db")
        opened.append(idx)
        return idx

    def reopen(idx, name="a"):
        idx.save()
        if request.param == "faiss":
            new = FaissIndex.load(tmp_path / f"{name}.faiss", factory="Flat")
        else:
            idx.close()
            new = _milvus(tmp_path, f"{name}.db")
        opened.append(new)
        return new

    make.reopen = reopen
    make.kind = request.param
    yield make
    for idx in opened:
        if hasattr(idx, "close"):
            idx.close()


def test_protocol(backend):
    idx = backend()
    assert isinstance(idx, VectorIndex)
    assert idx.dim == DIM and len(idx) == 0 and idx.ids().size == 0
    s, i = idx.search(np.ones(DIM, np.float32) / np.sqrt(DIM), 3)
    assert s.shape == (1, 3) and (i == -1).all() and np.isneginf(s).all()


def test_exact_search_matches_brute_force(backend):
    x = clustered(600)
    ids = np.arange(600, dtype=np.int64) * 7 + 3
    idx = backend()
    idx.add(ids, x)
    assert len(idx) == 600
    assert sorted(idx.ids().tolist()) == sorted(ids.tolist())
    q = clustered(20, seed=1)
    s, i = idx.search(q, 10)
    bs, bi = brute(x, ids, q, 10)
    np.testing.assert_allclose(s, bs, atol=1e-4)
    # ties aside, the same ids in the same order
    assert (i == bi).mean() > 0.98
    # more than there is: padded with -1 / -inf
    s2, i2 = idx.search(q[:2], 700)
    assert (i2[:, :600] >= 0).all() and (i2[:, 600:] == -1).all() and np.isneginf(s2[:, 600:]).all()


def test_remove_and_readd(backend):
    x = clustered(200, seed=2)
    ids = np.arange(1, 201, dtype=np.int64)
    idx = backend()
    idx.add(ids, x)
    gone = ids[::3]
    idx.remove(np.concatenate([gone, [10_000]]))  # unknown ids are ignored
    assert len(idx) == 200 - gone.size
    assert not np.isin(idx.ids(), gone).any()
    _, i = idx.search(x[gone], 5)
    assert not np.isin(i, gone).any()
    idx.add(gone[:2], x[gone[:2] - 1])
    _, i = idx.search(x[gone[:2] - 1], 1)
    assert i[:, 0].tolist() == gone[:2].tolist()


def test_persistence(backend):
    x = clustered(100, seed=3)
    ids = np.arange(100, dtype=np.int64) + 1000
    idx = backend()
    idx.add(ids, x)
    idx.remove(ids[:10])
    new = backend.reopen(idx)
    assert len(new) == 90 and sorted(new.ids().tolist()) == ids[10:].tolist()
    _, i = new.search(x[50], 1)
    assert i[0, 0] == 1050


def test_bad_shapes(backend):
    idx = backend()
    with pytest.raises(StoreError):
        idx.add(np.arange(3), np.zeros((3, DIM + 1), np.float32))
    with pytest.raises(StoreError):
        idx.add(np.arange(2), np.zeros((3, DIM), np.float32))
    with pytest.raises(StoreError):
        idx.search(np.zeros((1, DIM - 1), np.float32), 3)
    with pytest.raises(StoreError):
        idx.search(np.zeros((1, DIM), np.float32), 0)


def test_milvus_pushes_filters_down(tmp_path):
    idx = _milvus(tmp_path)
    x = clustered(300, seed=4)
    ids = np.arange(300, dtype=np.int64)
    paths = [f"/data/{'cats' if i % 2 else 'dogs'}/{i}.png" for i in range(300)]
    area = (ids * 10).astype(np.int64)
    kind = ["whole" if i % 10 == 0 else "mask" for i in range(300)]
    idx.add(ids, x, {"path": paths, "area": area, "kind": kind})
    q = clustered(5, seed=5)
    _, i = idx.search(q, 20, path_prefix="/data/cats/", min_area=1000, kinds=("mask",))
    got = i[i >= 0]
    assert got.size == 5 * 20  # enough matches exist: filtering in Milvus still returns k
    assert (got % 2 == 1).all() and (got * 10 >= 1000).all() and (got % 10 != 0).all()
    # exact among the matching subset
    keep = (ids % 2 == 1) & (area >= 1000) & (ids % 10 != 0)
    _, bi = brute(x[keep], ids[keep], q, 20)
    assert (np.sort(i, 1) == np.sort(bi, 1)).mean() > 0.98
    # a prefix with quotes is not pushed down; LIKE wildcards only widen it (SQL filters exactly after)
    assert "like" not in idx.filter_expr(path_prefix='/data/"x/')
    assert idx.filter_expr(path_prefix="/data/c_ts/", kinds=("mask",)) == 'path like "/data/c_ts/%" and kind in ["mask"]'
    _, i = idx.search(q, 20, path_prefix="/data/c_ts/")
    assert (i[i >= 0] % 2 == 1).all() and (i >= 0).all()
    _, i = idx.search(q, 3, path_prefix="/nowhere/")
    assert (i == -1).all()
    idx.close()


def test_milvus_url_errors(tmp_path):
    from regionsearch.vectors.milvus_index import parse_url

    assert parse_url("milvus:///abs/v.db")["uri"] == "/abs/v.db"
    assert parse_url("milvus://v.db", tmp_path)["uri"] == str((tmp_path / "v.db").resolve())
    cfg = parse_url("http://host:19530?collection=c&index=hnsw")
    assert cfg == {"uri": "http://host:19530", "lite": False, "collection": "c", "index_type": "HNSW", "token": None}
    with pytest.raises(StoreError):
        parse_url("redis://x")
    with pytest.raises(StoreError):
        parse_url("milvus:///")


def test_ivf_pq_skips_polysemous_training():
    """IVF-PQ (the auto choice above 5M vectors) trains in seconds: faiss' factory turns on
    polysemous training, which search never uses and which took ~30x longer (benchmarks/vector_scale.py)."""
    import faiss

    idx = FaissIndex.create(None, DIM, "IVF16,PQ8")
    idx.train(clustered(2000, seed=6))
    inner = faiss.downcast_index(idx._index)
    assert isinstance(inner, faiss.IndexIVFPQ) and inner.is_trained and not inner.do_polysemous_training
    x = clustered(500, seed=7)
    idx.add(np.arange(500), x)
    idx.nprobe = 16
    _, i = idx.search(x[:20], 10)
    assert np.mean([j in row for j, row in zip(range(20), i)]) >= 0.8
