"""One contract for every vector backend, through the protocol only: FAISS, Milvus Lite and a
brute-force numpy index written in this file against :class:`VectorIndex` alone. Each backend is
opened the way a data dir opens it (:func:`open_vectors` from a URL) and then plugged into a real
:class:`DataDir`, which must never need to know which one it holds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from regionsearch.datadir import DataDir, ImageResult, Manifest
from regionsearch.types import Region
from regionsearch.vectors.base import VectorIndex, as_ids, prepare_additions, prepare_queries
from regionsearch.vectors.registry import open_vectors, register_backend

DIM = 16
MANIFEST = Manifest(embedder="ViT-B-32", pretrained="datacomp_xl_s13b_b90k", dim=DIM, pipeline_key="k1")


class BruteForceIndex:
    """Exact inner-product search over a dict of vectors, saved as one ``.npz`` (atomic rename).
    Written only against :class:`VectorIndex`; it filters by nothing (``supports_filters`` False)."""

    metric = "ip"
    supports_filters = False

    def __init__(self, path: Path, dim: int, readonly: bool = False):
        self.path, self.dim, self.readonly = path, dim, readonly
        self._vecs: dict[int, np.ndarray] = {}
        self._dirty = False
        self._mtime = None
        if path.exists():
            self._load()

    def _load(self) -> None:
        with np.load(self.path) as z:
            self._vecs = {int(i): v for i, v in zip(z["ids"], z["vectors"])}
        self._mtime = self.path.stat().st_mtime_ns

    index_type = property(lambda self: "bruteforce")
    location = property(lambda self: self.path.name)
    tombstone_count = property(lambda self: 0)
    dirty = property(lambda self: self._dirty)

    def add(self, ids, vectors):
        ids, vectors = prepare_additions(ids, vectors, self.dim)
        self._vecs.update(zip(ids.tolist(), vectors))
        self._dirty = True

    def remove(self, ids):
        for i in as_ids(ids).tolist():
            self._dirty |= self._vecs.pop(i, None) is not None

    def search(self, q, k, **filters):
        q, k, out_s, out_i = prepare_queries(q, self.dim, k)
        if self._vecs:
            ids = np.fromiter(self._vecs, np.int64)
            s = q @ np.stack(list(self._vecs.values())).T
            order = np.argsort(-s, axis=1, kind="stable")[:, :k]
            w = order.shape[1]
            out_s[:, :w], out_i[:, :w] = np.take_along_axis(s, order, 1), ids[order]
        return out_s, out_i

    def ids(self):
        return np.fromiter(self._vecs, np.int64, len(self._vecs))

    def __len__(self):
        return len(self._vecs)

    def reset(self, factory=None, expected_n=0):
        self._vecs, self._dirty = {}, True
        return 0

    def train(self, sample):
        pass

    def save(self, force=False):
        if not (self._dirty or force):
            return False
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        ids = self.ids()
        np.savez(tmp, ids=ids, vectors=np.stack([self._vecs[int(i)] for i in ids]) if ids.size
                 else np.zeros((0, self.dim), np.float32))
        os.replace(tmp, self.path)
        self._dirty, self._mtime = False, self.path.stat().st_mtime_ns
        return True

    def reload_if_changed(self):
        if not self.path.exists() or self.path.stat().st_mtime_ns == self._mtime:
            return False
        self._load()
        return True

    def close(self):
        pass


def _open_bruteforce(url, root, dim, *, factory, readonly, attrs):
    return BruteForceIndex(Path(root) / url.split("://", 1)[1], dim, readonly=readonly)


register_backend("bruteforce", _open_bruteforce)

BACKENDS = {"faiss": None, "faiss-hnsw": None, "milvus-lite": "milvus://vectors.db",
            "bruteforce": "bruteforce://vectors.npz"}


@pytest.fixture(params=sorted(BACKENDS))
def url(request):
    if request.param == "milvus-lite":
        pytest.importorskip("pymilvus")
        pytest.importorskip("milvus_lite")
    return request.param, BACKENDS[request.param]


def _open(url, root, readonly=False):
    name, u = url
    return open_vectors(u, root, DIM, factory="HNSW32,Flat" if name == "faiss-hnsw" else "Flat", readonly=readonly)


def unit(n, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_backend_contract(url, tmp_path):
    idx = _open(url, tmp_path)
    try:
        assert isinstance(idx, VectorIndex) and idx.metric == "ip" and idx.dim == DIM
        assert isinstance(idx.index_type, str) and isinstance(idx.location, str)
        assert isinstance(idx.supports_filters, bool) and idx.tombstone_count == 0
        assert len(idx) == 0 and idx.ids().size == 0
        s, i = idx.search(unit(1)[0], 3)
        assert s.shape == (1, 3) and (i == -1).all() and np.isneginf(s).all()
        x, ids = unit(200), np.arange(200, dtype=np.int64) * 5 + 1
        idx.add(ids, x)
        assert idx.dirty and len(idx) == 200 and sorted(idx.ids().tolist()) == ids.tolist()
        q = unit(4, seed=1)
        s, i = idx.search(q, 5)
        exact = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :5]
        assert i.shape == (4, 5) and (i == ids[exact]).mean() >= (0.95 if url[0] == "faiss-hnsw" else 1.0)
        np.testing.assert_allclose(s[:, 0], (q @ x.T).max(1), atol=1e-4)
        # filters are a superset hint: ignored without push-down, applied with it (these vectors
        # were added without attributes, so no region has an area >= 1 and nothing passes)
        _, fi = idx.search(q, 5, path_prefix="/nowhere/", min_area=1, kinds=("mask",))
        assert (fi == -1).all() if idx.supports_filters else (fi == i).all()
        gone = ids[:50]
        idx.remove(gone)
        idx.remove(np.array([10**9]))  # unknown ids are ignored
        assert len(idx) == 150 and not np.isin(idx.ids(), gone).any()
        assert not np.isin(idx.search(x[:50], 10)[1], gone).any()
        assert idx.save() is True and not idx.dirty and idx.save() is False and idx.save(force=True) is True
    finally:
        idx.close()
    reader = _open(url, tmp_path, readonly=True) if url[0] != "milvus-lite" else _open(url, tmp_path)
    try:
        assert len(reader) == 150 and reader.reload_if_changed() is False
        assert not np.isin(reader.ids(), gone).any()
    finally:
        reader.close()
    idx = _open(url, tmp_path)
    try:
        need = idx.reset(None, expected_n=10)
        assert need == 0 and len(idx) == 0
        idx.train(unit(10))
        idx.add(np.arange(10), unit(10))
        assert len(idx) == 10
    finally:
        idx.close()


def _result(path, n, seed):
    e = unit(n, seed)
    regs = [Region((0.0, 0.0, 5.0, 5.0), 25 * (i + 1), {"size": [10, 10], "counts": "xyz"}, 0.9, 0.95)
            for i in range(n)]
    return ImageResult(str(path), f"sha-{Path(path).name}", 10, 10, "k1", regs, e)


def test_backend_in_a_data_dir(url, tmp_path):
    """Open, commit, search, remove, crash-repair, doctor, reindex, reopen: the data dir only ever
    talks to the protocol."""
    root = tmp_path / "data"
    with DataDir.open(root, MANIFEST, vectors_url=url[1], index_factory="HNSW32,Flat" if url[0] == "faiss-hnsw" else "auto") as dd:
        ids = dd.commit([_result(tmp_path / f"{i}.png", 3, i) for i in range(4)])
        regions = dd.regions_of_image(ids[0])
        own = dd.region_embedding(regions[1].region_id)
        s, i = dd.search_vectors(own[None], 1)
        assert i[0, 0] == regions[1].region_id and s[0, 0] > 0.99
        assert dd.remove_paths([str(tmp_path / "3.png")]) == 1 and len(dd.index) == 9
        dd.index.remove(np.array([regions[0].region_id]))  # lose a vector behind the data dir's back
        rep = dd.doctor()
        assert not rep.ok and rep.missing_vectors == [regions[0].region_id]
        assert dd.doctor(repair=True).repaired and dd.doctor().ok
        assert dd.reindex() == 9 and dd.doctor().ok
        info = dd.info()
        assert info["vectors"] == 9 and info["index_type"] == dd.index.index_type
    manifest = (root / "manifest.json").read_text()
    assert (url[1] or "vectors.faiss").split("://")[-1] in manifest
    with DataDir.open(root, MANIFEST) as dd:  # the URL is recorded: no need to repeat it
        assert len(dd.index) == 9 and dd.doctor().ok
        assert type(dd.index).__name__ == {"bruteforce": "BruteForceIndex", "milvus-lite": "MilvusIndex"}.get(
            url[0], "FaissIndex")
